"""roboaug.api.client against the real gateway app (memory store) on a real port, and against a
fake of the logs/preview contracts."""

from __future__ import annotations

import json
import threading
import uuid

import httpx
import pytest

from roboaug.api.client import ApiError, Client, WaitTimeout, progress_of
from roboaug.api.client.errors import from_response
from roboaug.api.models import AugmentationJobCreateRequest, AugmentationStatusResponse, cr_name
from roboaug.api.models.preview import AugmentationPreviewResponse
from tests.cli._live import LOG_LINES, PNG_1x1, FakeContract, FakeOperator, progress_status, serve, set_status
from tests.gateway.gateway_helpers import ADMIN_KEY, BOUND_KEY, OTHER_PROJECT, PROJECT

REQUEST = {"project_id": PROJECT, "dataset_id": "lerobot/pusht"}


@pytest.fixture
def client(gateway):
    with Client(gateway, ADMIN_KEY, timeout=10) as c:
        yield c


def test_submit_sends_only_the_fields_set_and_get_answers_the_model(client, store):
    created = client.submit({**REQUEST, "augment_copies": "2", "augment_transforms": "blur"})
    assert created.status == "queued"
    cr = store.jobs[cr_name(created.job_id)]
    assert cr["spec"]["augment_copies"] == 2 and cr["spec"]["augment_transforms"] == "blur"
    sources = json.loads(cr["metadata"]["annotations"]["roboaug.dev/spec-sources"])
    # Unset fields stay unset on the wire, so a project's defaults could fill them.
    assert sources["augment_copies"] == "request" and sources["augment_seed"] == "default"
    got = client.get(created.job_id)
    assert isinstance(got, AugmentationStatusResponse)
    assert got.job_id == created.job_id and got.status == "queued"
    assert got.effective_spec.augment_copies == 2


def test_submit_takes_the_model_too(client, store):
    created = client.submit(AugmentationJobCreateRequest(**REQUEST, augment_seed=7))
    assert store.jobs[cr_name(created.job_id)]["spec"]["augment_seed"] == 7


def test_gateway_422_becomes_one_line_naming_the_field(gateway, client):
    # The real gateway's 422 body for a bad field (sent raw: the client would refuse it itself).
    raw = httpx.post(gateway + "/v1/augmentation", json={**REQUEST, "augment_copies": 99},
                     headers={"x-api-key": ADMIN_KEY})
    err = from_response(raw.status_code, raw.content)
    assert err.status_code == 422 and err.fields == ["augment_copies"]
    assert err.detail.startswith("augment_copies: ") and "\n" not in err.detail
    # A refusal only the gateway can make, through the client.
    client.submit(REQUEST, idempotency_key="k-1")
    with pytest.raises(ApiError) as e:
        client.submit({**REQUEST, "augment_copies": 4}, idempotency_key="k-1")
    assert e.value.status_code == 422
    assert e.value.detail.startswith("Idempotency-Key: already used")


def test_not_found_unauthorized_and_unreachable(gateway):
    with Client(gateway, ADMIN_KEY) as c, pytest.raises(ApiError) as e:
        c.get(uuid.uuid4())
    assert e.value.status_code == 404 and "not found" in e.value.detail
    with Client(gateway, "wrong-key") as c, pytest.raises(ApiError) as e:
        c.get(uuid.uuid4())
    assert e.value.status_code == 401 and e.value.detail == "invalid API key"
    with Client("http://127.0.0.1:9", ADMIN_KEY, timeout=2) as c, pytest.raises(ApiError) as e:
        c.get(uuid.uuid4())
    assert e.value.status_code is None and "cannot reach the gateway" in e.value.detail


def test_error_bodies_of_any_shape():
    assert from_response(403, b'{"detail": "project_id: this API key may not act on project x"}').detail == \
        "project_id: this API key may not act on project x"
    many = from_response(422, json.dumps({"detail": [
        {"loc": ["body", "augment_brightness_min"], "msg": "Value error, must be <= augment_brightness_max", "type": "v"},
        {"loc": ["body", "augment_copies_per_transform", "blur"], "msg": "Input should be >= 1", "type": "v"},
    ]}).encode())
    assert many.detail == ("augment_brightness_min: must be <= augment_brightness_max; "
                           "augment_copies_per_transform.blur: Input should be >= 1")
    assert from_response(502, b"<html>\nBad gateway</html>", "Bad Gateway").detail == "<html>"


def test_list_is_newest_first_across_pages(settings, store):
    settings.list_max_limit = 2  # the client's page size (100) is refused: it asks without one
    from roboaug.api.gateway import create_app
    from roboaug.api.gateway.auth import KeyRing
    with serve(create_app(settings, store, KeyRing(settings.api_keys_file, 0))) as url, Client(url, ADMIN_KEY) as c:
        ids = [c.submit(REQUEST).job_id for _ in range(5)]
        for minute, job_id in enumerate(ids):  # created one minute apart, in submit order
            store.jobs[cr_name(job_id)]["metadata"]["creationTimestamp"] = f"2025-07-03T10:0{minute}:00Z"
        assert [j.job_id for j in c.list()] == ids[::-1]
        assert [j.job_id for j in c.list(limit=2)] == ids[::-1][:2]
        set_status(store, str(ids[1]), {"job_id": str(ids[1]), "status": "failed", "current_phase": "failed"})
        assert [j.job_id for j in c.list(status="failed")] == [ids[1]]
        assert c.list(project_id=OTHER_PROJECT) == []


def test_bound_key_sees_only_its_project(gateway, client):
    job = client.submit(REQUEST).job_id
    with Client(gateway, BOUND_KEY) as bound:
        assert [j.job_id for j in bound.list()] == [job]
        with pytest.raises(ApiError) as e:
            bound.list(project_id=OTHER_PROJECT)
    assert e.value.status_code == 403 and e.value.detail.startswith("project_id:")


def test_cancel_sets_cancel_requested(client, store):
    job = client.submit(REQUEST).job_id
    answer = client.cancel(job)
    assert answer.job_id == job
    assert store.jobs[cr_name(job)]["spec"]["cancel_requested"] is True


def test_wait_returns_the_final_answer_and_reports_each_poll(client, store):
    seen = []
    with FakeOperator(store, "completed", steps=3, pause=0.05):
        job = client.submit(REQUEST).job_id
        final = client.wait(job, timeout=20, poll=0.02, on_update=seen.append)
    assert final.status == "completed" and final.augmented_dataset_id == "lerobot/pusht-augmented-0123abcd"
    counts = [progress_of(s).frames_done for s in seen]
    assert counts[0] == 0 and max(counts) > 0 and seen[-1] is final


def test_wait_times_out_with_the_last_answer(client):
    job = client.submit(REQUEST).job_id
    with pytest.raises(WaitTimeout) as e:
        client.wait(job, timeout=0.2, poll=0.05)
    assert e.value.status.status == "queued"


def test_progress_of_reads_the_history_when_the_answer_has_no_progress(client, store):
    job = client.submit(REQUEST).job_id
    status = progress_status(str(job), "augmenting", 90, 270, 1, 3)
    del status["progress"]  # no worker report: the answer's progress is null
    set_status(store, str(job), status)
    answer = client.get(job)
    assert getattr(answer, "progress", None) is None
    view = progress_of(answer)
    assert (view.phase, view.frames_done, view.frames_total, view.episodes_done, view.episodes_total) == \
        ("augmenting", 90, 270, 1, 3)
    assert round(view.percent) == 33


# -- logs and preview: against a fake of their contract (others15.md) ------------------------------
@pytest.fixture
def fake():
    known = str(uuid.uuid4())
    contract = FakeContract(ADMIN_KEY, known)
    with serve(contract) as url:
        yield contract, url, known


def test_logs_parse_each_line(fake):
    contract, url, known = fake
    with Client(url, ADMIN_KEY) as c:
        lines = list(c.logs(known, attempt=1))
    assert [l.msg for l in lines] == [l["msg"] for l in LOG_LINES]
    assert lines[0].fields == {"phase": "downloading", "attempt": 0} and lines[0].level == "info"
    assert lines[2].raw is True and "raw" not in lines[2].fields
    assert contract.seen[-1]["query"] == {"follow": "false", "attempt": "1"}


def test_logs_follow_yields_lines_as_they_come(fake):
    contract, url, known = fake
    got = []
    with Client(url, ADMIN_KEY, timeout=5) as c:
        for line in c.logs(known, follow=True):
            got.append(line.msg)
            if len(got) == 2:
                # The server holds its last line until now: this line arrived while the stream was open.
                contract.release.set()
    assert got == [l["msg"] for l in LOG_LINES]
    assert contract.released_in_time is True
    assert contract.seen[-1]["query"]["follow"] == "true"


def test_logs_of_an_unknown_job_is_an_api_error(fake):
    _, url, _ = fake
    with Client(url, ADMIN_KEY) as c, pytest.raises(ApiError) as e:
        list(c.logs(uuid.uuid4()))
    assert e.value.status_code == 404


def test_preview_png_and_json(fake):
    contract, url, _ = fake
    with Client(url, ADMIN_KEY) as c:
        png = c.preview({**REQUEST, "augment_copies": 2}, episodes=[0, 2], frames=[5])
        assert png == PNG_1x1
        body = contract.seen[-1]["body"]
        assert body == {**REQUEST, "augment_copies": 2, "episodes": [0, 2], "frames": [5], "format": "png"}
        pairs = c.preview(REQUEST, episodes=[1], format="json")
    assert isinstance(pairs, AugmentationPreviewResponse)
    assert pairs.pairs[0].episode == 1 and pairs.pairs[0].augmented[0].transforms == ["lighting"]


def test_preview_checks_the_picks_before_sending(fake):
    contract, url, _ = fake
    before = len(contract.seen)
    with Client(url, ADMIN_KEY) as c, pytest.raises(Exception) as e:
        c.preview(REQUEST, episodes=[1, 1])
    assert "episodes" in str(e.value) and len(contract.seen) == before


def test_progress_of_takes_the_answers_progress(client, store):
    job = client.submit(REQUEST).job_id
    set_status(store, str(job), progress_status(str(job), "augmenting", 135, 270, 1, 3))
    answer = client.get(job)
    assert answer.progress.frames_done == 135
    view = progress_of(answer)
    assert (view.frames_done, view.frames_total, view.percent) == (135, 270, answer.progress.percent)
    assert answer.progress.eta_seconds is not None  # the gateway's estimate (9 s for half): the bar shows it
    assert view.eta_seconds == answer.progress.eta_seconds
