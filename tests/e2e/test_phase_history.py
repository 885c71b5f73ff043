"""A job faster than the operator's observation, through the real stack: every worker phase still
lands in the history, in order, at the worker's times.

The operator is frozen (SIGSTOP) once it has created the worker Job; the Job controller, the
scheduler and the dev node agent run the real worker to the end without it. Thawed, the
operator sees one state only: the Job complete and the worker's last report. Everything else
is as in test_three_doors.py.
"""

from __future__ import annotations

from functools import partial
import json
import os
import signal
import uuid

import pytest

from tests.e2e._stack import e2e_stack, wait_for

from roboaug.api.models import GROUP, PHASE_ORDER, VERSION, WORKER_PHASES
from roboaug.operator.phases import parse_ts

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def stack(cluster, crd):
    # no lease to lose while the operator is frozen
    with e2e_stack(cluster, operator_overrides={"leader_election": {"enabled": False}}) as s:
        yield s


_wait = partial(wait_for, interval=0.1)


def _job_complete(stack, name: str) -> bool:
    res = stack.kubectl("get", "-n", stack.namespace, "job", name, "-o",
                        "jsonpath={.status.conditions[?(@.type=='Complete')].status}", check=False)
    return res.returncode == 0 and res.stdout.strip() == "True"


def test_a_job_that_finishes_unobserved_shows_every_phase_with_the_workers_times(stack):
    name = f"fast-{uuid.uuid4().hex[:6]}"
    cr = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "AugmentationJob", "metadata": {"name": name},
          "spec": {"project_id": str(uuid.uuid4()), "dataset_id": "lerobot/pusht",
                   "augment_transforms": "noise", "augment_copies": 1}}
    stack.kubectl("apply", "-n", stack.namespace, "-f", "-", input=json.dumps(cr))
    job_name = _wait(lambda: stack.kubectl("get", "-n", stack.namespace, "jobs", "-o",
                                           "jsonpath={.items[*].metadata.name}").stdout.strip(), 120,
                     "the operator to create the worker Job")
    pid = stack.operator.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        _wait(lambda: _job_complete(stack, job_name), 600, "the worker Job to complete")
        frozen = stack.get_job(name)["status"]
    finally:
        os.kill(pid, signal.SIGCONT)
    # the operator saw at most the pod start (a race with the freeze), none of the later phases;
    # the freeze may even land between its Job creation and that pass's status write
    assert frozen.get("current_phase") in (None, "queued", "scheduling", "downloading")
    reported = frozen["progress"]["phases"]
    assert [p["name"] for p in reported] == list(WORKER_PHASES)

    final = stack.wait_job(name, timeout=120)["status"]
    assert final["status"] == "completed", final.get("error")
    assert [p["name"] for p in final["phases"]] == list(PHASE_ORDER)
    assert all(p["status"] == "completed" for p in final["phases"])
    by_name = {p["name"]: p for p in final["phases"]}
    for span in reported:  # the worker's times, to the millisecond the history keeps
        got = by_name[span["name"]]
        for key in ("started_at", "completed_at"):
            if (span["name"], key) == ("downloading", "started_at") and frozen.get("current_phase") == "downloading":
                # the operator saw the pod running before the worker's process began downloading
                assert parse_ts(got[key]) <= parse_ts(span[key])
                continue
            assert abs((parse_ts(got[key]) - parse_ts(span[key])).total_seconds()) < 0.001, (key, got, span)
    stamps = [parse_ts(p[k]) for p in final["phases"] for k in ("started_at", "completed_at")]
    assert stamps == sorted(stamps)
