"""The request guard: the API key and the body's size are checked before the body is read.

FastAPI reads and parses a body before it runs a route's dependencies, so a key check in a
dependency comes too late to stop a large anonymous upload, and nothing bounds the size. This
pure ASGI middleware sits in front of the routes and, in this order:

1. on the protected prefix (`/v1`), except OPTIONS, authenticates `x-api-key`: 401 without
   reading a byte of the body; the Principal goes into the scope's state for `deps.require_principal`;
2. refuses a declared `Content-Length` over the limit with 413, again without reading the body;
3. reads the body (chunked or not) itself, counting, and answers 413 as soon as it passes the
   limit, so at most the limit plus one received chunk is ever held; the app then gets the
   body from memory.

An answer sent before the body was read leaves the rest unread: uvicorn stops reading the
socket and closes the connection, so an oversized upload costs the server nothing.
"""

from __future__ import annotations

import json

from .auth import KeyRing
from .deps import API_KEY_HEADER, unauthorized_detail


def body_too_large_detail(limit: int) -> str:
    return f"request body: larger than the limit of {limit} bytes"


class RequestGuard:
    def __init__(self, app, *, keyring: KeyRing, max_body_bytes: int, protected_prefix: str = "/v1"):
        self.app = app
        self.keyring = keyring
        self.max_body_bytes = max_body_bytes
        self.protected_prefix = protected_prefix

    def _protected(self, scope) -> bool:
        path = scope.get("path", "")
        return scope.get("method") != "OPTIONS" and (
            path == self.protected_prefix or path.startswith(self.protected_prefix + "/"))

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = _headers(scope)
        if self._protected(scope):
            presented = headers.get(API_KEY_HEADER)
            principal = self.keyring.authenticate(presented)
            if principal is None:
                return await _answer(send, 401, unauthorized_detail(presented))
            scope.setdefault("state", {})["principal"] = principal
        declared = headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                return await _answer(send, 400, "Content-Length: not a byte count")
            if int(declared) > self.max_body_bytes:
                return await _answer(send, 413, body_too_large_detail(self.max_body_bytes))
        if declared in (None, "0") and "transfer-encoding" not in headers:
            return await self.app(scope, receive, send)  # no body to read
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            body += message.get("body", b"")
            if len(body) > self.max_body_bytes:
                return await _answer(send, 413, body_too_large_detail(self.max_body_bytes))
            if not message.get("more_body", False):
                break
        return await self.app(scope, _replay(bytes(body), receive), send)


def _headers(scope) -> dict[str, str]:
    # The first value of a repeated header, as Starlette's Headers.get (uvicorn's parser already
    # refuses conflicting Content-Length values).
    found: dict[str, str] = {}
    for key, value in scope.get("headers") or []:
        found.setdefault(key.decode("latin-1").lower(), value.decode("latin-1"))
    return found


def _replay(body: bytes, receive):
    sent = False

    async def replay():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # later calls wait for the disconnect, as the server's would

    return replay


async def _answer(send, status: int, detail: str) -> None:
    payload = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body", "body": payload})
