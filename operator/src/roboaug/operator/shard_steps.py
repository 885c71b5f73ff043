"""The steps of `reconcile.decide` that run a sharded job (see `shards.py`): they read and write
a `Decision` like those of `steps.py`, and do no I/O.

The flow: a job whose spec sets `shards` >= 2 gets the Indexed Job `<cr>-worker` at once
(`status.shards.source` 'spec'); one that leaves it unset starts as one pod, and when that pod
exits SHARD_PLAN with a plan (contract `find_shard_plan`) the plan goes into `status.shards`
('auto') and the one-pod Job is replaced by the Indexed Job (`replan`: not a retry, not a
failure). Once every index has succeeded, `<cr>-finalize` merges and publishes (`finalize`); the
job completes when it does. One shard failing for good fails the job naming it
(`shard_failed`); a failed or cancelled sharded job gets `<cr>-cleanup`, a last worker pod that
drops the staging area once its other Jobs are gone (`cleanup`: the operator holds no Hub token).
"""

from __future__ import annotations

from typing import Optional

from pydantic import ValidationError

from roboaug.api.contract import Stage, find_shard_plan, is_shard_plan, staging_name
from roboaug.api.models import WORKER_PHASES, AugmentationJobCreateRequest, AugmentationJobSpec, SecretKeyRef
from roboaug.api.models.project import AugmentationProjectSpec

from . import steps
from .decision import Decision, current_pod, failure_of
from .jobs import output_dataset_id, parallelism, render_job
from .observe import JobView, PodView
from .phases import camel
from .pools import NoPoolError, select_pool
from .shards import aggregate

CLUSTER_FIELDS = frozenset(AugmentationJobSpec.model_fields) - frozenset(AugmentationJobCreateRequest.model_fields)

REQUEUE_SECONDS = 2.0
"""A look again while a replaced or stopped Job goes away."""

CLEANUP_ATTEMPTS = 3
"""Cleanup Jobs started at most for one job (each retries its pod `backoff_limit` times itself):
a staging branch left behind is what a user least expects, so a failed cleanup is started again,
but not forever (a Hub that refuses the token will refuse it the fourth time too)."""


def sharded(d: Decision) -> Optional[dict]:
    return d.h.status.get("shards")


def _render(d: Decision, stage: str, shards: Optional[int]) -> dict:
    return render_job(d.obs.cr, d.spec, d.job_id, d.config, d.choice, _project_token(d, stage),
                      d.project.limits.max_frames_per_job if d.project else None,
                      stage=stage, shards=shards, max_parallelism=_project_limit(d),
                      max_shards=_shard_limit(d), project_queue=_project_queue(d, stage))


def _shards_job(d: Decision, stage: str) -> Optional[JobView]:
    """The job's earlier Job, when a later stage's Job is made and no project was read: the
    finalize Job is made while the shards' Job exists, when the project is not read
    (`controller._read_project`: only before a Job exists and once the job has ended), and a
    cleanup Job may find its project gone. They then take the project's choices as they were
    rendered into that Job, its Hub token Secret and its queue, never the deployment's
    defaults in their place (a team's dataset published with another identity)."""
    if stage in (Stage.FINALIZE, Stage.CLEANUP) and d.project is None and d.job is not None:
        return d.job
    return None


def _project_token(d: Decision, stage: str) -> Optional[SecretKeyRef]:
    """The project's Hub token Secret, for `render_job` (which falls back to the CR's, then the
    deployment's, when this is None)."""
    shards_job = _shards_job(d, stage)
    if shards_job is not None:
        return SecretKeyRef(name=shards_job.hub_token[0], key=shards_job.hub_token[1]) \
            if shards_job.hub_token else None
    return d.project.hub_token_secret if d.project else None


def _project_queue(d: Decision, stage: str) -> Optional[str]:
    """The project's kueue_queue for `jobs.job_queue` (which falls back to the pool's)."""
    shards_job = _shards_job(d, stage)
    if shards_job is not None:
        return shards_job.queue
    return d.project.kueue_queue if d.project else None


def _project_limit(d: Decision) -> Optional[int]:
    return d.project.limits.max_parallelism if d.project else None


def _shard_limit(d: Decision) -> Optional[int]:
    """The project's limits.max_shards. A count the spec fixes above it never runs (the policy
    refuses it at every door); the automatic plan is capped at it by the worker, which plans
    (ROBOAUG_MAX_SHARDS on the single stage): a cap of 1 then runs in that one pod with no
    second pod to start, and the plan it hands back is already within the limit. Not capped
    again in `replan`: the project is read only while no Job exists (steps.validate)."""
    return d.project.limits.max_shards if d.project else None


def spec_shards(d: Decision) -> Optional[dict]:
    """status.shards, first set from a spec asking for 2 or more shards. Written by whichever
    decision sees it missing: the one that creates the Job is decided again by the controller
    with the Job it made, and that second decision's status is the one written."""
    if sharded(d) is None and (d.spec.shards or 0) >= 2:
        d.h.status["shards"] = {"count": d.spec.shards, "source": "spec",
                                "parallelism": parallelism(d.spec.shards, d.spec, d.choice, _project_limit(d))}
    return sharded(d)


def worker_job(d: Decision) -> dict:
    """The `<cr>-worker` Job to create now: the shards' Indexed Job of a sharded job (a spec
    asking for 2 or more shards makes it sharded here), else the one-pod single stage (with
    ROBOAUG_SHARDS=1 when the spec asks for one shard: no automatic plan)."""
    plan = spec_shards(d)
    if plan is not None:
        return _render(d, Stage.SHARD, plan["count"])
    return _render(d, Stage.SINGLE, d.spec.shards)


def replan(d: Decision) -> bool:
    """The one-pod run planned shards: its pod exited SHARD_PLAN with the plan as its last line.
    The plan goes into status and the Job is deleted (foreground); `ensure_job` creates the
    Indexed Job once it is gone. A SHARD_PLAN exit without a readable plan fails the job."""
    job = d.job
    plan = spec_shards(d)
    if plan is not None:
        if job.stage == Stage.SHARD:
            return False
        if not job.deleting:  # the one-pod Job that planned: replaced, whatever it did since
            d.plan.delete_job = job.name
        d.plan.requeue_after = REQUEUE_SECONDS
        return True
    pod = next((p for p in reversed(d.pods) if p.phase == "Failed" and is_shard_plan(p.exit_code)), None)
    if pod is None:
        return False
    found = find_shard_plan(pod.exit_message)
    if found is None:
        return d.fail(f"the worker pod {pod.name} exited SHARD_PLAN without a plan in its termination message",
                      f"Job {job.name} failed (no shard plan)", failure_of(pod).data(), reason="ShardPlanUnreadable")
    count = max(1, found.shards)
    d.h.status["shards"] = {"count": count, "source": "auto",
                            "parallelism": parallelism(count, d.spec, d.choice, _project_limit(d))}
    d.h.event("sharded", d.now, f"the source is large: {found.frames} frames in {found.units} units of work, "
              f"run as {count} shards", data={**found.as_dict(), "pod": pod.name})
    d.plan.events.append(("Normal", "Sharded", f"run as {count} shards ({found.frames} frames)"))
    d.plan.delete_job = job.name
    d.plan.requeue_after = REQUEUE_SECONDS
    return True


def _index_text(pod: PodView, count: int) -> str:
    return f"shard {pod.index if pod.index is not None else '?'} of {count}"


def shard_failed(d: Decision) -> bool:
    """A shard failed for good (a permanent exit, or its retries spent: the Job's Failed
    condition, maxFailedIndexes 0): the job fails with that shard's words, naming its index."""
    plan = sharded(d)
    if plan is None or d.job.stage != Stage.SHARD:
        return False
    count = plan["count"]
    permanent = [p for p in d.failed_pods if failure_of(p).permanent]
    pod = permanent[-1] if permanent else (d.failed_pods[-1] if d.failed_pods else None)
    if not permanent and d.job.failed_condition is None:
        return False
    plan["failed"] = len({p.index for p in (permanent or d.failed_pods)})
    if pod is None:
        cond = d.job.failed_condition
        return d.fail(f"the shards' Job {d.job.name} failed: {cond.get('reason')}: {cond.get('message') or ''}".rstrip(": "),
                      f"Job {d.job.name} failed", {"job_reason": cond.get("reason")},
                      reason=camel(cond.get("reason") or "JobFailed"))
    failure = failure_of(pod)
    attempts = len([p for p in d.failed_pods if p.index == pod.index])
    why = "failed for good" if failure.permanent else f"failed {attempts} times"
    return d.fail(f"{_index_text(pod, count)} {why}: {failure.describe()}",
                  f"Job {d.job.name} failed ({_index_text(pod, count)})",
                  {**failure.data(), "shard": pod.index, "shards": count, "attempts": attempts},
                  reason=camel(failure.data().get("exit_name") or "ShardFailed"))


def shard_progress(d: Decision) -> bool:
    """Progress summed over the shards (`shards.aggregate`) into status.shards and the history:
    a report of any shard pod moves the phase forward. Shard completions and frame counts go at
    most as often as the controller's write budget allows (`obs.progress_due`): 10,000 shards
    ending one by one are news to the user only as a count, not as 10,000 status writes. What
    changes the whole job is written at once by the steps that see it: every shard done
    (`finalize`), a shard failed for good (`shard_failed`), a phase move."""
    plan = sharded(d)
    if plan is None or d.job.stage != Stage.SHARD:
        return False
    agg = aggregate(d.pods, d.obs.shard_reports, d.job.succeeded)
    now = (agg.done, agg.frames_done, agg.frames_total)
    if d.obs.progress_due:
        plan["done"], plan["frames_done"], plan["frames_total"] = now
    elif (plan.get("done", 0), plan.get("frames_done"), plan.get("frames_total")) != now:
        # written when the budget allows: a look again then, so the last count is not lost
        d.plan.requeue_after = min(d.plan.requeue_after or d.obs.progress_wait, d.obs.progress_wait) or None
    report, names = d.progress, {p.name for p in d.pods} | {p.name for p in d.obs.finalize_pods}
    d.progress = None  # `steps.progress` reads one pod's report; a sharded job's is the sum
    if report and report.get("pod") in names and report.get("phase") in WORKER_PHASES:
        data = {"pod": report.get("pod")}
        for p in WORKER_PHASES[: WORKER_PHASES.index(report["phase"]) + 1]:
            d.h.advance(p, d.now, f"{p} started", data=data)
        for message in d.h.warnings(report.get("warnings") or [], d.now, data):  # each shard's, once each
            d.plan.events.append(("Warning", "InputWarning", message))
        if d.obs.progress_due and plan.get("frames_total"):
            d.h.progress({"phase": d.h.phase, "frames_done": plan["frames_done"],
                          "frames_total": plan["frames_total"], "episodes_done": agg.done,
                          "episodes_total": plan["count"],
                          "message": f"{agg.done}/{plan['count']} shards, "
                                     f"{plan['frames_done']}/{plan['frames_total']} frames"}, d.now)
    if plan.get("frames_total"):
        d.h.status["progress_percent"] = min(100, plan["frames_done"] * 100 // plan["frames_total"])
    return False


def finalize(d: Decision) -> bool:
    """Every shard succeeded: `<cr>-finalize` merges their results and publishes in one commit
    (created here once; its own retries); the job completes when it succeeds and fails with its
    words when it fails."""
    plan = sharded(d)
    if plan is None or d.job.stage != Stage.SHARD or not d.job.complete:
        return False
    plan["stage"], plan["done"] = "finalize", plan["count"]
    fin = d.obs.finalize
    if fin is None:
        d.plan.create_job = _render(d, Stage.FINALIZE, plan["count"])
        return True
    if fin.failed_condition is not None:
        failed = [p for p in d.obs.finalize_pods if p.phase == "Failed" and not p.disrupted]
        words = failure_of(failed[-1]).describe() if failed else (fin.failed_condition.get("reason") or "failed")
        return d.fail(f"finalize failed: {words}", f"Job {fin.name} failed (finalize)",
                      failure_of(failed[-1]).data() if failed else {}, reason="FinalizeFailed")
    if not fin.complete:
        # finalizing: the shards' Job is complete, the job is not (`steps.completion` waits). A
        # finalize pod that never starts gets the pending timeout of the shards' pods (a Job
        # Kueue holds is counted from its admission: `steps.unplaced`).
        timeout = d.spec.pending_timeout_seconds or d.config.pending_timeout_seconds
        hit = steps.stalled(d, current_pod(d.obs.finalize_pods), fin, timeout)
        if hit is not None:
            stall, data = hit
            return d.fail(f"finalize: {stall.error}", f"{stall.message} (finalize)",
                          {**data, "job": fin.name}, reason=stall.reason)
        return True
    out = output_dataset_id(d.spec, d.job_id)
    d.h.status["augmented_dataset_id"] = out
    report = d.obs.cr.get("status", {}).get("progress") or {}
    if report.get("pod") in {p.name for p in d.obs.finalize_pods}:
        for key in ("source_revision", "augmented_dataset_revision"):
            if report.get(key):
                d.h.status[key] = report[key]
    plan["frames_done"] = plan.get("frames_total", 0)
    d.h.complete(d.now, f"augmented dataset: {out}", data={"augmented_dataset_id": out, "shards": plan["count"]})
    return True


def stop_sharded(d: Decision) -> None:
    """A sharded job that ended other than completed: its finalize Job is deleted with the
    shards' (`reconcile.stop_worker`), and its staging area is marked for the cleanup pod."""
    plan = sharded(d)
    if plan is None or not d.h.terminal or d.h.phase == "completed":
        return
    fin = d.obs.finalize
    if fin is not None and not fin.deleting and not fin.finished:
        d.plan.delete_also.append(fin.name)
    if plan.get("cleanup") is None:
        plan["cleanup"] = "pending"


def cleanup(d: Decision) -> bool:
    """A failed or cancelled sharded job drops its staging area with `<cr>-cleanup` (a last
    worker pod, ROBOAUG_STAGE=cleanup), once its shards' and finalize Jobs no longer run (no
    shard may commit after the drop). Runs on a finished job, before `steps.settle`; True while
    it waits for them or when it creates the cleanup Job.

    Its outcome is watched (`_cleanup_outcome`): done, or a failure (its Job failed, or its pod
    did not start within the pending timeout) recorded as a `cleanup_failed` event, a Warning
    Event and `status.shards.cleanup_error`, then the Job is deleted and started again, up to
    CLEANUP_ATTEMPTS Jobs; after the last, `cleanup: failed` says the staging area is left."""
    plan = sharded(d)
    if plan is None or not d.h.terminal or plan.get("cleanup") not in ("pending", "started", "retrying"):
        return False
    job = d.obs.cleanup
    if job is not None and not job.deleting and job.uid != plan.get("cleanup_job"):
        # a cleanup Job not counted yet: the one this job's decision created (or adopted)
        plan["cleanup"], plan["cleanup_job"] = "started", job.uid
        plan["cleanup_attempts"] = int(plan.get("cleanup_attempts") or 0) + 1
    if plan["cleanup"] == "started":
        return _cleanup_outcome(d, plan, job)
    if job is not None:  # the failed one, on its way out: started again once it is gone
        if not job.deleting:
            d.plan.delete_also.append(job.name)
        d.plan.requeue_after = REQUEUE_SECONDS
        return False
    running = [j for j in (d.job if d.ours else None, d.obs.finalize) if j is not None and not j.finished]
    if running:
        d.plan.requeue_after = REQUEUE_SECONDS
        return True
    try:  # the job's settled spec and pool, as its shards ran
        effective = d.h.status.get("effective_spec") or {}
        d.spec = AugmentationJobSpec.model_validate(
            {**effective, **{k: v for k, v in d.spec_raw.items() if k in CLUSTER_FIELDS}})
        d.choice = select_pool(d.config, d.spec.augmentation_type)
        if d.obs.project is not None:
            d.project = AugmentationProjectSpec.model_validate(d.obs.project.get("spec") or {})
    except (ValidationError, NoPoolError):
        return False  # nothing the cleanup pod could run under; the staging area stays (documented)
    d.plan.create_job = _render(d, Stage.CLEANUP, plan["count"])
    return True


def _cleanup_outcome(d: Decision, plan: dict, job) -> bool:
    """The counted cleanup Job: succeeded (`done`), still going (a look again at its pending
    timeout), or failed: recorded, then started again or given up (`cleanup`'s docstring)."""
    if job is not None and job.complete:
        plan["cleanup"] = "done"
        return False
    if job is None:  # gone before it was seen to end (deleted by hand, or by a TTL of 0)
        words = "the cleanup Job went away before it ended"
    elif job.failed_condition is not None:
        failed = [p for p in d.obs.cleanup_pods if p.phase == "Failed" and not p.disrupted]
        cond = job.failed_condition
        words = failure_of(failed[-1]).describe() if failed else \
            f"{cond.get('reason') or 'Failed'}: {cond.get('message') or ''}".rstrip(": ")
    elif job.deleting:
        return False  # seen again once gone
    else:
        timeout = (d.h.status.get("effective_spec") or {}).get("pending_timeout_seconds") \
            or d.config.pending_timeout_seconds
        hit = steps.stalled(d, current_pod(d.obs.cleanup_pods), job, timeout)
        if hit is None:
            return False
        words = hit[0].error
    attempts = int(plan.get("cleanup_attempts") or 1)
    words = words if len(words) <= 2000 else words[:1999] + "…"  # the status field's bound (2048)
    plan["cleanup_error"] = words
    area = staging_name(d.job_id)
    if attempts < CLEANUP_ATTEMPTS:
        plan["cleanup"] = "retrying"
        message = (f"cleanup attempt {attempts} of at most {CLEANUP_ATTEMPTS} failed: {words}; "
                   "starting it again")
        if job is not None and not job.deleting:
            d.plan.delete_also.append(job.name)
        d.plan.requeue_after = REQUEUE_SECONDS
    else:
        plan["cleanup"] = "failed"
        message = (f"cleanup failed {attempts} times, the last: {words}; the staging area "
                   f"{area} (Hub branch, or hidden folder beside a file:// output) is left behind")
    d.h.event("cleanup_failed", d.now, message,
              data={"job": job.name if job is not None else None, "attempt": attempts,
                    "attempts": CLEANUP_ATTEMPTS, "staging": area})
    d.plan.events.append(("Warning", "CleanupFailed", message))
    return False
