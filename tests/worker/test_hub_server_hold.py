"""The local Hub's `hold` knob, which the chaos test uses to catch a worker in the middle of its
upload: a held request stays unanswered while other requests are served, its client vanishing
meanwhile is logged as 499 and stores nothing, and a released one completes as usual."""

from __future__ import annotations

import hashlib
import socket
import threading
import time

import httpx

from roboaug.devstack.hubserver import WRITE_TOKEN
from roboaug.devstack.hubserver.fixtures import local_hub, local_hub_session  # noqa: F401

AUTH = {"Authorization": f"Bearer {WRITE_TOKEN}"}


def _upload_url(hub, repo: str, data: bytes) -> str:
    oid = hashlib.sha256(data).hexdigest()
    batch = httpx.post(f"{hub.endpoint}/datasets/{repo}.git/info/lfs/objects/batch", headers=AUTH,
                       json={"operation": "upload", "transfers": ["basic"], "objects": [{"oid": oid, "size": len(data)}]})
    assert batch.status_code == 200, batch.text
    return batch.json()["objects"][0]["actions"]["upload"]["href"]


def test_a_held_request_waits_while_others_are_served_then_completes(local_hub):
    local_hub.store.create("dataset", "roboaug-test/held")
    data = b"x" * 1000
    url = _upload_url(local_hub, "roboaug-test/held", data)
    hold = local_hub.hold(r"^/_lfs/dataset/roboaug-test/held/", method="PUT")
    answer = {}
    t = threading.Thread(target=lambda: answer.setdefault("r", httpx.put(url, content=data, timeout=30)))
    t.start()
    assert hold.arrived.wait(10)
    assert httpx.get(f"{local_hub.endpoint}/api/whoami-v2", headers=AUTH).status_code == 200  # not blocked
    time.sleep(0.3)
    assert "r" not in answer  # still held
    assert local_hub.store.has_lfs("dataset", "roboaug-test/held", hashlib.sha256(data).hexdigest()) is None
    hold.release()
    t.join(10)
    assert answer["r"].status_code == 200
    assert hold.paths == [f"/_lfs/dataset/roboaug-test/held/{hashlib.sha256(data).hexdigest()}"]
    assert local_hub.store.has_lfs("dataset", "roboaug-test/held", hashlib.sha256(data).hexdigest()) == len(data)
    # times=1: the next upload is not held
    url2 = _upload_url(local_hub, "roboaug-test/held", b"y" * 10)
    assert httpx.put(url2, content=b"y" * 10, timeout=10).status_code == 200


def test_a_held_upload_whose_client_dies_stores_nothing_and_is_logged_499(local_hub):
    local_hub.store.create("dataset", "roboaug-test/dies")
    data = b"z" * 100_000
    url = httpx.URL(_upload_url(local_hub, "roboaug-test/dies", data))
    hold = local_hub.hold(r"^/_lfs/dataset/roboaug-test/dies/", method="PUT")
    # A client that sends its headers and part of the body, then disappears (as a killed worker).
    sock = socket.create_connection(("127.0.0.1", local_hub.port))
    target = url.raw_path.decode()
    sock.sendall(f"PUT {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(data)}\r\n\r\n".encode()
                 + data[:1000])
    assert hold.arrived.wait(10)
    sock.close()
    hold.release()

    def logged():
        return [r for r in local_hub.requests("PUT", r"^/_lfs/dataset/roboaug-test/dies/")]
    deadline = time.monotonic() + 10
    while not logged() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [r.status for r in logged()] == [499]
    assert local_hub.store.has_lfs("dataset", "roboaug-test/dies", hashlib.sha256(data).hexdigest()) is None
