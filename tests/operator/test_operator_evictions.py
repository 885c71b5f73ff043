"""Evictions end (issue 14 item 12): node-pressure evictions and other disruptions cost no retry
(the Job's podFailurePolicy ignores them) but count toward `max_evictions`; one more fails the
job, naming them, and stops its Job. The pool deadlines are in test_operator_config.py."""
from roboaug.operator.config import parse_config
from roboaug.operator.observe import summarize_pod
from roboaug.operator.phases import check
from roboaug.operator.reconcile import Observed, decide

from tests.operator._operator_factories import at, cr, job, pod
from tests.operator.test_operator_reconcile import applied, run

CFG = parse_config({"backoff_limit": 2, "pending_timeout_seconds": 60})  # max_evictions: the default, 3
PRESSURE = "The node was low on resource: memory. Threshold quantity: 100Mi, available: 80Mi."


def evicted(name, created):
    return pod(name=name, created=created, phase="Failed", node="cpu-0", disrupted=True)


def test_kubelet_eviction_is_seen_with_or_without_the_disruption_condition():
    body = {"metadata": {"name": "p", "uid": "u"}, "spec": {"nodeName": "cpu-0"},
            "status": {"phase": "Failed", "reason": "Evicted", "message": PRESSURE}}
    v = summarize_pod(body)
    assert v.evicted and not v.disrupted and v.lost and v.disruption == PRESSURE
    body["status"]["conditions"] = [{"type": "DisruptionTarget", "status": "True", "reason": "TerminationByKubelet",
                                     "message": PRESSURE}]
    v = summarize_pod(body)
    assert v.evicted and v.disrupted and v.lost and v.disruption == PRESSURE
    body["status"] = {"phase": "Running", "conditions": body["status"]["conditions"]}
    assert not summarize_pod(body).lost  # doomed, not lost yet: noted once it has failed
    assert not summarize_pod({"metadata": {"name": "p"}, "status": {"phase": "Failed"}}).lost


def test_evictions_up_to_the_cap_are_restarted_and_the_next_fails_the_job():
    c = applied(cr(), run(cr()))
    c = applied(c, run(c, job=job(), pods=[pod(name="p0", phase="Running", node="cpu-0")]))
    pods = []
    for i in range(CFG.max_evictions):
        pods = [evicted(f"p{j}", j) for j in range(i + 1)] + [pod(name=f"p{i + 1}", created=i + 1)]
        p = run(c, now=i + 2, job=job(), pods=pods)
        assert p.finished is None and p.delete_job is None and p.retries == 0, p.new_status.get("error")
        c = applied(c, p)
    noted = [e for ph in c["status"]["phases"] for e in ph["events"] if e["status"] == "disrupted"]
    assert [e["data"]["evictions"] for e in noted] == [1, 2, 3] and c["status"]["attempt"] == 0
    # the evicted pods are gone (garbage-collected) by the time the next one is: counted all the same
    p = run(c, now=9, job=job(), pods=[evicted("p9", 9), pod(name="p10", created=10)])
    assert p.finished == "failed" and p.delete_job == "aug-demo-worker"
    err = p.new_status["error"]
    assert err.startswith("the worker pod was evicted 4 times, more than max_evictions (3) allows; last: pod p9 ")
    assert p.new_status["phases"][-1]["events"][0]["data"]["max_evictions"] == 3


def test_max_evictions_zero_fails_at_the_first_and_names_the_reason():
    cfg = parse_config({"max_evictions": 0})
    lost = pod(name="p1", phase="Failed", node="cpu-0", disrupted=True)
    lost = lost.__class__(**{**lost.__dict__, "evicted": True, "disruption": PRESSURE})
    plan = decide(Observed(cr=cr(), job=job(), pods=[lost], now=at(3)), cfg)
    assert check(plan.new_status) == []
    assert plan.finished == "failed" and plan.delete_job == "aug-demo-worker"
    assert plan.new_status["error"] == ("the worker pod was evicted 1 times, more than max_evictions (0) allows; "
                                        f"last: pod p1 was evicted or disrupted on node cpu-0 ({PRESSURE})")
