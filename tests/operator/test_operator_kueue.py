"""Kueue admission, operator side (no cluster): a job whose project or pool names a LocalQueue (the
project's wins) gets Jobs labelled and created suspended; a suspended Job stays `queued` with Kueue's reason
from its Workload and never fails on the pending timeout; once Kueue unsuspends it, the normal phases go on.
The same with a real Kueue controller: test_operator_kueue_cluster.py."""
from dataclasses import replace

import pytest

from roboaug.api.models import AugmentationJobSpec
from roboaug.operator import kueue
from roboaug.operator.config import ConfigError, parse_config
from roboaug.operator.decision import Observed
from roboaug.operator.jobs import job_queue, render_job
from roboaug.operator.observe import summarize_job
from roboaug.operator.phases import History
from roboaug.operator.pools import select_pool
from roboaug.operator.reconcile import decide

from tests.operator._operator_factories import CPU_NODE, JOB_ID, applied, at, cr, decide_checked, iso, job, pod

QUEUE = "roboaug-cpu"
CFG = parse_config({"backoff_limit": 2, "pending_timeout_seconds": 60,
                    "pools": {"cpu": {"node_selector": {"roboaug.dev/pool": "cpu"}, "kueue_queue": QUEUE},
                              "gpu": {}}})
PLAIN = parse_config({"backoff_limit": 2, "pending_timeout_seconds": 60})

PENDING = {"metadata": {"name": "job-aug-demo-worker-1a2b3", "creationTimestamp": iso(1)},
           "status": {"conditions": [
               {"type": "QuotaReserved", "status": "False", "reason": "Pending",
                "message": "couldn't assign flavors to pod set main: insufficient unused quota for cpu "
                           "in flavor default-flavor, 1 more needed"}]}}
ADMITTED = {"metadata": {"name": "job-aug-demo-worker-1a2b3", "creationTimestamp": iso(1)},
            "status": {"conditions": [
                {"type": "QuotaReserved", "status": "True", "reason": "QuotaReserved", "message": "Quota reserved"},
                {"type": "Admitted", "status": "True", "reason": "Admitted", "message": "The workload is admitted"}]}}


def queued_status():
    h = History()
    h.start(JOB_ID, iso(0), at(0))
    return h.status


def held(created=1):
    return replace(job(created=created, active=0), suspended=True, queue=QUEUE)


# -- the Job --------------------------------------------------------------------------------------------
def rendered(config):
    c = cr()
    spec = AugmentationJobSpec.model_validate(c["spec"])
    return render_job(c, spec, JOB_ID, config, select_pool(config, spec.augmentation_type))


def test_a_pool_with_a_local_queue_labels_the_job_and_creates_it_suspended():
    body = rendered(CFG)
    assert body["metadata"]["labels"][kueue.LABEL_QUEUE_NAME] == QUEUE
    assert body["spec"]["suspend"] is True
    # Kueue reads the Job's label; the pods carry none of it (nothing else selects on it)
    assert kueue.LABEL_QUEUE_NAME not in body["spec"]["template"]["metadata"]["labels"]
    view = summarize_job(body)
    assert view.suspended and view.queue == QUEUE


def test_a_pool_without_a_queue_renders_the_job_as_before():
    body = rendered(PLAIN)
    assert kueue.LABEL_QUEUE_NAME not in body["metadata"]["labels"]
    assert "suspend" not in body["spec"]
    assert not summarize_job(body).suspended


@pytest.mark.parametrize("bad", ["Roboaug", "a_b", "-x", "x" * 64])
def test_a_queue_name_that_is_no_dns_label_is_refused_naming_the_field(bad):
    with pytest.raises(ConfigError, match=r"pools\.cpu\.kueue_queue"):
        parse_config({"pools": {"cpu": {"kueue_queue": bad}, "gpu": {}}})


# -- what the Workload says -------------------------------------------------------------------------------
def test_the_workload_summary_gives_kueues_reason():
    wl = kueue.summarize_workload(PENDING)
    assert (wl.admitted, wl.reason, wl.name) == (False, "Pending", "job-aug-demo-worker-1a2b3")
    assert "insufficient unused quota for cpu" in wl.message
    assert kueue.summarize_workload(ADMITTED).admitted
    assert kueue.summarize_workload(ADMITTED).message is None
    evicted = {"status": {"conditions": [*ADMITTED["status"]["conditions"],
                                         {"type": "Evicted", "status": "True", "reason": "Preempted",
                                          "message": "Preempted to accommodate a higher priority Workload"}]}}
    assert kueue.summarize_workload(evicted).reason == "Preempted"
    checks = {"status": {"conditions": [ADMITTED["status"]["conditions"][0],
                                        {"type": "Admitted", "status": "False", "reason": "Pending",
                                         "message": "The workload has not all checks ready"}]}}
    assert kueue.summarize_workload(checks).message == "The workload has not all checks ready"
    assert kueue.summarize_workload({}).message == "Kueue has not looked at the Workload yet"


def test_the_newest_live_workload_of_the_job_counts():
    old = {"metadata": {"name": "a", "creationTimestamp": iso(1), "deletionTimestamp": iso(5)}, **ADMITTED}
    new = {**PENDING, "metadata": {"name": "b", "creationTimestamp": iso(2)}}
    assert kueue.pick_workload([old, new]).name == "b"
    assert kueue.pick_workload([]) is None


# -- decide() -----------------------------------------------------------------------------------------------
def test_a_new_job_on_a_queued_pool_creates_its_job_suspended():
    plan = decide(Observed(cr=cr(), now=at(1)), CFG)
    assert plan.create_job["spec"]["suspend"] is True


def test_a_suspended_job_stays_queued_with_kueues_reason_and_never_times_out():
    wl = kueue.summarize_workload(PENDING)
    c = cr(status=queued_status())
    # far past the 60 s pending timeout, with no pod at all: still queued, not failed
    plan = decide(Observed(cr=c, job=held(), workload=wl, now=at(3600)), CFG)
    st = plan.new_status
    assert (st["status"], st["current_phase"]) == ("queued", "queued") and plan.finished is None
    said = [e for e in st["phases"][-1]["events"] if e["status"] == "waiting_for_admission"]
    assert len(said) == 1
    assert f"LocalQueue {QUEUE}" in said[0]["message"]
    assert "insufficient unused quota for cpu in flavor default-flavor" in said[0]["message"]
    assert said[0]["data"] == {"queue": QUEUE, "workload": wl.name, "kueue_reason": "Pending"}
    assert ("Normal", "WaitingForAdmission", said[0]["message"]) in plan.events
    assert plan.requeue_after == kueue.REQUEUE_SECONDS
    assert st["job_name"] == "aug-demo-worker"

    # the same words again: no new event; new words: one more
    c2 = cr(status=st)
    again = decide(Observed(cr=c2, job=held(), workload=wl, now=at(3610)), CFG)
    assert again.events == [] and again.new_status["current_phase"] == "queued"
    other = replace(wl, message="LocalQueue roboaug-cpu is stopped")
    changed = decide(Observed(cr=c2, job=held(), workload=other, now=at(3620)), CFG)
    said = [e for e in changed.new_status["phases"][-1]["events"] if e["status"] == "waiting_for_admission"]
    assert [e["message"].rsplit(": ", 1)[-1] for e in said] == [wl.message.rsplit(": ", 1)[-1],
                                                                "LocalQueue roboaug-cpu is stopped"]


def test_without_a_workload_yet_or_with_an_unreadable_one_the_job_still_waits():
    plan = decide(Observed(cr=cr(status=queued_status()), job=held(), now=at(3600)), CFG)
    assert plan.new_status["current_phase"] == "queued"
    assert kueue.NO_WORKLOAD in plan.new_status["phases"][-1]["events"][-1]["message"]
    plan = decide(Observed(cr=cr(status=queued_status()), job=held(), now=at(3600),
                           workload_error="workloads.kueue.x-k8s.io is forbidden"), CFG)
    assert plan.new_status["current_phase"] == "queued"
    assert "is forbidden" in plan.new_status["phases"][-1]["events"][-1]["message"]


def test_a_job_without_a_queue_still_fails_on_the_pending_timeout():
    # the guard: the same observation without Kueue's suspension times out as before
    plan = decide(Observed(cr=cr(status=queued_status()), job=job(created=1, active=0), now=at(3600)), CFG)
    assert plan.new_status["status"] == "failed"
    assert "no node could run the worker within 60s" in plan.new_status["error"]


def test_once_kueue_unsuspends_the_job_the_normal_phases_go_on():
    wl = kueue.summarize_workload(PENDING)
    st = decide(Observed(cr=cr(status=queued_status()), job=held(), workload=wl, now=at(100)), CFG).new_status
    admitted = replace(held(), suspended=False)
    plan = decide(Observed(cr=cr(status=st), job=admitted, pods=[pod(created=110)], now=at(110)), CFG)
    assert plan.new_status["current_phase"] == "scheduling"
    # and from now on the pending timeout counts from the pod, as for any job
    plan = decide(Observed(cr=cr(status=plan.new_status), job=admitted, pods=[pod(created=110)],
                           now=at(110 + 61)), CFG)
    assert plan.new_status["status"] == "failed"
    running = decide(Observed(cr=cr(status=st), job=admitted,
                              pods=[pod(created=110, phase="Running", node="cpu-0")], now=at(111)), CFG)
    assert running.new_status["current_phase"] == "downloading"


def test_the_pending_timeout_of_an_admitted_job_counts_from_its_admission():
    # held for an hour, admitted (unsuspended: startTime) a moment ago, no pod yet: not failed
    st = decide(Observed(cr=cr(status=queued_status()), job=held(), now=at(3000)), CFG).new_status
    just = decide(Observed(cr=cr(status=st), job=replace(held(), suspended=False), now=at(3600)), CFG)
    assert just.new_status["status"] == "queued"  # unsuspended, no startTime yet: just admitted
    admitted = replace(held(), suspended=False, started=iso(3600))
    plan = decide(Observed(cr=cr(status=st), job=admitted, now=at(3605)), CFG)
    assert plan.new_status["status"] == "queued" and plan.requeue_after == 55
    plan = decide(Observed(cr=cr(status=st), job=admitted, now=at(3661)), CFG)
    assert plan.new_status["status"] == "failed"


def test_a_cancel_of_a_held_job_deletes_its_job():
    c = cr(spec={"cancel_requested": True}, status=queued_status())
    plan = decide(Observed(cr=c, job=held(), workload=kueue.summarize_workload(PENDING), now=at(5)), CFG)
    assert plan.new_status["status"] == "cancelled" and plan.delete_job == "aug-demo-worker"


def test_admission_events_are_bounded():
    st = queued_status()
    for i in range(40):
        wl = kueue.WorkloadView(name="w", admitted=False, reason="Pending", message=f"{i} more needed")
        st = decide(Observed(cr=cr(status=st), job=held(), workload=wl, now=at(10 + i)), CFG).new_status
    said = [e for e in st["phases"][-1]["events"] if e["status"] == "waiting_for_admission"]
    assert len(said) == 20  # steps.MAX_ADMISSION_EVENTS


def test_the_held_text_for_an_admitted_workload_still_suspended():
    wl = kueue.summarize_workload(ADMITTED)
    assert "waiting for Kueue to unsuspend" in kueue.held_text(QUEUE, wl)


# -- a project's own LocalQueue ------------------------------------------------------------------------------
TEAM = "team-a"


def project(**spec):
    return {"metadata": {"name": "p"}, "spec": {"allowed_sources": ["*"], "allowed_outputs": ["*"], **spec}}


def created(config, c=None, **obs):
    return decide_checked(c or cr(), config, 1.0, **obs).create_job


def queue_of(body):
    return body["metadata"]["labels"].get(kueue.LABEL_QUEUE_NAME), body["spec"].get("suspend")


def test_a_projects_queue_labels_and_suspends_its_jobs_on_a_pool_without_one():
    assert queue_of(created(PLAIN, project=project(kueue_queue=TEAM))) == (TEAM, True)
    assert queue_of(created(PLAIN, project=project())) == (None, None)  # neither names one: no Kueue


def test_the_projects_queue_wins_over_the_pools():
    assert queue_of(created(CFG, project=project(kueue_queue=TEAM))) == (TEAM, True)
    assert queue_of(created(CFG, project=project())) == (QUEUE, True)  # no project queue: the pool's
    assert queue_of(created(CFG)) == (QUEUE, True)                      # no project at all: the pool's
    # the one rule every Job goes through
    pool = CFG.pools["cpu"]
    assert (job_queue(pool, TEAM), job_queue(pool, None), job_queue(PLAIN.pools["cpu"], None)) == (TEAM, QUEUE, None)


def test_a_sharded_jobs_shards_finalize_and_cleanup_jobs_go_to_the_projects_queue():
    cfg = parse_config({"backoff_limit": 2, "pending_timeout_seconds": 60, "routing": {"deterministic": "cpu"}})
    team = project(kueue_queue=TEAM)
    c = cr(spec={"shards": 3})
    plan = decide_checked(c, cfg, 1.0, project=team)
    assert queue_of(plan.create_job) == (TEAM, True) and plan.create_job["spec"]["completionMode"] == "Indexed"
    c = applied(c, plan)
    # the shards done: the project is not read while their Job exists (controller), so the
    # finalize Job takes its queue from the shards' Job
    shards_job = replace(job(complete=True, active=0), succeeded=3, stage="shard", queue=TEAM)
    done = [replace(pod(name=f"aug-demo-worker-{i}-x", phase="Succeeded", node="cpu-0"), index=i) for i in range(3)]
    fin = decide_checked(c, cfg, 2.0, job=shards_job, pods=done, node_labels=CPU_NODE).create_job
    assert fin["metadata"]["name"] == "aug-demo-finalize" and queue_of(fin) == (TEAM, True)
    # cancelled: the cleanup Job (made once the others are gone; the project is read again then)
    c["spec"]["cancel_requested"] = True
    c = applied(c, decide_checked(c, cfg, 3.0, job=replace(shards_job, complete=False, active=1), project=team))
    cleanup = decide_checked(c, cfg, 4.0, project=team).create_job
    assert cleanup["metadata"]["name"] == "aug-demo-cleanup" and queue_of(cleanup) == (TEAM, True)


def test_a_job_held_in_its_projects_queue_waits_queued_and_never_times_out():
    wl = kueue.summarize_workload(PENDING)
    in_team = replace(job(created=1, active=0), suspended=True, queue=TEAM)
    plan = decide(Observed(cr=cr(status=queued_status()), job=in_team, workload=wl, now=at(3600)), PLAIN)
    assert plan.new_status["status"] == "queued" and plan.finished is None
    said = plan.new_status["phases"][-1]["events"][-1]
    assert said["status"] == "waiting_for_admission" and f"LocalQueue {TEAM}" in said["message"]


def test_a_project_naming_no_valid_queue_fails_its_job_naming_the_field():
    plan = decide_checked(cr(), PLAIN, 1.0, project=project(kueue_queue="Team_A"))
    assert plan.finished == "failed" and not plan.create_job
    assert "kueue_queue" in plan.new_status["error"] and "DNS-1123 label" in plan.new_status["error"]
