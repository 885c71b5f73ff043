"""Sharded jobs, decided without a cluster (issue 16 items 1 and 4, operator side): the Indexed
Job's fields, the one-pod run's SHARD_PLAN, one shard's permanent failure, the finalize Job,
cancel and cleanup, progress summed over the shards and its write budget."""
import copy
import dataclasses

from roboaug.api import joblogs
from roboaug.api.contract import PERMANENT_EXIT_CODES, ShardPlan, error_line, ExitCode, plan_line
from roboaug.operator.config import parse_config
from roboaug.operator.shards import WriteBudget, aggregate

from tests.operator._operator_factories import applied, decide_checked, CPU_NODE, at, cr, iso, job, pod

CFG = parse_config({"backoff_limit": 2, "pending_timeout_seconds": 60,
                    "pools": {"cpu": {"max_parallelism": 4}}, "routing": {"deterministic": "cpu"}})



def run(c, now=1.0, **obs):
    return decide_checked(c, CFG, now, **obs)


def env(j):
    return {e["name"]: e.get("value") for e in j["spec"]["template"]["spec"]["containers"][0]["env"]}


def shard_job(complete=False, succeeded=0, failed=0, failed_condition=None, stage="shard", name="aug-demo-worker",
              active=1):
    return dataclasses.replace(job(name=name, complete=complete, failed=failed, failed_condition=failed_condition,
                                   active=active), succeeded=succeeded, stage=stage)


def spod(index, phase="Running", created=2, exit_code=None, exit_message=None, attempt="abcde", job_uid="job-uid-1"):
    p = pod(name=f"aug-demo-worker-{index}-{attempt}", created=created, phase=phase, node="cpu-0",
            exit_code=exit_code, exit_message=exit_message)
    return dataclasses.replace(p, index=index, job_uid=job_uid)


def started(c, **obs):
    """`c` after its first decision (accepted, effective spec settled)."""
    return applied(c, run(c, **obs))


def sharded(count=3, source="spec", **spec):
    c = cr(spec={"shards": count, **spec} if source == "spec" else spec)
    c = started(c)
    if source != "spec":
        c["status"]["shards"] = {"count": count, "source": source, "parallelism": min(count, 4)}
    return c


# -- the Indexed Job ---------------------------------------------------------------------------
def test_spec_shards_make_an_indexed_job_bounded_by_the_job_and_the_pool():
    plan = run(cr(spec={"shards": 7, "max_parallelism": 5}))
    j = plan.create_job
    s = j["spec"]
    assert j["metadata"]["name"] == "aug-demo-worker"
    assert (s["completionMode"], s["completions"], s["parallelism"]) == ("Indexed", 7, 4)  # the pool's 4 wins
    assert s["backoffLimitPerIndex"] == 2 and s["maxFailedIndexes"] == 0 and "backoffLimit" not in s
    rule = s["podFailurePolicy"]["rules"][0]
    assert rule["action"] == "FailIndex"
    assert set(rule["onExitCodes"]["values"]) == {int(c) for c in PERMANENT_EXIT_CODES}
    assert s["podFailurePolicy"]["rules"][1]["onPodConditions"][0]["type"] == "DisruptionTarget"
    e = env(j)
    assert e["ROBOAUG_STAGE"] == "shard" and e["ROBOAUG_SHARDS"] == "7" and "JOB_COMPLETION_INDEX" not in e
    assert plan.new_status["shards"] == {"count": 7, "source": "spec", "parallelism": 4}
    assert run(cr(spec={"shards": 7, "max_parallelism": 2})).create_job["spec"]["parallelism"] == 2
    assert run(cr(spec={"shards": 3})).create_job["spec"]["parallelism"] == 3


def test_the_decision_after_the_job_was_created_writes_the_spec_shards_too():
    # the controller decides again with the Job it made; that decision's status is written
    plan = run(cr(spec={"shards": 3}), job=shard_job(active=0), pods=[])
    s = plan.new_status["shards"]
    assert (s["count"], s["source"], s["parallelism"], s["done"]) == (3, "spec", 3, 0)
    assert not plan.delete_job and plan.new_status["current_phase"] == "scheduling"


def test_unset_shards_is_one_pod_that_may_plan_and_one_shard_is_one_pod_that_may_not():
    j = run(cr()).create_job
    assert (j["spec"]["completions"], j["spec"]["parallelism"]) == (1, 1)
    assert "ROBOAUG_STAGE" not in env(j) and "ROBOAUG_SHARDS" not in env(j)
    assert int(ExitCode.SHARD_PLAN) in j["spec"]["podFailurePolicy"]["rules"][0]["onExitCodes"]["values"]
    one = run(cr(spec={"shards": 1})).create_job
    assert env(one)["ROBOAUG_SHARDS"] == "1" and one["spec"]["completions"] == 1
    assert "shards" not in run(cr(spec={"shards": 1})).new_status


def plan_message(shards=4):
    msg, fields = plan_line(ShardPlan(shards=shards, units=40, frames=1_000_000))
    return joblogs.render("info", msg, **fields)


def test_a_shard_plan_exit_replaces_the_one_pod_job_by_the_indexed_job():
    c = started(cr(), job=job(), pods=[])
    planned = spod(0, phase="Failed", exit_code=20, exit_message=plan_message(4))
    single = dataclasses.replace(job(failed=1, failed_condition={"reason": "PodFailurePolicy", "message": "x"}),
                                 stage=None)
    plan = run(c, job=single, pods=[planned], node_labels=CPU_NODE)
    assert plan.new_status["shards"] == {"count": 4, "source": "auto", "parallelism": 4}
    assert plan.delete_job == "aug-demo-worker" and plan.finished is None
    assert plan.new_status["status"] != "failed" and plan.new_status.get("attempt", 0) == 0
    assert not plan.create_job
    c = applied(c, plan)
    # the delete did not happen (the operator restarted): the one-pod Job is deleted again
    again = run(c, job=single, pods=[planned])
    assert again.delete_job == "aug-demo-worker" and not again.create_job and again.finished is None
    # the one-pod Job on its way out: wait; once gone, the Indexed Job with the plan's count
    waiting = run(c, job=dataclasses.replace(single, deleting=True), pods=[planned])
    assert waiting.requeue_after and not waiting.create_job and not waiting.delete_job
    indexed = run(c).create_job
    assert indexed["spec"]["completions"] == 4 and env(indexed)["ROBOAUG_STAGE"] == "shard"


def test_a_shard_plan_exit_without_a_plan_fails_the_job():
    c = started(cr())
    bad = spod(0, phase="Failed", exit_code=20, exit_message="no plan here")
    plan = run(c, job=dataclasses.replace(job(failed=1), stage=None), pods=[bad])
    assert plan.finished == "failed" and "without a plan" in plan.new_status["error"]


# -- failures -----------------------------------------------------------------------------------
def test_one_shards_permanent_failure_fails_the_job_naming_the_shard():
    c = sharded(5)
    line = joblogs.render("error", error_line(ExitCode.CORRUPT_VIDEO, "videos/x.mp4: moov atom not found"))
    pods = [spod(0, phase="Succeeded"), spod(3, phase="Failed", exit_code=12, exit_message=line), spod(4)]
    plan = run(c, job=shard_job(failed=1), pods=pods, node_labels=CPU_NODE)
    assert plan.finished == "failed"
    err = plan.new_status["error"]
    assert err.startswith("shard 3 of 5 failed for good") and "moov atom not found" in err
    assert plan.delete_job == "aug-demo-worker"  # every shard stops
    assert plan.new_status["shards"]["cleanup"] == "pending"


def test_a_shard_out_of_retries_fails_the_job_naming_it():
    c = sharded(3)
    pods = [spod(1, phase="Failed", exit_code=75, attempt=a, created=i + 2) for i, a in enumerate("abc")]
    plan = run(c, job=shard_job(failed=3, failed_condition={"reason": "MaxFailedIndexesExceeded", "message": "m"}),
               pods=pods + [spod(0)], node_labels=CPU_NODE)
    assert plan.finished == "failed" and plan.new_status["error"].startswith("shard 1 of 3 failed 3 times")


# -- finalize -----------------------------------------------------------------------------------
def test_finalize_starts_only_after_every_shard_and_the_job_completes_with_it():
    c = sharded(3)
    two = [spod(0, phase="Succeeded"), spod(1, phase="Succeeded"), spod(2)]
    plan = run(c, job=shard_job(succeeded=2), pods=two, node_labels=CPU_NODE)
    assert not plan.create_job and plan.finished is None and plan.new_status["shards"]["done"] == 2
    c = applied(c, plan)
    done = [dataclasses.replace(p, phase="Succeeded") for p in two]
    plan = run(c, job=shard_job(complete=True, succeeded=3), pods=done, node_labels=CPU_NODE)
    fin = plan.create_job
    assert fin["metadata"]["name"] == "aug-demo-finalize" and plan.finished is None
    assert env(fin)["ROBOAUG_STAGE"] == "finalize" and env(fin)["ROBOAUG_SHARDS"] == "3"
    assert (fin["spec"]["completions"], fin["spec"]["backoffLimit"]) == (1, 2)
    worker = run(sharded(3)).create_job["spec"]["template"]["spec"]
    assert fin["spec"]["template"]["spec"]["serviceAccountName"] == worker["serviceAccountName"]
    assert fin["spec"]["template"]["spec"]["containers"][0]["image"] == worker["containers"][0]["image"]
    c = applied(c, plan)
    assert c["status"]["shards"]["stage"] == "finalize"
    fin_job = shard_job(name="aug-demo-finalize", stage="finalize")
    running = run(c, job=shard_job(complete=True, succeeded=3), pods=done, finalize=fin_job, node_labels=CPU_NODE)
    assert running.finished is None and not running.create_job
    ok = run(c, job=shard_job(complete=True, succeeded=3), pods=done, node_labels=CPU_NODE,
             finalize=dataclasses.replace(fin_job, complete=True, succeeded=1, active=0))
    assert ok.finished == "completed" and ok.new_status["augmented_dataset_id"].startswith("lerobot/pusht-augmented-")


def test_a_failed_finalize_fails_the_job():
    c = sharded(2)
    done = [spod(0, phase="Succeeded"), spod(1, phase="Succeeded")]
    fin = shard_job(name="aug-demo-finalize", stage="finalize", failed_condition={"reason": "BackoffLimitExceeded",
                                                                                   "message": "m"})
    plan = run(c, job=shard_job(complete=True, succeeded=2), pods=done, finalize=fin, node_labels=CPU_NODE)
    assert plan.finished == "failed" and plan.new_status["error"].startswith("finalize failed")


def finalizing(count=2):
    """A sharded job whose shards all succeeded and whose finalize Job exists (`fin` kwargs)."""
    c = sharded(count)
    done = [spod(i, phase="Succeeded") for i in range(count)]
    return c, dict(job=shard_job(complete=True, succeeded=count), pods=done, node_labels=CPU_NODE)


def test_a_finalize_pod_that_never_starts_fails_the_job_at_the_pending_timeout():
    c, obs = finalizing()
    fin = dataclasses.replace(shard_job(name="aug-demo-finalize", stage="finalize"), uid="fin-uid")
    stuck = dataclasses.replace(pod(name="aug-demo-finalize-0-xyz", created=10, unschedulable="0/3 nodes are available"),
                                job_uid="fin-uid", index=0)
    early = run(c, now=40, finalize=fin, finalize_pods=[stuck], **obs)
    assert early.finished is None and 29 <= early.requeue_after <= 31  # the 60 s budget from the pod's creation
    assert ("Warning", "Unschedulable", "0/3 nodes are available") in early.events
    c = applied(c, early)
    late = run(c, now=71, finalize=fin, finalize_pods=[stuck], **obs)
    assert late.finished == "failed" and late.delete_also == ["aug-demo-finalize"]
    assert late.new_status["error"] == "finalize: no node could run the worker within 60s: 0/3 nodes are available"
    assert late.new_status["shards"]["cleanup"] == "pending"  # the staging area goes too
    # a container that cannot start (a missing Secret) gets the same budget
    bad = dataclasses.replace(stuck, node="cpu-0", waiting_reason="CreateContainerConfigError",
                              waiting_message='secret "hf" not found')
    assert run(c, now=71, finalize=fin, finalize_pods=[bad], **obs).new_status["error"].startswith(
        "finalize: the worker container did not start within 60s: CreateContainerConfigError")
    # no pod at all: counted from the finalize Job's creation
    assert run(c, now=62, finalize=fin, **obs).finished == "failed"
    # a finalize Job Kueue holds waits for its admission, never for the timeout
    held = dataclasses.replace(fin, suspended=True, queue="team-a", active=0)
    assert run(c, now=10_000, finalize=held, **obs).finished is None
    running = dataclasses.replace(stuck, node="cpu-0", phase="Running")
    assert run(c, now=10_000, finalize=fin, finalize_pods=[running], **obs).finished is None


# -- cancel and cleanup ---------------------------------------------------------------------------
def test_cancel_stops_the_shards_and_the_finalize_then_the_cleanup_pod_drops_the_staging():
    c = sharded(3)
    c["spec"]["cancel_requested"] = True
    plan = run(c, job=shard_job(), pods=[spod(0), spod(1)], node_labels=CPU_NODE)
    assert plan.finished == "cancelled" and plan.delete_job == "aug-demo-worker"
    fin = shard_job(name="aug-demo-finalize", stage="finalize")
    both = run(c, job=shard_job(complete=True, succeeded=3), finalize=fin, node_labels=CPU_NODE)
    assert both.finished == "cancelled" and both.delete_also == ["aug-demo-finalize"]
    c = applied(c, plan)
    assert c["status"]["shards"]["cleanup"] == "pending"
    # its Jobs still going: wait; once gone, one cleanup pod, and it is not made twice
    waiting = run(c, job=dataclasses.replace(shard_job(), deleting=True), pods=[spod(0)])
    assert not waiting.create_job and waiting.requeue_after
    cleanup = run(c).create_job
    assert cleanup["metadata"]["name"] == "aug-demo-cleanup" and env(cleanup)["ROBOAUG_STAGE"] == "cleanup"
    seen = run(c, cleanup=shard_job(name="aug-demo-cleanup", stage="cleanup"))
    assert not seen.create_job and seen.new_status["shards"]["cleanup"] == "started"


def cancelled_awaiting_cleanup():
    c = sharded(3)
    c["spec"]["cancel_requested"] = True
    return applied(c, run(c, job=shard_job(), pods=[spod(0)], node_labels=CPU_NODE))


def test_the_controller_creates_the_cleanup_job_of_a_job_whose_other_jobs_are_gone():
    """A cancelled job's shards' Job is gone when its cleanup Job is made: the controller must not
    read the (absent) worker Job for its log line (it raised after the create, so every later
    look failed too, 409 and all, until the cleanup Job's watch event came)."""
    import asyncio

    from roboaug.operator.controller import Controller
    from roboaug.operator.observe import summarize_cr

    kube = _Kube()
    kube.created = []

    def create_job(ns, body):
        kube.created.append(body["metadata"]["name"])
        return {**body, "metadata": {**body["metadata"], "uid": "cleanup-uid", "creationTimestamp": iso(2)}}

    kube.create_job = create_job
    ctl = Controller(CFG, kube, clock=lambda: at(3))
    ctl.bind({}, {}, {})
    key = ("ns1", "aug-demo")
    c = cancelled_awaiting_cleanup()
    kube.body = c
    ctl.crs[key] = [summarize_cr(c)]
    asyncio.run(ctl.poke(key, force=True))
    assert kube.created == ["aug-demo-cleanup"]
    assert kube.body["status"]["shards"]["cleanup"] == "started"


def cleanup_job(uid="cleanup-1", deleting=False, created=1, **kw):
    return dataclasses.replace(shard_job(name="aug-demo-cleanup", stage="cleanup", **kw), uid=uid,
                               deleting=deleting, created=iso(created))


def test_a_failed_cleanup_is_recorded_and_started_again_at_most_three_times():
    c = cancelled_awaiting_cleanup()
    failed = {"reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}
    for attempt in (1, 2, 3):
        assert run(c).create_job["metadata"]["name"] == "aug-demo-cleanup"
        uid = f"cleanup-{attempt}"
        c = applied(c, run(c, cleanup=cleanup_job(uid)))  # the decision that sees the Job it made
        assert (c["status"]["shards"]["cleanup"], c["status"]["shards"]["cleanup_attempts"]) == ("started", attempt)
        gone_wrong = run(c, cleanup=cleanup_job(uid, failed_condition=failed, active=0),
                         cleanup_pods=[pod(name=f"aug-demo-cleanup-0-{attempt}", phase="Failed", node="cpu-0",
                                           exit_code=75, exit_message="roboaug-worker: error[75 network]: hub down")])
        s = gone_wrong.new_status["shards"]
        assert "hub down" in s["cleanup_error"]
        [warning] = [e for e in gone_wrong.events if e[1] == "CleanupFailed"]
        assert warning[0] == "Warning" and (attempt == 3 or f"attempt {attempt} of at most 3" in warning[2])
        assert gone_wrong.new_status["phases"][-1]["events"][-1]["status"] == "cleanup_failed"
        c = applied(c, gone_wrong)
        if attempt < 3:
            assert s["cleanup"] == "retrying" and gone_wrong.delete_also == ["aug-demo-cleanup"]
            # on its way out: no second Job yet, and it is not counted again
            waiting = run(c, cleanup=cleanup_job(uid, failed_condition=failed, active=0, deleting=True))
            assert not waiting.create_job and waiting.new_status["shards"]["cleanup_attempts"] == attempt
    assert s["cleanup"] == "failed" and not gone_wrong.delete_also  # kept, with its pod's logs
    assert "roboaug-staging-" in warning[2] and "left behind" in warning[2]
    assert not run(c).create_job and not run(c, cleanup=cleanup_job("cleanup-3", failed_condition=failed)).events


def test_a_cleanup_pod_that_never_starts_counts_as_a_failed_attempt_and_one_that_succeeds_is_done():
    c = cancelled_awaiting_cleanup()
    c = applied(c, run(c, cleanup=cleanup_job(created=5)))
    stuck = pod(name="aug-demo-cleanup-0-a", created=5, unschedulable="0/3 nodes are available")
    assert run(c, now=30, cleanup=cleanup_job(created=5), cleanup_pods=[stuck]).new_status["shards"]["cleanup"] \
        == "started"
    timed_out = run(c, now=66, cleanup=cleanup_job(created=5), cleanup_pods=[stuck])
    assert timed_out.new_status["shards"]["cleanup"] == "retrying"
    assert timed_out.new_status["shards"]["cleanup_error"].startswith("no node could run the worker within 60s")
    assert timed_out.delete_also == ["aug-demo-cleanup"]
    c = applied(c, run(c, cleanup=cleanup_job("cleanup-2")))
    ok = run(c, cleanup=cleanup_job("cleanup-2", complete=True, active=0))
    assert ok.new_status["shards"]["cleanup"] == "done" and not ok.create_job and not ok.delete_also
    assert not run(applied(c, ok)).create_job  # done is done


def test_a_completed_sharded_job_needs_no_cleanup():
    c = sharded(2)
    done = [spod(0, phase="Succeeded"), spod(1, phase="Succeeded")]
    fin = dataclasses.replace(shard_job(name="aug-demo-finalize", stage="finalize"), complete=True, succeeded=1)
    plan = run(c, job=shard_job(complete=True, succeeded=2), pods=done, finalize=fin, node_labels=CPU_NODE)
    assert plan.finished == "completed" and "cleanup" not in plan.new_status["shards"]


# -- progress ---------------------------------------------------------------------------------
def report(p, done, total, phase="augmenting"):
    return {"pod": p.name, "phase": phase, "frames_done": done, "frames_total": total, "updated_at": iso(2)}


def test_progress_is_summed_over_the_current_pod_of_each_shard():
    old = spod(1, phase="Failed", exit_code=75, attempt="old", created=2)
    pods = [spod(0, phase="Succeeded"), old, spod(1, attempt="new", created=3), spod(2)]
    reports = {0: report(pods[0], 100, 100), 1: report(old, 90, 100), 2: report(pods[3], 30, 120)}
    agg = aggregate(pods, reports)
    # index 1's report is its failed attempt's: a retry starts again, so it does not count
    assert (agg.done, agg.frames_done, agg.frames_total) == (1, 130, 220)
    reports[1] = report(pods[2], 10, 100)
    assert aggregate(pods, reports).frames_done == 140
    c = sharded(3)
    c["status"]["progress"] = reports[2]
    plan = run(c, job=shard_job(succeeded=1), pods=pods, shard_reports=reports, node_labels=CPU_NODE)
    s = plan.new_status["shards"]
    assert (s["done"], s["frames_done"], s["frames_total"]) == (1, 140, 320)
    assert plan.new_status["current_phase"] == "augmenting" and plan.new_status["progress_percent"] == 43


def test_frame_counts_and_shard_completions_wait_for_the_write_budget_but_the_last_shard_does_not():
    c = sharded(3)
    pods = [spod(0, phase="Succeeded"), spod(1), spod(2)]
    reports = {i: report(p, 10, 100) for i, p in enumerate(pods)}
    plan = run(c, job=shard_job(succeeded=1), pods=pods, shard_reports=reports, progress_due=False,
               progress_wait=0.4, node_labels=CPU_NODE)
    s = plan.new_status["shards"]
    assert "done" not in s and "frames_done" not in s
    assert plan.requeue_after == 0.4  # the sum is written when the budget allows
    due = run(c, job=shard_job(succeeded=1), pods=pods, shard_reports=reports, node_labels=CPU_NODE)
    assert due.new_status["shards"]["frames_done"] == 120 and due.new_status["shards"]["done"] == 1
    # every shard done changes the whole job: written at once (finalize starts), budget or not
    done = [spod(i, phase="Succeeded") for i in range(3)]
    last = run(c, job=shard_job(complete=True, succeeded=3, active=0), pods=done, shard_reports=reports,
               progress_due=False, progress_wait=0.4, node_labels=CPU_NODE)
    assert last.new_status["shards"]["done"] == 3 and last.new_status["shards"]["stage"] == "finalize"
    assert last.create_job is not None


def test_the_write_budget_bounds_writes_per_second_whatever_the_report_rate():
    budget = WriteBudget(per_second=2.0)
    written = 0
    for tick in range(10_000):  # 10,000 shard reports over 10 s
        now = tick / 1000
        if budget.due(now):
            budget.spent(now)
            written += 1
    assert written == 20
    assert budget.wait(9.9995) > 0 and budget.wait(10.5) == 0


def test_the_controller_keeps_each_shards_last_report_from_its_own_pods_only():
    from roboaug.operator.shards import remember
    pods = [spod(0), spod(1)]
    kept: dict = {}
    assert remember(kept, report(pods[1], 5, 50), pods)
    assert not remember(kept, {"pod": "someone-else", "frames_done": 9}, pods)
    assert not remember(kept, None, pods)
    assert kept == {1: {"pod": pods[1].name, "frames_done": 5, "frames_total": 50}}


class _Kube:
    """Just what the controller calls for a running sharded job; counts status writes."""

    def __init__(self):
        self.writes: list[dict] = []
        self.rv = 200

    def patch_cr_status(self, ns, name, status, rv):
        self.writes.append(status)
        self.rv += 1
        body = copy.deepcopy(self.body)
        body["metadata"]["resourceVersion"] = str(self.rv)
        body["status"] = {**body["status"], **{k: v for k, v in status.items() if v is not None}}
        self.body = body
        return body

    def post_event(self, *a):
        pass

    def node_labels(self, name):
        return CPU_NODE["cpu-0"]

    def get_project(self, ns, name):
        return None

    def ensure_same(self, ns, body):  # the workers' identity (access.py): there already
        return None


def test_the_controller_writes_the_shards_progress_at_most_once_a_second_per_job():
    import asyncio

    from roboaug.operator.controller import Controller
    from roboaug.operator.observe import summarize_cr

    clock = {"t": 10.0}
    kube = _Kube()
    ctl = Controller(CFG, kube, clock=lambda: at(clock["t"]))
    ctl.bind({}, {}, {})
    key = ("ns1", "aug-demo")
    pods = [spod(i) for i in range(20)]
    c = sharded(20)
    kube.body = c
    ctl.jobs[key] = [shard_job()]
    ctl.pods[key] = pods

    async def scenario():
        # 20 shards each report every 0.1 s for 5 s: 1,000 reports, each a CR watch event
        for tick in range(50):
            for i, p in enumerate(pods):
                body = copy.deepcopy(kube.body)
                kube.rv += 1
                body["metadata"]["resourceVersion"] = str(kube.rv)
                body["status"]["progress"] = report(p, tick + 1, 100)
                kube.body = body
                ctl.crs[key] = [summarize_cr(body)]
                await ctl.poke(key)
            clock["t"] += 0.1

    asyncio.run(scenario())
    frame_writes = [w for w in kube.writes if "frames_done" in (w.get("shards") or {})]
    assert 1 <= len(frame_writes) <= 6, len(frame_writes)  # 5 s at 1 write/s (+ the first)
    assert len(kube.writes) <= 8, [sorted(w) for w in kube.writes]
    assert kube.body["status"]["shards"]["frames_total"] == 2000


def test_the_controller_writes_shard_completions_within_the_same_budget_whatever_the_shard_count():
    import asyncio

    from roboaug.operator.controller import Controller
    from roboaug.operator.observe import summarize_cr

    clock = {"t": 10.0}
    kube = _Kube()
    ctl = Controller(CFG, kube, clock=lambda: at(clock["t"]))
    ctl.bind({}, {}, {})
    key = ("ns1", "aug-demo")
    count = 500
    pods = [spod(i) for i in range(count)]
    c = sharded(count)
    kube.body = c
    ctl.crs[key] = [summarize_cr(c)]
    ctl.jobs[key] = [shard_job()]
    ctl.pods[key] = list(pods)

    async def scenario():
        # 499 of 500 shards end over 5 s, each end a pod event and a look at the job
        for i in range(count - 1):
            pods[i] = dataclasses.replace(pods[i], phase="Succeeded")
            ctl.pods[key] = list(pods)
            ctl.jobs[key] = [shard_job(succeeded=i + 1)]
            ctl.crs[key] = [summarize_cr(kube.body)]
            await ctl.poke(key)
            clock["t"] += 5.0 / count

    asyncio.run(scenario())
    done_writes = [w for w in kube.writes if "done" in (w.get("shards") or {})]
    assert 1 <= len(done_writes) <= 6, len(done_writes)  # 5 s at 1 write/s (+ the first)
    assert len(kube.writes) <= 8, [sorted(w) for w in kube.writes]
    assert kube.body["status"]["current_phase"] == "downloading"

    async def later():  # the look again the budget asked for writes the last count
        clock["t"] += 1.0
        ctl.crs[key] = [summarize_cr(kube.body)]
        await ctl.poke(key, force=True)  # the timer's poke

    asyncio.run(later())
    assert kube.body["status"]["shards"]["done"] == count - 1


def test_a_sharded_job_with_shards_running_or_done_is_past_scheduling_while_most_pods_are_pending():
    c = sharded(1000)
    c = applied(c, run(c, job=shard_job()))
    assert c["status"]["current_phase"] == "scheduling"
    # the newest pods are the pending ones (the job controller creates them as others end)
    running = [spod(i, created=2) for i in range(3)]
    pending = [dataclasses.replace(spod(i, phase="Pending", created=3), node=None) for i in range(3, 400)]
    plan = run(c, job=shard_job(active=400), pods=running + pending, node_labels=CPU_NODE)
    assert plan.new_status["current_phase"] == "downloading", plan.new_status["current_phase"]
    assert plan.new_status["instance_type"]
    # none runs at this moment, some are done (their pods may be gone): past scheduling too
    plan = run(c, job=shard_job(active=400, succeeded=1100), pods=pending, node_labels=CPU_NODE)
    assert plan.new_status["current_phase"] == "downloading"
    # nothing ran yet: still scheduling
    plan = run(c, job=shard_job(active=400), pods=pending, node_labels=CPU_NODE)
    assert plan.new_status["current_phase"] == "scheduling"


def test_the_projects_max_parallelism_is_a_ceiling_on_the_shards_running_at_once():
    project = {"spec": {"allowed_sources": ["*"], "allowed_outputs": ["*"], "limits": {"max_parallelism": 2}}}
    plan = run(cr(spec={"shards": 6}), project=project)
    assert plan.create_job["spec"]["parallelism"] == 2 and plan.new_status["shards"]["parallelism"] == 2
    assert plan.finished is None  # a ceiling, not a refusal


def test_the_projects_max_shards_refuses_a_larger_count_and_caps_the_automatic_plan():
    project = {"spec": {"allowed_sources": ["*"], "allowed_outputs": ["*"], "limits": {"max_shards": 3}}}
    refused = run(cr(spec={"shards": 4}), project=project)
    assert refused.finished == "failed" and not refused.create_job
    assert refused.new_status["error"] == ("shards: the job asks for 4 shards, more than the project's "
                                           "limits.max_shards (3)")
    assert run(cr(spec={"shards": 3}), project=project).create_job["spec"]["completions"] == 3
    # unset shards: the one pod that plans gets the cap; a fixed count needs none
    assert env(run(cr(), project=project).create_job)["ROBOAUG_MAX_SHARDS"] == "3"
    assert "ROBOAUG_MAX_SHARDS" not in env(run(cr(spec={"shards": 1}), project=project).create_job)
    assert "ROBOAUG_MAX_SHARDS" not in env(run(cr()).create_job)  # no project, no cap


def test_the_pools_frames_per_shard_goes_to_the_pod_that_plans_only():
    cfg = parse_config({"backoff_limit": 2, "pending_timeout_seconds": 60, "routing": {"deterministic": "cpu"},
                        "pools": {"cpu": {"max_parallelism": 4, "frames_per_shard": 5000}}})
    assert env(decide_checked(cr(), cfg, 1.0).create_job)["ROBOAUG_FRAMES_PER_SHARD"] == "5000"
    assert "ROBOAUG_FRAMES_PER_SHARD" not in env(decide_checked(cr(spec={"shards": 3}), cfg, 1.0).create_job)
    assert "ROBOAUG_FRAMES_PER_SHARD" not in env(run(cr()).create_job)  # unset: the worker's default


def test_a_shards_input_warnings_become_warning_events():
    c = sharded(2)
    pods = [spod(0), spod(1)]
    c["status"]["progress"] = {**report(pods[1], 1, 10), "warnings": ["episode 7: stats differ from the data"]}
    plan = run(c, job=shard_job(), pods=pods, node_labels=CPU_NODE)
    assert ("Warning", "InputWarning", "episode 7: stats differ from the data") in plan.events
