"""What `reconcile.decide` reads (`Observed`), what it returns (`Plan`), and what its steps share
while it runs (`Decision`).

A `Decision` is one decision in the making: the observation, the facts derived from it once
(which pod matters now, which pods failed), what earlier steps settled (the parsed spec, the
pool), the phase history being written and the plan being built. The steps (`steps.py`) read a
Decision and write only its history `h`, its plan, and the fields documented as theirs; none
does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Optional

from roboaug.api.contract import Stage
from roboaug.api.models import AugmentationJobSpec
from roboaug.api.models.project import AugmentationProjectSpec

from .config import OperatorConfig
from .errors import PodFailure
from .kueue import WorkloadView
from .observe import JobView, PodView, owned_pods
from .phases import History
from .pools import PoolChoice


@dataclass
class Observed:
    cr: dict                                   # the AugmentationJob as stored
    job: Optional[JobView] = None
    pods: list[PodView] = field(default_factory=list)
    node_labels: dict[str, dict] = field(default_factory=dict)
    now: datetime = None  # type: ignore[assignment]
    create_error: Optional[str] = None         # the apiserver refused our Job (not a 409)
    # The job's AugmentationProject as stored (None: the project has none), read by the
    # controller only while the job has no Job yet, since only then does its policy decide, and
    # once the job has finished, for its ttl_seconds_after_finished.
    project: Optional[dict] = None
    project_error: Optional[str] = None        # the project could not be read (not a 404)
    # The job's project has no AugmentationProject and jobs_without_project.action is `default`:
    # the default project's UUID; `project` is then that project (None if it is missing too).
    project_default: Optional[str] = None
    # For `limits.max_running_jobs`, counted by the controller from its view of the namespace
    # (only while this job has no Job and its project has the limit): the project's other jobs
    # whose worker Job exists and is not finished, and those still without a Job that were
    # created before this one (oldest first, so a burst does not starve its first job).
    project_running: int = 0
    project_ahead: int = 0
    # A sharded job's other Jobs (`<cr>-finalize`, `<cr>-cleanup`) and their pods;
    # the last progress report of each shard (index -> report, kept by the controller: each
    # shard pod overwrites status.progress); whether a progress-only status write may go now
    # (shards.WriteBudget) and, if not, in how many seconds.
    finalize: Optional[JobView] = None
    finalize_pods: list[PodView] = field(default_factory=list)
    cleanup: Optional[JobView] = None
    cleanup_pods: list[PodView] = field(default_factory=list)  # the cleanup Job's (its pending timeout)
    shard_reports: dict = field(default_factory=dict)
    progress_due: bool = True
    progress_wait: float = 0.0
    # The Kueue Workload of our Job, read only while the Job is suspended in a LocalQueue
    # (kueue.py); None with no error: Kueue has not made one yet.
    workload: Optional[WorkloadView] = None
    workload_error: Optional[str] = None


@dataclass
class Plan:
    status: dict = field(default_factory=dict)          # status fields to merge-patch (changed only)
    create_job: Optional[dict] = None
    delete_job: Optional[str] = None                    # foreground deletion
    delete_also: list[str] = field(default_factory=list)  # more Jobs to delete (a sharded job's finalize)
    delete_cr: bool = False                             # the finished job's TTL ran out
    labels: dict = field(default_factory=dict)          # CR labels to add
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (type, reason, message)
    transitions: list[tuple[str, str, Optional[float]]] = field(default_factory=list)
    finished: Optional[str] = None                      # final status reached by this plan
    retries: int = 0
    queue_wait: Optional[float] = None                  # CR created -> worker running, seconds
    requeue_after: Optional[float] = None
    waits_for_slot: bool = False                        # held `queued` by the project's max_running_jobs
    new_status: dict = field(default_factory=dict)      # the whole operator-owned status after the plan

    @property
    def empty(self) -> bool:
        return not (self.status or self.create_job or self.delete_job or self.delete_cr or self.labels
                    or self.events or self.delete_also)


def operator_status(status: Optional[dict]) -> dict:
    """The part of status the operator owns: all of it but the worker's `progress`."""
    return {k: v for k, v in (status or {}).items() if k != "progress"}


def current_pod(pods: list[PodView]) -> Optional[PodView]:
    """The pod that matters now: the newest one running, else the newest one still alive, else
    the newest one. One Job runs one pod at a time, so this is its live pod; a sharded job's
    Indexed Job has many alive at once, and its newest is most often one just created and still
    pending while hundreds run: the job is where its running shards are, not its last one."""
    live = [p for p in pods if not p.deleting and p.phase not in ("Failed", "Succeeded")]
    pool = [p for p in live if p.phase == "Running"] or live or list(pods)
    return max(pool, key=lambda p: (p.created or "", p.name)) if pool else None


def failure_of(pod: PodView) -> PodFailure:
    return PodFailure(exit_code=pod.exit_code, reason=pod.exit_reason, message=pod.exit_message,
                      pod=pod.name, node=pod.node)


@dataclass
class Decision:
    obs: Observed
    config: OperatorConfig
    before: dict                    # the operator-owned status as stored
    h: History                      # the history being written (a copy of `before`)
    was_terminal: bool              # `before` had already reached a final status
    plan: Plan
    job_id: str
    pods: list[PodView]             # oldest first
    current: Optional[PodView]      # see `current_pod`
    failed_pods: list[PodView]      # failed and not disrupted, oldest first
    # The worker's last report; `steps.progress` drops it when another pod wrote it.
    progress: Optional[dict] = None
    spec: Optional[AugmentationJobSpec] = None   # set by `steps.validate`
    choice: Optional[PoolChoice] = None          # set by `steps.route`
    project: Optional[AugmentationProjectSpec] = None  # set by `steps.validate` (before the Job exists)

    @classmethod
    def begin(cls, obs: Observed, config: OperatorConfig) -> "Decision":
        cr = obs.cr
        meta = cr.get("metadata") or {}
        before = operator_status(cr.get("status"))
        # only our Job's own pods: a look-alike pod with our labels is nobody's state
        pods = sorted(owned_pods(obs.job, obs.pods), key=lambda p: (p.created or "", p.name))
        h = History(before)
        return cls(
            obs=obs, config=config, before=before, h=h, was_terminal=h.terminal, plan=Plan(),
            job_id=str(before.get("job_id") or (cr.get("spec") or {}).get("job_id") or meta.get("uid")),
            pods=pods, current=current_pod(pods),
            failed_pods=[p for p in pods if p.phase == "Failed" and not p.disrupted],
            progress=(cr.get("status") or {}).get("progress") or None,
        )

    # -- read-only views of the observation ------------------------------------------------------
    @property
    def now(self) -> datetime:
        return self.obs.now

    @property
    def meta(self) -> dict:
        return self.obs.cr.get("metadata") or {}

    @property
    def spec_raw(self) -> dict:
        return self.obs.cr.get("spec") or {}

    @property
    def job(self) -> Optional[JobView]:
        return self.obs.job

    @property
    def ours(self) -> bool:
        """A Job exists and this CR owns it (a Job of the same name may belong to another)."""
        return self.job is not None and self.job.owner_uid == self.meta.get("uid")

    @property
    def job_running(self) -> bool:
        """Our Job exists, is not being deleted and a worker may still run (and publish) under it:
        it has not finished, nor is about to because its pod exited with a permanent code and no
        pod is alive (its podFailurePolicy fails it on that code: no new pod starts, and the
        failed pod stays with its logs)."""
        if not self.ours or self.job.deleting or self.job.finished:
            return False
        live = [p for p in self.pods if not p.deleting and p.phase not in ("Failed", "Succeeded")]
        last = self.last_failure
        return not (last is not None and last.permanent and not live)

    @property
    def own_progress(self) -> Optional[dict]:
        """The worker's report when the current pod wrote it (`steps.progress` drops the others)."""
        c, report = self.current, self.progress
        return report if report and c is not None and report.get("pod") == c.name else None

    @property
    def last_failure(self) -> Optional[PodFailure]:
        return failure_of(self.failed_pods[-1]) if self.failed_pods else None

    @property
    def ran(self) -> bool:
        """The current pod got a node and its container started (it runs or has run), or, for a
        sharded job, any shard succeeded (its pod may be gone: the Job's count outlives it), even
        while every alive shard pod waits for a node."""
        c = self.current
        if c is not None and c.node and c.phase in ("Running", "Succeeded", "Failed"):
            return True
        shards = self.job is not None and self.job.stage == Stage.SHARD
        return shards and (self.job.succeeded > 0 or any(p.phase == "Succeeded" for p in self.pods))

    # -- writing ----------------------------------------------------------------------------------
    def fail(self, error: str, message: str, data: Optional[dict] = None, *, reason: str) -> bool:
        """The job fails; returns True, so a step can end the decision with `return d.fail(...)`.
        `reason`: the failure in one CamelCase word (the Failed condition's reason).
        Its Job, if still running, is deleted by `reconcile.finish` (as for every end)."""
        self.h.fail(self.now, error, message, data, reason=reason)
        return True
