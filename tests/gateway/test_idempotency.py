"""Idempotency-Key on POST: one job per (project, key, body), remembered on the job's CR itself
(its name derived from the key, the body's digest an annotation): no other object is written."""

from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import pytest
from fastapi.testclient import TestClient

from tests.gateway.gateway_helpers import ADMIN_KEY, OTHER_PROJECT, minimal_body, post_job, seed_body
from roboaug.api.gateway import create_app, service
from roboaug.api.gateway.auth import KeyRing
from roboaug.api.gateway.service import GatewayError
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
    assert len(store.jobs) == 1
    # the CR is the record: the key's digest (never the key) and the body's digest
    annotations = store.jobs[cr_name(first.json()["job_id"])]["metadata"]["annotations"]
    assert annotations[service.ANNOTATION_IDEMPOTENCY_KEY] == service.idempotency_record_id(
        uuid.UUID(seed_body()["project_id"]), "retry-1")
    assert annotations[service.ANNOTATION_REQUEST_DIGEST] == service.fingerprint(
        AugmentationJobCreateRequest.model_validate(seed_body()))
    assert "retry-1" not in json.dumps(store.jobs)


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
        app = create_app(settings, store, KeyRing(settings.api_keys_file, 0))
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
    assert store.jobs == {}
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


def test_expired_job_is_left_alone_and_keys_survive_a_ttl_change(store):
    # Expiry needs no purge: an expired job keeps its CR (its project's TTL removes it), and the
    # key's next request gets a name of its own. The window is fixed, so a job made under a
    # 24 h TTL is still found when the setting grows to 3 days.
    t0 = datetime(2025, 1, 1, 23, tzinfo=timezone.utc)
    a = service.create_job(store, request(), idempotency_key="grow", ttl_seconds=86400, now=t0)
    b = service.create_job(store, request(), idempotency_key="grow", ttl_seconds=3 * 86400,
                           now=t0 + timedelta(hours=2))
    assert b.job_id == a.job_id and b.replayed
    later = t0 + timedelta(days=2)
    c = service.create_job(store, request(), idempotency_key="grow", ttl_seconds=86400, now=later)
    assert c.job_id != a.job_id and not c.replayed
    assert set(store.jobs) == {cr_name(a.job_id), cr_name(c.job_id)}
    # a different body after expiry is a new request, not a reuse
    d = service.create_job(store, request(augment_copies=5), idempotency_key="other",
                           ttl_seconds=86400, now=t0)
    e = service.create_job(store, request(augment_copies=6), idempotency_key="other",
                           ttl_seconds=86400, now=t0 + timedelta(days=1, seconds=1))
    assert e.job_id != d.job_id


def test_key_is_forgotten_when_its_job_is_deleted(store):
    # The CR is the only record: once the operator deletes it (project TTL) the key is free.
    first = service.create_job(store, request(), idempotency_key="gone")
    store.delete_job(cr_name(first.job_id))
    again = service.create_job(store, request(augment_copies=5), idempotency_key="gone")
    assert not again.replayed and list(store.jobs) == [cr_name(again.job_id)]


@pytest.mark.parametrize("annotated_by", [None, "another key"])
def test_a_foreign_cr_under_the_keys_name_is_a_409_and_untouched(store, annotated_by):
    # A CR under the name the key maps to that was not made with this key (kubectl, or another
    # key's record: a hash clash) is never taken for the key's job, nor overwritten.
    req = request()
    record_id = service.idempotency_record_id(req.project_id, "taken")
    now = datetime.now(timezone.utc)
    job_id = service.idempotent_job_id(record_id, service.idempotency_windows(now, 86400)[0])
    foreign = service.build_cr(request(augment_copies=7), job_id)
    if annotated_by:
        foreign["metadata"]["annotations"] = service.keyed_annotations(
            service.idempotency_record_id(req.project_id, annotated_by), service.fingerprint(req),
            now + timedelta(days=1))
    store.create_job(foreign)
    with pytest.raises(GatewayError) as info:
        service.create_job(store, req, idempotency_key="taken", now=now)
    assert info.value.status == 409 and "taken by a job not created with this key" in info.value.detail
    assert store.jobs[cr_name(job_id)]["spec"]["augment_copies"] == 7 and len(store.jobs) == 1


def test_windows_cover_the_ttl():
    # Every window in which a job still inside its TTL can have been made is looked at.
    now = datetime(2025, 3, 1, 12, tzinfo=timezone.utc)
    day = int(now.timestamp()) // 86400
    assert service.idempotency_windows(now, 86400) == [day, day - 1]
    assert service.idempotency_windows(now, 86400 + 1) == [day, day - 1, day - 2]
    with pytest.raises(ValueError):
        service.idempotency_windows(now, 3600)


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
