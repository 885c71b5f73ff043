"""`python -m roboaug.api.gateway [--host H] [--port P]`: serve the gateway with uvicorn, and its
Prometheus metrics on `ROBOAUG_GATEWAY_METRICS_PORT` (same host)."""

from __future__ import annotations

import argparse
import logging


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    from .app import create_app
    from .settings import Settings

    settings = Settings()
    parser = argparse.ArgumentParser(prog="roboaug-gateway", description=__doc__)
    parser.add_argument("--host", default=settings.host, help=f"listen address (default {settings.host})")
    parser.add_argument("--port", type=int, default=settings.port, help=f"listen port (default {settings.port})")
    args = parser.parse_args(argv)
    if args.port == settings.metrics_port:
        parser.error(f"--port {args.port}: the metrics port (ROBOAUG_GATEWAY_METRICS_PORT) must differ")
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(settings)
    app.state.metrics.serve(args.host, settings.metrics_port)
    # proxy_headers off: the gateway does not trust X-Forwarded-* from arbitrary clients.
    uvicorn.run(app, host=args.host, port=args.port, log_level=settings.log_level, proxy_headers=False)


if __name__ == "__main__":
    main()
