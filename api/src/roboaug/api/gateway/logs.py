"""GET /v1/augmentation/{job_id}/logs: the worker's log lines, one JSON object per line
(`application/x-ndjson`; the line contract is `roboaug.api.joblogs`).

`?attempt=N` picks the attempt (default: the latest, the CR's `status.attempt` or the newest
pod's); `?follow=true` keeps the answer open and streams new lines until the attempt's pod ends
(waiting first, while the job is unfinished, for a pod to appear and its container to start).

Where the lines come from, for one attempt (a pod lost to a node disruption is replaced by one
with the same attempt number, so an attempt may have had several pods):
1. the archives the operator wrote for its pods that no longer exist (ConfigMaps named by
   `joblogs.archive_name`, parts 0, 1, ...; served only when owned by this job's CR, by uid),
2. then each of its pods that still exists, oldest first, read from the kubelet through the
   apiserver (`pods/log`), the last one followed when asked.
Lines that are not contract lines are wrapped (`joblogs.normalize`).

A sharded job: its shard, finalize and cleanup pods all carry the job's label, and most of its
shard pods' logs are not kept (`joblogs.kept`: failed shard pods, shards 0 and 1, finalize and
cleanup). The same rule picks the pods served, so a job of 10,000 shards answers with a few
logs, not 10,000 reads: the attempt's shard archives, then its finalize and cleanup archives
(names of their own), then its live pods the rule keeps, and one `logs_left_out` line counting
the live shard pods it left out (`kubectl logs` reads any of them while it exists).

Who may read: the same rules as GET /v1/augmentation/{id} (a key bound to projects sees only
their jobs; another project's job is a 404). The Kubernetes client blocks: every call runs in
the thread pool, and a followed stream reads chunk by chunk there, so the event loop never waits.
RBAC (chart `rbac-gateway.yaml`): pods get/list, pods/log get, configmaps get (no list).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from typing import Annotated, AsyncIterator, Iterator, Optional, Protocol

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from roboaug.api import joblogs
from roboaug.api.contract import JOB_INDEX_FAILURE_COUNT
from roboaug.api.models import LABEL_JOB_ID, TERMINAL_STATUSES, ErrorResponse

from . import service
from .deps import PrincipalDep, StoreDep
from .store import NotFound, StoreError, Unavailable

log = logging.getLogger(__name__)
CONTAINER = "worker"
"""The worker's container name in the operator's Job (operator/jobs.py CONTAINER)."""
POLL_SECONDS = 1.0
FOLLOW_READ_SECONDS = 60.0
"""A followed read quiet this long is made again (the client's read timeout must be finite)."""
_CHUNK = 16 * 1024
_TERMINAL = {s.value for s in TERMINAL_STATUSES}
LABEL_STAGE = "roboaug.dev/stage"
"""The worker stage label of the operator's Jobs and pods (operator/jobs.py LABEL_STAGE)."""
COMPLETION_INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"


class PodGone(Exception):
    """The pod (or its log) no longer exists."""


class NotStarted(Exception):
    """The pod's container has not started: there is no log yet."""


@dataclass(frozen=True)
class PodRef:
    name: str
    uid: str
    attempt: int
    created: str
    ended: bool
    stage: Optional[str] = None   # its `roboaug.dev/stage` label (None: a one-pod job's)
    index: Optional[int] = None   # its Indexed Job completion index
    failed: bool = False

    @property
    def kept(self) -> bool:
        """Served by the rule the operator archives by (`joblogs.kept`)."""
        return joblogs.kept(self.stage, self.index, self.failed)


class LogSource(Protocol):
    """Where logs are read; `KubernetesLogSource` in a cluster, a fake in tests."""

    def pods(self, job_id: str) -> list[PodRef]: ...
    def read(self, pod: str, follow: bool) -> Iterator[bytes]: ...
    def archive(self, name: str) -> Optional[dict]: ...
    def close(self, stream: Iterator[bytes]) -> None: ...


class NoLogSource:
    """No cluster (the memory store): no pods, no archives."""

    def pods(self, job_id: str) -> list[PodRef]:
        return []

    def read(self, pod: str, follow: bool) -> Iterator[bytes]:
        raise PodGone(pod)

    def archive(self, name: str) -> Optional[dict]:
        return None

    def close(self, stream: Iterator[bytes]) -> None:
        return None


def pod_ref(pod: dict) -> Optional[PodRef]:
    """A worker pod's reference, or None for a pod no Job controls (a look-alike with the label)."""
    meta = pod.get("metadata") or {}
    if not any(r.get("kind") == "Job" and r.get("controller") for r in meta.get("ownerReferences") or ()):
        return None
    annotations = meta.get("annotations") or {}
    raw = str(annotations.get(JOB_INDEX_FAILURE_COUNT) or "0")
    index = str(annotations.get(COMPLETION_INDEX_ANNOTATION) or "")
    phase = (pod.get("status") or {}).get("phase")
    return PodRef(name=meta.get("name", ""), uid=meta.get("uid", ""), attempt=int(raw) if raw.isdigit() else 0,
                  created=str(meta.get("creationTimestamp") or ""), ended=phase in ("Succeeded", "Failed"),
                  stage=(meta.get("labels") or {}).get(LABEL_STAGE), index=int(index) if index.isdigit() else None,
                  failed=phase == "Failed")


class KubernetesLogSource:
    """Pods and their logs through the apiserver, in the gateway's namespace."""

    def __init__(self, namespace: str, api_client, timeout: float = 10.0):
        from kubernetes import client

        self.namespace = namespace
        self.core = client.CoreV1Api(api_client)
        self.timeout = timeout

    def _call(self, fn, *args, **kwargs):
        from kubernetes.client.exceptions import ApiException

        try:
            return fn(*args, **kwargs)
        except ApiException as e:
            if e.status == 404:
                raise NotFound(e.reason) from None
            if e.status == 400:  # "container ... is waiting to start"
                raise NotStarted(e.reason) from None
            raise Unavailable(f"{e.status} {e.reason}") from None
        except StoreError:
            raise
        except Exception as e:  # urllib3 connection / timeout errors
            raise Unavailable(f"{type(e).__name__}: {e}") from None

    def pods(self, job_id: str) -> list[PodRef]:
        out = self._call(self.core.list_namespaced_pod, self.namespace,
                         label_selector=f"{LABEL_JOB_ID}={job_id}", _request_timeout=self.timeout,
                         _preload_content=False)
        import json

        items = json.loads(out.data or b"{}").get("items") or []
        return [ref for ref in (pod_ref(p) for p in items) if ref is not None]

    def read(self, pod: str, follow: bool) -> Iterator[bytes]:
        try:
            resp = self._call(self.core.read_namespaced_pod_log, pod, self.namespace, container=CONTAINER,
                              follow=follow, _preload_content=False,
                              _request_timeout=(float(self.timeout), FOLLOW_READ_SECONDS if follow
                                                else 6.0 * self.timeout))
        except NotFound as e:
            raise PodGone(str(e)) from None
        return _Stream(resp, follow)

    def archive(self, name: str) -> Optional[dict]:
        try:
            out = self._call(self.core.read_namespaced_config_map, name, self.namespace,
                             _request_timeout=self.timeout, _preload_content=False)
        except NotFound:
            return None
        import json

        return json.loads(out.data or b"{}")

    def close(self, stream: Iterator[bytes]) -> None:
        if isinstance(stream, _Stream):
            stream.close()


class _Stream:
    """A urllib3 response read chunk by chunk; `close` (from any thread) ends a blocked read.

    A followed log quiet for FOLLOW_READ_SECONDS (or a connection the apiserver cut) just ends
    this read: `lines` reads again from where it stopped until a listing shows the pod ended.
    Any other read cut short is the apiserver being unavailable."""

    def __init__(self, resp, follow: bool = False):
        self.resp = resp
        self.follow = follow
        self._it = resp.stream(_CHUNK)

    def __iter__(self):
        return self

    def __next__(self) -> bytes:
        try:
            return next(self._it)
        except StopIteration:
            raise
        except Exception as e:  # urllib3 read timeout, protocol error
            if self.follow:
                raise StopIteration from None
            raise Unavailable(f"{type(e).__name__}: {e}") from None

    def close(self) -> None:
        try:
            self.resp.close()
        except Exception:
            pass


def get_log_source(request: Request) -> LogSource:
    """The app's log source: set by tests, else one on the store's apiserver connection."""
    state = request.app.state
    source = getattr(state, "log_source", None)
    if source is None:
        store = state.store
        api_client = getattr(store, "api_client", None)
        source = (KubernetesLogSource(store.namespace, api_client, getattr(store, "timeout", 10.0))
                  if api_client is not None else NoLogSource())
        state.log_source = source
    return source


# -- what to serve ---------------------------------------------------------------------------------
def latest_attempt(cr: dict, pods: list[PodRef]) -> int:
    status_attempt = (cr.get("status") or {}).get("attempt")
    known = [p.attempt for p in pods] + ([int(status_attempt)] if isinstance(status_attempt, int) else [])
    return max(known, default=0)


def archived_parts(source: LogSource, cr: dict, attempt: int, live: set[str], stage: Optional[str] = None) -> list[str]:
    """The archive texts of `attempt` whose pods no longer exist, in the order written; only
    ConfigMaps whose controlling owner is this CR (a look-alike of that name is ignored).
    `stage`: a sharded job's finalize or cleanup archives (`joblogs.OWN_ARCHIVE_STAGES`)."""
    meta = cr.get("metadata") or {}
    texts = []
    for part in range(joblogs.MAX_ARCHIVE_PARTS):
        cm = source.archive(joblogs.archive_name(meta.get("name", ""), meta.get("uid", ""), attempt, part, stage))
        if cm is None:
            break
        cm_meta = cm.get("metadata") or {}
        owned = any(r.get("uid") == meta.get("uid") and r.get("controller") for r in cm_meta.get("ownerReferences") or ())
        pod = (cm_meta.get("annotations") or {}).get(joblogs.ANNOTATION_POD)
        if owned and pod not in live:
            texts.append(str((cm.get("data") or {}).get(joblogs.ARCHIVE_KEY) or ""))
    return texts


class _Lines:
    """Bytes in, served lines out (each normalized, newline-terminated)."""

    def __init__(self):
        self.partial = b""
        self.ts = joblogs.now_ts()

    def feed(self, chunk: bytes) -> list[bytes]:
        data = self.partial + chunk
        *whole, self.partial = data.split(b"\n")
        return self._out(whole)

    def end(self) -> list[bytes]:
        rest, self.partial = self.partial, b""
        return self._out([rest]) if rest else []

    def _out(self, lines: list[bytes]) -> list[bytes]:
        out = []
        for raw in lines:
            line, self.ts = joblogs.normalize(raw.decode("utf-8", errors="replace"), self.ts)
            if line:
                out.append(line.encode() + b"\n")
        return out


async def _stream_pod(source: LogSource, pod: str, follow: bool, lines: _Lines,
                      consumed: dict[str, int]) -> AsyncIterator[bytes]:
    """One read of the pod's log, from its start, skipping the `consumed[pod]` bytes an earlier
    read already served (a container's log only grows), so a followed read that ended early
    (the apiserver answers an empty log for a pod not yet on a node) can be made again."""
    stream = await run_in_threadpool(source.read, pod, follow)
    try:
        skip = consumed.get(pod, 0)
        while True:
            chunk = await run_in_threadpool(next, stream, b"")
            if not chunk:
                break
            if skip:
                chunk, skip = chunk[skip:], max(0, skip - len(chunk))
                if not chunk:
                    continue
            consumed[pod] = consumed.get(pod, 0) + len(chunk)
            for line in lines.feed(chunk):
                yield line
    finally:
        source.close(stream)  # a client that left mid-stream: the blocked read ends too


async def serve(source: LogSource, store, cr: dict, job_id: str, pods: list[PodRef], attempt: Optional[int],
                follow: bool) -> AsyncIterator[bytes]:
    """`lines` of the attempt; the answer has begun, so an apiserver failure on the way ends it
    with one error line (the details go to the gateway's log, not to the caller)."""
    try:
        async for line in lines(source, store, cr, job_id, pods, attempt, follow):
            yield line
    except StoreError as e:
        log.warning("log stream of job %s ended early: %s", job_id, e)
        yield (joblogs.render("error", "the log could not be read further: the Kubernetes API is unavailable; "
                                       "ask again", event="log_unavailable") + "\n").encode()


async def lines(source: LogSource, store, cr: dict, job_id: str, pods: list[PodRef], attempt: Optional[int],
                follow: bool) -> AsyncIterator[bytes]:
    """The lines of one attempt: archives of its vanished pods, then its pods (see the module).
    `pods`: the job's pods as listed just before.

    Following, a pod is done only once a listing shows it ended and its log has been read to the
    end after that: a followed read may end before (the pod not started yet, or not yet on a
    node), and is then made again after the next listing, from where it stopped."""
    out = _Lines()
    want = latest_attempt(cr, pods) if attempt is None else attempt
    served: set[str] = set()
    consumed: dict[str, int] = {}
    archives_served = False
    sharded = bool((cr.get("status") or {}).get("shards"))
    while True:
        attempts = [p for p in pods if p.attempt == want]
        mine = sorted((p for p in attempts if p.kept), key=lambda p: (p.created, p.name))
        if not archives_served:
            archives_served = True
            live = {p.name for p in mine}
            texts = await run_in_threadpool(archived_parts, source, cr, want, live)
            for stage in joblogs.OWN_ARCHIVE_STAGES if sharded else ():
                texts += await run_in_threadpool(archived_parts, source, cr, want, live, stage)
            for text in texts:
                for line in out.feed(text.encode()) + out.end():
                    yield line
            left = len(attempts) - len(mine)
            if left:
                yield (joblogs.render("info", f"the logs of {left} other shard pods of attempt {want} are left out: "
                                              f"only failed shard pods and shards below {joblogs.SHARD_LOG_SAMPLE} "
                                              "are kept; `kubectl logs` reads any pod while it exists",
                                      event="logs_left_out", left_out=left) + "\n").encode()
        for pod in [p for p in mine if p.name not in served]:
            live = follow and pod is mine[-1] and not pod.ended
            try:
                async for line in _stream_pod(source, pod.name, live, out, consumed):
                    yield line
                done = not live
            except (NotStarted, PodGone):  # not yet started; or deleted since the listing
                done = not live
            if not done:
                break
            served.add(pod.name)
            for line in out.end():
                yield line
        if not follow:
            return
        # following: done once the newest pod of the attempt has been read to its end, or the
        # job has finished without (more) pods for this attempt
        if mine and mine[-1].name in served:
            return
        cr = await run_in_threadpool(store.get_job_named, (cr.get("metadata") or {}).get("name", ""))
        if cr is None or ((cr.get("status") or {}).get("status") in _TERMINAL and not mine):
            return
        await asyncio.sleep(POLL_SECONDS)
        pods = await run_in_threadpool(source.pods, job_id)
        if attempt is None and not mine:
            want = latest_attempt(cr, pods)


def add_routes(router: APIRouter) -> None:
    """Registers the route on the /v1 router (its API-key dependency applies)."""

    @router.get(
        "/augmentation/{job_id}/logs",
        summary="Get Augmentation Logs",
        response_class=StreamingResponse,
        responses={
            200: {"content": {joblogs.MEDIA_TYPE: {}},
                  "description": "The worker's log lines, one JSON object per line: at least `ts` (RFC 3339 "
                                 "UTC), `level` and `msg`; a line the worker did not write as JSON comes "
                                 "wrapped with `raw: true`"},
            404: {"model": ErrorResponse, "description": "Augmentation job not found (or of a project the key "
                                                         "may not see), or no such attempt"},
            401: {"model": ErrorResponse, "description": "Invalid or missing API key"},
            503: {"model": ErrorResponse, "description": "The Kubernetes API is unavailable"},
        },
    )
    async def get_augmentation_logs(
        job_id: uuid.UUID,
        request: Request,
        principal: PrincipalDep,
        store: StoreDep,
        follow: Annotated[bool, Query(description="Keep the answer open and stream new lines until the "
                                                  "attempt's pod ends.")] = False,
        attempt: Annotated[Optional[int], Query(ge=0, description="Retry attempt, 0 = first (default: the "
                                                                  "latest).")] = None,
    ) -> StreamingResponse:
        """The worker's log of one attempt, while it runs (from its pod) and after its pod is gone
        (the last 1 MiB the operator archived)."""
        obj = service.visible(await run_in_threadpool(store.get_job, job_id), principal)
        if obj is None:
            raise HTTPException(404, f"augmentation job {job_id} not found")
        source = get_log_source(request)
        jid = str(service.job_id_of(obj)).lower()
        pods = await run_in_threadpool(source.pods, jid)  # before the answer starts: errors are a 503
        latest = latest_attempt(obj, pods)
        if attempt is not None and attempt > latest:
            raise HTTPException(404, f"attempt: job {job_id} has no attempt {attempt} (its latest is {latest})")
        return StreamingResponse(serve(source, store, obj, jid, pods, attempt, follow), media_type=joblogs.MEDIA_TYPE,
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


__all__ = ["KubernetesLogSource", "LogSource", "NoLogSource", "PodGone", "PodRef", "NotStarted", "add_routes",
           "archived_parts", "get_log_source", "latest_attempt", "pod_ref", "serve"]
