"""decide(): from what the operator observes about one AugmentationJob to what it must do.

Level-based, so a restarted operator (or a missed event) converges to the same answer: the
inputs are the CR as stored (spec and status), summaries of its Job and that Job's pods, and the
labels of the nodes they run on; the output is a `Plan` (status changes, the Job to create or
delete, labels, Kubernetes Events, metric observations). No I/O here; the controller applies
the plan.

How worker progress reaches the CR: the worker patches only `status.progress` (RBAC: patch on
`augmentationjobs/status`); its `phase` moves the history forward (downloading -> augmenting ->
uploading) and its counts become `progress` events. The operator is the only writer of every
other status field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Optional

from pydantic import ValidationError

from roboaug.api.models import (
    GENERATIVE_DISABLED_MESSAGE,
    LABEL_JOB_ID,
    LABEL_PROJECT_ID,
    PHASE_ORDER,
    WORKER_PHASES,
    AugmentationJobSpec,
)

from .config import OperatorConfig
from .errors import (PodFailure, job_failure_text, kubelet_waiting_text, pending_timeout_text,
                     start_timeout_text)
from .jobs import job_name, output_dataset_id, render_job
from .observe import JobView, PodView
from .phases import QUEUED_PHASES, History, parse_ts
from .pools import NoPoolError, select_pool

LABEL_INSTANCE_TYPE = "node.kubernetes.io/instance-type"
LABEL_REGION = "topology.kubernetes.io/region"
NO_POD_REASON = ("the Job controller created no pod (see the Job's events: a missing ServiceAccount "
                 "or an exhausted ResourceQuota are the usual causes)")
# Kubelet `state.waiting` reasons of a container that will not start without someone fixing
# something (a missing Secret or key, a wrong image); ContainerCreating / PodInitializing are
# the normal way to start and are left alone. The operator cannot check Secrets itself (no RBAC
# on them, by design), so the kubelet's words are what the user gets.
CANNOT_START_REASONS = frozenset({
    "CreateContainerConfigError", "CreateContainerError", "ErrImagePull", "ImagePullBackOff",
    "InvalidImageName", "ErrImageNeverPull",
})
# Per pod. ErrImagePull and ImagePullBackOff alternate, and a pull error can name a different
# address each time: a bound keeps the CR small (status.error carries the last word anyway).
MAX_WAITING_EVENTS = 10
_TRANSITION_EVENTS = {  # phase entered -> (Event type, reason)
    "scheduling": ("Normal", "Scheduling"),
    "downloading": ("Normal", "Downloading"),
    "augmenting": ("Normal", "Augmenting"),
    "uploading": ("Normal", "Uploading"),
    "completed": ("Normal", "Completed"),
    "failed": ("Warning", "Failed"),
    "cancelled": ("Normal", "Cancelled"),
}


@dataclass
class Observed:
    cr: dict                                   # the AugmentationJob as stored
    job: Optional[JobView] = None
    pods: list[PodView] = field(default_factory=list)
    node_labels: dict[str, dict] = field(default_factory=dict)
    now: datetime = None  # type: ignore[assignment]
    create_error: Optional[str] = None         # the apiserver refused our Job (not a 409)


@dataclass
class Plan:
    status: dict = field(default_factory=dict)          # status fields to merge-patch (changed only)
    create_job: Optional[dict] = None
    delete_job: Optional[str] = None                    # foreground deletion
    labels: dict = field(default_factory=dict)          # CR labels to add
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (type, reason, message)
    transitions: list[tuple[str, str, Optional[float]]] = field(default_factory=list)
    finished: Optional[str] = None                      # final status reached by this plan
    retries: int = 0
    queue_wait: Optional[float] = None                  # CR created -> worker running, seconds
    requeue_after: Optional[float] = None
    new_status: dict = field(default_factory=dict)      # the whole operator-owned status after the plan

    @property
    def empty(self) -> bool:
        return not (self.status or self.create_job or self.delete_job or self.labels or self.events)


def operator_status(status: Optional[dict]) -> dict:
    """The part of status the operator owns: all of it but the worker's `progress`."""
    return {k: v for k, v in (status or {}).items() if k != "progress"}


def spec_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "spec"
        parts.append(f"spec.{where}: {err['msg']}")
    return "invalid spec: " + "; ".join(parts)


def _current_pod(pods: list[PodView]) -> Optional[PodView]:
    """The pod that matters now: the newest one still alive, else the newest one."""
    live = [p for p in pods if not p.deleting and p.phase not in ("Failed", "Succeeded")]
    pool = live or list(pods)
    return max(pool, key=lambda p: (p.created or "", p.name)) if pool else None


def _failure_of(pod: PodView) -> PodFailure:
    return PodFailure(exit_code=pod.exit_code, reason=pod.exit_reason, message=pod.exit_message,
                      pod=pod.name, node=pod.node)


def decide(obs: Observed, config: OperatorConfig) -> Plan:
    """What to do for one AugmentationJob, given what was observed (see module docstring)."""
    cr, now = obs.cr, obs.now
    meta = cr.get("metadata") or {}
    spec_raw = cr.get("spec") or {}
    before = operator_status(cr.get("status"))
    progress = (cr.get("status") or {}).get("progress") or None
    h = History(before)
    plan = Plan()
    job_id = str(before.get("job_id") or spec_raw.get("job_id") or meta.get("uid"))

    def finish() -> Plan:
        if meta.get("generation") is not None:
            h.status["observed_generation"] = meta.get("generation")
        after = h.status
        plan.status = {k: v for k, v in after.items() if before.get(k) != v}
        plan.status.update({k: None for k in before if k not in after})
        plan.new_status = after
        plan.transitions = list(h.transitions)
        for _src, dst, _secs in h.transitions:
            typ, reason = _TRANSITION_EVENTS[dst]
            started = h.find(dst)
            msg = next((e.get("error") or e.get("message") for e in started["events"]), dst) if started else dst
            plan.events.append((typ, reason, msg or dst))
        if h.terminal and not _terminal(before):
            plan.finished = h.phase
        return plan

    def fail(error: str, message: str, data: Optional[dict] = None) -> Plan:
        h.fail(now, error, message, data)
        return finish()

    labels = meta.get("labels") or {}
    if LABEL_JOB_ID not in labels:
        plan.labels[LABEL_JOB_ID] = job_id
    if LABEL_PROJECT_ID not in labels and spec_raw.get("project_id"):
        plan.labels[LABEL_PROJECT_ID] = str(spec_raw["project_id"])

    if h.terminal:
        # A cancel whose Job deletion failed last time: finish the deletion.
        if h.phase == "cancelled" and obs.job and not obs.job.deleting and obs.job.owner_uid == meta.get("uid"):
            plan.delete_job = obs.job.name
        return finish()
    if not h.started:
        h.start(job_id, meta.get("creationTimestamp"), now, message="accepted")

    try:
        spec = AugmentationJobSpec.model_validate(spec_raw)
    except ValidationError as e:
        return fail(spec_error(e), "the spec is invalid")

    job = obs.job
    ours = job is not None and job.owner_uid == meta.get("uid")

    if spec.cancel_requested:
        if ours and not job.deleting:
            plan.delete_job = job.name
        h.cancel(now, "cancelled on request" + (f"; Job {job.name} deleted" if ours else ""))
        return finish()

    if spec.augmentation_type == "generative":
        return fail(GENERATIVE_DISABLED_MESSAGE, "generative augmentation is disabled",
                    {"augmentation_type": "generative"})

    try:
        choice = select_pool(config, spec.augmentation_type)
    except NoPoolError as e:
        return fail(str(e), "no pool for this augmentation type")

    if job is not None and not ours:
        if job.deleting:  # the Job of an earlier CR with the same name, on its way out
            plan.requeue_after = 2.0
            return finish()
        return fail(f"a Job named {job.name} already exists and is not owned by this AugmentationJob; "
                    "not adopting it", "name clash with an existing Job")

    if job is None:
        if obs.create_error:
            return fail(f"cannot create the worker Job: {obs.create_error}", "Job creation refused")
        plan.create_job = render_job(cr, spec, job_id, config, choice)
        return finish()

    h.status["job_name"] = job.name
    if job.deleting:  # deleted behind our back; recreate once it is gone
        plan.requeue_after = 2.0
        return finish()
    if h.phase == "queued":
        h.advance("scheduling", now, f"Job {job.name} created on pool {choice.name}",
                  data={"job": job.name, "pool": choice.name, "instance_type": choice.pool.instance_type})

    pods = sorted(obs.pods, key=lambda p: (p.created or "", p.name))
    current = _current_pod(pods)
    failed_pods = [p for p in pods if p.phase == "Failed" and not p.disrupted]
    last_failure = _failure_of(failed_pods[-1]) if failed_pods else None

    # Node facts of the pod that runs (or ran) the work, recorded together with the move to
    # `downloading` (one status write, not two).
    ran = current is not None and current.node and current.phase in ("Running", "Succeeded", "Failed")
    placed = current if current and current.node else next((p for p in reversed(pods) if p.node), None)
    if placed is not None and (ran or job.finished or h.phase not in QUEUED_PHASES):
        node = obs.node_labels.get(placed.node) or {}
        if node.get(LABEL_INSTANCE_TYPE):
            h.status["instance_type"] = node[LABEL_INSTANCE_TYPE]
        if node.get(LABEL_REGION):
            h.status["region"] = node[LABEL_REGION]
        if not h.status.get("instance_type") and choice.pool.instance_type:
            # a node without the well-known label: report what the pool is configured to be
            h.status["instance_type"] = choice.pool.instance_type

    # Pods lost to node disruptions do not count as attempts (podFailurePolicy Ignore).
    for p in pods:
        if p.disrupted and p.phase == "Failed" and not any(
                (e.get("data") or {}).get("pod") == p.name and e["status"] == "disrupted"
                for ph in h.status["phases"] for e in ph["events"]):
            h.event("disrupted", now, f"pod {p.name} was disrupted on node {p.node}; not counted as a retry",
                    data={"pod": p.name, "node": p.node})
            plan.events.append(("Warning", "Disrupted", f"pod {p.name} disrupted on node {p.node}"))

    if job.failed_condition is not None:
        attempts = max(job.failed, len(failed_pods), 1)
        cond = job.failed_condition
        text = job_failure_text(cond.get("reason"), cond.get("message"), last_failure, attempts)
        data = {**(last_failure.data() if last_failure else {}), "job_reason": cond.get("reason"),
                "attempts": attempts}
        return fail(text, f"Job {job.name} failed ({cond.get('reason') or 'Failed'})", data)

    if last_failure is not None and last_failure.permanent:
        # The podFailurePolicy fails the Job on this exit code; no retry will happen.
        return fail(last_failure.describe(), f"Job {job.name} failed (permanent worker error)",
                    {**last_failure.data(), "attempts": max(job.failed, len(failed_pods))})

    n_failed = min(max(job.failed, len(failed_pods)), config.backoff_limit)
    if n_failed > h.attempt:
        limit = config.backoff_limit + 1
        for attempt in range(h.attempt + 1, n_failed + 1):
            is_last = attempt == n_failed
            h.retry(attempt, now,
                    f"attempt {attempt - 1} failed; retry {attempt} of at most {limit - 1}",
                    error=last_failure.describe() if (is_last and last_failure) else None,
                    data=(last_failure.data() if (is_last and last_failure) else None))
            plan.retries += 1
        plan.events.append(("Warning", "Retry",
                            f"attempt {n_failed} started" + (f" after: {last_failure.describe()}" if last_failure else "")))

    if progress and progress.get("pod") and current is not None and progress["pod"] != current.name:
        progress = None  # written by an earlier attempt's pod: not news about the current one

    if ran and h.phase in QUEUED_PHASES:
        h.advance("downloading", now, f"worker started on node {current.node}",
                  data={"pod": current.name, "node": current.node,
                        "instance_type": h.status.get("instance_type"), "region": h.status.get("region")})
        created = parse_ts(h.status.get("created_at"))
        if created:
            plan.queue_wait = max(0.0, (now - created).total_seconds())

    if progress and progress.get("phase") in WORKER_PHASES:
        target = progress["phase"]
        for p in WORKER_PHASES[: WORKER_PHASES.index(target) + 1]:
            if PHASE_ORDER.index(p) > PHASE_ORDER.index(h.phase):
                h.advance(p, now, f"{p} started", data={"pod": current.name if current else None})
        if h.phase == target:
            h.progress(progress, now)

    if job.complete:
        out = (progress or {}).get("output_dataset_id") or output_dataset_id(spec, job_id)
        h.status["augmented_dataset_id"] = out
        h.complete(now, f"augmented dataset: {out}", data={"augmented_dataset_id": out})
        return finish()

    timeout = spec.pending_timeout_seconds or config.pending_timeout_seconds
    if current is None or not current.node:
        reason = current.unschedulable if current else NO_POD_REASON
        if current is not None and reason:
            seen = [e for e in h.current["events"] if e["status"] == "unschedulable"]
            if not seen or seen[-1].get("message") != reason:
                h.event("unschedulable", now, reason, data={"pod": current.name})
                plan.events.append(("Warning", "Unschedulable", reason))
        since = parse_ts((current.created if current else None) or job.created) or now
        waited = (now - since).total_seconds()
        if waited >= timeout:
            plan.delete_job = job.name
            return fail(pending_timeout_text(timeout, reason), "no node could take the worker pod",
                        {"pending_seconds": round(waited, 1), "timeout_seconds": timeout,
                         "scheduler": reason})
        plan.requeue_after = max(0.5, timeout - waited)
    elif current.phase == "Pending" and current.waiting_reason in CANNOT_START_REASONS:
        # Placed, but the kubelet cannot start the container: the same budget as an unplaced
        # pod, so a missing Hub-token Secret fails the job instead of leaving it queued forever.
        said = kubelet_waiting_text(current.waiting_reason, current.waiting_message)
        seen = [e.get("message") for e in h.current["events"]
                if e["status"] == "container_waiting" and (e.get("data") or {}).get("pod") == current.name]
        if said not in seen and len(seen) < MAX_WAITING_EVENTS:
            h.event("container_waiting", now, said,
                    data={"pod": current.name, "node": current.node, "reason": current.waiting_reason})
            plan.events.append(("Warning", "ContainerWaiting", said))
        since = parse_ts(current.created) or now
        waited = (now - since).total_seconds()
        if waited >= timeout:
            plan.delete_job = job.name
            return fail(start_timeout_text(timeout, current.waiting_reason, current.waiting_message),
                        "the worker container could not start",
                        {"pending_seconds": round(waited, 1), "timeout_seconds": timeout,
                         "pod": current.name, "node": current.node, "kubelet_reason": current.waiting_reason})
        plan.requeue_after = max(0.5, timeout - waited)
    return finish()


def _terminal(status: dict) -> bool:
    phases = status.get("phases") or []
    return bool(phases) and phases[-1].get("name") in ("completed", "failed", "cancelled")


def job_name_for(cr: dict) -> str:
    return job_name(cr["metadata"]["name"])


__all__ = ["Observed", "Plan", "decide", "operator_status", "job_name_for"]
