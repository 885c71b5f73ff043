"""x-api-key: file formats, hashing, constant-time comparison, project binding, rotation."""

from __future__ import annotations

import hashlib
import hmac
import os
import uuid

import pytest
from fastapi.testclient import TestClient

from tests.gateway.gateway_helpers import ADMIN_KEY, BOUND_KEY, HASHED_KEY, OTHER_PROJECT, PROJECT, minimal_body, post_job
from roboaug.api.gateway import create_app
from roboaug.api.gateway.auth import KeyRing, KeysFileError, parse_keys
from roboaug.api.gateway.settings import Settings
from roboaug.api.gateway.store import MemoryStore

V1_ROUTES = [
    ("POST", "/v1/augmentation"),
    ("GET", "/v1/augmentation"),
    ("GET", f"/v1/augmentation/{uuid.uuid4()}"),
    ("POST", f"/v1/augmentation/{uuid.uuid4()}/cancel"),
]


@pytest.mark.parametrize("method, path", V1_ROUTES)
def test_missing_key_is_401_on_every_v1_route(client, method, path):
    del client.headers["x-api-key"]
    r = client.request(method, path, json=minimal_body() if method == "POST" else None)
    assert r.status_code == 401
    assert r.json() == {"detail": "missing x-api-key header"}


@pytest.mark.parametrize("method, path", V1_ROUTES)
def test_wrong_key_is_401_on_every_v1_route(client, method, path):
    r = client.request(method, path, headers={"x-api-key": ADMIN_KEY + "x"},
                       json=minimal_body() if method == "POST" else None)
    assert r.status_code == 401
    assert r.json() == {"detail": "invalid API key"}


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])  # docs: test_ops.py
def test_ops_routes_need_no_key(client, path):
    del client.headers["x-api-key"]
    assert client.get(path).status_code == 200


def test_key_stored_only_as_sha256_is_accepted(client, store):
    assert post_job(client, **{"x-api-key": HASHED_KEY}).status_code == 201


def test_keys_are_held_hashed(keys_file):
    ring = KeyRing(keys_file, 0)
    assert len(ring) == 3
    held = [e.digest for e in ring._entries]
    assert hashlib.sha256(ADMIN_KEY.encode()).digest() in held
    assert all(len(d) == 32 for d in held)
    assert not any(ADMIN_KEY.encode() in d or BOUND_KEY.encode() in d for d in held)


def test_every_stored_digest_is_compared(keys_file, monkeypatch):
    # Constant time across keys: no early exit once a key matched, and compare_digest does the work.
    calls = []
    real = hmac.compare_digest

    def counting(a, b):
        calls.append(1)
        return real(a, b)

    monkeypatch.setattr("roboaug.api.gateway.auth.hmac.compare_digest", counting)
    ring = KeyRing(keys_file, 0)
    assert ring.authenticate(ADMIN_KEY) is not None  # the first entry
    assert len(calls) == 3
    calls.clear()
    assert ring.authenticate("nope") is None
    assert len(calls) == 3


def test_yaml_format_with_names_hashes_and_projects(tmp_path):
    path = tmp_path / "keys.yaml"
    path.write_text(
        "keys:\n"
        f"  - name: ci\n    sha256: {hashlib.sha256(b'ci-key').hexdigest()}\n"
        f"  - name: partner\n    key: partner-key\n    projects: [{PROJECT}]\n"
    )
    ring = KeyRing(path, 0)
    ci, partner = ring.authenticate("ci-key"), ring.authenticate("partner-key")
    assert ci.name == "ci" and ci.projects is None and ci.allows(OTHER_PROJECT)
    assert partner.name == "partner" and partner.allows(PROJECT.upper()) and not partner.allows(OTHER_PROJECT)
    assert ring.authenticate("sha256:" + hashlib.sha256(b"ci-key").hexdigest()) is None


@pytest.mark.parametrize("text, where", [
    ("sha256:abc\n", "line 1"),
    ("good\nkey2 not-a-uuid\n", "line 2"),
    ("keys:\n  - name: x\n", "keys[0]: give exactly one"),
    ("keys:\n  - key: secret-value\n    sha256: " + "0" * 64 + "\n", "keys[0]"),
    ("keys:\n  - key: secret-value\n    colour: red\n", "unknown field(s) colour"),
    ("keys:\n  - key: [secret-value\n", "not valid YAML"),
])
def test_bad_keys_file_names_the_entry_never_the_key(tmp_path, text, where):
    path = tmp_path / "keys"
    path.write_text(text)
    with pytest.raises(KeysFileError) as info:
        KeyRing(path, 0)
    assert where in str(info.value)
    assert "secret-value" not in str(info.value)


def test_comments_and_blank_lines(tmp_path):
    assert len(parse_keys("\n# a comment\n\n  k1  \n#k2\n")) == 1


def test_rotation_without_restart(keys_file, tmp_path):
    app = create_app(Settings(api_keys_file=keys_file, api_keys_reload_seconds=0, store="memory"),
                     MemoryStore())
    with TestClient(app) as c:
        assert post_job(c, **{"x-api-key": ADMIN_KEY}).status_code == 201
        # Rotate the way a Secret volume does: write a new file and swap it in atomically.
        new = tmp_path / "keys.new"
        new.write_text("rotated-key-1\n")
        os.replace(new, keys_file)
        assert post_job(c, **{"x-api-key": ADMIN_KEY}).status_code == 401
        assert post_job(c, **{"x-api-key": "rotated-key-1"}).status_code == 201


def _key_log(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "roboaug.api.gateway.auth" and r.levelname == "ERROR"]


@pytest.mark.parametrize("breakage", ["delete", "corrupt", "undecodable"])
def test_keys_file_that_breaks_fails_closed_until_it_returns(client, keys_file, caplog, breakage):
    # The app is running (reload every request); the file then vanishes or stops parsing.
    assert post_job(client).status_code == 201 and client.get("/readyz").status_code == 200
    caplog.clear()
    if breakage == "delete":
        keys_file.unlink()
    elif breakage == "corrupt":
        keys_file.write_text(f"{ADMIN_KEY}\nsha256:not-hex-at-all\n")  # a typo in a rotated file
    else:
        keys_file.write_bytes(b"\xff\xfe" + ADMIN_KEY.encode())
    for _ in range(3):  # every key refused, not ready; the cause logged once, not per request
        for key in (ADMIN_KEY, HASHED_KEY, BOUND_KEY):
            assert post_job(client, **{"x-api-key": key}).status_code == 401
        r = client.get("/readyz")
        assert r.status_code == 503 and "API keys file" in r.json()["detail"]
    assert client.get("/healthz").status_code == 200  # alive: a restart would not help
    lines = _key_log(caplog)
    assert len(lines) == 1, lines
    assert str(keys_file) in lines[0] and "refused" in lines[0]
    assert not any(k in lines[0] for k in (ADMIN_KEY, HASHED_KEY, BOUND_KEY))
    # a valid file returns: keys and readiness with it
    keys_file.write_text(f"{ADMIN_KEY}\n# restored\n")
    assert post_job(client).status_code == 201
    assert post_job(client, **{"x-api-key": HASHED_KEY}).status_code == 401  # not in the new file
    assert client.get("/readyz").status_code == 200


def test_keys_file_missing_at_start_is_not_ready(tmp_path, caplog):
    path = tmp_path / "not-yet"
    app = create_app(Settings(api_keys_file=path, api_keys_reload_seconds=0, store="memory"), MemoryStore())
    with TestClient(app) as c:
        assert c.get("/readyz").status_code == 503
        assert post_job(c, **{"x-api-key": "k"}).status_code == 401
        path.write_text("k\n")
        assert c.get("/readyz").status_code == 200 and post_job(c, **{"x-api-key": "k"}).status_code == 201


def test_no_keys_file_configured_stays_ready(client):
    # Unset on purpose (the chart without apiKeys.secretName): every key refused, but nothing to wait for.
    app = create_app(Settings(store="memory"), MemoryStore())
    with TestClient(app) as c:
        assert c.get("/readyz").status_code == 200


def test_no_keys_file_refuses_everyone():
    app = create_app(Settings(store="memory"), MemoryStore())
    with TestClient(app) as c:
        assert post_job(c, **{"x-api-key": "anything"}).status_code == 401


# -- project binding ----------------------------------------------------------------------------
@pytest.fixture
def two_jobs(client):
    mine = post_job(client, minimal_body()).json()["job_id"]
    theirs = post_job(client, minimal_body(project_id=OTHER_PROJECT)).json()["job_id"]
    return mine, theirs


def test_bound_key_reads_own_project_and_gets_404_for_others(client, two_jobs):
    mine, theirs = two_jobs
    h = {"x-api-key": BOUND_KEY}
    assert client.get(f"/v1/augmentation/{mine}", headers=h).status_code == 200
    r = client.get(f"/v1/augmentation/{theirs}", headers=h)
    assert r.status_code == 404 and r.json() == {"detail": f"augmentation job {theirs} not found"}
    assert client.post(f"/v1/augmentation/{theirs}/cancel", headers=h).status_code == 404
    # and the admin key sees both
    assert client.get(f"/v1/augmentation/{theirs}").status_code == 200


def test_bound_key_lists_only_its_projects(client, two_jobs):
    mine, _ = two_jobs
    h = {"x-api-key": BOUND_KEY}
    r = client.get("/v1/augmentation", headers=h)
    assert [i["job_id"] for i in r.json()["items"]] == [mine]
    assert client.get(f"/v1/augmentation?project_id={OTHER_PROJECT}", headers=h).status_code == 403
    assert len(client.get("/v1/augmentation").json()["items"]) == 2
