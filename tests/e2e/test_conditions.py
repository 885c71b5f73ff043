"""Conditions, printer columns and REST progress through the real stack, read with the real kubectl.

`kubectl wait --for=condition=Succeeded` returns for a job the real operator ran to completion
(the dev node agent runs the real worker); a job the operator refuses has Failed (and kstatus's
Stalled) True with its reason; `kubectl get augmentationjobs` shows Progress%, Started and
Duration; GET /v1/augmentation/{id} answers `progress`.
"""

from __future__ import annotations

import json
import re
import subprocess
import uuid

import httpx
import pytest

from tests.e2e._stack import e2e_stack

from roboaug.api.models import GROUP, VERSION

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def stack(cluster, crd):
    with e2e_stack(cluster) as s:
        yield s


def _apply(stack, name: str, **spec) -> None:
    cr = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "AugmentationJob", "metadata": {"name": name},
          "spec": {"project_id": str(uuid.uuid4()), "dataset_id": "lerobot/pusht", **spec}}
    stack.kubectl("apply", "-n", stack.namespace, "-f", "-", input=json.dumps(cr))


def _kubectl_wait(stack, name: str, condition: str, timeout_s: int):
    """`kubectl wait` itself, with its own timeout (stack.kubectl stops any kubectl at 120 s)."""
    cluster = stack.cluster
    return subprocess.run([cluster.kubectl_path, "--kubeconfig", str(cluster.kubeconfig), "wait", "-n",
                           stack.namespace, f"--for=condition={condition}", f"augmentationjob/{name}",
                           f"--timeout={timeout_s}s"], capture_output=True, text=True, timeout=timeout_s + 30)


def _why(stack, name: str) -> str:
    return (json.dumps(stack.get_job(name).get("status"))[:3000] + "\n--- operator:\n" + stack.operator.tail())


def _conditions(cr: dict) -> dict:
    return {c["type"]: c for c in cr["status"]["conditions"]}


def test_kubectl_wait_columns_and_rest_progress(stack):
    good, bad = f"ok-{uuid.uuid4().hex[:6]}", f"gen-{uuid.uuid4().hex[:6]}"
    _apply(stack, good, augment_transforms="noise", augment_copies=1)
    _apply(stack, bad, augmentation_type="generative")

    # the refused job: Failed (and Stalled) True with the reason; Succeeded never becomes True
    wait = _kubectl_wait(stack, bad, "Failed", 120)
    assert wait.returncode == 0, (wait.stderr, _why(stack, bad))
    failed = stack.get_job(bad)
    conds = _conditions(failed)
    assert (conds["Failed"]["status"], conds["Failed"]["reason"]) == ("True", "GenerativeDisabled")
    assert (conds["Stalled"]["status"], conds["Stalled"]["reason"]) == ("True", "GenerativeDisabled")
    assert conds["Failed"]["message"] == failed["status"]["error"]
    assert conds["Succeeded"]["status"] == "False" and conds["Reconciling"]["status"] == "False"
    never = _kubectl_wait(stack, bad, "Succeeded", 2)
    assert never.returncode != 0

    # the real job, run by the real operator and worker
    wait = _kubectl_wait(stack, good, "Succeeded", 600)
    assert wait.returncode == 0, (wait.stderr, _why(stack, good))
    done = stack.get_job(good)
    st = done["status"]
    assert st["status"] == "completed" and st["observedGeneration"] == done["metadata"]["generation"]
    conds = _conditions(done)
    assert {k: c["status"] for k, c in conds.items()} == {
        "Accepted": "True", "Running": "False", "Succeeded": "True", "Failed": "False",
        "Reconciling": "False", "Stalled": "False"}
    assert all(c["observedGeneration"] == done["metadata"]["generation"] for c in conds.values())
    assert conds["Succeeded"]["lastTransitionTime"] == next(
        p["started_at"] for p in st["phases"] if p["name"] == "completed")
    assert st["progress_percent"] == 100 and st["started_at"] and re.fullmatch(r"(\d+[dhms])+", st["duration"])

    # the printer columns, as kubectl prints them
    table = stack.kubectl("get", "-n", stack.namespace, "augmentationjobs").stdout
    header, *rows = table.splitlines()
    assert header.split()[:9] == ["NAME", "STATUS", "PHASE", "PROGRESS%", "ATTEMPT", "STARTED", "DURATION",
                                  "INSTANCE", "OUTPUT"], table
    row = next(r.split() for r in rows if r.startswith(good + " "))
    assert row[1:4] == ["completed", "completed", "100"] and row[6] == st["duration"], table
    assert re.fullmatch(r"(\d+[dhms])+", row[5]), table  # Started: an age

    # REST: progress of the finished job
    job_id = st["job_id"]
    with httpx.Client(base_url=stack.gateway_url, headers={"x-api-key": stack.api_key}, timeout=30) as http:
        body = http.get(f"/v1/augmentation/{job_id}").json()
    prog = body["progress"]
    assert prog["phase"] == "completed" and prog["percent"] == 100.0 and prog["eta_seconds"] == 0.0, prog
    assert prog["frames_total"] > 0 and prog["frames_done"] == prog["frames_total"], prog
