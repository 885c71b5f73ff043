"""Only our Job's own pods count (issue 14 item 14): a pod with our labels and annotation that
someone else created (no owner, or another owner) neither fails, retries nor moves a job."""
from roboaug.operator.observe import owned_pods, summarize_pod

from tests.operator._operator_factories import CPU_NODE, cr, job, pod
from tests.operator.test_operator_reconcile import applied, run


def foreign(name, owner_uid=None, **kw):
    p = pod(name=name, **kw)
    return p.__class__(**{**p.__dict__, "job_uid": owner_uid})


def test_summarize_pod_reads_the_controlling_job_owner_only():
    meta = {"name": "p", "uid": "u", "ownerReferences": [
        {"kind": "Job", "uid": "job-uid-1", "controller": False},
        {"kind": "ReplicaSet", "uid": "rs", "controller": True}]}
    assert summarize_pod({"metadata": meta, "status": {}}).job_uid is None
    meta["ownerReferences"].append({"kind": "Job", "uid": "job-uid-1", "controller": True})
    assert summarize_pod({"metadata": meta, "status": {}}).job_uid == "job-uid-1"


def test_owned_pods_are_those_whose_controller_is_our_job():
    ours = pod(name="ours")
    others = [foreign("no-owner"), foreign("other-job", owner_uid="job-uid-2")]
    assert owned_pods(job(), [ours, *others]) == [ours]
    assert owned_pods(None, [ours]) == []


def test_a_look_alike_pod_that_fails_permanently_does_not_fail_the_job():
    c = applied(cr(), run(cr()))
    c = applied(c, run(c, job=job(), pods=[pod(name="real", phase="Running", node="cpu-0")], node_labels=CPU_NODE))
    for owner in (None, "job-uid-2"):
        fake = foreign("fake", owner_uid=owner, created=5, phase="Failed", node="cpu-0", exit_code=10,
                       exit_message="roboaug-worker: error[10 dataset_not_found]: nope")
        p = run(c, now=6, job=job(), pods=[pod(name="real", phase="Running", node="cpu-0"), fake],
                node_labels=CPU_NODE)
        assert p.finished is None and p.retries == 0 and p.delete_job is None and p.empty, p.new_status.get("error")
        # nor does a disrupted look-alike count as an eviction, nor a running one become the current pod
        lost = foreign("lost", owner_uid=owner, created=5, phase="Failed", node="cpu-0", disrupted=True)
        newer = foreign("newer", owner_uid=owner, created=7, phase="Running", node="cpu-9")
        p = run(c, now=8, job=job(), pods=[pod(name="real", phase="Running", node="cpu-0"), lost, newer],
                node_labels=CPU_NODE)
        assert p.empty, p.status
    # the real pod's permanent failure still fails it
    bad = pod(name="real", phase="Failed", node="cpu-0", exit_code=10, exit_message="nope")
    assert run(c, now=9, job=job(failed=1, active=0), pods=[bad]).finished == "failed"


def test_the_controller_passes_only_owned_pods_to_decide():
    from roboaug.operator.controller import Controller
    from roboaug.operator.config import parse_config

    ctl = Controller(parse_config({}), kube=None)
    ours = pod(name="ours")
    ctl.pods = {("ns1", "aug-demo"): [ours, foreign("fake"), foreign("other", owner_uid="x")]}
    assert ctl._pods(("ns1", "aug-demo"), job()) == [ours]
    assert ctl._pods(("ns1", "aug-demo"), None) == []
