"""GET /v1/augmentation/{id}/logs through the real stack: control plane, operator and gateway as
processes, the real worker run by the dev node agent, which serves its output as the kubelet's
/containerLogs endpoint, so `pods/log` goes through the real apiserver.

Covered: the worker's lines are JSON log lines; `follow=true` started before the pod exists
waits for it and streams its lines while the job runs (the first arrives before the job ends)
until the pod ends; the operator archives the ended pod's log (a ConfigMap owned by the CR);
once the pod is deleted the same lines come from the archive; `attempt` 0 is the latest here and
attempt 1 is a 404; the Hub token never appears. Not covered here (unit tests with fakes:
tests/gateway/test_logs.py, tests/operator/test_log_archive.py): a retried job's attempts, a pod
replaced within one attempt, a pod gone before the operator read it (termination-message
fallback), the 1 MiB cut. The dev stack runs operator and gateway with admin credentials; the
chart's RBAC for this (pods/log, configmaps get) is checked in tests/chart.
"""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from tests.e2e._stack import e2e_stack, wait_for

from roboaug.api import joblogs
from roboaug.devstack.hubserver import WRITE_TOKEN

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def stack(cluster, crd):
    with e2e_stack(cluster) as s:
        yield s


_wait = wait_for


def _names(stack, kind: str, selector: str) -> list[str]:
    out = stack.kubectl("get", "-n", stack.namespace, kind, "-l", selector, "-o",
                        "jsonpath={.items[*].metadata.name}").stdout
    return out.split()


def test_logs_stream_while_the_job_runs_and_come_from_the_archive_after_the_pod_is_gone(stack):
    headers = {"x-api-key": stack.api_key}
    body = {"project_id": str(uuid.uuid4()), "dataset_id": "lerobot/pusht", "augment_transforms": "noise",
            "augment_copies": 1}
    with httpx.Client(base_url=stack.gateway_url, headers=headers, timeout=30) as http:
        created = http.post("/v1/augmentation", json=body)
        assert created.status_code == 201, created.text
        job_id = created.json()["job_id"]
        url = f"/v1/augmentation/{job_id}/logs"

        followed, status_at_first_line = [], None
        with http.stream("GET", url, params={"follow": "true"}, timeout=httpx.Timeout(30, read=300)) as resp:
            assert resp.status_code == 200 and resp.headers["content-type"].startswith(joblogs.MEDIA_TYPE)
            for text in resp.iter_lines():
                if status_at_first_line is None:
                    status_at_first_line = http.get(f"/v1/augmentation/{job_id}").json()["status"]
                followed.append(json.loads(text))
        assert status_at_first_line not in ("completed", "failed", "cancelled"), status_at_first_line
        assert followed and all({"ts", "level", "msg"} <= set(x) for x in followed)
        own = [x for x in followed if not x.get("raw")]
        phases = [x["phase"] for x in own if x.get("event") == "progress"]
        assert phases and phases[0] == "downloading" and "augmenting" in phases and phases[-1] == "uploading", \
            followed[:5]
        assert own[-1]["event"] == "done", own[-1]

        cr_name = f"aug-{job_id}"
        final = stack.wait_job(cr_name, timeout=300)["status"]
        assert final["status"] == "completed", final.get("error")

        # the operator archives the ended pod's log, owned by the CR
        try:
            archives = _wait(lambda: _names(stack, "configmap", f"roboaug.dev/job-id={job_id},"
                                                               "app.kubernetes.io/name=roboaug-worker-log"),
                             60, "the operator's log archive")
        except AssertionError as e:
            raise AssertionError(f"{e}\noperator log:\n{stack.operator.tail()}") from None
        cr = stack.get_job(cr_name)
        assert archives == [joblogs.archive_name(cr_name, cr["metadata"]["uid"], 0)]
        cm = json.loads(stack.kubectl("get", "-n", stack.namespace, "configmap", archives[0], "-o", "json").stdout)
        assert cm["metadata"]["ownerReferences"][0]["uid"] == cr["metadata"]["uid"]
        assert cm["metadata"]["annotations"][joblogs.ANNOTATION_SOURCE] == "pod"

        live = http.get(url)
        assert live.status_code == 200 and [json.loads(x)["msg"] for x in live.text.splitlines()] == \
            [x["msg"] for x in followed]

        pods = _names(stack, "pod", f"roboaug.dev/job-id={job_id}")
        assert len(pods) == 1
        stack.kubectl("delete", "pod", "-n", stack.namespace, pods[0], "--wait=true", "--timeout=60s")
        _wait(lambda: not _names(stack, "pod", f"roboaug.dev/job-id={job_id}"), 60, "the pod to go")

        archived = http.get(url)
        assert archived.status_code == 200, archived.text
        served = [json.loads(x) for x in archived.text.splitlines()]
        assert [x["msg"] for x in served] == [x["msg"] for x in followed]
        assert [x for x in served if not x.get("raw")] == own  # the worker's own lines, byte for byte
        assert http.get(url, params={"attempt": 0}).text == archived.text
        missing = http.get(url, params={"attempt": 1})
        assert missing.status_code == 404 and "attempt" in missing.json()["detail"]
        assert WRITE_TOKEN not in archived.text + live.text
