"""Kueue admission: what a worker Job carries for Kueue, and what its Workload says.

A job whose project or pool names a Kueue LocalQueue (`AugmentationProjectSpec.kueue_queue`,
`Pool.kueue_queue`; the project's wins, `jobs.job_queue`) gets Jobs labelled
`kueue.x-k8s.io/queue-name` and created suspended (`jobs.render_job`). Kueue makes a Workload
for each such Job and unsuspends the Job once its ClusterQueue admits it; until then the job
stays `queued`, with Kueue's reason (`steps.held_by_queue`), and the pending timeout does not
run: waiting for quota is the queue's business, not a pod that cannot start.

The operator reads the Workload (not watches it: one GET per look while a Job is suspended, a
few per minute) by the label Kueue gives it, the owning Job's uid. Plain functions over dicts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional

LABEL_QUEUE_NAME = "kueue.x-k8s.io/queue-name"
LABEL_JOB_UID = "kueue.x-k8s.io/job-uid"
GROUP = "kueue.x-k8s.io"
# v1beta2 is the stored version from Kueue v0.15 on (v1beta1 is still served).
VERSION = "v1beta2"
# How often a job held by Kueue looks at its Workload again (Kueue's words change as other
# jobs come and go; its admission unsuspends the Job, which is an event of its own).
REQUEUE_SECONDS = 10.0
NO_WORKLOAD = "Kueue has not created a Workload for the Job yet (is Kueue running and the batch/job integration on?)"
MAX_MESSAGE = 500


@dataclass(frozen=True)
class WorkloadView:
    """What a Workload says about admission: its name, whether it is admitted, and why not."""

    name: str
    admitted: bool
    reason: Optional[str]     # the condition's reason (Pending, Inadmissible, Preempted...)
    message: Optional[str]    # Kueue's words, cut at MAX_MESSAGE


def workloads_path(namespace: str) -> str:
    return f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/workloads"


def job_uid_selector(job_uid: str) -> str:
    return f"{LABEL_JOB_UID}={job_uid}"


def _cond(conditions: list, typ: str) -> Optional[dict]:
    return next((c for c in conditions if c.get("type") == typ), None)


def summarize_workload(body: Mapping[str, Any]) -> WorkloadView:
    """Why Kueue holds (or no longer holds) a Workload, from its conditions.

    An eviction (preemption, a deactivated workload) is news first; then quota not reserved
    (`QuotaReserved` False: no room in the ClusterQueue, a LocalQueue that does not exist...);
    then quota reserved but admission checks pending (`Admitted` False)."""
    conditions = list(((body.get("status") or {}).get("conditions")) or [])
    admitted = _cond(conditions, "Admitted")
    is_admitted = bool(admitted and admitted.get("status") == "True")
    why = None
    evicted = _cond(conditions, "Evicted")
    reserved = _cond(conditions, "QuotaReserved")
    if evicted and evicted.get("status") == "True":
        why = evicted
    elif not is_admitted:
        if reserved is None or reserved.get("status") != "True":
            why = reserved
        else:
            why = admitted
    message = None
    if why is not None:
        message = str(why.get("message") or why.get("reason") or "")[:MAX_MESSAGE] or None
    elif not is_admitted:
        message = "Kueue has not looked at the Workload yet"
    return WorkloadView(name=str((body.get("metadata") or {}).get("name") or ""), admitted=is_admitted,
                        reason=(why or {}).get("reason"), message=message)


def pick_workload(items: list[Mapping[str, Any]]) -> Optional[WorkloadView]:
    """The Job's Workload among those listed by its uid (one, unless Kueue is replacing it:
    the newest then)."""
    live = [w for w in items if not (w.get("metadata") or {}).get("deletionTimestamp")] or list(items)
    if not live:
        return None
    newest = max(live, key=lambda w: ((w.get("metadata") or {}).get("creationTimestamp") or "",
                                      (w.get("metadata") or {}).get("name") or ""))
    return summarize_workload(newest)


def held_text(queue: str, workload: Optional[WorkloadView], error: Optional[str] = None) -> str:
    """The words a job held by Kueue shows in its history: the queue and Kueue's reason."""
    if error:
        return f"waiting for Kueue to admit the Job (LocalQueue {queue}); its Workload cannot be read: {error}"
    if workload is None:
        return f"waiting for Kueue to admit the Job (LocalQueue {queue}): {NO_WORKLOAD}"
    if workload.admitted and workload.message is None:
        return f"admitted by Kueue (LocalQueue {queue}); waiting for Kueue to unsuspend the Job"
    why = workload.message or workload.reason or "not admitted yet"
    return f"waiting for Kueue to admit the Job (LocalQueue {queue}): {why}"
