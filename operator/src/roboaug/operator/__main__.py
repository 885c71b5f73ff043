"""`python -m roboaug.operator [--config FILE]`: run the operator.

Order of start-up: configuration (fails fast, naming the bad field) -> logs -> metrics server ->
the leader Lease (blocks while another replica leads) -> how watches start
(`watch_initial_streaming`: auto probes the apiserver once) -> kopf, watching the configured namespaces
(or the whole cluster), with its liveness endpoint at :<health_port>/healthz.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Optional

import kopf

from . import handlers, kopf_startup, logs, metrics
from .config import CONFIG_ENV, ConfigError, load_config
from .controller import Controller
from .kube import Kube, load_api_client
from .log_archive import LogArchiver
from .leader import LeaderElector

log = logging.getLogger("roboaug.operator")
_SA_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def _own_namespace() -> str:
    try:
        return _SA_NAMESPACE.read_text().strip() or "default"
    except OSError:
        return "default"


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m roboaug.operator", description=__doc__)
    parser.add_argument("--config", help=f"operator configuration YAML (default: ${CONFIG_ENV})")
    parser.add_argument("--kubeconfig", help="kubeconfig to use instead of in-cluster credentials / $KUBECONFIG")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config)
    except ConfigError as e:
        print(f"roboaug-operator: {e}", file=sys.stderr)
        return 2
    logs.configure(cfg.log_format, cfg.log_level)
    # Three thread pools share the client (status writes, Job creates, Events) plus the leader
    # lease: size the connection pool for all of them, or urllib3 discards and re-handshakes.
    kube = Kube(load_api_client(args.kubeconfig, pool_size=2 * cfg.api_concurrency + 4),
                timeout=cfg.api_timeout_seconds)
    metrics.serve(cfg.metrics_port)

    elector = None
    if cfg.leader_election.enabled:
        ns = cfg.leader_election.lease_namespace or _own_namespace()
        elector = LeaderElector(kube, cfg.leader_election, ns)
        elector.acquire()
        elector.start_renewing()

    streaming, why = kopf_startup.resolve_initial_streaming(
        cfg.watch_initial_streaming, kube.api, cfg.namespaces[0] if cfg.namespaces else None)
    handlers.install(Controller(cfg, kube), LogArchiver(kube), initial_streaming=streaming, why=why)
    log.info("watching %s", ", ".join(cfg.namespaces) if cfg.namespaces else "all namespaces")
    try:
        kopf.run(
            clusterwide=not cfg.namespaces,
            namespaces=cfg.namespaces,
            standalone=True,
            liveness_endpoint=(f"http://0.0.0.0:{cfg.health_port}/healthz" if cfg.health_port else None),
        )
    finally:
        if elector is not None:
            elector.release()
    return 0


if __name__ == "__main__":
    sys.exit(main())
