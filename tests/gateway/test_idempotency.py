"""Idempotency-Key on POST: one job per (project, key, body), remembered in the store."""

from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

from fastapi.testclient import TestClient

from tests.gateway.gateway_helpers import ADMIN_KEY, OTHER_PROJECT, minimal_body, post_job, seed_body
from roboaug.api.gateway import create_app, service
from roboaug.api.gateway.auth import KeyRing
from roboaug.api.gateway.store import IdempotencyRecord
from roboaug.api.models import AugmentationJobCreateRequest, cr_name


def idem(key: str) -> dict:
    return {"Idempotency-Key": key}


def test_same_key_same_body_same_job(client, store):
    first = post_job(client, seed_body(), **idem("retry-1"))
    again = post_job(client, seed_body(), **idem("retry-1"))
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    assert first.headers["Idempotent-Replayed"] == "false" and again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["location"] == first.headers["location"]
    assert len(store.jobs) == 1 and len(store.records) == 1


def test_same_request_spelled_differently_is_the_same_body(client, store):
    a = post_job(client, minimal_body(augment_transforms="lighting,noise"), **idem("k"))
    # other key order, explicit defaults, other case/spacing of transforms: the same request
    raw = json.dumps({"augment_copies": 3, "dataset_id": "lerobot/pusht", "augment_transforms": " Lighting , NOISE",
                      "project_id": minimal_body()["project_id"].upper()})
    b = client.post("/v1/augmentation", content=raw, headers={"Content-Type": "application/json", **idem("k")})
    assert b.status_code == 201 and b.json()["job_id"] == a.json()["job_id"]
    assert len(store.jobs) == 1


def test_same_key_different_body_is_422_and_creates_nothing(client, store):
    first = post_job(client, minimal_body(), **idem("k2"))
    r = post_job(client, minimal_body(augment_copies=4), **idem("k2"))
    assert r.status_code == 422
    item = r.json()["detail"][0]
    assert item["loc"] == ["header", "Idempotency-Key"] and "different request body" in item["msg"]
    assert list(store.jobs) == [cr_name(first.json()["job_id"])]


def test_keys_are_scoped_by_project(client, store):
    a = post_job(client, minimal_body(), **idem("shared-key"))
    b = post_job(client, minimal_body(project_id=OTHER_PROJECT), **idem("shared-key"))
    assert a.json()["job_id"] != b.json()["job_id"] and len(store.jobs) == 2


def test_replay_survives_a_new_gateway_on_the_same_store(settings, store):
    def fresh_client():
        app = create_app(settings, store, KeyRing(settings.api_keys_file, 0), purge=False)
        c = TestClient(app)
        c.headers["x-api-key"] = ADMIN_KEY
        return c

    with fresh_client() as c1:
        first = post_job(c1, minimal_body(), **idem("restart"))
    with fresh_client() as c2:
        again = post_job(c2, minimal_body(), **idem("restart"))
        assert again.json()["job_id"] == first.json()["job_id"]
        assert post_job(c2, minimal_body(augment_copies=9), **idem("restart")).status_code == 422
    assert len(store.jobs) == 1


def test_rejected_requests_leave_no_record(client, store):
    assert post_job(client, minimal_body(augmentation_type="generative"), **idem("g")).status_code == 400
    assert post_job(client, minimal_body(augment_copies=0), **idem("v")).status_code == 422
    assert store.jobs == {} and store.records == {}
    # the keys are still free for a valid request
    assert post_job(client, minimal_body(), **idem("g")).status_code == 201


def request(**fields) -> AugmentationJobCreateRequest:
    return AugmentationJobCreateRequest.model_validate(minimal_body(**fields))


def test_record_kept_for_the_ttl_and_expired_after(store):
    t0 = datetime(2025, 1, 1, tzinfo=timezone.utc)
    a = service.create_job(store, request(), idempotency_key="ttl", ttl_seconds=86400, now=t0)
    b = service.create_job(store, request(), idempotency_key="ttl", ttl_seconds=86400,
                           now=t0 + timedelta(hours=23, minutes=59))
    assert b.job_id == a.job_id and b.replayed
    c = service.create_job(store, request(), idempotency_key="ttl", ttl_seconds=86400,
                           now=t0 + timedelta(hours=24, seconds=1))
    assert c.job_id != a.job_id and not c.replayed
    assert len(store.jobs) == 2


def test_purge_removes_only_expired_records(store):
    t0 = datetime(2025, 1, 1, tzinfo=timezone.utc)
    service.create_job(store, request(), idempotency_key="old", ttl_seconds=3600, now=t0)
    service.create_job(store, request(), idempotency_key="new", ttl_seconds=3600, now=t0 + timedelta(hours=2))
    assert store.purge_idempotency(t0 + timedelta(hours=2)) == 1
    assert len(store.records) == 1


def test_record_without_cr_is_completed_on_retry(store):
    # A gateway that crashed after writing the record but before the CR: the retry creates the CR
    # under the recorded job_id instead of a second job.
    req = request()
    now = datetime.now(timezone.utc)
    job_id = uuid.uuid4()
    record_id = service.idempotency_record_id(req.project_id, "crash")
    store.create_idempotency(IdempotencyRecord(record_id, service.fingerprint(req), job_id, now,
                                               now + timedelta(days=1)))
    out = service.create_job(store, req, idempotency_key="crash")
    assert out.job_id == job_id and out.replayed
    assert list(store.jobs) == [cr_name(job_id)]


def test_concurrent_retries_create_one_job(store, monkeypatch):
    # A slow apiserver widens the window between the record and the CR, where retries meet.
    import time

    real_create = store.create_job

    def slow_create(body):
        time.sleep(0.05)
        return real_create(body)

    monkeypatch.setattr(store, "create_job", slow_create)
    req = request()
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: service.create_job(store, req, idempotency_key="race"), range(16)))
    assert len({r.job_id for r in results}) == 1
    assert len(store.jobs) == 1 and sum(not r.replayed for r in results) == 1
