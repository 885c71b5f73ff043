"""Keeps the last 1 MiB of each attempt's worker log once its pod has ended, so the gateway can
serve it after the pod is gone (GET /v1/augmentation/{id}/logs; the contract's names:
`roboaug.api.joblogs`).

When: `ended(event, pod)` (pure) says a pod of ours has ended: phase Succeeded or Failed (an
evicted, cancelled or deleted pod is ended by its kubelet before the object goes), or it was
deleted before we saw it end. Then, off the event loop: the CR is read (the archive's owner and
its uid name the archive; no CR, nothing to keep), an archive already there ends it (a
restarted operator meets every ended pod again), else the pod's log is streamed into `tail`
(bounded memory) and a ConfigMap `joblogs.archive_name(...)` is created, owned by the CR.

A pod already gone when we read (404, or a node that no longer answers): the kubelet's
termination message is all that is left (for a failed worker with FallbackToLogsOnError, its
last 2 KiB / 80 lines, the error line among them); the archive holds that, marked
`log-source: termination-message`, or, with none, one line saying the log was lost.

Create only (RBAC: create/get on configmaps, get on pods/log): an archive is written once and
never rewritten. Each pod is handled once per operator process; its uid is forgotten when the
pod is deleted, so the set follows the pods that exist.

A sharded job (`shard_steps.py`): the pods of its shards' Job `<cr>-worker`, its `<cr>-finalize`
and `<cr>-cleanup` Jobs are archived by the rule `joblogs.kept`, decided from the pod event
alone (no API call for a pod left out): every failed shard pod, the shards of index 0 and 1
that succeed, every finalize and cleanup pod (archives of their own, `archive_name`'s stage).
So a job of 10,000 shards that succeed keeps two shard logs, not 10,000 ConfigMaps, and the
operator's work per shard ending is a comparison. An attempt whose parts are all taken (8 failed
shard pods of attempt 0, say) is remembered, so later pods of it cost no request either.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Optional

from roboaug.api import joblogs
from roboaug.api.contract import JOB_INDEX_FAILURE_COUNT, Stage
from roboaug.api.models import LABEL_JOB_ID

from .jobs import CONTAINER, LABEL_MANAGED_BY, LABEL_NAME, LABEL_STAGE, MANAGED_BY, cleanup_name, finalize_name, job_name, owner_reference
from .kube import USER_AGENT, ApiError, Kube
from .observe import cr_name_of
from .shards import COMPLETION_INDEX_ANNOTATION

log = logging.getLogger("roboaug.operator")
ENDED_PHASES = ("Succeeded", "Failed")
FULL_REMEMBERED = 10_000


@dataclass(frozen=True)
class Ended:
    """One attempt's pod that has ended: what to archive."""
    namespace: str
    cr_name: str
    pod_name: str
    pod_uid: str
    attempt: int
    job_id: Optional[str]
    gone: bool                 # the pod object is deleted: its log cannot be read any more
    message: Optional[str]     # the worker container's termination message
    stage: Optional[str] = None  # contract.Stage of its Job (None: a one-pod job's)
    index: Optional[int] = None  # its Indexed Job completion index
    job_uid: str = ""            # the Job that owns it


def attempt_of(pod: Mapping[str, Any]) -> int:
    """The attempt the job controller stamped on the pod (the worker contract's ROBOAUG_ATTEMPT)."""
    raw = str(((pod.get("metadata") or {}).get("annotations") or {}).get(JOB_INDEX_FAILURE_COUNT) or "0")
    return int(raw) if raw.isdigit() else 0


def _termination_message(pod: Mapping[str, Any]) -> Optional[str]:
    for cs in (pod.get("status") or {}).get("containerStatuses") or ():
        if cs.get("name") == CONTAINER:
            return ((cs.get("state") or {}).get("terminated") or {}).get("message") or None
    return None


def _stage(cr: str, owner: str, labels: Mapping[str, Any]) -> tuple[bool, Optional[str]]:
    """(whether `owner` is one of the CR's Jobs, the pod's stage: None for a one-pod job's).
    The Job decides the stage but a shard's, which its label tells apart from a one-pod run
    under the same Job name."""
    if owner == job_name(cr):
        return True, Stage.SHARD if labels.get(LABEL_STAGE) == Stage.SHARD else None
    if owner == finalize_name(cr):
        return True, Stage.FINALIZE
    if owner == cleanup_name(cr):
        return True, Stage.CLEANUP
    return False, None


def _index(meta: Mapping[str, Any]) -> Optional[int]:
    raw = str((meta.get("annotations") or {}).get(COMPLETION_INDEX_ANNOTATION) or "")
    return int(raw) if raw.isdigit() else None


def ended(event_type: Optional[str], pod: Mapping[str, Any]) -> Optional[Ended]:
    """The attempt to archive on this pod event, or None. Only a pod whose controlling owner is
    one of the CR's Jobs counts: a look-alike pod (our labels copied) cannot write an archive.
    A pod `joblogs.kept` leaves out (a shard that did not fail, past the sample) is None too."""
    meta = pod.get("metadata") or {}
    cr = cr_name_of(pod)
    if not cr:
        return None
    owner = next((r for r in meta.get("ownerReferences") or () if r.get("controller")), {})
    if owner.get("kind") != "Job":
        return None
    labels = meta.get("labels") or {}
    ours, stage = _stage(cr, owner.get("name") or "", labels)
    if not ours:
        return None
    gone = event_type == "DELETED"
    phase = (pod.get("status") or {}).get("phase")
    if phase not in ENDED_PHASES and not gone:
        return None
    index = _index(meta)
    if not joblogs.kept(stage, index, failed=phase == "Failed"):
        return None
    return Ended(namespace=meta.get("namespace", ""), cr_name=cr, pod_name=meta.get("name", ""),
                 pod_uid=meta.get("uid", ""), attempt=attempt_of(pod),
                 job_id=labels.get(LABEL_JOB_ID), gone=gone,
                 message=_termination_message(pod), stage=stage, index=index,
                 job_uid=owner.get("uid") or "")


def lost_line(e: Ended) -> str:
    return joblogs.render("warning", f"the log of pod {e.pod_name} (attempt {e.attempt}) was lost: the pod was "
                                     "gone before the operator could read it", event="log_lost")


def archive(cr: Mapping[str, Any], e: Ended, text: str, source: str, truncated: bool, part: int = 0) -> dict:
    """The ConfigMap holding the log tail `text` of pod `e.pod_name`, part `part` of attempt
    `e.attempt` (one part per pod of the attempt; a finalize or cleanup pod's under its stage's
    own name), owned by the CR."""
    meta = cr["metadata"]
    labels = {LABEL_NAME: "roboaug-worker-log", LABEL_MANAGED_BY: MANAGED_BY}
    if e.job_id:
        labels[LABEL_JOB_ID] = e.job_id
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": joblogs.archive_name(meta["name"], meta["uid"], e.attempt, part, e.stage),
            "namespace": meta["namespace"],
            "labels": labels,
            "annotations": {joblogs.ANNOTATION_ATTEMPT: str(e.attempt), joblogs.ANNOTATION_POD: e.pod_name,
                            joblogs.ANNOTATION_SOURCE: source,
                            joblogs.ANNOTATION_TRUNCATED: "true" if truncated else "false"},
            "ownerReferences": [owner_reference(dict(cr))],
        },
        "immutable": True,
        "data": {joblogs.ARCHIVE_KEY: text},
    }


def _text(data: bytes) -> str:
    # a ConfigMap's `data` is UTF-8; a multi-byte character cut by the tail becomes U+FFFD
    return data.decode("utf-8", errors="replace")


class LogArchiver:
    """Called on every pod event (`pod_event`, cheap, on the event loop); archives in its own
    small thread pool, so neither the watch nor the controller's API calls wait for a log."""

    def __init__(self, kube: Kube, limit: int = joblogs.ARCHIVE_BYTES, threads: int = 2):
        self.kube = kube
        self.limit = limit
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="log-archive")
        self._handled: set[str] = set()
        # (Job uid, stage, attempt) whose every part is taken: its later pods are left out
        # without a request. Bounded: cleared past FULL_REMEMBERED (forgetting costs requests).
        self._full: set[tuple[str, Optional[str], int]] = set()

    def pod_event(self, event_type: Optional[str], pod: Mapping[str, Any]) -> Optional[asyncio.Future]:
        uid = (pod.get("metadata") or {}).get("uid", "")
        e = ended(event_type, pod)
        if event_type == "DELETED":
            handled = uid in self._handled
            self._handled.discard(uid)
            if handled:
                return None
        if e is None or uid in self._handled:
            return None
        if not e.gone:
            self._handled.add(uid)
        return asyncio.get_running_loop().run_in_executor(self.executor, self.archive_quietly, e)

    def archive_quietly(self, e: Ended) -> Optional[str]:
        try:
            return self.archive(e)
        except Exception as exc:  # a courtesy: never take the operator down, never retry forever
            log.warning("log of %s/%s attempt %s not archived: %s", e.namespace, e.pod_name, e.attempt, exc,
                        extra={"object": {"namespace": e.namespace, "name": e.cr_name}})
            return None

    def archive(self, e: Ended) -> Optional[str]:
        """Archive `e`; returns the ConfigMap's name, or None when there was nothing to do."""
        full = (e.job_uid, e.stage, e.attempt)
        if e.job_uid and full in self._full:
            return None
        try:
            cr = self.kube.get_cr(e.namespace, e.cr_name)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        path = f"/api/v1/namespaces/{e.namespace}/configmaps"
        part = self.free_part(cr, e, path)
        if part is None:
            return None
        if part < 0:  # every part taken
            if len(self._full) >= FULL_REMEMBERED:
                self._full.clear()
            self._full.add(full)
            return None
        text, source, truncated = None, "pod", False
        if not e.gone:
            try:
                data, truncated = joblogs.tail(self.read_log(e), self.limit)
                text = _text(data)
            except ApiError as exc:
                if exc.status not in (400, 404):  # 404: pod gone; 400: its container never ran
                    raise
        if text is None:
            source = "termination-message" if e.message else "none"
            text = e.message if e.message else lost_line(e) + "\n"
        body = archive(cr, e, text, source, truncated, part)
        try:
            self.kube.request("POST", path, body, query={"fieldManager": USER_AGENT}, resource="configmaps")
        except ApiError as exc:
            if exc.status != 409:
                raise
        log.info("archived the log of %s attempt %s (%d bytes, %s)", e.pod_name, e.attempt, len(text.encode()),
                 source, extra={"object": {"namespace": e.namespace, "name": e.cr_name}})
        return body["metadata"]["name"]

    def free_part(self, cr: Mapping[str, Any], e: Ended, path: str) -> Optional[int]:
        """The first part of `e.attempt` with no archive yet; None when this pod has one already
        (handled before a restart), -1 when every part is taken."""
        for part in range(joblogs.MAX_ARCHIVE_PARTS):
            name = joblogs.archive_name(cr["metadata"]["name"], cr["metadata"]["uid"], e.attempt, part, e.stage)
            try:
                found = self.kube.request("GET", f"{path}/{name}", resource="configmaps")
            except ApiError as exc:
                if exc.status != 404:
                    raise
                return part
            if ((found.get("metadata") or {}).get("annotations") or {}).get(joblogs.ANNOTATION_POD) == e.pod_name:
                return None
        log.warning("attempt %s of %s had more than %d pods: the log of %s is not archived", e.attempt,
                    e.cr_name, joblogs.MAX_ARCHIVE_PARTS, e.pod_name,
                    extra={"object": {"namespace": e.namespace, "name": e.cr_name}})
        return -1

    def read_log(self, e: Ended) -> Iterator[bytes]:
        return self.kube.pod_log_chunks(e.namespace, e.pod_name, CONTAINER)


__all__ = ["ENDED_PHASES", "Ended", "LogArchiver", "archive", "attempt_of", "ended", "lost_line"]
