"""decide(): from what the operator observes about one AugmentationJob to what it must do.

Level-based, so a restarted operator (or a missed event) converges to the same answer: the
inputs are the CR as stored (spec and status), summaries of its Job and that Job's pods, and the
labels of the nodes they run on; the output is a `Plan` (status changes, the Job to create or
delete, labels, Kubernetes Events, metric observations). No I/O here; the controller applies
the plan.

decide() runs the small steps of `steps.py` in the order of `STEPS`, each on one shared
`decision.Decision`, until one says the decision is complete; `finish` then turns what they
wrote into the plan's status patch and Events, and deletes the Job of a job that has ended
(`stop_worker`: no step does that itself).

How worker progress reaches the CR: the worker patches only `status.progress` (RBAC: patch on
`augmentationjobs/status`); its `phase` moves the history forward (downloading -> augmenting ->
uploading) and its counts become `progress` events. The operator is the only writer of every
other status field.
"""

from __future__ import annotations

from typing import Callable

from . import shard_steps, steps
from .config import OperatorConfig
from .decision import Decision, Observed, Plan

# Order matters: each step may rely on what the steps above it settled (the spec, the pool, the
# Job) and on their not having ended the decision.
STEPS: tuple[Callable[[Decision], bool], ...] = (
    steps.label,            # CR labels a kubectl-made CR lacks
    steps.expire,           # a finished job past its project's TTL is deleted
    shard_steps.cleanup,    # a failed/cancelled sharded job's staging area: the cleanup pod
    steps.settle,           # a finished job stays put (`finish` still stops a running Job)
    steps.accept,           # first sight: the history starts at `queued`
    steps.validate,         # the spec parses, else failed, naming the field
    steps.cancel,           # cancel requested: delete our Job, `cancelled`
    steps.route,            # generative refused; the pool of the augmentation type
    steps.project_slot,     # the project's max_running_jobs is full: wait `queued`
    steps.ensure_job,       # create, adopt (-> scheduling) or wait for a Job being deleted
    shard_steps.replan,     # a one-pod run planned shards: replaced by the Indexed Job
    steps.placement,        # node facts of the pod that runs the work
    steps.disruptions,      # evictions and node disruptions: noted, not attempts; capped
    shard_steps.shard_failed,  # one shard failed for good: the job fails naming it
    steps.failed,           # the Job failed, or a pod exited with a permanent code
    steps.retries,          # every other failed pod is a retry
    steps.started,          # the pod runs on a node: `downloading`
    shard_steps.shard_progress,  # the shards' progress, summed, written within a budget
    steps.progress,         # the worker's report moves the phase and adds progress events
    shard_steps.finalize,   # every shard done: the finalize Job; completed when it is
    steps.completion,       # the Job completed: `completed`
    steps.pending_timeout,  # a pod that does not start in time fails the job
)

_TRANSITION_EVENTS = {  # phase entered -> (Event type, reason)
    "scheduling": ("Normal", "Scheduling"),
    "downloading": ("Normal", "Downloading"),
    "augmenting": ("Normal", "Augmenting"),
    "uploading": ("Normal", "Uploading"),
    "completed": ("Normal", "Completed"),
    "failed": ("Warning", "Failed"),
    "cancelled": ("Normal", "Cancelled"),
}


def decide(obs: Observed, config: OperatorConfig) -> Plan:
    """What to do for one AugmentationJob, given what was observed (see module docstring)."""
    d = Decision.begin(obs, config)
    for step in STEPS:
        if step(d):
            break
    return finish(d)


def finish(d: Decision) -> Plan:
    """The plan out of what the steps wrote: the status fields that changed (removed ones as
    null), the whole new status, one Event per phase entered, and the final status if this
    decision reached it."""
    h, plan, before = d.h, d.plan, d.before
    shard_steps.stop_sharded(d)  # before the status diff: it marks the staging area for cleanup
    h.derive(d.meta.get("generation"), d.own_progress, d.now)  # conditions, observedGeneration, columns
    after = h.status
    plan.status = {k: v for k, v in after.items() if before.get(k) != v}
    plan.status.update({k: None for k in before if k not in after})
    plan.new_status = after
    plan.transitions = list(h.transitions)
    for _src, dst, _secs in h.transitions:
        typ, reason = _TRANSITION_EVENTS[dst]
        entered = h.find(dst)
        msg = next((e.get("error") or e.get("message") for e in entered["events"]), dst) if entered else dst
        plan.events.append((typ, reason, msg or dst))
    if h.terminal and not d.was_terminal:
        plan.finished = h.phase
    stop_worker(d)
    return plan


def stop_worker(d: Decision) -> None:
    """The one place a finished job stops its worker. Whichever step ended it (failed, cancelled,
    or completed with a Job still running), or ended it on an earlier pass whose deletion did not
    happen, a Job of ours that may still run a worker is deleted (foreground: its pods go first),
    so no worker publishes for a job that has already ended. A finished Job is left alone (its
    pods are done, and their logs stay for debugging until its TTL)."""
    if d.h.terminal and d.job_running:
        d.plan.delete_job = d.job.name


__all__ = ["Observed", "Plan", "STEPS", "decide", "finish", "stop_worker"]
