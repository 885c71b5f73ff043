"""Every end of a job stops its worker (issue 14 item 11): each path that ends a job while our
Job may still run a worker plans that Job's deletion (foreground), through `decide`; a finished
Job, one being deleted and a Job that is not ours are left alone."""
import pytest

from roboaug.operator.config import parse_config
from roboaug.operator.phases import History, check
from roboaug.operator.reconcile import Observed, decide

from tests.operator._operator_factories import JOB_ID, at, cr, iso, job, pod

CFG = parse_config({"backoff_limit": 2, "pending_timeout_seconds": 60, "max_evictions": 1})
NO_DETERMINISTIC_POOL = parse_config({"routing": {"generative": "gpu"}})


def history(*phases):
    h = History()
    h.start(JOB_ID, iso(0), at(0))
    for name in phases:
        h.advance(name, at(1))
    return h.status


def running_status():
    return history("scheduling", "downloading")


def settled(status):
    """A status whose effective spec was settled on acceptance (as the operator writes it)."""
    return {**status, "effective_spec": {"project_id": cr()["spec"]["project_id"], "dataset_id": "lerobot/pusht"},
            "spec_sources": {}}


def cancelled():
    h = History(running_status())
    h.cancel(at(2))
    return h.status


def completed():
    h = History(running_status())
    h.complete(at(2), "done")
    return h.status


RUNNING = pod(name="p1", phase="Running", node="cpu-0")
EVICTED = dict(phase="Failed", node="cpu-0", disrupted=True)

# path -> (CR, config, observation, expected final status, words of status.error)
ENDS = {
    "spec invalid after the Job exists": (
        cr(spec={"augment_transforms": "lighting,sparkles"}, status=running_status()), CFG,
        dict(pods=[RUNNING]), "failed", "invalid spec: spec.augment_transforms"),
    "effective spec in status invalid": (
        cr(status={**running_status(), "effective_spec": {"dataset_id": 5}}), CFG,
        dict(pods=[RUNNING]), "failed", "status.effective_spec"),
    "project invalid while the spec is unsettled": (
        cr(status=running_status()), CFG,
        dict(pods=[RUNNING], project={"spec": {"limits": {"max_copies": "many"}}}), "failed", "is invalid"),
    "generative after the Job exists": (
        cr(spec={"augmentation_type": "generative"}, status=running_status()), CFG,
        dict(pods=[RUNNING]), "failed", "generative"),
    "no pool any more": (
        cr(status=settled(running_status())), NO_DETERMINISTIC_POOL,
        dict(pods=[RUNNING]), "failed", "routing.deterministic"),
    "pending timeout": (
        cr(status=settled(history("scheduling"))), CFG,
        dict(pods=[pod(unschedulable="0/3 nodes are available")], now=90), "failed", "no node could run"),
    "permanent exit code before the Job's condition, a pod still alive": (
        cr(status=settled(running_status())), CFG,
        dict(pods=[pod(name="p1", phase="Failed", node="cpu-0", exit_code=10, exit_message="gone"),
                   pod(name="p2", created=3, phase="Running", node="cpu-1")]),
        "failed", "code 10"),
    "evictions beyond max_evictions": (
        cr(status=settled(running_status())), CFG,
        dict(pods=[pod(name="p1", **EVICTED), pod(name="p2", created=2, **EVICTED),
                   pod(name="p3", created=3, phase="Running", node="cpu-1")]), "failed", "evicted 2 times"),
    "cancel": (
        cr(spec={"cancel_requested": True}, status=settled(running_status())), CFG,
        dict(pods=[RUNNING]), "cancelled", None),
    "ended earlier, its deletion lost (cancelled)": (
        cr(status=settled(cancelled())), CFG, dict(pods=[RUNNING]), "cancelled", None),
    "completed while its Job still runs": (
        cr(status=settled(completed())), CFG, dict(pods=[RUNNING]), "completed", None),
}


@pytest.mark.parametrize("path", ENDS)
def test_every_end_deletes_our_running_job(path):
    c, cfg, obs, final, words = ENDS[path]
    obs = dict(obs)
    now = obs.pop("now", 5)
    plan = decide(Observed(cr=c, job=job(), now=at(now), **obs), cfg)
    assert check(plan.new_status) == []
    assert plan.new_status["status"] == final, plan.new_status.get("error")
    if words:
        assert words in plan.new_status["error"], plan.new_status["error"]
    assert plan.delete_job == "aug-demo-worker"
    assert plan.create_job is None


def failed_status():
    h = History(running_status())
    h.fail(at(2), "boom", "it broke")
    return h.status


def test_a_job_that_failed_earlier_stops_a_job_still_running():
    plan = decide(Observed(cr=cr(status=settled(failed_status())), job=job(), pods=[RUNNING], now=at(5)), CFG)
    assert plan.delete_job == "aug-demo-worker" and "status" not in plan.status and plan.finished is None


@pytest.mark.parametrize("other", [
    job(failed=1, active=0, failed_condition={"reason": "BackoffLimitExceeded", "message": "m"}),  # finished
    job(complete=True, active=0),                                                                  # finished
    job(deleting=True),                                                                            # on its way
    job(owner="someone-else"),                                                                     # not ours
])
def test_a_job_that_cannot_run_a_worker_or_is_not_ours_is_left_alone(other):
    for status in (settled(failed_status()), settled(cancelled()), settled(completed())):
        plan = decide(Observed(cr=cr(status=status), job=other, now=at(5)), CFG)
        assert plan.delete_job is None
    # the name clash fails the job but never deletes another's Job
    if other.owner_uid == "someone-else":
        plan = decide(Observed(cr=cr(status=settled(history())), job=other, now=at(5)), CFG)
        assert plan.finished == "failed" and plan.delete_job is None


def test_a_permanent_exit_with_no_pod_alive_leaves_the_job_to_fail_itself():
    # the Job's podFailurePolicy fails it on that code: no new pod starts, and deleting it now
    # would only take the failed pod's logs
    bad = pod(name="p1", phase="Failed", node="cpu-0", exit_code=10, exit_message="gone")
    plan = decide(Observed(cr=cr(status=settled(running_status())), job=job(failed=1, active=0), pods=[bad],
                           now=at(5)), CFG)
    assert plan.finished == "failed" and "code 10" in plan.new_status["error"] and plan.delete_job is None
    # a retryable failure is not that: a new pod may start any moment
    cancel = cr(spec={"cancel_requested": True}, status=settled(running_status()))
    retryable = pod(name="p1", phase="Failed", node="cpu-0", exit_code=75)
    assert decide(Observed(cr=cancel, job=job(failed=1, active=0), pods=[retryable], now=at(5)),
                  CFG).delete_job == "aug-demo-worker"
