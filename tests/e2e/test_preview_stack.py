"""POST /v1/augmentation/preview through the real stack (issue 15 item 6): the gateway checks the
key and the project's policy against the apiserver, then the preview service (its own process,
no Hub token) reads the source from the local Hub and renders it; no Job is created."""
from __future__ import annotations

import base64
import io
import uuid

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.e2e.test_projects import TINY_FRAMES, Team, stack, tiny_files  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _post(stack, body: dict) -> httpx.Response:
    with httpx.Client(base_url=stack.gateway_url, headers={"x-api-key": stack.api_key}, timeout=120) as http:
        return http.post("/v1/augmentation/preview", json=body)


def _jobs(stack) -> list[str]:
    return stack.kubectl("get", "jobs,augmentationjobs", "-n", stack.namespace, "-o", "name").stdout.split()


def test_a_preview_of_the_tiny_source_through_the_gateway(stack, tiny_files):
    team = Team(stack, "prev")
    repo = team.source(stack, tiny_files, private=False)
    before = _jobs(stack)
    body = {"project_id": team.id, "dataset_id": repo, "augment_copies": 2,
            "augment_transforms": "lighting,noise", "frames": [TINY_FRAMES - 1]}
    r = _post(stack, body)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png" and r.content.startswith(PNG_MAGIC)
    grid = np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB"))
    assert grid.shape[0] >= 96 and grid.shape[1] >= 3 * 96  # one row: the original and 2 copies

    r = _post(stack, {**body, "format": "json"})
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["source"].startswith(f"hf://{repo}@")  # pinned to the commit read
    (pair,) = answer["pairs"]
    assert (pair["episode"], pair["frame"]) == (0, TINY_FRAMES - 1)
    original = base64.b64decode(pair["original_png"])
    copies = [base64.b64decode(a["png"]) for a in pair["augmented"]]
    assert len(copies) == 2 and all(p.startswith(PNG_MAGIC) for p in [original, *copies])
    assert all(p != original for p in copies)  # augmented, not passed through
    assert _jobs(stack) == before  # no Job, no AugmentationJob


def test_the_projects_policy_refuses_a_preview_as_it_refuses_a_job(stack, tiny_files):
    team = Team(stack, "prevpol", limits={"max_copies": 2})
    repo = team.source(stack, tiny_files, private=False)
    # A source outside the project's allowed_sources: 403 naming the field, before any read.
    outside = Team(stack, "prevout").source(stack, tiny_files, private=False)
    r = _post(stack, {"project_id": team.id, "dataset_id": outside})
    assert r.status_code == 403, r.text
    assert "dataset_id" in r.json()["detail"]
    # Over a project limit: 422 naming the field.
    r = _post(stack, {"project_id": team.id, "dataset_id": repo, "augment_copies": 5})
    assert r.status_code == 422, r.text
    assert "augment_copies" in r.text
    # An unknown project (the stack runs jobs without one, so this is allowed) still renders.
    r = _post(stack, {"project_id": str(uuid.uuid4()), "dataset_id": repo, "augment_copies": 1})
    assert r.status_code == 200, r.text


def test_a_private_source_is_not_previewed_the_service_has_no_token(stack, tiny_files):
    team = Team(stack, "prevpriv")  # its project's token could read the repo; the preview never gets it
    repo = team.source(stack, tiny_files, private=True)
    r = _post(stack, {"project_id": team.id, "dataset_id": repo})
    assert r.status_code == 422, r.text
    assert r.json()["detail"].startswith("dataset_id:") and "without a Hub token" in r.json()["detail"]
    # Every request the Hub saw for that repo came without a token.
    seen = [e for e in stack.hub.requests() if f"/{repo}/" in e.path]
    assert seen and all(e.user is None for e in seen)
