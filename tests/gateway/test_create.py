"""POST /v1/augmentation through the HTTP stack (httpx -> ASGI app -> MemoryStore)."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.gateway.gateway_helpers import (
    OTHER_PROJECT,
    PROJECT,
    BOUND_KEY,
    minimal_body,
    post_job,
    seed_body,
    seed_body_from_seed_file,
    seed_body_text,
)
from roboaug.api.models import GENERATIVE_DISABLED_MESSAGE, LABEL_JOB_ID, LABEL_PROJECT_ID, cr_name


def test_fixture_copy_is_seed_000_byte_for_byte():
    from_seed = seed_body_from_seed_file()
    if from_seed is None:
        pytest.skip("shared/seeds/000 not beside the checkout; the fixture copy stands alone")
    assert seed_body_text() == from_seed


def test_seed_000_exact_body_is_accepted(client, store):
    # Send the seed's bytes as they are (uppercase UUID, placeholder key, key order), not a re-dump.
    r = client.post("/v1/augmentation", content=seed_body_text(), headers={"Content-Type": "application/json"})
    assert r.status_code == 201, r.text
    body = r.json()
    assert set(body) == {"job_id", "status", "message"}
    job_id = uuid.UUID(body["job_id"])
    assert job_id.version == 4
    assert body["status"] == "queued"
    # Stacked mode with augment_copies_per_transform: accepted, and the message says it was ignored.
    assert "augment_copies_per_transform is ignored in stacked mode" in body["message"]
    assert r.headers["location"] == f"/v1/augmentation/{job_id}"

    cr = store.jobs[cr_name(job_id)]
    assert cr["apiVersion"] == "roboaug.dev/v1alpha1" and cr["kind"] == "AugmentationJob"
    assert cr["metadata"]["labels"] == {LABEL_JOB_ID: str(job_id), LABEL_PROJECT_ID: PROJECT}
    spec = cr["spec"]
    assert spec["job_id"] == str(job_id)
    assert spec["project_id"] == PROJECT
    assert spec["dataset_id"] == "lerobot/pusht"
    assert spec["augment_copies"] == 3 and spec["augment_brightness_min"] == -15
    assert spec["cosmos_prompts"] == ["example"] and spec["cosmos_camera_name"] == "example"
    assert spec["hub_token_secret"] == {"name": "hf-token", "key": "token"}
    assert spec["cancel_requested"] is False


def test_seed_000_with_generative_is_400_and_creates_nothing(client, store):
    body = seed_body() | {"augmentation_type": "generative"}
    r = post_job(client, body)
    assert r.status_code == 400
    detail = r.json()["detail"]
    assert isinstance(detail, str)
    assert "generative" in detail and "disabled" in detail and "Cosmos Transfer 2.5" in detail
    assert detail == GENERATIVE_DISABLED_MESSAGE  # the operator writes the same text for kubectl'd CRs
    assert store.jobs == {}


def test_generative_still_validates_cosmos_fields(client):
    r = post_job(client, minimal_body(augmentation_type="generative", cosmos_num_steps=0))
    assert r.status_code == 422
    assert any(e["loc"][-1] == "cosmos_num_steps" for e in r.json()["detail"])


def test_minimal_body_gets_defaults_stored_in_spec(client, store):
    r = post_job(client, minimal_body())
    assert r.status_code == 201
    assert r.json()["message"] == "Augmentation job queued."
    spec = store.jobs[cr_name(r.json()["job_id"])]["spec"]
    assert spec["augment_transforms"] == "lighting" and spec["augment_mode"] == "stacked"
    assert spec["augment_color_temp_max"] == 6500 and spec["blur_motion_kernel_max"] == 15
    assert "augment_copies_per_transform" not in spec  # None is left out, not stored as null


def test_transforms_are_normalised_in_the_cr(client, store):
    r = post_job(client, minimal_body(augment_transforms=" Noise , LIGHTING"))
    assert r.status_code == 201
    assert store.jobs[cr_name(r.json()["job_id"])]["spec"]["augment_transforms"] == "noise,lighting"


def test_each_post_without_key_is_a_new_job(client, store):
    a, b = post_job(client), post_job(client)
    assert a.json()["job_id"] != b.json()["job_id"]
    assert len(store.jobs) == 2


def test_bound_key_may_post_for_its_project_only(client, store):
    ok = post_job(client, minimal_body(), **{"x-api-key": BOUND_KEY})
    assert ok.status_code == 201
    r = post_job(client, minimal_body(project_id=OTHER_PROJECT), **{"x-api-key": BOUND_KEY})
    assert r.status_code == 403
    assert "project" in r.json()["detail"]
    assert len(store.jobs) == 1


def test_store_down_is_503_with_detail(client, store):
    store.unavailable = True
    r = post_job(client)
    assert r.status_code == 503
    assert r.json() == {"detail": "the Kubernetes API is unavailable; retry later"}


def test_cr_refused_by_store_is_422_and_leaves_nothing(client, store, monkeypatch):
    # The apiserver refusing what the model accepted (schema drift) surfaces as 422 with its message.
    from roboaug.api.gateway.store import Invalid

    def refuse(body):
        raise Invalid('AugmentationJob.roboaug.dev "x" is invalid: spec.dataset_id: Invalid value')

    monkeypatch.setattr(store, "create_job", refuse)
    r = post_job(client, minimal_body(), **{"Idempotency-Key": "k-refused"})
    assert r.status_code == 422
    assert "spec.dataset_id" in r.json()["detail"][0]["msg"]
    assert store.jobs == {}
    # nothing remembers the key either: it is free for the next (accepted) request
    monkeypatch.undo()
    again = post_job(client, minimal_body(), **{"Idempotency-Key": "k-refused"})
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "false"


def test_response_is_json_with_uuid_string(client):
    r = post_job(client)
    assert r.headers["content-type"].startswith("application/json")
    assert json.loads(r.text)["job_id"] == str(uuid.UUID(r.json()["job_id"]))
