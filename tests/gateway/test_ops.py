"""/healthz, /readyz, /metrics, the OpenAPI document, and the gateway served by uvicorn on a real port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import httpx
import pytest

from tests.gateway.gateway_helpers import ADMIN_KEY, minimal_body, post_job, seed_body_text


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
    text = client.get("/metrics").text
    route = "/v1/augmentation/{job_id}"
    assert _sample(text, "roboaug_gateway_requests_total", method="GET", route=route, status="200") == 2
    assert _sample(text, "roboaug_gateway_requests_total", method="GET", route=route, status="404") == 1
    assert _sample(text, "roboaug_gateway_requests_total", method="POST", route="/v1/augmentation", status="201") == 1
    assert _sample(text, "roboaug_gateway_requests_total", method="GET", route="unmatched", status="404") == 1
    assert _sample(text, "roboaug_gateway_request_duration_seconds_count", method="GET", route=route) == 3
    assert _sample(text, "roboaug_gateway_jobs_created_total") == 1
    assert job_id not in text  # raw paths never become labels


def test_openapi_declares_the_api_key_and_errors(client):
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


# -- uvicorn on a real port -------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served(keys_file, tmp_path):
    port = _free_port()
    env = dict(os.environ, ROBOAUG_GATEWAY_STORE="memory", ROBOAUG_GATEWAY_API_KEYS_FILE=str(keys_file),
               ROBOAUG_GATEWAY_NAMESPACE="served", ROBOAUG_GATEWAY_LOG_LEVEL="warning")
    log = open(tmp_path / "gateway.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "roboaug.api.gateway", "--host", "127.0.0.1", "--port", str(port)],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("gateway did not start:\n" + (tmp_path / "gateway.log").read_text())
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


def test_served_by_uvicorn_on_a_real_port(served):
    with httpx.Client(base_url=served, headers={"x-api-key": ADMIN_KEY}, timeout=10) as c:
        r = c.post("/v1/augmentation", content=seed_body_text(), headers={"Content-Type": "application/json"})
        assert r.status_code == 201, r.text
        job_id = r.json()["job_id"]
        assert r.headers["location"] == f"/v1/augmentation/{job_id}"
        status = c.get(r.headers["location"])
        assert status.status_code == 200 and status.json()["status"] == "queued"
        assert c.post("/v1/augmentation", json=minimal_body(augmentation_type="generative")).status_code == 400
        assert c.get(f"/v1/augmentation/{job_id}", headers={"x-api-key": "wrong"}).status_code == 401
        assert c.get("/readyz").status_code == 200
        assert "roboaug_gateway_requests_total" in c.get("/metrics").text
