"""What the operator watches, and what each watch does: the table of contents.

- AugmentationJobs: indexed by (namespace, name) as small records (`observe.CrView`: the body
  while the job runs, packed once it has finished); every event pokes that job. The index
  function leaves kopf's copy of the object with its metadata only (`observe.release_body`):
  with thousands of jobs kopf otherwise holds every whole body of its initial listing until
  the last one is indexed (issue 14 item 8). Jobs and Pods
  keep their bodies: there are as many as running jobs, and `pod_event` reads the pod's
  status (the log archive).
- AugmentationProjects: indexed by (namespace, name) as metadata + spec, read by the controller
  instead of a GET per job (a job whose project the watch has not shown yet still GETs it).
- batch/v1 Jobs and Pods labelled `app.kubernetes.io/managed-by=roboaug-operator` (filtered by
  the apiserver, not in Python): indexed as small summaries under their AugmentationJob; every
  event pokes that job.
- start-up: kopf settings (the initial listing: one LIST, or the watch's streamed initial events
  as `watch_initial_streaming` auto/on/off resolved in `__main__`; kopf's index-readiness wait
  made linear and its watch retrying 504s, `kopf_startup`), and
  a periodic sweep of unfinished jobs (pending timeouts are also
  scheduled precisely by the controller).

No kopf change-handlers, finalizers or timers per object: all decisions are level-based in
`reconcile.decide`, so kopf never writes annotations or finalizers on our objects, and CR
deletion is left to Kubernetes' garbage collector (the Job's ownerReference).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Optional

import kopf

from roboaug.api.models import GROUP, PLURAL, VERSION
from roboaug.api.models.project import PROJECT_PLURAL

from . import kopf_startup
from .controller import Controller
from .log_archive import LogArchiver
from .jobs import LABEL_MANAGED_BY, MANAGED_BY
from .observe import cr_name_of, release_body, summarize_cr, summarize_job, summarize_pod

_OURS = {LABEL_MANAGED_BY: MANAGED_BY}


class NoDiffBase(kopf.DiffBaseStorage):
    """kopf's change detection, switched off: we have no on.create/on.update handlers, yet kopf
    would deep-copy every watched object on every event to build a diff base (measured: about
    half of the operator's CPU under load). An empty essence means "nothing changed", and
    nothing is ever stored on the objects."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> Any:
        return {}

    def fetch(self, *, body: kopf.Body) -> Any:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: Any) -> None:
        return None
_controller: Optional[Controller] = None
_archiver: Optional[LogArchiver] = None
_sweeper: Optional[asyncio.Task] = None
_initial_streaming = False
_initial_streaming_why = "not resolved"
log = logging.getLogger("roboaug.operator")


def install(controller: Controller, archiver: Optional[LogArchiver] = None,
            initial_streaming: bool = False, why: str = "not resolved") -> None:
    """Called by `__main__` before kopf starts (`initial_streaming`, `why`: its resolved
    `watch_initial_streaming`, see `kopf_startup.resolve_initial_streaming`)."""
    global _controller, _archiver, _initial_streaming, _initial_streaming_why
    _controller, _archiver = controller, archiver
    _initial_streaming, _initial_streaming_why = initial_streaming, why


def _ctl(kwargs: dict) -> Controller:
    if _controller is None:
        raise kopf.PermanentError("controller not installed (run `python -m roboaug.operator`)")
    _controller.bind(kwargs["aj_index"], kwargs["job_index"], kwargs["pod_index"], kwargs.get("project_index"))
    return _controller


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    global _sweeper
    settings.watching.label_selectors["batch", "v1", "jobs"] = f"{LABEL_MANAGED_BY}={MANAGED_BY}"
    settings.watching.label_selectors["v1", "pods"] = f"{LABEL_MANAGED_BY}={MANAGED_BY}"
    settings.posting.enabled = False          # we post our own, one per transition
    settings.peering.standalone = True        # one active replica through our Lease (see leader)
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = NoDiffBase()
    # One LIST, never pages: kopf fetches the next page only once the event loop is free, and
    # with thousands of objects parked in its workers that took minutes per page; the
    # apiserver's continue token expired (410 after ~5 min) and kopf stopped the operator
    # (measured with 5,000 finished jobs, page size 200).
    settings.watching.chunk_size = None
    settings.watching.initial_streaming = _initial_streaming
    # said here, from what kopf is given: the one line telling how this operator lists
    log.info("initial listing: %s (%s)", "streamed initial events" if settings.watching.initial_streaming
             else "one LIST", _initial_streaming_why)
    kopf_startup.install()  # before any watcher lists: kopf parks every listed object
    kopf_startup.install_watch_guard()  # 504 retries (both ways of listing), whole restarts
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    if _controller is not None:
        _sweeper = asyncio.create_task(_controller.sweep_forever())


@kopf.on.cleanup()
async def stop(**_: Any) -> None:
    if _sweeper is not None:
        _sweeper.cancel()


# -- indexes: what the controller reads ------------------------------------------------------
# The index functions are `async` on purpose: kopf runs a sync handler in a thread pool, and a
# thread hop per watch event was a large share of the operator's CPU under a burst of jobs.
@kopf.index(GROUP, VERSION, PLURAL)
async def aj_index(namespace: str, name: str, body: kopf.Body, **_: Any) -> dict:
    view = summarize_cr(body)
    release_body(body)  # the handlers that follow read only its metadata
    return {(namespace, name): view}


@kopf.index(GROUP, VERSION, PROJECT_PLURAL)
async def project_index(namespace: str, name: str, body: kopf.Body, **_: Any) -> dict:
    # what the policy reads: a few per namespace, each small; no body kept beyond it
    return {(namespace, name): {"metadata": {"name": name, "namespace": namespace,
                                             "uid": body.metadata.uid},
                                "spec": dict(body.get("spec") or {})}}


@kopf.index("batch", "v1", "jobs", labels=_OURS)
async def job_index(namespace: str, body: kopf.Body, **_: Any) -> Optional[dict]:
    owner = cr_name_of(body)
    return {(namespace, owner): summarize_job(body)} if owner else None


@kopf.index("v1", "pods", labels=_OURS)
async def pod_index(namespace: str, body: kopf.Body, **_: Any) -> Optional[dict]:
    owner = cr_name_of(body)
    return {(namespace, owner): summarize_pod(body)} if owner else None


# -- triggers: every change pokes the AugmentationJob it concerns ----------------------------
@kopf.on.event(GROUP, VERSION, PLURAL)
async def aj_event(type: Optional[str], namespace: str, name: str, **kwargs: Any) -> None:
    ctl = _ctl(kwargs)
    if type == "DELETED":
        ctl.forget((namespace, name))
        return
    await ctl.poke((namespace, name))


@kopf.on.event("batch", "v1", "jobs", labels=_OURS)
async def job_event(namespace: str, body: kopf.Body, **kwargs: Any) -> None:
    owner = cr_name_of(body)
    if owner:
        await _ctl(kwargs).poke((namespace, owner))


@kopf.on.event("v1", "pods", labels=_OURS)
async def pod_event(type: Optional[str], namespace: str, body: kopf.Body, **kwargs: Any) -> None:
    owner = cr_name_of(body)
    if owner and _archiver is not None:  # an ended attempt's log tail kept (log_archive.py)
        _archiver.pod_event(type, body)
    if owner:
        await _ctl(kwargs).poke((namespace, owner))
