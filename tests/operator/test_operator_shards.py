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


def test_frame_counts_wait_for_the_write_budget_but_shard_completions_do_not():
    c = sharded(3)
    pods = [spod(0, phase="Succeeded"), spod(1), spod(2)]
    reports = {i: report(p, 10, 100) for i, p in enumerate(pods)}
    plan = run(c, job=shard_job(succeeded=1), pods=pods, shard_reports=reports, progress_due=False,
               progress_wait=0.4, node_labels=CPU_NODE)
    s = plan.new_status["shards"]
    assert s["done"] == 1 and "frames_done" not in s
    assert plan.requeue_after == 0.4  # the sum is written when the budget allows
    due = run(c, job=shard_job(succeeded=1), pods=pods, shard_reports=reports, node_labels=CPU_NODE)
    assert due.new_status["shards"]["frames_done"] == 120


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


def test_the_projects_max_parallelism_is_a_ceiling_on_the_shards_running_at_once():
    project = {"spec": {"allowed_sources": ["*"], "allowed_outputs": ["*"], "limits": {"max_parallelism": 2}}}
    plan = run(cr(spec={"shards": 6}), project=project)
    assert plan.create_job["spec"]["parallelism"] == 2 and plan.new_status["shards"]["parallelism"] == 2
    assert plan.finished is None  # a ceiling, not a refusal


def test_a_shards_input_warnings_become_warning_events():
    c = sharded(2)
    pods = [spod(0), spod(1)]
    c["status"]["progress"] = {**report(pods[1], 1, 10), "warnings": ["episode 7: stats differ from the data"]}
    plan = run(c, job=shard_job(), pods=pods, node_labels=CPU_NODE)
    assert ("Warning", "InputWarning", "episode 7: stats differ from the data") in plan.events
