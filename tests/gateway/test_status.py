"""GET /v1/augmentation/{job_id}, GET /v1/augmentation (pagination) and POST .../cancel."""

from __future__ import annotations

import uuid
from datetime import datetime

import pytest

from tests.gateway.gateway_helpers import OTHER_PROJECT, PROJECT, minimal_body, post_job
from roboaug.api.models import AugmentationJobCreateRequest, cr_name

SEED_001_FIELDS = {"job_id", "current_phase", "status", "instance_type", "region", "phases", "error",
                   "augmented_dataset_id", "created_at"}
REVISION_FIELDS = {"source_revision", "augmented_dataset_revision"}  # added by issue 12 (revisions)
EFFECTIVE_SPEC_FIELDS = {"effective_spec", "spec_sources"}  # added by issue 13 (projects)
PROGRESS_FIELDS = {"progress"}  # added by issue 15 (made from status.progress, not copied)
RESPONSE_FIELDS = SEED_001_FIELDS | REVISION_FIELDS | EFFECTIVE_SPEC_FIELDS | PROGRESS_FIELDS


def operator_status(job_id: str) -> dict:
    """A status as the operator stores it: seed 001's fields plus the cluster-only ones."""
    return {
        "job_id": job_id,
        "current_phase": "augmenting",
        "status": "running",
        "instance_type": "c7i.4xlarge",
        "region": "us-east-1",
        "phases": [
            {"name": "queued", "status": "completed", "started_at": "2025-03-01T10:00:00Z",
             "completed_at": "2025-03-01T10:00:01Z",
             "events": [{"status": "created", "message": "job accepted", "error": None,
                         "timestamp": "2025-03-01T10:00:00Z", "retry_attempt": 0, "data": None}]},
            {"name": "augmenting", "status": "in_progress", "started_at": "2025-03-01T10:00:05Z",
             "completed_at": None,
             "events": [{"status": "retry", "message": "pod evicted", "error": "exit code 137",
                         "timestamp": "2025-03-01T10:01:00Z", "retry_attempt": 1,
                         "data": {"exit_code": 137, "node": "local-0"}}]},
        ],
        "error": None,
        "augmented_dataset_id": None,
        "created_at": "2025-03-01T10:00:00Z",
        "source_revision": "0123456789abcdef0123456789abcdef01234567",
        "augmented_dataset_revision": None,
        "effective_spec": AugmentationJobCreateRequest.model_validate(
            minimal_body(augment_copies=2)).model_dump(mode="json"),
        "spec_sources": {"augment_copies": "project", "dataset_id": "request"},
        # cluster-only fields: never in the REST answer
        "progress": {"phase": "augmenting", "episodes_done": 3, "episodes_total": 10,
                     "updated_at": "2025-03-01T10:01:30Z", "attempt": 1,
                     "phases": [{"name": "downloading", "started_at": "2025-03-01T10:00:50Z",
                                 "completed_at": "2025-03-01T10:01:00Z"},
                                {"name": "augmenting", "started_at": "2025-03-01T10:01:00Z"}]},
        "attempt": 1,
        "job_name": "aug-x-1",
        "observed_generation": 1,
    }


def test_get_before_operator_writes_status(client, store):
    job_id = post_job(client).json()["job_id"]
    r = client.get(f"/v1/augmentation/{job_id}")
    assert r.status_code == 200
    body = r.json()
    assert set(body) == RESPONSE_FIELDS
    created = store.jobs[cr_name(job_id)]["metadata"]["creationTimestamp"]
    assert body == {
        "job_id": job_id, "current_phase": "queued", "status": "queued", "instance_type": None,
        "region": None, "phases": [], "error": None, "augmented_dataset_id": None,
        "created_at": created, "source_revision": None, "augmented_dataset_revision": None,
        "progress": None,  # no worker report yet
        # no operator status yet: the CR's spec and the gateway's annotation
        "effective_spec": AugmentationJobCreateRequest.model_validate(minimal_body()).model_dump(mode="json"),
        "spec_sources": {name: "request" if name in minimal_body() else "default"
                         for name in AugmentationJobCreateRequest.model_fields},
    }
    datetime.fromisoformat(body["created_at"].replace("Z", "+00:00"))


def test_get_returns_the_stored_status_field_for_field(client, store):
    job_id = post_job(client).json()["job_id"]
    stored = operator_status(job_id)
    store.patch_status(cr_name(job_id), stored)
    body = client.get(f"/v1/augmentation/{job_id}").json()
    assert set(body) == RESPONSE_FIELDS
    assert {k: v for k, v in body.items() if k != "progress"} == {k: stored[k] for k in RESPONSE_FIELDS - {"progress"}}
    # the worker's report made into progress: 3 of 10 episodes (no frame count); the report is
    # years old, so the 70 s it left are spent
    assert body["progress"] == {"phase": "augmenting", "frames_done": 0, "frames_total": 0, "episodes_done": 3,
                                "episodes_total": 10, "percent": 30.0, "eta_seconds": 0.0}


def test_get_completed_job_has_dataset_id(client, store):
    job_id = post_job(client).json()["job_id"]
    store.patch_status(cr_name(job_id), {"status": "completed", "current_phase": "completed",
                                         "augmented_dataset_id": "lerobot/pusht-augmented-1234abcd"})
    body = client.get(f"/v1/augmentation/{job_id}").json()
    assert body["status"] == "completed" and body["augmented_dataset_id"] == "lerobot/pusht-augmented-1234abcd"


def test_get_uppercase_uuid_finds_the_job(client):
    job_id = post_job(client).json()["job_id"]
    assert client.get(f"/v1/augmentation/{job_id.upper()}").json()["job_id"] == job_id


def test_unknown_job_is_404(client):
    job_id = uuid.uuid4()
    r = client.get(f"/v1/augmentation/{job_id}")
    assert r.status_code == 404
    assert r.json() == {"detail": f"augmentation job {job_id} not found"}


def test_unreadable_stored_status_is_500_without_internals(client, store):
    job_id = post_job(client).json()["job_id"]
    store.patch_status(cr_name(job_id), {"status": "exploded"})
    r = client.get(f"/v1/augmentation/{job_id}")
    assert r.status_code == 500
    assert r.json() == {"detail": "the job's stored status cannot be read (server fault)"}


# -- cancel ------------------------------------------------------------------------------------
def test_cancel_sets_the_flag_and_is_idempotent(client, store):
    job_id = post_job(client).json()["job_id"]
    r = client.post(f"/v1/augmentation/{job_id}/cancel")
    assert r.status_code == 200
    assert r.json()["job_id"] == job_id and r.json()["status"] == "queued"
    cr = store.jobs[cr_name(job_id)]
    assert cr["spec"]["cancel_requested"] is True
    generation = cr["metadata"]["generation"]
    again = client.post(f"/v1/augmentation/{job_id}/cancel")
    assert again.status_code == 200
    assert store.jobs[cr_name(job_id)]["metadata"]["generation"] == generation  # no second write
    store.patch_status(cr_name(job_id), {"status": "cancelled", "current_phase": "cancelled"})
    assert client.post(f"/v1/augmentation/{job_id}/cancel").json()["status"] == "cancelled"


def test_cancel_leaves_a_finished_job_alone(client, store):
    job_id = post_job(client).json()["job_id"]
    store.patch_status(cr_name(job_id), {"status": "completed", "current_phase": "completed"})
    r = client.post(f"/v1/augmentation/{job_id}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "completed"
    assert store.jobs[cr_name(job_id)]["spec"]["cancel_requested"] is False


def test_cancel_unknown_is_404(client):
    assert client.post(f"/v1/augmentation/{uuid.uuid4()}/cancel").status_code == 404


# -- list ----------------------------------------------------------------------------------------
def collect(client, query: str) -> tuple[list[str], int]:
    seen, pages, cursor = [], 0, None
    while True:
        url = f"/v1/augmentation?{query}" + (f"&cursor={cursor}" if cursor else "")
        r = client.get(url)
        assert r.status_code == 200, r.text
        body = r.json()
        seen += [i["job_id"] for i in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if not cursor:
            return seen, pages
        assert pages < 100


@pytest.fixture
def seven_jobs(client, store):
    ids = [post_job(client).json()["job_id"] for _ in range(7)]
    other = post_job(client, minimal_body(project_id=OTHER_PROJECT)).json()["job_id"]
    for job_id in ids[:3]:
        store.patch_status(cr_name(job_id), {"status": "running", "current_phase": "augmenting"})
    return ids, other


def test_list_pages_through_everything_once(client, seven_jobs):
    ids, other = seven_jobs
    seen, pages = collect(client, "limit=3")
    assert sorted(seen) == sorted(ids + [other]) and len(seen) == len(set(seen))
    assert pages == 3
    # stable order: by CR name
    assert seen == sorted(seen)


def test_list_by_project(client, seven_jobs):
    ids, other = seven_jobs
    seen, _ = collect(client, f"project_id={OTHER_PROJECT}&limit=2")
    assert seen == [other]
    seen, _ = collect(client, f"project_id={minimal_body()['project_id']}&limit=2")
    assert sorted(seen) == sorted(ids)


@pytest.mark.parametrize("limit", [1, 2, 5])
def test_list_by_status_with_cursor(client, seven_jobs, limit):
    ids, other = seven_jobs
    running, _ = collect(client, f"status=running&limit={limit}")
    assert sorted(running) == sorted(ids[:3])
    queued, _ = collect(client, f"status=queued&limit={limit}")
    assert sorted(queued) == sorted(ids[3:] + [other])
    assert collect(client, "status=failed")[0] == []


def test_list_default_limit_and_item_shape(client, seven_jobs):
    body = client.get("/v1/augmentation").json()
    assert len(body["items"]) == 8 and body["next_cursor"] is None
    assert set(body["items"][0]) == RESPONSE_FIELDS


def test_cursor_from_other_filters_or_garbage_is_400(client, seven_jobs):
    cursor = client.get("/v1/augmentation?limit=2").json()["next_cursor"]
    r = client.get(f"/v1/augmentation?limit=3&cursor={cursor}")
    assert r.status_code == 400 and "cursor" in r.json()["detail"]
    r = client.get("/v1/augmentation?limit=2&cursor=garbage!!")
    assert r.status_code == 400 and "cursor" in r.json()["detail"]


def test_get_shows_project_defaults_in_the_effective_spec(client, store):
    # issue 13: before the operator writes status, the REST answer reads the CR spec and the
    # gateway's spec-sources annotation; the operator's status wins once it is there.
    store.put_project(uuid.UUID(PROJECT), {"allowed_sources": ["*"], "allowed_outputs": ["*"],
                                           "defaults": {"augment_copies": 3, "output_visibility": "public"}})
    job_id = post_job(client, minimal_body(output_visibility="private")).json()["job_id"]
    body = client.get(f"/v1/augmentation/{job_id}").json()
    assert body["effective_spec"]["augment_copies"] == 3 and body["spec_sources"]["augment_copies"] == "project"
    assert body["effective_spec"]["output_visibility"] == "private"  # the request overrides the project
    assert body["spec_sources"]["output_visibility"] == "request"
    assert body["spec_sources"]["augment_seed"] == "default" and "job_id" not in body["effective_spec"]

    from_operator = {"augment_copies": "request"}
    store.patch_status(cr_name(job_id), {"effective_spec": body["effective_spec"], "spec_sources": from_operator})
    assert client.get(f"/v1/augmentation/{job_id}").json()["spec_sources"] == from_operator
