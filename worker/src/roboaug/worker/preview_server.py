"""The preview service: `python -m roboaug.worker.preview_server` in the worker image.

The gateway (which has neither the decoders nor the kernels, and must not parse untrusted video
next to its API keys and ServiceAccount) forwards `POST /v1/augmentation/preview` here once its
project policy has passed, with the effective request (project defaults applied):

    POST /v1/preview   body: AugmentationPreviewRequest (JSON)  ->  image/png | application/json
    GET  /healthz

Errors are `{"detail": str}`, or FastAPI's list form `{"detail": [{"loc", "msg", "type"}]}` for a
pick the source cannot honour; the gateway passes them through. At most `--concurrency` previews
run at once (one per core: each is CPU-bound); more get 503 with Retry-After. Standard library
only: the worker image carries no web framework. The service holds no credentials (sources are
read without a Hub token) and no ServiceAccount token.

| variable | default | meaning |
|---|---|---|
| `ROBOAUG_PREVIEW_HOST` / `ROBOAUG_PREVIEW_PORT` | `0.0.0.0` / `8080` | where it listens |
| `ROBOAUG_PREVIEW_CONCURRENCY` | `1` | previews at once |
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Optional

from pydantic import ValidationError

from roboaug.api.models.preview import AugmentationPreviewRequest, PreviewFormat

from . import preview
from .errors import ExitCode, WorkerError

log = logging.getLogger("roboaug.preview")

MAX_BODY_BYTES = 64 * 1024
TOKENLESS = ("a preview reads the source without a Hub token: private and gated datasets can be "
             "augmented by a job, whose pod mounts the project's token, but not previewed")


def _json(status: int, doc) -> tuple[int, str, bytes]:
    return status, "application/json", json.dumps(doc).encode()


def error_answer(exc: WorkerError) -> tuple[int, str, bytes]:
    """A failure as the gateway answers it: a pick -> 422 naming the field; the source's fault
    (missing, private, unreadable) -> 422 naming dataset_id; the Hub unreachable -> 502."""
    if isinstance(exc, preview.PickError):
        return _json(422, {"detail": [{"loc": ["body", exc.field], "msg": exc.message, "type": "preview_pick"}]})
    if exc.code in (ExitCode.DATASET_NOT_FOUND, ExitCode.AUTH):
        return _json(422, {"detail": f"dataset_id: {exc.message} ({TOKENLESS})"})
    if exc.code == ExitCode.NETWORK:
        return _json(502, {"detail": f"dataset_id: {exc.message}; retry later"})
    if exc.code in (ExitCode.UNSUPPORTED_FORMAT, ExitCode.CORRUPT_VIDEO, ExitCode.NO_CAMERA_FEATURE,
                    ExitCode.INVALID_SPEC):
        return _json(422, {"detail": f"dataset_id: {exc.message}"})
    return _json(500, {"detail": "the preview failed (server fault)"})


def answer(body: bytes) -> tuple[int, str, bytes]:
    """(status, content type, body) for one POST /v1/preview body. Pure but for the source read."""
    try:
        request = AugmentationPreviewRequest.model_validate_json(body)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(map(str, first["loc"])) or "request"
        return _json(400, {"detail": f"{where}: {first['msg'].removeprefix('Value error, ')}"})
    try:
        result = preview.run(request)
    except WorkerError as exc:
        return error_answer(exc)
    except MemoryError:
        return _json(503, {"detail": "the preview service is out of memory; pick fewer frames"})
    if request.format == PreviewFormat.json.value:
        return 200, "application/json", preview.to_response(result).model_dump_json().encode()
    return 200, "image/png", preview.grid_png(result)


class Handler(BaseHTTPRequestHandler):
    server_version = "roboaug-preview"
    slots: threading.BoundedSemaphore  # set by serve()

    def _send(self, status: int, ctype: str, data: bytes, headers: Optional[dict] = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        if self.path == "/healthz":
            self._send(*_json(200, {"status": "ok"}))
        else:
            self._send(*_json(404, {"detail": "not found"}))

    def do_POST(self) -> None:  # noqa: N802
        if self.path != "/v1/preview":
            self._send(*_json(404, {"detail": "not found"}))
            return
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self._send(*_json(411, {"detail": "Content-Length required"}))
            return
        if not 0 <= length <= MAX_BODY_BYTES:
            self._send(*_json(413, {"detail": f"request body over {MAX_BODY_BYTES} bytes"}))
            return
        body = self.rfile.read(length)
        if not self.slots.acquire(blocking=False):
            self._send(*_json(503, {"detail": "the preview service is busy; retry shortly"}), {"Retry-After": "2"})
            return
        try:
            result = answer(body)
        except Exception:
            log.exception("preview failed")
            result = _json(500, {"detail": "the preview failed (server fault)"})
        finally:
            self.slots.release()
        self._send(*result)

    def log_message(self, fmt: str, *args) -> None:
        log.info("%s %s", self.address_string(), fmt % args)


def serve(host: str, port: int, concurrency: int = 1) -> ThreadingHTTPServer:
    """A started-but-not-serving server (call serve_forever); port 0 picks a free one."""
    handler = type("PreviewHandler", (Handler,), {"slots": threading.BoundedSemaphore(concurrency)})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m roboaug.worker.preview_server", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default=os.environ.get("ROBOAUG_PREVIEW_HOST", "0.0.0.0"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("ROBOAUG_PREVIEW_PORT", "8080")))
    parser.add_argument("--concurrency", type=int, default=int(os.environ.get("ROBOAUG_PREVIEW_CONCURRENCY", "1")))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    import cv2

    cv2.setNumThreads(1)  # one core per preview, as a job's episode (pool.py): the concurrency is the parallelism
    server = serve(args.host, args.port, max(1, args.concurrency))
    log.info("preview service on %s:%d", *server.server_address[:2])
    server.serve_forever()


if __name__ == "__main__":
    main()
