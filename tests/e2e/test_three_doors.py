"""End to end through the real stack: kubectl, REST and a GPU job that cannot be placed.

Everything is real except the kubelet: the operator and gateway run as processes against the local
kube-apiserver, the scheduler places the worker pod, and the dev node agent runs the real worker,
which downloads the sample dataset from the local Hub test server, augments it and uploads the
result in one commit. The output is checked with the independent checker of tests/worker.
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import httpx
import pytest

from tests.e2e._stack import e2e_stack, wait_for
import yaml

from tests.worker import checker
from roboaug.api.models import PHASE_ORDER, AugmentationStatusResponse

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
SEED_BODY = REPO / "tests" / "gateway" / "seed_000_body.json"




@pytest.fixture(scope="module")
def stack(cluster, crd):
    with e2e_stack(cluster) as s:
        yield s


def _phases_in_order(phases: list[dict]) -> None:
    names = [p["name"] for p in phases]
    assert names == [n for n in PHASE_ORDER if n in names], names
    assert names[0] == "queued" and names[-1] == "completed", names
    for p in phases:
        assert p["status"] == "completed", p
        assert p["started_at"] and p["completed_at"], p


def _check_output(stack, output_id: str, tmp_path: Path) -> dict:
    dest = stack.download_output(output_id, tmp_path / "out")
    report = checker.check_lerobot(dest)
    assert (dest / "meta" / "augmentation.json").is_file()
    assert (dest / "README.md").is_file()
    return json.loads((dest / "meta" / "info.json").read_text())


def test_kubectl_apply_sample_job_completes(stack, tmp_path):
    sample = REPO / "manifests" / "samples" / "job.yaml"
    name = yaml.safe_load(sample.read_text())["metadata"]["name"]
    stack.kubectl("apply", "-n", stack.namespace, "-f", str(sample))
    cr = stack.wait_job(name, timeout=600)
    status = cr["status"]
    assert status["status"] == "completed", status.get("error")
    assert status["current_phase"] == "completed"
    assert status["instance_type"] == "local-dev" and status["region"] == "local"
    _phases_in_order(status["phases"])
    info = _check_output(stack, status["augmented_dataset_id"], tmp_path)
    # 3 source episodes + 3 lighting copies each (the defaults)
    assert info["total_episodes"] == 3 * 4 and info["codebase_version"] == "v3.0"
    table = stack.kubectl("get", "augmentationjobs", "-n", stack.namespace).stdout
    header = table.splitlines()[0].split()
    assert header == ["NAME", "STATUS", "PHASE", "PROGRESS%", "ATTEMPT", "STARTED", "DURATION",
                      "INSTANCE", "OUTPUT", "AGE"]
    row = next(line.split() for line in table.splitlines() if line.startswith(name))
    assert row[1:5] == ["completed", "completed", "100", "0"]
    assert row[6] == status["duration"] and row[7:9] == ["local-dev", status["augmented_dataset_id"]]


def test_rest_seed_000_body_completes(stack, tmp_path):
    body = json.loads(SEED_BODY.read_text())
    assert body["dataset_id"] == "lerobot/pusht"  # served by the local Hub from the sample
    headers = {"x-api-key": stack.api_key}
    with httpx.Client(base_url=stack.gateway_url, headers=headers, timeout=30) as http:
        created = http.post("/v1/augmentation", json=body)
        assert created.status_code == 201, created.text
        job_id = created.json()["job_id"]
        assert created.json()["status"] == "queued"
        name = f"aug-{job_id}"
        stack.wait_job(name, timeout=600)
        got = http.get(f"/v1/augmentation/{job_id}")
        assert got.status_code == 200
        answer = got.json()
    # seed 001's schema, field for field
    AugmentationStatusResponse.model_validate(answer)
    assert set(answer) == set(AugmentationStatusResponse.model_fields)
    assert answer["status"] == "completed", answer["error"]
    assert answer["job_id"] == job_id
    _phases_in_order(answer["phases"])
    assert re.fullmatch(r"lerobot/pusht-augmented-[0-9a-f]{8}", answer["augmented_dataset_id"])
    info = _check_output(stack, answer["augmented_dataset_id"], tmp_path)
    assert info["total_episodes"] == 3 * 4


def test_gpu_job_with_no_gpu_free_stays_in_scheduling_with_the_reason(cluster, crd):
    """A pool asking for more GPUs than any node has: the pod stays Pending and the CR says why."""
    cluster.require_node_agent()
    from roboaug.devstack.stack import DevStack

    ns = f"e2e-gpu-{uuid.uuid4().hex[:6]}"
    big_gpu_pool = {
        "node_selector": {"roboaug.dev/pool": "gpu"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "resources": {"requests": {"nvidia.com/gpu": "4"}, "limits": {"nvidia.com/gpu": "4"}},
    }
    with DevStack(cluster=cluster.local, namespace=ns,
                  operator_overrides={"pools": {"gpu": big_gpu_pool}, "routing": {"deterministic": "gpu", "generative": "gpu"},
                                      "pending_timeout_seconds": 3600}) as stack:
        job = {"apiVersion": "roboaug.dev/v1alpha1", "kind": "AugmentationJob", "metadata": {"name": "needs-gpus"},
               "spec": {"project_id": str(uuid.uuid4()), "dataset_id": "lerobot/pusht"}}
        stack.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(job))

        def reason():
            status = stack.get_job("needs-gpus").get("status") or {}
            events = [e for p in status.get("phases") or [] for e in p.get("events") or []]
            text = " ".join(str(e.get("message")) + " " + str(e.get("error")) for e in events)
            if status.get("current_phase") == "scheduling" and "Insufficient nvidia.com/gpu" in text:
                return status
            return None

        status = cluster.wait_for(reason, timeout=120, what="scheduler's reason in the CR's events")
        assert status["status"] in ("queued", "running")
        assert status["phases"][-1]["name"] == "scheduling" and status["phases"][-1]["status"] == "in_progress"
    cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)
