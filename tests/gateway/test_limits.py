"""Request bodies are bounded and the API key comes first (guard.py): 413 over the limit before
parsing, 401 without a valid key before a byte of the body is read, in the app and through a
real uvicorn server, whose memory does not grow by what a client tries to upload."""

from __future__ import annotations

import asyncio
import json
import select
import socket

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.gateway.gateway_helpers import ADMIN_KEY, minimal_body, post_job
from roboaug.api.gateway import create_app
from roboaug.api.gateway.auth import KeyRing
from roboaug.api.gateway.settings import DEFAULT_MAX_BODY_BYTES

LIMIT = DEFAULT_MAX_BODY_BYTES
TOO_LARGE = {"detail": f"request body: larger than the limit of {LIMIT} bytes"}


def padded(size: int) -> bytes:
    """A valid request body of exactly `size` bytes (JSON with trailing spaces)."""
    raw = json.dumps(minimal_body()).encode()
    return raw + b" " * (size - len(raw))


def test_body_at_the_limit_passes_one_byte_more_is_413(client, store):
    ok = client.post("/v1/augmentation", content=padded(LIMIT), headers={"Content-Type": "application/json"})
    assert ok.status_code == 201, ok.text
    r = client.post("/v1/augmentation", content=padded(LIMIT + 1), headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and r.json() == TOO_LARGE
    assert len(store.jobs) == 1


def test_chunked_body_is_counted_while_it_streams(client, store):
    def chunks(total):
        for start in range(0, total, 4096):
            yield padded(total)[start:start + 4096]

    r = client.post("/v1/augmentation", content=chunks(LIMIT + 1), headers={"Content-Type": "application/json"})
    assert "content-length" not in r.request.headers  # really chunked
    assert r.status_code == 413 and r.json() == TOO_LARGE
    ok = client.post("/v1/augmentation", content=chunks(LIMIT), headers={"Content-Type": "application/json"})
    assert ok.status_code == 201, ok.text


def test_the_limit_is_a_setting(settings, store):
    app = create_app(settings.model_copy(update={"max_body_bytes": 2048}), store, KeyRing(settings.api_keys_file, 0))
    with TestClient(app) as c:
        c.headers["x-api-key"] = ADMIN_KEY
        assert post_job(c).status_code == 201
        r = c.post("/v1/augmentation", content=padded(2049), headers={"Content-Type": "application/json"})
        assert r.status_code == 413 and "limit of 2048 bytes" in r.json()["detail"]


def test_limit_holds_off_the_v1_routes_too(client):
    assert client.post("/healthz", content=b"x" * (LIMIT + 1)).status_code == 413


def test_bad_content_length_is_400(app):
    status, _, read = asgi_call(app, "POST", "/healthz", {"x-api-key": ADMIN_KEY, "content-length": "12x"}, [b"{}"])
    assert status == 400 and read == 0


# -- the key before the body, at the ASGI level: does the app ever ask for the body? ---------
def asgi_call(app, method: str, path: str, headers: dict[str, str], chunks: list[bytes]):
    """Runs one request through the ASGI app; returns (status, body, how many body messages it read)."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
             "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"",
             "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
    pending = list(chunks)
    read = 0
    sent: list[dict] = []

    async def receive():
        nonlocal read
        if not pending:
            await asyncio.sleep(3600)  # the client is still "sending": only a disconnect would come
        read += 1
        body = pending.pop(0)
        return {"type": "http.request", "body": body, "more_body": bool(pending)}

    async def send(message):
        sent.append(message)

    async def run():
        await asyncio.wait_for(app(scope, receive, send), 10)

    asyncio.run(run())
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], body, read


@pytest.mark.parametrize("key", [None, "wrong-key"])
def test_no_valid_key_is_401_before_the_body_is_read(app, key):
    headers = {"content-type": "application/json", "content-length": str(10 * LIMIT)}
    if key:
        headers["x-api-key"] = key
    status, body, read = asgi_call(app, "POST", "/v1/augmentation", headers, [b" " * LIMIT] * 10)
    assert status == 401 and read == 0
    assert json.loads(body) == {"detail": "missing x-api-key header" if key is None else "invalid API key"}


def test_declared_length_over_the_limit_is_413_before_the_body_is_read(app):
    headers = {"content-type": "application/json", "content-length": str(LIMIT + 1), "x-api-key": ADMIN_KEY}
    status, body, read = asgi_call(app, "POST", "/v1/augmentation", headers, [b" " * (LIMIT + 1)])
    assert status == 413 and read == 0 and json.loads(body) == TOO_LARGE


def test_chunked_body_is_read_no_further_than_past_the_limit(app):
    headers = {"content-type": "application/json", "transfer-encoding": "chunked", "x-api-key": ADMIN_KEY}
    status, _, read = asgi_call(app, "POST", "/v1/augmentation", headers, [b" " * 16384] * 100)
    assert status == 413 and read == LIMIT // 16384 + 1


# -- a real server and a real socket ------------------------------------------------------------
MIB = 1 << 20


def upload(port: int, headers: dict[str, str], chunked: bool, total: int = 256 * MIB) -> tuple[int, int]:
    """POSTs `total` bytes of body over a raw socket, 1 MiB at a time, reading the answer as soon
    as it comes; returns (status, MiB the server's socket took before answering or closing)."""
    s = socket.create_connection(("127.0.0.1", port))
    s.settimeout(2)
    head = "POST /v1/augmentation HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    head += "Transfer-Encoding: chunked\r\n" if chunked else f"Content-Length: {total}\r\n"
    s.sendall((head + "\r\n").encode())
    chunk = b" " * MIB
    sent, answer = 0, b""
    try:
        while sent < total and b"\r\n\r\n" not in answer:
            if select.select([s], [], [], 0)[0]:
                data = s.recv(65536)
                if not data:
                    break
                answer += data
                continue
            s.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n" if chunked else chunk)
            sent += MIB
        while b"\r\n\r\n" not in answer:
            data = s.recv(65536)
            if not data:
                break
            answer += data
    except (OSError, socket.timeout):
        pass  # the server closed on us or stopped reading: the answer below says which
    finally:
        s.close()
    assert answer.startswith(b"HTTP/1.1 "), (answer[:200], sent)
    return int(answer.split()[1]), sent // MIB


def test_large_uploads_to_a_real_server_are_refused_without_reading_them(served):
    with httpx.Client(base_url=served.base, headers={"x-api-key": ADMIN_KEY}, timeout=10) as c:
        assert post_job(c).status_code == 201  # warm: the first request's imports are not the upload's
    before = served.rss_bytes()
    cases = [({}, False, 401), ({}, True, 401), ({"x-api-key": "wrong"}, True, 401),
             ({"x-api-key": ADMIN_KEY}, False, 413), ({"x-api-key": ADMIN_KEY}, True, 413)]
    for headers, chunked, expected in cases:
        status, taken = upload(served.port, headers, chunked)
        assert status == expected, (headers, chunked)
        assert taken < 32, f"the server took {taken} MiB of 256 before answering {status}"
    # httpx streaming a generator (chunked), as a client library would
    stream = (b" " * MIB for _ in range(256))
    r = httpx.post(served.base + "/v1/augmentation", content=stream, headers={"x-api-key": ADMIN_KEY}, timeout=30)
    assert r.status_code == 413 and r.json() == TOO_LARGE
    grown = served.rss_bytes() - before
    assert grown < 32 * MIB, f"RSS grew by {grown / MIB:.0f} MiB over 6 x 256 MiB uploads"
    # and the server still serves
    with httpx.Client(base_url=served.base, headers={"x-api-key": ADMIN_KEY}, timeout=10) as c:
        assert post_job(c).status_code == 201
