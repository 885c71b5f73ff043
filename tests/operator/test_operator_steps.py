"""The steps of decide(), one at a time: each on a Decision built from an observation, the way
decide() builds it; what decide() makes of them together is test_operator_reconcile.py."""
import json

import pytest

from roboaug.api.models import GENERATIVE_DISABLED_MESSAGE, AugmentationJobSpec
from roboaug.operator import steps
from roboaug.operator.config import parse_config
from roboaug.operator.decision import Decision, Observed
from roboaug.operator.phases import History, check, ts
from roboaug.operator.pools import select_pool
from roboaug.operator.reconcile import STEPS, decide, finish

from tests.operator._operator_factories import CPU_NODE, CR_UID, JOB_ID, PROJECT, at, cr, iso, job, pod

CFG = parse_config({"backoff_limit": 2, "pending_timeout_seconds": 60})


def iso0(seconds):
    """A time as the history writes it (milliseconds)."""
    return ts(at(seconds))


def history(*phases, now=0):
    """A status that went through `phases` after `queued` (the way the operator writes it)."""
    h = History()
    h.start(JOB_ID, iso(0), at(0))
    for name in phases:
        h.advance(name, at(now))
    return h.status


def decision(c=None, now=1.0, config=CFG, settled=True, **obs):
    """A Decision as the steps after `route` see it (spec parsed, pool chosen) when `settled`."""
    d = Decision.begin(Observed(cr=c or cr(), now=at(now), **obs), config)
    if settled:
        d.spec = AugmentationJobSpec.model_validate(d.spec_raw)
        d.choice = select_pool(config, d.spec.augmentation_type)
    return d


def events(d, status=None):
    return [e for e in d.h.current["events"] if status is None or e["status"] == status]


# -- decide() composes the steps -------------------------------------------------------------------
def test_a_step_that_completes_the_decision_stops_the_later_ones(monkeypatch):
    ran = []
    fake = [lambda d, i=i: ran.append(i) or i == 2 for i in range(5)]
    monkeypatch.setattr("roboaug.operator.reconcile.STEPS", tuple(fake))
    decide(Observed(cr=cr(), now=at(1)), CFG)
    assert ran == [0, 1, 2]


def test_the_spec_and_pool_are_settled_before_the_steps_that_read_them():
    order = [s.__name__ for s in STEPS]
    for reader in ("cancel", "route", "ensure_job", "placement", "completion", "pending_timeout"):
        assert order.index("validate") < order.index(reader)
    for reader in ("ensure_job", "placement"):
        assert order.index("route") < order.index(reader)
    assert order.index("settle") < order.index("accept") < order.index("validate")
    # the project (validate) and a refusal (route) come before a slot is taken
    assert order.index("route") < order.index("project_slot") < order.index("ensure_job")
    # a finished job past its TTL goes before settle ends the decision for finished jobs
    assert order.index("expire") < order.index("settle")


# -- before any Job -----------------------------------------------------------------------------------
def test_label_adds_what_a_kubectl_cr_lacks():
    d = decision(cr(spec={"job_id": None}, labels={}), settled=False)
    assert steps.label(d) is False
    assert d.plan.labels == {"roboaug.dev/job-id": CR_UID, "roboaug.dev/project-id": PROJECT}
    d = decision(cr(), settled=False)
    steps.label(d)
    assert d.plan.labels == {}
    d = decision(cr(spec={"project_id": None}, labels={"roboaug.dev/job-id": JOB_ID}), settled=False)
    steps.label(d)
    assert d.plan.labels == {}


def finished_status(ended=2):
    h = History(history("scheduling"))
    h.complete(at(ended), "augmented dataset: x")
    return h.status


def ttl_project(seconds):
    return {"spec": {"allowed_sources": ["*"], "allowed_outputs": ["*"], "ttl_seconds_after_finished": seconds}}


def test_expire_deletes_a_finished_job_once_its_projects_ttl_ran_out():
    d = decision(cr(status=finished_status(ended=2)), now=50, project=ttl_project(60))
    assert steps.expire(d) is False and not d.plan.delete_cr
    assert d.plan.requeue_after == pytest.approx(12)       # ended at 2 s, due at 62 s
    d = decision(cr(status=finished_status(ended=2)), now=62, project=ttl_project(60))
    assert steps.expire(d) is True and d.plan.delete_cr
    plan = decide(Observed(cr=cr(status=finished_status(ended=2)), now=at(62), project=ttl_project(60)), CFG)
    assert plan.delete_cr and not plan.empty
    d = decision(cr(status=cancelled_status()), now=2, project=ttl_project(0))  # cancelled (or failed) too
    assert steps.expire(d) is True and d.plan.delete_cr


def test_expire_keeps_what_it_cannot_be_sure_of():
    c = cr(status=finished_status())
    for obs in ({}, {"project": {"spec": {"allowed_sources": ["*"], "allowed_outputs": ["*"]}}},
                {"project": {"spec": {"ttl_seconds_after_finished": 1}}}):  # no ttl, none, unparsable
        d = decision(c, now=10_000, **obs)
        assert steps.expire(d) is False and not d.plan.delete_cr and d.plan.requeue_after is None
    d = decision(c, now=10_000, project_error="HTTP 403 Forbidden")   # unreadable: look again later
    assert steps.expire(d) is False and not d.plan.delete_cr
    assert d.plan.requeue_after == steps.PROJECT_RETRY_SECONDS
    d = decision(cr(status=history("scheduling")), now=10_000, project=ttl_project(0), job=job())  # not finished
    assert steps.expire(d) is False and not d.plan.delete_cr


def cancelled_status():
    h = History(history("scheduling"))
    h.cancel(at(2))
    return h.status


def test_settle_keeps_a_finished_job_and_finish_stops_its_running_job():
    # settle ends the decision; the deletion a cancel still owes (its delete failed last time) is
    # finish's, as for every end (reconcile.stop_worker)
    assert steps.settle(decision(cr(status=history("scheduling")), settled=False)) is False
    d = decision(cr(status=cancelled_status()), job=job(), settled=False)
    assert steps.settle(d) is True and finish(d).delete_job == "aug-demo-worker"
    for other in (job(deleting=True), job(owner="someone-else"), None):
        d = decision(cr(status=cancelled_status()), job=other, settled=False)
        assert steps.settle(d) is True and finish(d).delete_job is None
    done = History(history("scheduling"))
    done.complete(at(2), "done")
    d = decision(cr(status=done.status), job=job(complete=True, active=0), settled=False)
    assert steps.settle(d) is True and finish(d).delete_job is None  # a finished Job keeps its pod's logs
    # ...but a Job that could still run a worker is stopped, whatever the end
    d = decision(cr(status=done.status), job=job(), settled=False)
    assert steps.settle(d) is True and finish(d).delete_job == "aug-demo-worker"


def test_accept_starts_the_history_once():
    d = decision(settled=False)
    assert steps.accept(d) is False
    assert d.h.phase == "queued" and d.h.status["created_at"] == iso(0) and d.h.status["job_id"] == JOB_ID
    d = decision(cr(status=history("scheduling")), settled=False)
    steps.accept(d)
    assert d.h.status == history("scheduling")


def with_annotation(c, sources):
    c["metadata"]["annotations"] = {"roboaug.dev/spec-sources": json.dumps(sources)}
    return c


def test_validate_writes_the_effective_spec_and_its_sources():
    # the gateway's annotation is copied as it is
    d = decision(with_annotation(cr(), {"augment_copies": "project", "dataset_id": "request"}), settled=False)
    steps.accept(d)
    assert steps.validate(d) is False
    assert d.h.status["spec_sources"] == {"augment_copies": "project", "dataset_id": "request"}
    assert d.h.status["effective_spec"]["dataset_id"] == "lerobot/pusht"
    assert "job_id" not in d.h.status["effective_spec"] and "hub_token_secret" not in d.h.status["effective_spec"]
    # kubectl: what the CR holds is the request's, the rest the built-in default (what the worker runs)
    d = decision(cr(spec={"augment_copies": 2}), settled=False)
    steps.accept(d)
    steps.validate(d)
    sources = d.h.status["spec_sources"]
    assert sources["augment_copies"] == sources["dataset_id"] == "request" and sources["augment_seed"] == "default"
    assert d.h.status["effective_spec"]["augment_copies"] == 2
    # written once: later decisions keep what acceptance wrote
    before = dict(d.h.status["spec_sources"])
    d2 = decision(with_annotation(cr(status=d.h.status), {"augment_copies": "project"}), settled=False)
    steps.validate(d2)
    assert d2.h.status["spec_sources"] == before


TIGHT = {"spec": {"allowed_sources": ["lerobot"], "allowed_outputs": ["team-b"], "limits": {"max_copies": 3}}}


def test_validate_refuses_what_the_projects_current_policy_forbids():
    d = decision(cr(spec={"output_dataset_id": "acme/leak", "augment_copies": 4}), settled=False, project=TIGHT)
    steps.accept(d)
    assert steps.validate(d) is True and d.h.phase == "failed"
    error = d.h.status["error"]
    assert "output_dataset_id: acme/leak" in error and "allowed_outputs" in error and "limits.max_copies" in error
    # allowed by the project: the job goes on
    d = decision(cr(spec={"output_dataset_id": "team-b/out"}), settled=False, project=TIGHT)
    steps.accept(d)
    assert steps.validate(d) is False and d.h.phase == "queued"
    # no project resource: no policy
    d = decision(cr(spec={"output_dataset_id": "acme/leak"}), settled=False)
    steps.accept(d)
    assert steps.validate(d) is False


def test_validate_checks_the_policy_only_before_the_job_exists():
    d = decision(cr(spec={"output_dataset_id": "acme/leak"}), settled=False, project=TIGHT, job=job())
    steps.accept(d)
    assert steps.validate(d) is False and d.h.phase != "failed"


def test_the_worker_job_mounts_the_projects_token_secret():
    project = {"spec": {**TIGHT["spec"], "hub_token_secret": {"name": "team-b-hf", "key": "token"}}}
    # a CR naming another Secret is refused (test_operator_unbound.py); one naming none gets the project's
    d = decision(cr(spec={"output_dataset_id": "team-b/out"}), settled=False, project=project)
    for step in (steps.accept, steps.validate, steps.route, steps.ensure_job):
        assert step(d) is False or step is steps.ensure_job
    env = {e["name"]: e for e in d.plan.create_job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "team-b-hf", "key": "token"}


def test_the_worker_job_carries_the_projects_frame_limit():
    project = {"spec": {**TIGHT["spec"], "limits": {"max_frames_per_job": 5000}}}
    d = decision(cr(spec={"output_dataset_id": "team-b/out"}), settled=False, project=project)
    for step in (steps.accept, steps.validate, steps.route, steps.ensure_job):
        assert step(d) is False or step is steps.ensure_job
    env = {e["name"]: e for e in d.plan.create_job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["ROBOAUG_MAX_FRAMES"]["value"] == "5000"


def test_validate_waits_while_the_project_cannot_be_read():
    d = decision(settled=False, project_error="HTTP 403 Forbidden")
    steps.accept(d)
    assert steps.validate(d) is True
    assert d.plan.requeue_after == steps.PROJECT_RETRY_SECONDS and d.plan.create_job is None
    assert d.h.phase == "queued"


def test_validate_fails_on_a_project_it_cannot_parse():
    d = decision(settled=False, project={"spec": {"allowed_sources": ["*"]}})  # allowed_outputs missing
    steps.accept(d)
    assert steps.validate(d) is True and "allowed_outputs" in d.h.status["error"]


LIMITED = {"spec": {"allowed_sources": ["*"], "allowed_outputs": ["*"], "limits": {"max_running_jobs": 3}}}


def slot(running, ahead=0, c=None, project=LIMITED, **obs):
    """A Decision up to `project_slot`, as decide() runs it, with the controller's counts."""
    d = decision(c, settled=False, project=project, project_running=running, project_ahead=ahead, **obs)
    for step in (steps.accept, steps.validate, steps.route):
        assert step(d) is False
    return d


def test_project_slot_holds_the_job_queued_while_the_limit_is_full():
    d = slot(3)
    assert steps.project_slot(d) is True
    assert d.h.phase == "queued" and d.h.status.get("error") is None
    assert d.plan.create_job is None and d.plan.waits_for_slot
    assert d.plan.requeue_after == steps.SLOT_REQUEUE_SECONDS
    [ev] = events(d, "waiting")
    assert ev["message"].startswith(f"project {PROJECT} has 3 of 3 running jobs")
    assert d.plan.events == [("Normal", "Waiting", f"project {PROJECT} has 3 of 3 running jobs")]
    # older jobs still without a Job go first: 2 running + 1 older waiting fill 3 slots
    d = slot(2, ahead=1)
    assert steps.project_slot(d) is True and "2 of 3 running jobs and 1 older jobs waiting" in events(d)[-1]["message"]


def test_project_slot_says_it_waits_once_per_wait():
    d = slot(3)
    steps.project_slot(d)
    again = slot(3, c=cr(status=d.h.status))
    assert steps.project_slot(again) is True
    assert len(events(again, "waiting")) == 1 and again.plan.events == []


def test_project_slot_lets_the_job_start_when_a_slot_is_free():
    d = slot(2)
    assert steps.project_slot(d) is False
    assert steps.ensure_job(d) is True and d.plan.create_job is not None and not d.plan.waits_for_slot
    # no limit, or no project: no wait whatever the counts
    for project in ({"spec": {"allowed_sources": ["*"], "allowed_outputs": ["*"]}}, None):
        assert steps.project_slot(slot(50, ahead=50, project=project)) is False
    # once its Job exists the job is one of the running ones, never held back
    d = decision(project=LIMITED, project_running=9, job=job())
    steps.accept(d)
    assert steps.project_slot(d) is False


def test_a_job_waiting_for_a_slot_then_starts_through_decide():
    waiting = decide(Observed(cr=cr(), now=at(1), project=LIMITED, project_running=3), CFG)
    assert waiting.create_job is None and waiting.new_status["status"] == "queued"
    assert waiting.requeue_after == steps.SLOT_REQUEUE_SECONDS and not waiting.finished
    assert check(waiting.new_status) == []
    started = decide(Observed(cr=cr(status=waiting.new_status), now=at(9), project=LIMITED,
                              project_running=2), CFG)
    assert started.create_job is not None


def test_validate_sets_the_spec_or_fails_naming_the_field():
    d = decision(settled=False)
    steps.accept(d)
    assert steps.validate(d) is False and d.spec.dataset_id == "lerobot/pusht"
    d = decision(cr(spec={"augment_transforms": "lighting,sparkles"}), settled=False)
    steps.accept(d)
    assert steps.validate(d) is True and d.spec is None
    assert d.h.phase == "failed" and d.h.status["error"].startswith("invalid spec: spec.augment_transforms")


def test_cancel_deletes_only_our_live_job():
    d = decision(cr(status=history("scheduling")), job=job())
    assert steps.cancel(d) is False and d.h.phase == "scheduling"
    d = decision(cr(spec={"cancel_requested": True}, status=history("scheduling")), job=job())
    assert steps.cancel(d) is True and finish(d).delete_job == "aug-demo-worker"
    assert d.h.phase == "cancelled" and events(d)[0]["message"] == "cancelled on request; Job aug-demo-worker deleted"
    d = decision(cr(spec={"cancel_requested": True}, status=history("scheduling")), job=job(deleting=True))
    assert steps.cancel(d) is True and finish(d).delete_job is None
    d = decision(cr(spec={"cancel_requested": True}, status=history()), job=job(owner="someone-else"))
    assert steps.cancel(d) is True and finish(d).delete_job is None
    assert events(d)[0]["message"] == "cancelled on request"


def test_route_refuses_generative_and_names_a_missing_route():
    d = decision(cr(status=history()), settled=False)
    d.spec = AugmentationJobSpec.model_validate(d.spec_raw)
    assert steps.route(d) is False and d.choice.name == "cpu"
    d = decision(cr(spec={"augmentation_type": "generative"}, status=history()), settled=False)
    d.spec = AugmentationJobSpec.model_validate(d.spec_raw)
    assert steps.route(d) is True and d.h.status["error"] == GENERATIVE_DISABLED_MESSAGE
    unrouted = parse_config({"routing": {"generative": "gpu"}})
    d = decision(cr(status=history()), config=unrouted, settled=False)
    d.spec = AugmentationJobSpec.model_validate(d.spec_raw)
    assert steps.route(d) is True and "routing.deterministic" in d.h.status["error"]


def test_ensure_job_creates_adopts_or_waits():
    d = decision(cr(status=history()))
    assert steps.ensure_job(d) is True and d.plan.create_job["metadata"]["name"] == "aug-demo-worker"
    d = decision(cr(status=history()), create_error="quota exceeded")
    assert steps.ensure_job(d) is True and d.plan.create_job is None
    assert d.h.status["error"] == "cannot create the worker Job: quota exceeded"
    d = decision(cr(status=history()), job=job())
    assert steps.ensure_job(d) is False
    assert d.h.phase == "scheduling" and d.h.status["job_name"] == "aug-demo-worker"
    assert events(d)[0]["data"] == {"job": "aug-demo-worker", "pool": "cpu", "instance_type": "c7i.4xlarge"}
    d = decision(cr(status=history("scheduling", "downloading")), job=job())
    assert steps.ensure_job(d) is False and d.h.phase == "downloading"


@pytest.mark.parametrize("owner", [CR_UID, "old-cr-uid"])
def test_ensure_job_waits_for_a_job_being_deleted(owner):
    d = decision(cr(status=history()), job=job(owner=owner, deleting=True))
    assert steps.ensure_job(d) is True
    assert d.plan.requeue_after == steps.DELETING_REQUEUE_SECONDS and d.h.phase == "queued"
    assert d.plan.create_job is None and d.plan.delete_job is None


def test_ensure_job_does_not_adopt_a_foreign_job():
    d = decision(cr(status=history()), job=job(owner="someone-else"))
    assert steps.ensure_job(d) is True and d.h.phase == "failed"
    assert "not owned by this AugmentationJob" in d.h.status["error"] and "job_name" not in d.h.status


# -- the Job's pods -------------------------------------------------------------------------------------
def test_placement_records_node_facts_once_the_work_started():
    running = pod(phase="Running", node="cpu-0")
    d = decision(cr(status=history("scheduling")), job=job(), pods=[running], node_labels=CPU_NODE)
    assert steps.placement(d) is False
    assert (d.h.status["instance_type"], d.h.status["region"]) == ("c7i.4xlarge", "us-east-1")
    # placed but not started, while still queued: not yet (it lands with `downloading`)
    d = decision(cr(status=history("scheduling")), job=job(), pods=[pod(node="cpu-0")], node_labels=CPU_NODE)
    steps.placement(d)
    assert "instance_type" not in d.h.status
    # a node without the label: the pool's configured instance type, no region
    d = decision(cr(status=history("scheduling")), job=job(), pods=[pod(phase="Running", node="bare-0")])
    steps.placement(d)
    assert d.h.status["instance_type"] == "c7i.4xlarge" and "region" not in d.h.status


def test_placement_uses_the_last_placed_pod_when_the_current_one_has_no_node():
    pods = [pod(name="p1", created=1, phase="Failed", node="cpu-0", exit_code=75), pod(name="p2", created=2)]
    d = decision(cr(status=history("scheduling", "downloading")), job=job(failed=1), pods=pods,
                 node_labels=CPU_NODE | {"cpu-1": {}})
    steps.placement(d)
    assert d.h.status["region"] == "us-east-1"


def test_disruptions_are_noted_once_per_pod_and_are_not_attempts():
    lost = pod(name="p1", phase="Failed", node="cpu-0", disrupted=True)
    d = decision(cr(status=history("scheduling", "downloading")), job=job(), pods=[lost, pod(name="p2", created=3)])
    assert steps.disruptions(d) is False
    assert [e["data"] for e in events(d, "disrupted")] == [{"pod": "p1", "node": "cpu-0", "evictions": 1}]
    assert d.plan.events == [("Warning", "Disrupted", "pod p1 disrupted on node cpu-0")]
    assert d.failed_pods == [] and d.h.attempt == 0
    again = decision(cr(status=d.h.status), job=job(), pods=[lost, pod(name="p2", created=3)])
    steps.disruptions(again)
    assert len(events(again, "disrupted")) == 1 and again.plan.events == []


def test_failed_on_the_job_condition_or_a_permanent_exit_code():
    retryable = pod(name="p1", phase="Failed", node="cpu-0", exit_code=75)
    d = decision(cr(status=history("scheduling", "downloading")), job=job(failed=1), pods=[retryable])
    assert steps.failed(d) is False and d.h.phase == "downloading"
    d = decision(cr(status=history("scheduling", "downloading")), pods=[retryable],
                 job=job(failed=1, failed_condition={"reason": "BackoffLimitExceeded", "message": "m"}))
    assert steps.failed(d) is True
    assert d.h.status["error"].endswith("(gave up after 1 attempt)")
    assert events(d)[0]["data"]["attempts"] == 1 and events(d)[0]["data"]["job_reason"] == "BackoffLimitExceeded"
    permanent = pod(name="p1", phase="Failed", node="cpu-0", exit_code=10, exit_message="no such dataset")
    d = decision(cr(status=history("scheduling", "downloading")), job=job(failed=1), pods=[permanent])
    assert steps.failed(d) is True
    assert d.h.status["error"] == "worker exited with code 10 (dataset_not_found, permanent): no such dataset"
    # a Job that failed before any pod could say why (e.g. its active deadline)
    d = decision(cr(status=history("scheduling")), job=job(failed_condition={"reason": "DeadlineExceeded"}))
    assert steps.failed(d) is True and d.h.status["error"] == "Job failed: DeadlineExceeded"
    assert events(d)[0]["data"] == {"job_reason": "DeadlineExceeded", "attempts": 1, "reason": "DeadlineExceeded"}


def test_retries_count_new_failures_up_to_the_backoff_limit():
    fails = [pod(name=f"p{i}", created=i, phase="Failed", node="cpu-0", exit_code=75) for i in range(3)]
    d = decision(cr(status=history("scheduling", "downloading")), job=job(failed=2), pods=fails[:2])
    assert steps.retries(d) is False
    assert d.plan.retries == 2 and d.h.attempt == 2
    first, second = events(d, "retry")
    assert first["error"] is None and first["message"] == "attempt 0 failed; retry 1 of at most 2"
    assert second["data"]["pod"] == "p1" and "code 75" in second["error"]
    assert d.plan.events == [("Warning", "Retry", f"attempt 2 started after: {second['error']}")]
    # the retries already recorded are not counted again; more failures than the limit are capped
    d = decision(cr(status=d.h.status), job=job(failed=3), pods=fails)
    steps.retries(d)
    assert d.plan.retries == 0 and d.h.attempt == 2 and d.plan.events == []


def test_started_moves_to_downloading_and_measures_the_queue_wait():
    d = decision(cr(status=history("scheduling")), now=7, job=job(), pods=[pod(phase="Running", node="cpu-0")])
    assert steps.started(d) is False
    assert d.h.phase == "downloading" and d.plan.queue_wait == 7.0
    assert events(d)[0]["data"] == {"pod": "aug-demo-worker-abcde", "node": "cpu-0",
                                    "instance_type": None, "region": None}
    d = decision(cr(status=history("scheduling")), job=job(), pods=[pod(node="cpu-0")])
    steps.started(d)
    assert d.h.phase == "scheduling" and d.plan.queue_wait is None


def with_progress(status, **report):
    c = cr(status=status)
    c["status"]["progress"] = {"episodes_done": 1, "episodes_total": 4, "frames_done": 10,
                               "frames_total": 40, "updated_at": iso(3), **report}
    return c


def test_progress_moves_the_phase_forward_and_records_counts():
    running = pod(name="p1", phase="Running", node="cpu-0")
    d = decision(with_progress(history("scheduling"), phase="augmenting", pod="p1"), job=job(), pods=[running])
    assert steps.progress(d) is False
    assert [p["name"] for p in d.h.status["phases"]][-2:] == ["downloading", "augmenting"]
    assert events(d, "progress")[0]["data"]["episodes_done"] == 1
    # never back
    d = decision(with_progress(history("scheduling", "downloading", "augmenting", "uploading"),
                               phase="downloading", pod="p1"), job=job(), pods=[running])
    steps.progress(d)
    assert d.h.phase == "uploading" and events(d, "progress") == []


ALL_DONE = [{"name": "downloading", "started_at": iso(2), "completed_at": iso(5)},
            {"name": "augmenting", "started_at": iso(5), "completed_at": iso(9)},
            {"name": "uploading", "started_at": iso(9), "completed_at": iso(12)}]


def test_one_report_of_a_job_that_ran_between_two_observations_gives_every_phase_with_its_times():
    """The operator saw the pod pending, then, next time, the Job complete: the worker's last
    report alone puts downloading, augmenting and uploading in the history, at the worker's times."""
    c = with_progress(history("scheduling", now=1), phase="uploading", pod="p1", phases=ALL_DONE,
                      output_dataset_id="lerobot/x")
    plan = decide(Observed(cr=c, now=at(20), job=job(complete=True, active=0),
                           pods=[pod(name="p1", phase="Succeeded", node="cpu-0")], node_labels=CPU_NODE), CFG)
    got = [(p["name"], p["started_at"], p["completed_at"]) for p in plan.new_status["phases"]]
    assert got == [("queued", iso0(0), iso0(1)), ("scheduling", iso0(1), iso0(2)),
                   ("downloading", iso0(2), iso0(5)), ("augmenting", iso0(5), iso0(9)),
                   ("uploading", iso0(9), iso0(12)), ("completed", iso0(12), iso0(12))]
    assert [s for s, _d, _secs in plan.transitions] == ["scheduling", "downloading", "augmenting", "uploading"]
    assert plan.finished == "completed" and check(plan.new_status) == []


def test_progress_enters_each_reported_phase_when_the_worker_began_it():
    running = pod(name="p1", phase="Running", node="cpu-0")
    d = decision(with_progress(history("scheduling", now=1), phase="augmenting", pod="p1", phases=ALL_DONE[:2]),
                 now=7, job=job(), pods=[running])
    steps.progress(d)
    assert [(p["name"], p["started_at"]) for p in d.h.status["phases"]][2:] == [
        ("downloading", iso0(2)), ("augmenting", iso0(5))]
    assert d.h.find("downloading")["completed_at"] == iso0(5)
    assert d.h.find("augmenting")["events"][0]["data"] == {"pod": "p1"}
    assert events(d, "progress")[0]["data"]["phase"] == "augmenting"


def test_progress_of_another_pod_is_dropped():
    c = with_progress(history("scheduling", "downloading"), phase="uploading", pod="p1",
                      output_dataset_id="lerobot/from-p1", phases=ALL_DONE)
    d = decision(c, job=job(failed=1), pods=[pod(name="p2", created=4, phase="Running", node="cpu-1")])
    steps.progress(d)
    assert d.progress is None and d.h.phase == "downloading"


@pytest.mark.parametrize("who", [None, "someone-else", "aug-demo-worker-old"])
def test_progress_is_taken_only_from_the_current_pod(who):
    """A report naming no pod, or a pod that is not the job's current one (an earlier attempt,
    any other writer), moves nothing; the same report from the current pod does."""
    running = pod(name="aug-demo-worker-new", created=4, phase="Running", node="cpu-0")
    old = pod(name="aug-demo-worker-old", created=1, phase="Failed", node="cpu-0", exit_code=1)
    report = dict(phase="uploading", phases=ALL_DONE[:2] + [{"name": "uploading", "started_at": iso(9)}],
                  warnings=["forged warning"], source_revision="c" * 40)
    if who:
        report["pod"] = who
    d = decision(with_progress(history("scheduling", "downloading"), **report), job=job(), pods=[old, running])
    steps.progress(d)
    assert d.progress is None and d.h.phase == "downloading" and d.plan.events == []
    d = decision(with_progress(history("scheduling", "downloading"), **dict(report, pod=running.name)),
                 job=job(), pods=[old, running])
    steps.progress(d)
    assert d.progress is not None and d.h.phase == "uploading"


def test_completion_output_id_is_the_operators_never_the_workers():
    """The worker's credentials can write status.progress, so what it reports as the output is no
    evidence: the result is where the operator told it to write (the spec's, else the naming rule)."""
    d = decision(cr(status=history("scheduling", "downloading")), job=job())
    assert steps.completion(d) is False and d.h.phase == "downloading"
    c = with_progress(history("scheduling", "downloading"), phase="uploading", output_dataset_id="attacker/x")
    d = decision(c, job=job(complete=True, active=0))
    assert steps.completion(d) is True
    assert d.h.phase == "completed" and d.h.status["augmented_dataset_id"] == "lerobot/pusht-augmented-7d0f5a52"
    c = with_progress(history("scheduling", "downloading"), phase="uploading", output_dataset_id="attacker/x")
    c["spec"]["output_dataset_id"] = "me/mine"
    d = decision(c, job=job(complete=True, active=0))
    steps.completion(d)
    assert d.h.status["augmented_dataset_id"] == "me/mine"
    d = decision(cr(status=history("scheduling", "downloading")), job=job(complete=True, active=0))
    steps.completion(d)
    assert d.h.status["augmented_dataset_id"] == "lerobot/pusht-augmented-7d0f5a52"
    assert "source_revision" not in d.h.status and "augmented_dataset_revision" not in d.h.status


def test_completion_copies_the_revisions_the_worker_reported():
    c = with_progress(history("scheduling", "downloading"), phase="uploading", output_dataset_id="lerobot/x",
                      source_revision="a" * 40, augmented_dataset_revision="b" * 40)
    d = decision(c, job=job(complete=True, active=0))
    assert steps.completion(d) is True
    assert d.h.status["source_revision"] == "a" * 40 and d.h.status["augmented_dataset_revision"] == "b" * 40


def test_completion_ends_the_last_phase_when_the_worker_ended_it():
    c = with_progress(history("scheduling", "downloading", "augmenting", "uploading", now=9), phase="uploading",
                      phases=ALL_DONE)
    d = decision(c, now=30, job=job(complete=True, active=0))
    steps.completion(d)
    assert d.h.find("uploading")["completed_at"] == iso0(12) == d.h.find("completed")["started_at"]
    d = decision(with_progress(history("scheduling", "downloading", now=9), phase="downloading",
                               phases=[{"name": "downloading", "started_at": iso(2)}]),
                 now=30, job=job(complete=True, active=0))
    steps.completion(d)  # the worker did not say when it ended: now
    assert d.h.find("downloading")["completed_at"] == iso0(30)


# -- the one pending timeout ----------------------------------------------------------------------------
def test_unplaced_waits_from_the_pod_else_the_job_and_says_why():
    no_pod = steps.unplaced(None, job(created=3), [], at(10), 60)
    assert no_pod.since == at(3) and no_pod.note is None and no_pod.data == {"scheduler": steps.NO_POD_REASON}
    assert no_pod.error == f"no node could run the worker within 60s: {steps.NO_POD_REASON}"
    s = steps.unplaced(pod(created=5, unschedulable="0/3 nodes"), job(), [], at(10), 60)
    assert s.since == at(5) and s.note == steps.Note("unschedulable", "Unschedulable", "0/3 nodes",
                                                     {"pod": "aug-demo-worker-abcde"})
    quiet = steps.unplaced(pod(), job(), [], at(10), 60)  # no word from the scheduler yet
    assert quiet.note is None and quiet.error.endswith("(no reason reported by the scheduler)")
    assert steps.unplaced(pod(node="cpu-0"), job(), [], at(10), 60) is None


def test_unplaced_news_is_a_change_of_the_schedulers_words():
    said = [{"status": "unschedulable", "message": m} for m in ("A", "B")]
    assert steps.unplaced(pod(unschedulable="B"), job(), said, at(10), 60).note is None
    assert steps.unplaced(pod(unschedulable="A"), job(), said, at(10), 60).note.message == "A"


def test_not_starting_only_for_a_container_the_kubelet_cannot_start():
    for ok in (pod(node="cpu-0", waiting_reason="ContainerCreating"), pod(node="cpu-0"),
               pod(phase="Running", node="cpu-0"), pod(waiting_reason="ErrImagePull"), None):
        assert steps.not_starting(ok, [], at(10), 60) is None
    s = steps.not_starting(pod(node="cpu-0", created=4, waiting_reason="ErrImagePull", waiting_message="nope"),
                           [], at(10), 60)
    assert s.since == at(4) and s.note.message == "ErrImagePull: nope"
    assert s.error == "the worker container did not start within 60s: ErrImagePull: nope"
    assert s.data == {"pod": "aug-demo-worker-abcde", "node": "cpu-0", "kubelet_reason": "ErrImagePull"}


def test_not_starting_news_is_each_new_message_of_the_pod_up_to_the_bound():
    p = pod(node="cpu-0", waiting_reason="ErrImagePull", waiting_message="m0")

    def said(*messages, of="aug-demo-worker-abcde"):
        return [{"status": "container_waiting", "message": f"ErrImagePull: {m}", "data": {"pod": of}}
                for m in messages]
    assert steps.not_starting(p, said("m1", "m0"), at(10), 60).note is None
    assert steps.not_starting(p, said("m0", of="other-pod"), at(10), 60).note is not None
    full = said(*[f"x{i}" for i in range(steps.MAX_WAITING_EVENTS)])
    assert steps.not_starting(p, full, at(10), 60).note is None
    assert steps.not_starting(p, full[1:], at(10), 60).note is not None


STALLED = {
    "unplaced": dict(pod=pod(created=1, unschedulable="0/3 nodes are available"),
                     error="no node could run the worker within 60s: 0/3 nodes are available",
                     news=("unschedulable", "Unschedulable")),
    "not_starting": dict(pod=pod(created=1, node="cpu-0", waiting_reason="CreateContainerConfigError",
                                 waiting_message="secret missing"),
                         error="the worker container did not start within 60s: "
                               "CreateContainerConfigError: secret missing",
                         news=("container_waiting", "ContainerWaiting")),
}


@pytest.mark.parametrize("kind", STALLED)
def test_pending_timeout_is_one_budget_for_every_stall(kind):
    case = STALLED[kind]
    d = decision(cr(status=history("scheduling")), now=31, job=job(), pods=[case["pod"]])
    assert steps.pending_timeout(d) is False
    assert d.plan.requeue_after == 30 and d.plan.delete_job is None
    assert events(d)[-1]["status"] == case["news"][0] and d.plan.events[-1][:2] == ("Warning", case["news"][1])
    d = decision(cr(status=d.h.status), now=60.9, job=job(), pods=[case["pod"]])
    steps.pending_timeout(d)
    assert d.plan.requeue_after == 0.5 and d.plan.events == []  # nothing new to say, a floor on the wait
    d = decision(cr(status=d.h.status), now=61, job=job(), pods=[case["pod"]])
    assert steps.pending_timeout(d) is True
    assert finish(d).delete_job == "aug-demo-worker" and d.h.status["error"] == case["error"]
    data = d.h.status["phases"][-1]["events"][0]["data"]
    assert (data["pending_seconds"], data["timeout_seconds"]) == (60.0, 60)


def test_pending_timeout_takes_the_specs_timeout_and_leaves_a_started_pod_alone():
    stuck = pod(created=1, unschedulable="0/3")
    d = decision(cr(spec={"pending_timeout_seconds": 300}, status=history("scheduling")), now=200, job=job(),
                 pods=[stuck])
    assert steps.pending_timeout(d) is False and d.plan.requeue_after == 101
    d = decision(cr(status=history("scheduling", "downloading")), now=500, job=job(),
                 pods=[pod(phase="Running", node="cpu-0")])
    assert steps.pending_timeout(d) is False and d.plan.requeue_after is None and d.plan.events == []


# -- finish: the plan out of what the steps wrote ------------------------------------------------------
def test_finish_patches_only_what_changed_and_nulls_what_went():
    written = finish(decision(cr(status=history("scheduling") | {"job_name": "aug-demo-worker"}, generation=2),
                              job=job())).new_status
    d = decision(cr(status=written, generation=3), now=9, job=job())
    d.h.status.pop("job_name")
    plan = finish(d)
    # a new generation: observedGeneration, and each condition's, the conditions' times kept
    assert set(plan.status) == {"job_name", "observedGeneration", "conditions"} and plan.status["job_name"] is None
    assert plan.new_status["observedGeneration"] == 3 and plan.events == [] and plan.finished is None
    assert [c["observedGeneration"] for c in plan.new_status["conditions"]] == [3] * 6
    assert ([{**c, "observedGeneration": 2} for c in plan.new_status["conditions"]] == written["conditions"])
    # the snake_case name it had before is removed from a stored status
    d = decision(cr(status=written | {"observed_generation": 2}, generation=2), job=job())
    assert finish(d).status == {"observed_generation": None}


def test_finish_says_each_phase_entered_and_a_newly_reached_end():
    d = decision(cr(status=history()), now=4, job=job())
    d.h.advance("scheduling", at(4), "Job created")
    d.h.fail(at(5), "boom", "it broke")
    plan = finish(d)
    assert plan.events == [("Normal", "Scheduling", "Job created"), ("Warning", "Failed", "boom")]
    assert [t[:2] for t in plan.transitions] == [("queued", "scheduling"), ("scheduling", "failed")]
    assert plan.finished == "failed"
    again = finish(decision(cr(status=plan.new_status), job=job()))
    assert again.finished is None and again.status == {}



def test_progress_turns_each_new_worker_warning_into_an_event_once():
    running = pod(name="p1", phase="Running", node="cpu-0")
    warned = ["input stats of episode 2 differ from its data"]
    d = decision(with_progress(history("scheduling", "downloading"), phase="augmenting", pod="p1", warnings=warned),
                 job=job(), pods=[running])
    steps.progress(d)
    assert [e["message"] for e in events(d, "warning")] == warned
    assert d.plan.events == [("Warning", "InputWarning", warned[0])]
    # the next report carries the same warning (every report carries all): no second event
    d = decision(with_progress(d.h.status, phase="augmenting", pod="p1", warnings=warned), job=job(), pods=[running])
    steps.progress(d)
    assert len(events(d, "warning")) == 1 and d.plan.events == []
