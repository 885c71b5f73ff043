"""DEV-ONLY: the one kubelet endpoint the dev node agent serves, `GET /containerLogs/<ns>/<pod>/
<container>` (`?follow=true`), so that `pods/log` works through the real apiserver (`kubectl
logs`, the operator's log archive, the gateway's GET .../logs) for pods the agent runs.

The apiserver finds it through the Node's `status.daemonEndpoints.kubeletEndpoint.Port` and
InternalIP (127.0.0.1) and speaks HTTPS to it; it does not verify a kubelet's certificate unless
`--kubelet-certificate-authority` is set (the dev stack does not set it), so a self-signed one
serves. No client authentication either (the dev stack gives the apiserver no kubelet client
certificate): the server listens on 127.0.0.1 only, and RBAC on `pods/log` is enforced by the
apiserver before it ever calls here. Never deploy this.
"""

from __future__ import annotations

import logging
import ssl
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Optional
from urllib.parse import parse_qs, unquote, urlparse

log = logging.getLogger("roboaug.nodeagent")

Lookup = Callable[[str, str], Optional[tuple[Path, threading.Event]]]
"""(namespace, pod name) -> (its output file, set once its process has ended), or None."""
POLL_SECONDS = 0.2


def self_signed(d: Path, name: str) -> tuple[Path, Path]:
    d.mkdir(parents=True, exist_ok=True)
    crt, key = d / "kubelet.crt", d / "kubelet.key"
    p = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                        "-out", str(crt), "-days", "30", "-subj", f"/CN={name}",
                        "-addext", "subjectAltName=IP:127.0.0.1"], capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"openssl failed: {p.stderr}")
    return crt, key


def _handler(lookup: Lookup, stopping: threading.Event):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):  # the agent's own log, at debug
            log.debug("kubelet-logs: " + fmt, *args)

        def do_GET(self):
            url = urlparse(self.path)
            parts = [unquote(p) for p in url.path.strip("/").split("/")]
            if len(parts) != 4 or parts[0] != "containerLogs":
                return self._plain(404, "not found\n")
            found = lookup(parts[1], parts[2])
            if found is None:
                return self._plain(404, f"pod {parts[1]}/{parts[2]} not found on this node\n")
            path, done = found
            follow = parse_qs(url.query).get("follow", ["false"])[0] == "true"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            try:
                with open(path, "rb") as f:
                    while True:
                        data = f.read(64 * 1024)
                        if data:
                            self._chunk(data)
                            continue
                        if not follow or stopping.is_set():
                            break
                        if done.is_set():  # ended: read what it wrote last, then stop
                            rest = f.read()
                            if rest:
                                self._chunk(rest)
                            break
                        time.sleep(POLL_SECONDS)
                self.wfile.write(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                pass  # the reader left
            self.close_connection = True

        def _chunk(self, data: bytes) -> None:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

        def _plain(self, code: int, text: str) -> None:
            body = text.encode()
            self.send_response(code)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


def serve(lookup: Lookup, cert_dir: Path, name: str, stopping: threading.Event) -> int:
    """Start the server on a free port of 127.0.0.1 in a daemon thread; returns the port."""
    crt, key = self_signed(cert_dir, name)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(lookup, stopping))
    server.daemon_threads = True
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(crt), str(key))
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True, name="kubelet-logs").start()
    return server.server_address[1]
