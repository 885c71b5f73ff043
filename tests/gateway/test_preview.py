"""POST /v1/augmentation/preview through the gateway and a real preview service (in a thread):
PNG and JSON answers, no job, the project's policy and defaults as on create, errors naming the
field. Mutations checked by hand: dropping `service.apply_project` from the route fails
test_policy_refuses_as_on_create and test_project_defaults_apply; forwarding `body` instead of
the effective request fails test_project_defaults_apply."""

from __future__ import annotations

import base64
import threading

import pytest

from roboaug.api.gateway import create_app
from roboaug.api.gateway.auth import KeyRing
from roboaug.api.gateway.settings import Settings
from roboaug.devstack import synthetic as fixtures
from roboaug.worker import preview as worker_preview
from roboaug.worker import preview_server
from roboaug.worker.errors import ExitCode, WorkerError
from roboaug.worker.png import decode_png
from tests.gateway.gateway_helpers import ADMIN_KEY, BOUND_KEY, OTHER_PROJECT, PROJECT
from fastapi.testclient import TestClient

URL = "/v1/augmentation/preview"


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    return fixtures.make_lerobot(tmp_path_factory.mktemp("preview") / "src", "v3.0", lengths=(12, 9))


@pytest.fixture(scope="module")
def service_url():
    server = preview_server.serve("127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def pclient(keys_file, store, service_url):
    settings = Settings(namespace="roboaug-test", api_keys_file=keys_file, api_keys_reload_seconds=0,
                        store="memory", preview_url=service_url)
    with TestClient(create_app(settings, store, KeyRing(keys_file, 0)), raise_server_exceptions=False) as c:
        c.headers["x-api-key"] = ADMIN_KEY
        yield c


def body(source, **fields):
    return {"project_id": PROJECT, "dataset_id": f"file://{source}", "augment_transforms": "lighting,noise",
            "augment_copies": 2, **fields}


def test_png_grid_and_no_job(pclient, store, source):
    r = pclient.post(URL, json=body(source, episodes=[0, 1], frames=[3]))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    grid = decode_png(r.content)
    gap, h = worker_preview.GRID_GAP, worker_preview.GRID_ROW_HEIGHT
    assert grid.shape[0] == 2 * (h + gap) + gap  # one row per (episode, frame, camera)
    assert store.jobs == {}


def test_json_frames_are_the_workers(pclient, source):
    r = pclient.post(URL, json=body(source, episodes=[1], frames=[0, 8], format="json"))
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["source"] == f"file://{source}"
    assert [(p["episode"], p["frame"]) for p in doc["pairs"]] == [(1, 0), (1, 8)]
    assert [[a["copy"] for a in p["augmented"]] for p in doc["pairs"]] == [[0, 1], [0, 1]]
    from roboaug.api.models.preview import AugmentationPreviewRequest

    direct = worker_preview.run(AugmentationPreviewRequest.model_validate(body(source, episodes=[1], frames=[0, 8])))
    for got, want in zip(doc["pairs"], direct.pairs):
        assert decode_png(base64.b64decode(got["original_png"])).tobytes() == want.original.tobytes()
        for a, c in zip(got["augmented"], want.augmented):
            assert a["transforms"] == ["lighting", "noise"]
            assert decode_png(base64.b64decode(a["png"])).tobytes() == c.frame.tobytes()


def test_policy_refuses_as_on_create(pclient, store, source):
    store.put_project(PROJECT, {"allowed_sources": ["*"], "allowed_outputs": ["*"]})
    r = pclient.post(URL, json=body(source))
    assert r.status_code == 403 and "dataset_id" in r.json()["detail"] and "file_access.allowed" in r.json()["detail"]
    store.put_project(PROJECT, {"allowed_sources": ["*"], "allowed_outputs": ["*"],
                                "file_access": {"allowed": True, "roots": ["/"]}, "limits": {"max_copies": 1}})
    r = pclient.post(URL, json=body(source, output_dataset_id="file:///tmp/x"))
    assert r.status_code == 422, r.text
    assert "augment_copies" in r.json()["detail"][0]["msg"] and "limits.max_copies" in r.json()["detail"][0]["msg"]
    pclient.headers["x-api-key"] = BOUND_KEY
    r = pclient.post(URL, json=body(source) | {"project_id": OTHER_PROJECT})
    assert r.status_code == 403 and "project_id" in r.json()["detail"]


def test_project_defaults_apply(pclient, store, source):
    store.put_project(PROJECT, {"allowed_sources": ["*"], "allowed_outputs": ["*"],
                                "file_access": {"allowed": True, "roots": ["/"]},
                                "defaults": {"augment_copies": 3, "augment_transforms": "blur"}})
    b = {"project_id": PROJECT, "dataset_id": f"file://{source}", "output_dataset_id": "file:///tmp/x", "format": "json"}
    r = pclient.post(URL, json=b)
    assert r.status_code == 200, r.text
    (pair,) = r.json()["pairs"]
    assert [a["transforms"] for a in pair["augmented"]] == [["blur"]] * 3
    assert pair["frame"] == 6  # episode 0's middle frame


def test_picks_the_source_lacks_name_the_field(pclient, source):
    r = pclient.post(URL, json=body(source, episodes=[5]))
    assert r.status_code == 422, r.text
    (item,) = r.json()["detail"]
    assert item["loc"] == ["body", "episodes"] and item["msg"].startswith("episodes: episode 5 does not exist")
    r = pclient.post(URL, json=body(source, frames=list(range(9))))
    assert r.status_code == 422 and "frames" in r.text  # the request model's own bound (at most 8)


def test_not_configured_or_unreachable_is_503(keys_file, store, source):
    for url in (None, "http://127.0.0.1:9"):
        settings = Settings(namespace="roboaug-test", api_keys_file=keys_file, api_keys_reload_seconds=0,
                            store="memory", preview_url=url)
        with TestClient(create_app(settings, store, KeyRing(keys_file, 0))) as c:
            r = c.post(URL, json=body(source), headers={"x-api-key": ADMIN_KEY})
        assert r.status_code == 503, r.text
        assert ("ROBOAUG_GATEWAY_PREVIEW_URL" if url is None else "unavailable") in r.json()["detail"]


def test_a_source_that_needs_a_token_says_so():
    status, _, data = preview_server.error_answer(
        WorkerError(ExitCode.DATASET_NOT_FOUND, "dataset acme/private: not found on the Hub (or private ...)"))
    assert status == 422
    assert b"dataset_id: dataset acme/private" in data and b"without a Hub token" in data
