"""Small summaries of the AugmentationJobs, the worker's Jobs and Pods: what the controller and
`reconcile.decide` need and nothing more.

The operator keeps these (not whole bodies) in memory for every object it watches, so its
memory stays flat with the number of jobs: an AugmentationJob's whole body only while it is
unfinished, packed (compressed JSON, a few hundred bytes) once it has finished. Plain functions
over plain dicts.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Optional

from roboaug.api.contract import HF_TOKEN, TERMINAL_STATUSES
from roboaug.api.models.unbound import LABEL_DEFAULT_PROJECT

from .jobs import ANNOTATION_CR_NAME, CONTAINER
from .kueue import LABEL_QUEUE_NAME


@dataclass(frozen=True)
class CrView:
    """One AugmentationJob as the controller keeps it. The fields the controller reads across
    all jobs (the sweep, a project's load) are plain; the body `decide` reads is `body` while
    the job runs, and `packed` once it has finished: a finished job is decided on again only
    now and then (its TTL, a late event), and 5,000 of them as dicts were most of the
    operator's memory."""
    namespace: str
    name: str
    uid: str
    resource_version: int
    created: str               # creationTimestamp ("" if none)
    phase: Optional[str]       # status.status
    project: str               # the project it runs under: default-project label, else spec's
    # What the controller reads before deciding (the project read) without unpacking a
    # finished job's body: spec.project_id as written ("" if none), effective_spec in status.
    project_id: str = ""
    settled: bool = False
    body: Optional[dict] = field(default=None, compare=False, repr=False)
    packed: Optional[bytes] = field(default=None, compare=False, repr=False)

    @property
    def finished(self) -> bool:
        return self.phase in TERMINAL_STATUSES

    def full(self) -> dict:
        """The body as stored (a fresh dict each time for a finished job)."""
        if self.body is not None:
            return self.body
        return json.loads(zlib.decompress(self.packed)) if self.packed is not None else {}


def cr_project(body: Mapping[str, Any], labels: Optional[Mapping[str, Any]] = None) -> str:
    """The project a job runs under: the default project it was labelled with (`labels`, a
    plan's, first: not written yet), else its own `spec.project_id`; lowercase."""
    labels = {**((body.get("metadata") or {}).get("labels") or {}), **(labels or {})}
    own = str((body.get("spec") or {}).get("project_id") or "").lower()
    return str(labels.get(LABEL_DEFAULT_PROJECT) or own).lower()


def summarize_cr(body: Mapping[str, Any]) -> CrView:
    meta = body.get("metadata") or {}
    try:
        rv = int(meta.get("resourceVersion") or -1)
    except ValueError:
        rv = -1
    status = body.get("status") or {}
    phase = status.get("status")
    view = dict(namespace=meta.get("namespace", ""), name=meta.get("name", ""),
                uid=meta.get("uid", ""), resource_version=rv,
                created=meta.get("creationTimestamp") or "", phase=phase, project=cr_project(body),
                project_id=str((body.get("spec") or {}).get("project_id") or ""),
                settled="effective_spec" in status)
    if phase in TERMINAL_STATUSES:  # dict(): kopf's Body is a Mapping over the plain dicts
        packed = zlib.compress(json.dumps(dict(body), separators=(",", ":")).encode(), 6)
        return CrView(**view, packed=packed)
    return CrView(**view, body=dict(body))


# What kopf keeps of an object while its per-object worker lives: the identity and what kopf
# itself reads (name, uid, resourceVersion, labels, annotations, owners, finalizers, deletion).
_KOPF_KEEPS = ("apiVersion", "kind", "metadata")


def release_body(body: Mapping[str, Any]) -> None:
    """Drop, in place, what an index function has summarized from the raw object kopf holds.

    kopf parks every object of its initial listing in a per-object worker until *all* indexes
    are filled (5,000 finished jobs: 5,000 whole bodies at once), then hands the same object
    to the event handlers. Ours read only metadata there (`cr_name_of`, the key), and the
    summaries (`summarize_*`) have taken copies of the rest, so the listing's bodies shrink to
    their metadata as they are indexed, not when the last one is. `body` is a kopf.Body (a
    view: its `_src` is the raw dict) or the raw dict itself."""
    raw = getattr(body, "_src", body)
    if not isinstance(raw, dict):
        return
    for key in [k for k in raw if k not in _KOPF_KEEPS]:
        del raw[key]
    meta = raw.get("metadata")
    if isinstance(meta, dict):
        meta.pop("managedFields", None)  # the apiserver's field owners: most of a bare object


def _cond(conditions: list | None, typ: str) -> Optional[dict]:
    for c in conditions or ():
        if c.get("type") == typ:
            return c
    return None


@dataclass(frozen=True)
class JobView:
    name: str
    uid: str
    owner_uid: Optional[str]
    created: Optional[str]
    deleting: bool
    active: int
    ready: int
    failed: int
    succeeded: int
    complete: bool
    failed_condition: Optional[dict]  # {"reason", "message"} once the Job is Failed
    stage: Optional[str] = None  # its worker stage label (jobs.LABEL_STAGE); None: a single stage
    # spec.suspend, and the Kueue LocalQueue it names: a suspended Job with a queue waits for
    # Kueue's admission (kueue.py), not for a node.
    suspended: bool = False
    queue: Optional[str] = None
    # status.startTime: when the Job last started, i.e. was unsuspended (Kueue's admission)
    started: Optional[str] = None
    # the Secret (name, key) its worker's HF_TOKEN comes from, as it was rendered: the later
    # stages of a sharded job mount the same one (shard_steps), whatever the project says now
    hub_token: Optional[tuple[str, str]] = None

    @property
    def finished(self) -> bool:
        return self.complete or self.failed_condition is not None


@dataclass(frozen=True)
class PodView:
    name: str
    uid: str
    created: Optional[str]
    deleting: bool
    phase: str
    node: Optional[str]
    unschedulable: Optional[str]  # scheduler's message while PodScheduled is False
    exit_code: Optional[int]
    exit_reason: Optional[str]
    exit_message: Optional[str]
    disrupted: bool                # its DisruptionTarget condition: a drain, preemption, node pressure
    evicted: bool = field(default=False)  # status.reason Evicted: the kubelet's node-pressure eviction
    started: Optional[str] = field(default=None)
    job_uid: Optional[str] = field(default=None)  # the Job that owns the pod
    # The worker container's `state.waiting` (ContainerCreating, ImagePullBackOff...): the only
    # word from the kubelet about a container that was placed but never starts.
    waiting_reason: Optional[str] = field(default=None)
    waiting_message: Optional[str] = field(default=None)
    # Why it was evicted or disrupted (the DisruptionTarget condition's words, else status.message).
    disruption: Optional[str] = field(default=None)
    # The shard it runs: an Indexed Job's completion index (None for a pod of no Indexed Job).
    index: Optional[int] = field(default=None)

    @property
    def lost(self) -> bool:
        """Failed by an eviction or another disruption, not by its own worker."""
        return self.phase == "Failed" and (self.disrupted or self.evicted)


def cr_name_of(body: Mapping[str, Any]) -> Optional[str]:
    """Which AugmentationJob a Job or Pod belongs to (our annotation; owner name as fallback)."""
    meta = body.get("metadata") or {}
    name = (meta.get("annotations") or {}).get(ANNOTATION_CR_NAME)
    if name:
        return name
    for ref in meta.get("ownerReferences") or ():
        if ref.get("kind") == "AugmentationJob":
            return ref.get("name")
    return None


def summarize_job(body: Mapping[str, Any]) -> JobView:
    meta = body.get("metadata") or {}
    status = body.get("status") or {}
    conditions = status.get("conditions") or []
    owner = next((r.get("uid") for r in meta.get("ownerReferences") or () if r.get("controller")), None)
    complete = _cond(conditions, "Complete")
    # FailureTarget (Kubernetes >= 1.31) is the job controller's final verdict; Failed follows
    # once the pods are gone. Acting on the first lets no retry be counted in between.
    failed = _cond(conditions, "Failed")
    if not (failed and failed.get("status") == "True"):
        failed = _cond(conditions, "FailureTarget")
    return JobView(
        name=meta.get("name", ""),
        uid=meta.get("uid", ""),
        owner_uid=owner,
        created=meta.get("creationTimestamp"),
        deleting=bool(meta.get("deletionTimestamp")),
        active=int(status.get("active") or 0),
        ready=int(status.get("ready") or 0),
        failed=int(status.get("failed") or 0),
        succeeded=int(status.get("succeeded") or 0),
        complete=bool(complete and complete.get("status") == "True"),
        stage=(meta.get("labels") or {}).get("roboaug.dev/stage"),
        failed_condition=({"reason": failed.get("reason"), "message": failed.get("message")}
                          if failed and failed.get("status") == "True" else None),
        suspended=bool((body.get("spec") or {}).get("suspend")),
        queue=(meta.get("labels") or {}).get(LABEL_QUEUE_NAME),
        started=status.get("startTime"),
        hub_token=_hub_token(body),
    )


def _hub_token(body: Mapping[str, Any]) -> Optional[tuple[str, str]]:
    pod = (((body.get("spec") or {}).get("template") or {}).get("spec") or {})
    for c in pod.get("containers") or ():
        if c.get("name") != CONTAINER:
            continue
        for env in c.get("env") or ():
            ref = ((env.get("valueFrom") or {}).get("secretKeyRef") or {}) if env.get("name") == HF_TOKEN.name else {}
            if ref.get("name"):
                return ref["name"], ref.get("key") or "token"
    return None


def summarize_pod(body: Mapping[str, Any]) -> PodView:
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    status = body.get("status") or {}
    conditions = status.get("conditions") or []
    sched = _cond(conditions, "PodScheduled")
    unschedulable = None
    if sched and sched.get("status") == "False":
        unschedulable = sched.get("message") or sched.get("reason") or "Unschedulable"
    disruption = _cond(conditions, "DisruptionTarget")
    exit_code = exit_reason = exit_message = started = waiting_reason = waiting_message = None
    for cs in status.get("containerStatuses") or ():
        if cs.get("name") != CONTAINER and len(status.get("containerStatuses")) > 1:
            continue
        state = cs.get("state") or {}
        if "terminated" in state:
            t = state["terminated"] or {}
            exit_code = t.get("exitCode")
            exit_reason = t.get("reason")
            exit_message = t.get("message")
            started = t.get("startedAt")
        elif "running" in state:
            started = (state["running"] or {}).get("startedAt")
        elif "waiting" in state:
            w = state["waiting"] or {}
            waiting_reason = w.get("reason")
            waiting_message = w.get("message")
    return PodView(
        name=meta.get("name", ""),
        uid=meta.get("uid", ""),
        created=meta.get("creationTimestamp"),
        deleting=bool(meta.get("deletionTimestamp")),
        phase=status.get("phase") or "Pending",
        node=spec.get("nodeName"),
        unschedulable=unschedulable,
        exit_code=exit_code,
        exit_reason=exit_reason,
        exit_message=exit_message,
        disrupted=bool(disruption and disruption.get("status") == "True"),
        evicted=status.get("reason") == "Evicted",
        started=started,
        job_uid=next((r.get("uid") for r in meta.get("ownerReferences") or ()
                      if r.get("kind") == "Job" and r.get("controller")), None),
        waiting_reason=waiting_reason,
        waiting_message=waiting_message,
        disruption=_disruption_words(disruption, status),
        index=_index(meta),
    )


def _index(meta: Mapping[str, Any]) -> Optional[int]:
    raw = (meta.get("annotations") or {}).get("batch.kubernetes.io/job-completion-index")
    return int(raw) if isinstance(raw, str) and raw.isdigit() else None


def _disruption_words(condition: Optional[dict], status: Mapping[str, Any]) -> Optional[str]:
    if condition and condition.get("status") == "True":
        words = condition.get("message") or condition.get("reason")
        if words:
            return str(words)[:300]
    if status.get("reason") == "Evicted":
        return str(status.get("message") or "Evicted")[:300]
    return None


def owned_pods(job: Optional[JobView], pods: Iterable[PodView]) -> list[PodView]:
    """The pods that count toward a job's state: those whose controlling ownerReference is our
    Job, by uid. The watch selects pods by our labels, which anyone who may create pods can copy:
    a look-alike pod (no owner, or another) must not fail, retry or move another's job."""
    if job is None:
        return []
    return [p for p in pods if p.job_uid is not None and p.job_uid == job.uid]
