"""Builders shared by the operator's unit tests (plain dicts and views, no cluster)."""
import copy
from datetime import datetime, timedelta, timezone

from roboaug.operator.observe import JobView, PodView

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=timezone.utc)
CR_UID = "0b5a3c0e-1111-4222-8333-444455556666"
JOB_ID = "7d0f5a52-8f7e-4a61-9a3e-0c1d2e3f4a5b"
PROJECT = "2489e9ad-2ee2-8e00-8ec9-32d5f69181c0"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def iso(seconds: float) -> str:
    return at(seconds).strftime("%Y-%m-%dT%H:%M:%SZ")


def cr(name="aug-demo", spec=None, status=None, labels=None, generation=1):
    s = {"project_id": PROJECT, "dataset_id": "lerobot/pusht", "job_id": JOB_ID}
    s.update(spec or {})
    return {
        "apiVersion": "roboaug.dev/v1alpha1", "kind": "AugmentationJob",
        "metadata": {"name": name, "namespace": "ns1", "uid": CR_UID, "resourceVersion": "100",
                     "generation": generation, "creationTimestamp": iso(0),
                     "labels": {"roboaug.dev/job-id": JOB_ID, "roboaug.dev/project-id": PROJECT}
                     if labels is None else labels},
        "spec": s,
        "status": status or {},
    }


def job(name="aug-demo-worker", owner=CR_UID, created=1, failed=0, active=1, complete=False,
        failed_condition=None, deleting=False):
    return JobView(name=name, uid="job-uid-1", owner_uid=owner, created=iso(created), deleting=deleting,
                   active=active, ready=0, failed=failed, succeeded=1 if complete else 0,
                   complete=complete, failed_condition=failed_condition)


def pod(name="aug-demo-worker-abcde", created=1, phase="Pending", node=None, unschedulable=None,
        exit_code=None, exit_reason=None, exit_message=None, disrupted=False, waiting_reason=None,
        waiting_message=None):
    return PodView(name=name, uid=f"uid-{name}", created=iso(created), deleting=False, phase=phase,
                   node=node, unschedulable=unschedulable, exit_code=exit_code, exit_reason=exit_reason,
                   exit_message=exit_message, disrupted=disrupted, job_uid="job-uid-1",
                   waiting_reason=waiting_reason, waiting_message=waiting_message)


CPU_NODE = {"cpu-0": {"node.kubernetes.io/instance-type": "c7i.4xlarge",
                      "topology.kubernetes.io/region": "us-east-1"}}


def decide_checked(c: dict, config, now: float = 1.0, **observed):
    """decide() on `c` at `at(now)`, with the plan's status consistent (phases.check) and valid
    against the status model: what every decision test wants before its own assertions."""
    from roboaug.api.models import AugmentationJobStatus
    from roboaug.operator.phases import check
    from roboaug.operator.reconcile import Observed, decide

    plan = decide(Observed(cr=c, now=at(now), **observed), config)
    assert check(plan.new_status) == [], check(plan.new_status)
    AugmentationJobStatus.model_validate(plan.new_status)
    return plan


def applied(c: dict, plan) -> dict:
    """The CR as it reads after the plan's status write (the worker's progress is kept), at the
    next resourceVersion."""
    c = copy.deepcopy(c)
    progress = c["status"].get("progress")
    c["status"] = copy.deepcopy(plan.new_status)
    if progress is not None:
        c["status"]["progress"] = progress
    c["metadata"]["resourceVersion"] = str(int(c["metadata"]["resourceVersion"]) + 1)
    return c
