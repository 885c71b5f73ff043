"""For the webhook tests: a local HTTP receiver with scripted answers, and a verifier of Standard
Webhooks signatures written from the spec's text (https://www.standardwebhooks.com/, "Verifying
webhook authenticity"), not from the operator's signer:

    signed content = "{webhook-id}.{webhook-timestamp}.{body}"
    key = base64-decode(the secret without its "whsec_" prefix)
    signature = base64(HMAC-SHA256(key, signed content)); the header lists space-delimited
    "v1,<signature>" entries, any one of which may match; compare in constant time; refuse a
    timestamp too far from now (replay).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import http.server
import json
import threading
import time


class Unverified(Exception):
    pass


def verify(secret: str, headers: dict, body: bytes, now: float | None = None, tolerance: int = 300) -> dict:
    h = {k.lower(): v for k, v in headers.items()}
    msg_id, ts, sigs = h.get("webhook-id"), h.get("webhook-timestamp"), h.get("webhook-signature")
    if not (msg_id and ts and sigs):
        raise Unverified("missing webhook-id, webhook-timestamp or webhook-signature")
    if abs((now if now is not None else time.time()) - int(ts)) > tolerance:
        raise Unverified("timestamp outside the tolerance")
    key = base64.b64decode(secret.split("_", 1)[1] if secret.startswith("whsec_") else secret)
    expected = base64.b64encode(hmac.new(key, msg_id.encode() + b"." + ts.encode() + b"." + body,
                                         hashlib.sha256).digest())
    for entry in sigs.split(" "):
        version, _, sig = entry.partition(",")
        if version == "v1" and hmac.compare_digest(sig.encode(), expected):
            return json.loads(body)
    raise Unverified("no matching v1 signature")


class Receiver:
    """HTTP on 127.0.0.1: answers POSTs with the next status of `answers` (then the last one)
    and keeps (headers, body) of each."""

    def __init__(self, answers=(200,)):
        self.answers = list(answers)
        self.received: list[tuple[dict, bytes]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                outer.received.append((dict(self.headers.items()), body))
                code = outer.answers[min(len(outer.received), len(outer.answers)) - 1]
                self.send_response(code)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/roboaug?team=a"

    def __enter__(self) -> "Receiver":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
