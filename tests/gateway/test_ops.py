"""/healthz, /readyz, metrics, the OpenAPI document, Allow on 405/OPTIONS, and the gateway served
by uvicorn on real ports (the API's, and the metrics' own)."""

from __future__ import annotations

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.gateway.gateway_helpers import ADMIN_KEY, minimal_body, post_job, seed_body_text
from roboaug.api.gateway import create_app
from roboaug.api.gateway.auth import KeyRing

DOCS = ["/docs", "/redoc", "/openapi.json"]


def test_healthz(client):
    assert client.get("/healthz").json() == {"status": "ok"}


def test_readyz_follows_the_store(client, store):
    assert client.get("/readyz").json() == {"status": "ready"}
    store.unavailable = True
    r = client.get("/readyz")
    assert r.status_code == 503 and r.json() == {"detail": "the Kubernetes API is unavailable"}
    assert client.get("/healthz").status_code == 200  # liveness does not depend on the apiserver


def _sample(text: str, name: str, **labels) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if not labels and line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
        if line.startswith(name + "{"):
            got = ",".join(sorted(line[len(name) + 1: line.rindex("}")].split(",")))
            if got == want:
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_count_by_route_template_and_status(client):
    job_id = post_job(client).json()["job_id"]
    client.get(f"/v1/augmentation/{job_id}")
    client.get(f"/v1/augmentation/{job_id}")
    client.get("/v1/augmentation/00000000-0000-4000-8000-000000000000")
    client.get("/nowhere")
    text = client.app.state.metrics.render().decode()
    route = "/v1/augmentation/{job_id}"
    assert _sample(text, "roboaug_gateway_requests_total", method="GET", route=route, status="200") == 2
    assert _sample(text, "roboaug_gateway_requests_total", method="GET", route=route, status="404") == 1
    assert _sample(text, "roboaug_gateway_requests_total", method="POST", route="/v1/augmentation", status="201") == 1
    assert _sample(text, "roboaug_gateway_requests_total", method="GET", route="unmatched", status="404") == 1
    assert _sample(text, "roboaug_gateway_request_duration_seconds_count", method="GET", route=route) == 3
    assert _sample(text, "roboaug_gateway_jobs_created_total") == 1
    assert job_id not in text  # raw paths never become labels


@pytest.fixture
def docs_client(settings, store):
    app = create_app(settings.model_copy(update={"docs_enabled": True}), store, KeyRing(settings.api_keys_file, 0))
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


@pytest.mark.parametrize("path", DOCS + ["/metrics"])
def test_api_port_serves_no_docs_and_no_metrics_by_default(client, path):
    # Off unless ROBOAUG_GATEWAY_DOCS_ENABLED; metrics never (their own port, below).
    assert client.get(path).status_code == 404
    assert client.get(path, headers={"x-api-key": ""}).status_code == 404


@pytest.mark.parametrize("path", DOCS)
def test_docs_on_with_the_setting_and_need_no_key(docs_client, path):
    assert docs_client.get(path, headers={"x-api-key": ""}).status_code == 200
    assert docs_client.get("/metrics").status_code == 404


def test_openapi_declares_the_api_key_and_errors(docs_client):
    client = docs_client
    doc = client.get("/openapi.json").json()
    assert doc["components"]["securitySchemes"]["ApiKeyAuth"] == {
        "type": "apiKey", "in": "header", "name": "x-api-key",
        "description": "API key issued by the operator of this gateway."}
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            if path.startswith("/v1"):
                assert op["security"] == [{"ApiKeyAuth": []}], (method, path)
                assert "401" in op["responses"] and "422" in op["responses"], (method, path)
    post = doc["paths"]["/v1/augmentation"]["post"]
    assert set(post["responses"]) >= {"201", "400", "401", "403", "422"}
    assert "Location" in post["responses"]["201"]["headers"]
    # units from the model's descriptions reach the schema
    props = doc["components"]["schemas"]["AugmentationJobCreateRequest"]["properties"]
    assert "kelvin" in props["augment_color_temp_min"]["description"]
    assert "/v1/augmentation/{job_id}/cancel" in doc["paths"]
    assert client.get("/docs").status_code == 200


# -- Allow on 405 and OPTIONS --------------------------------------------------------------------
@pytest.mark.parametrize("path, allowed", [
    ("/v1/augmentation", "GET, OPTIONS, POST"),
    ("/v1/augmentation/00000000-0000-4000-8000-000000000000", "GET, OPTIONS"),
    ("/v1/augmentation/00000000-0000-4000-8000-000000000000/cancel", "OPTIONS, POST"),
    ("/healthz", "GET, OPTIONS"),
])
def test_405_and_options_list_every_method_served_at_the_path(client, path, allowed):
    r = client.request("DELETE", path)
    assert r.status_code == 405 and r.headers["allow"] == allowed
    assert r.json() == {"detail": "Method Not Allowed"}
    # OPTIONS needs no key (preflights carry none) and reveals only the methods
    r = client.options(path, headers={"x-api-key": ""})
    assert r.status_code == 204 and r.headers["allow"] == allowed and r.content == b""


def test_options_on_an_unknown_path_is_404(client):
    assert client.options("/nowhere").status_code == 404


# -- uvicorn on real ports ----------------------------------------------------------------------
def test_served_by_uvicorn_on_a_real_port(served):
    with httpx.Client(base_url=served.base, headers={"x-api-key": ADMIN_KEY}, timeout=10) as c:
        r = c.post("/v1/augmentation", content=seed_body_text(), headers={"Content-Type": "application/json"})
        assert r.status_code == 201, r.text
        job_id = r.json()["job_id"]
        assert r.headers["location"] == f"/v1/augmentation/{job_id}"
        status = c.get(r.headers["location"])
        assert status.status_code == 200 and status.json()["status"] == "queued"
        assert c.post("/v1/augmentation", json=minimal_body(augmentation_type="generative")).status_code == 400
        assert c.get(f"/v1/augmentation/{job_id}", headers={"x-api-key": "wrong"}).status_code == 401
        assert c.get("/readyz").status_code == 200
        for path in DOCS + ["/metrics"]:
            assert c.get(path).status_code == 404, path
    # metrics on their own port, with what the API port answered
    text = httpx.get(served.metrics + "/metrics", timeout=10).text
    assert _sample(text, "roboaug_gateway_requests_total", method="POST", route="/v1/augmentation", status="201") == 1
    assert _sample(text, "roboaug_gateway_jobs_created_total") == 1
    # the metrics listener is not the API: a POST there creates nothing
    httpx.post(served.metrics + "/v1/augmentation", json=minimal_body(), headers={"x-api-key": ADMIN_KEY}, timeout=10)
    listed = httpx.get(served.base + "/v1/augmentation", headers={"x-api-key": ADMIN_KEY}, timeout=10).json()
    assert [i["job_id"] for i in listed["items"]] == [job_id]
