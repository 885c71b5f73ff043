"""Runs `reconcile.decide` for one AugmentationJob at a time and applies its plan.

Triggers (CR, Job and Pod watch events, timers, the periodic sweep) only *poke* a CR; pokes that
arrive while that CR is being reconciled coalesce into one more pass, so per CR there is exactly
one reconciliation in flight: the single writer of its status. Each status write carries the
resourceVersion the decision was made on; if anything changed the CR in between (the worker's
progress, a cancel), the apiserver answers 409 and the decision is made again on fresh data.

The CR, Job and Pod views come from kopf's in-memory indexes, which kopf fills from its watch
streams before any handler runs, so a restarted operator sees existing Jobs before it decides.
They hold small records (`observe.CrView`, `JobView`, `PodView`), and the controller's own
per-job state is dropped once a job has finished and nothing is pending for it, so memory
follows the number of running jobs, not of all jobs ever kept.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Optional

from roboaug.api.contract import TERMINAL_STATUSES
from roboaug.api.models.unbound import UnboundAction

from . import kueue, metrics, shards
from .access import worker_identity
from .config import OperatorConfig
from .jobs import CLEANUP_SUFFIX, FINALIZE_SUFFIX, cleanup_name, finalize_name, job_name
from .kube import ApiError, Kube
from .observe import CrView, JobView, PodView, cr_project, owned_pods, summarize_cr, summarize_job
from .phases import check, parse_ts
from .reconcile import Observed, Plan, decide
from .webhooks import Notifier

log = logging.getLogger("roboaug.operator")

IDENTITY_RECHECK_S = 300.0
"""How long a namespace's workers' identity, once made or found, is taken as there (access.py)."""
Key = tuple[str, str]  # (namespace, CR name)


@dataclass
class _KeyState:
    running: bool = False
    dirty: bool = False
    force: bool = False       # a timer or the sweep asked: decide even if nothing changed
    timer: Optional[asyncio.TimerHandle] = None
    failures: int = 0
    inputs: Any = None        # what the last successful pass decided on (see `reconcile`)
    # a sharded job's: the last progress report of each shard, and its status write budget
    shard_reports: dict = field(default_factory=dict)
    budget: Any = None


def _one(store: Any) -> Any:
    for value in store or ():
        return value
    return None


class Controller:
    def __init__(self, config: OperatorConfig, kube: Kube,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)):
        self.config = config
        self.kube = kube
        self.clock = clock
        self.webhooks = Notifier(config.webhooks, kube, clock)  # finished jobs' notify_url
        self.executor = ThreadPoolExecutor(max_workers=config.api_concurrency, thread_name_prefix="k8s")
        # Job creation has its own pool: under a burst of new CRs the apiserver is the
        # bottleneck, and a new CR's Job must not queue behind status writes of older ones.
        self.create_executor = ThreadPoolExecutor(max_workers=config.api_concurrency,
                                                  thread_name_prefix="k8s-create")
        # Events are a courtesy: their own small pool, so a burst of them never delays Job
        # creation or status writes.
        self.event_executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="k8s-events")
        # Job creations queued or in flight; status writes and Events yield to them (see
        # `_yield_to_creates`).
        self._creating = 0
        self._creates_idle = asyncio.Event()
        self._creates_idle.set()
        self._keys: dict[Key, _KeyState] = {}
        self._written: dict[Key, CrView] = {}  # our status writes the watch has not shown yet
        self._created: dict[Key, JobView] = {}  # Jobs we created that the watch has not shown yet
        # Keys whose Job (or their namespace's worker identity) is being created right now: no
        # view of the Job exists yet, but for max_running_jobs it already runs (else a job the
        # index shows only later, older by creationTimestamp, would count neither it as running
        # nor as ahead).
        self._starting: set[Key] = set()
        # Jobs held `queued` by their project's max_running_jobs, per (namespace, project id):
        # woken when another job of that project finishes.
        self._slot_waiters: dict[Key, set[Key]] = {}
        # namespace -> when its workers' identity was last made or found as rendered (access.py)
        self._identity_checked: dict[str, float] = {}
        self._identity_locks: dict[str, asyncio.Lock] = {}
        self.crs: Any = None
        self.jobs: Any = None
        self.pods: Any = None
        self.projects: Any = None

    # -- wiring -------------------------------------------------------------------------------
    def bind(self, crs: Any, jobs: Any, pods: Any, projects: Any = None) -> None:
        """Attach kopf's indexes (mappings key -> store of values)."""
        self.crs, self.jobs, self.pods, self.projects = crs, jobs, pods, projects

    async def _call(self, fn, *args, pool: Optional[ThreadPoolExecutor] = None):
        return await asyncio.get_running_loop().run_in_executor(pool or self.executor, fn, *args)

    def forget(self, key: Key) -> None:
        st = self._keys.pop(key, None)
        if st and st.timer:
            st.timer.cancel()
        self._written.pop(key, None)
        self._created.pop(key, None)

    # -- triggering ---------------------------------------------------------------------------
    async def poke(self, key: Key, force: bool = False) -> None:
        """Reconcile `key` now, or once more right after the pass already running for it.

        A watch event whose object changed nothing `decide` reads (most Pod and Job status
        updates) ends at a cheap comparison; `force` (timers, the sweep) always decides, since
        time itself is an input there."""
        st = self._keys.setdefault(key, _KeyState())
        st.dirty = True
        st.force = st.force or force
        if st.running:
            return
        st.running = True
        try:
            while st.dirty:
                st.dirty = False
                force, st.force = st.force, False
                try:
                    await self.reconcile(key, force=force)
                    st.failures = 0
                except Exception as e:  # keep the operator alive; try again with backoff
                    st.failures += 1
                    delay = min(60.0, 0.5 * 2 ** min(st.failures, 7))
                    kind = f"http_{e.status}" if isinstance(e, ApiError) else type(e).__name__
                    metrics.RECONCILE_ERRORS.labels(kind=kind).inc()
                    log.warning("reconcile of %s/%s failed (%s); retrying in %.1fs", *key, e, delay,
                                extra={"object": {"namespace": key[0], "name": key[1]}})
                    self.schedule(key, delay)
        finally:
            st.running = False
            self._drop_if_done(key, st)

    def _drop_if_done(self, key: Key, st: _KeyState) -> None:
        """A finished job's state goes once nothing is pending for it (no pass due, no retry,
        no timer still to fire): 5,000 finished jobs must not hold 5,000 states. Its next
        event, if any, decides afresh (a finished job's decision is cheap and rare)."""
        if st.running or st.dirty or st.failures or self._keys.get(key) is not st:
            return
        if st.timer is not None and not st.timer.cancelled() \
                and st.timer.when() > asyncio.get_running_loop().time():
            return
        view = self._cr_view(key)
        if view is None or view.finished:
            self._keys.pop(key, None)
            self._created.pop(key, None)

    def schedule(self, key: Key, delay: float) -> None:
        st = self._keys.setdefault(key, _KeyState())
        loop = asyncio.get_running_loop()
        when = loop.time() + delay
        if st.timer and not st.timer.cancelled() and st.timer.when() <= when:
            return  # an earlier wake-up is already set
        if st.timer:
            st.timer.cancel()
        st.timer = loop.call_at(when, lambda: asyncio.ensure_future(self.poke(key, force=True)))

    async def sweep_forever(self) -> None:
        """Look at every unfinished job now and then: a safety net for anything missed."""
        while True:
            await asyncio.sleep(self.config.resync_seconds)
            for key in self.unfinished_keys():
                asyncio.ensure_future(self.poke(key, force=True))

    def unfinished_keys(self) -> list[Key]:
        out = []
        for key, store in list((self.crs or {}).items()):
            view = _one(store)
            if view is not None and not view.finished:
                out.append(key)
        return out

    # -- one pass -----------------------------------------------------------------------------
    def _cr_view(self, key: Key) -> Optional[CrView]:
        return self._peek(key, _one(self.crs.get(key)) if self.crs is not None else None)

    def _cr(self, key: Key) -> Optional[CrView]:
        chosen = self._cr_view(key)
        if chosen is not self._written.get(key):  # our own write came back through the watch
            self._written.pop(key, None)
        return chosen

    def _peek(self, key: Key, seen: Optional[CrView]) -> Optional[CrView]:
        """The CR to decide on: ours when our own write has not come back through the watch yet."""
        mine = self._written.get(key)
        if seen is not None and mine is not None and mine.resource_version > seen.resource_version \
                and mine.uid == seen.uid:
            return mine
        return seen

    def _job_view(self, key: Key, cr: CrView) -> Optional[JobView]:
        """The CR's worker Job: ours when we created it a moment ago and its watch event is still
        on the way."""
        wanted = job_name(cr.name)
        seen = next((j for j in (self.jobs.get(key) or ()) if j.name == wanted), None) \
            if self.jobs is not None else None
        mine = self._created.get(key)
        if seen is None and mine is not None and mine.owner_uid == cr.uid:
            return mine
        return seen

    def _job(self, key: Key, cr: CrView) -> Optional[JobView]:
        chosen = self._job_view(key, cr)
        if chosen is not self._created.get(key):  # the watch shows it now (or it is not ours)
            self._created.pop(key, None)
        return chosen

    def _named_job(self, key: Key, cr: CrView, name: str) -> Optional[JobView]:
        """A sharded job's other Job (`<cr>-finalize`, `<cr>-cleanup`), if ours."""
        seen = next((j for j in (self.jobs.get(key) or ()) if j.name == name), None) \
            if self.jobs is not None else None
        return seen if seen is not None and seen.owner_uid == cr.uid else None

    def _pods(self, key: Key, job: Optional[JobView]) -> list[PodView]:
        if job is None or self.pods is None:
            return []
        return owned_pods(job, self.pods.get(key) or ())

    # -- sharded jobs (shard_steps.py) ----------------------------------------------------------
    def _budget(self, key: Key) -> shards.WriteBudget:
        st = self._keys.setdefault(key, _KeyState())
        if st.budget is None:
            st.budget = shards.WriteBudget(self.config.shard_progress_writes_per_second)
        return st.budget

    def _shard_inputs(self, key: Key, obs: Observed, finalize: Optional[JobView], cleanup: Optional[JobView],
                      finalize_pods: list[PodView]) -> None:
        """What the sharded steps read beyond one Job: the finalize and cleanup Jobs, the last
        report of each shard (each shard pod overwrites status.progress; kept here, per job, as
        it is seen) and whether the shards' summed progress may be written now."""
        obs.finalize, obs.cleanup, obs.finalize_pods = finalize, cleanup, finalize_pods
        obs.cleanup_pods = self._pods(key, cleanup)
        if not (obs.cr.get("status") or {}).get("shards"):
            return
        st = self._keys.setdefault(key, _KeyState())
        shards.remember(st.shard_reports, (obs.cr.get("status") or {}).get("progress"), obs.pods)
        obs.shard_reports = st.shard_reports
        now = obs.now.timestamp()
        obs.progress_due, obs.progress_wait = self._budget(key).due(now), self._budget(key).wait(now)

    @staticmethod
    def _sharded_job_made(obs: Observed, made: JobView) -> bool:
        """A Job created (or found) for a sharded job's later stage goes into its own slot."""
        if made.name.endswith(FINALIZE_SUFFIX) and made.stage == "finalize":
            obs.finalize = made
            return True
        if made.name.endswith(CLEANUP_SUFFIX) and made.stage == "cleanup":
            obs.cleanup = made
            return True
        return False

    async def _node_labels(self, pods: Iterable[PodView]) -> dict[str, dict]:
        out = {}
        for node in {p.node for p in pods if p.node}:
            out[node] = await self._call(self.kube.node_labels, node)
        return out

    async def _project(self, obs: Observed) -> None:
        """`_read_project` for the job `obs.cr`, filled into `obs`."""
        cr = obs.cr
        status = cr.get("status") or {}
        obs.project, obs.project_default, obs.project_error = await self._read_project(
            (cr.get("metadata") or {}).get("namespace", ""),
            str((cr.get("spec") or {}).get("project_id") or ""),
            finished=status.get("status") in TERMINAL_STATUSES,
            settled="effective_spec" in status, has_job=obs.job is not None)

    async def _read_project(self, ns: str, project_id: str, *, finished: bool, settled: bool,
                            has_job: bool) -> tuple[Optional[dict], Optional[str], Optional[str]]:
        """The job's AugmentationProject (`_get_project`: by name, the lowercase project UUID) before
        its Job exists, when its policy may still refuse the job (`steps.validate`), and once
        the job has finished, for its TTL (`steps.expire`): (project, default project's name,
        error). When it has none and `jobs_without_project.action` is `default`, the default
        project (same namespace, named by its UUID) is read in its place, so everything
        downstream runs under it. Takes the few fields it needs, not the body: `reconcile`
        unpacks a finished job's body only after this read (see there)."""
        # Also while the effective spec is not in status yet (`steps.validate` settles it from
        # the project): the status write that follows a Job's creation may have been refused.
        if (has_job and not finished and settled) or not project_id:
            return None, None, None
        unbound = self.config.jobs_without_project
        project = default = None
        try:
            project = await self._get_project(ns, project_id.lower())
            if project is None and unbound.action is UnboundAction.default:
                default = unbound.default_name
                project = await self._get_project(ns, default)
        except ApiError as e:
            return project, default, e.message
        return project, default, None

    async def _get_project(self, ns: str, name: str) -> Optional[dict]:
        """AugmentationProject `name` as the project watch shows it; a GET when the watch shows
        none (none there, or one created a moment ago that the watch has not shown yet: a job
        posted right after its project must not be refused for want of it). A change to a
        project reaches the watch within the apiserver's watch latency (milliseconds), and the
        apiserver's admission policy has already checked the job against the project as it
        was at the job's creation. A burst of 500 jobs reads its project 0 times, not 500 (or
        1,000 through the default project), and neither does every finished job at start-up
        (its TTL). Measured (bench_operator --n 500, two runs each, each alone on a fresh
        control plane): CR -> Job p95 5.85 / 6.09 s -> 5.19 / 5.37 s, operator requests per job
        16.1 -> 14.1."""
        if self.projects is not None:
            seen = _one(self.projects.get((ns, name)))
            if seen is not None:
                return seen
        return await self._call(self.kube.get_project, ns, name)

    async def _workload(self, ns: str, job: JobView) -> tuple[Optional[kueue.WorkloadView], Optional[str]]:
        """The Kueue Workload of a suspended Job in a LocalQueue: why Kueue holds it (kueue.py)."""
        try:
            return kueue.pick_workload(await self._call(self.kube.job_workloads, ns, job.uid)), None
        except ApiError as e:
            return None, e.message

    def _project_load(self, cr: dict, project: Optional[str] = None) -> tuple[int, int]:
        """For `limits.max_running_jobs` of `project` (the job's own, or the default project it
        runs under): (the project's other jobs in this namespace whose
        worker Job exists and is not finished, its jobs still without a Job that are older than
        this one: creationTimestamp, then name). From the indexes and our own recent writes and
        creations, which are what the next decisions will see too."""
        meta = cr["metadata"]
        ns, project = meta["namespace"], project or _own_project(cr)
        me = (meta.get("creationTimestamp") or "", meta["name"])
        running = ahead = 0
        for key, store in list((self.crs or {}).items()):
            if key[0] != ns or key[1] == meta["name"]:
                continue
            other = self._peek(key, _one(store))
            if other is None or other.project != project:
                continue
            job = self._job_view(key, other)
            if job is not None:
                running += not (job.complete or job.failed_condition)
            elif key in self._starting:
                running += 1
            elif not other.finished and (other.created, key[1]) < me:
                ahead += 1
        return running, ahead

    async def reconcile(self, key: Key, force: bool = True) -> None:
        view = self._cr(key)
        if view is None:
            self.forget(key)
            return
        ns, name = key
        job = self._job(key, view)
        pods = self._pods(key, job)
        st = self._keys.setdefault(key, _KeyState())
        finalize, cleanup = (self._named_job(key, view, finalize_name(name)),
                             self._named_job(key, view, cleanup_name(name)))
        finalize_pods = self._pods(key, finalize)
        inputs = (view.uid, view.resource_version, job, sorted(pods, key=lambda p: p.uid),
                  finalize, cleanup, sorted(finalize_pods, key=lambda p: p.uid),
                  sorted(self._pods(key, cleanup), key=lambda p: p.uid))
        if not force and st.inputs == inputs:
            return
        st.inputs = None  # set again only once this pass has applied its plan
        # The body is unpacked after the reads, not before: at start-up every finished job
        # queues here for its project read at once, and 5,000 unpacked bodies waiting were
        # a peak of their own (issue 14 item 8). The view is the same snapshot either way.
        node_labels = await self._node_labels(pods)
        project = await self._read_project(ns, view.project_id, finished=view.finished,
                                           settled=view.settled, has_job=job is not None)
        cr = view.full()
        if view.finished:  # owes a webhook? (webhooks.py; nothing unless its status says so)
            self.webhooks.notice(key, cr)
        obs = Observed(cr=cr, job=job, pods=pods, node_labels=node_labels, now=self.clock())
        self._shard_inputs(key, obs, finalize, cleanup, finalize_pods)
        obs.project, obs.project_default, obs.project_error = project
        if job is not None and job.suspended and job.queue and not view.finished:
            obs.workload, obs.workload_error = await self._workload(ns, job)
        if obs.job is None and ((((obs.project or {}).get("spec") or {}).get("limits") or {})
                                .get("max_running_jobs")):
            obs.project_running, obs.project_ahead = self._project_load(
                cr, obs.project_default or _own_project(cr))
        try:
            plan = await self._decide_and_create(key, obs)
        finally:
            self._starting.discard(key)
        await self._apply(key, cr, plan)
        if obs.job is job and not obs.create_error:  # no Job created in this pass
            st.inputs = inputs

    async def _decide_and_create(self, key: Key, obs: Observed) -> Plan:
        """Decide; while the plan creates a Job, create it (the namespace's worker identity first)
        and decide again with the result, until the plan creates nothing more."""
        ns, cr = key[0], obs.cr
        for _ in range(3):
            plan = decide(obs, self.config)
            if not plan.create_job:
                break
            self._starting.add(key)
            # the workers' identity of the namespace (made once); the spec rides in the Job
            clash = await self._ensure_identity(ns)
            if clash:
                obs.create_error = clash
                obs.now = self.clock()
                continue
            try:
                self._creating += 1
                self._creates_idle.clear()
                try:
                    created = await self._call(self.kube.create_job, ns, plan.create_job,
                                               pool=self.create_executor)
                finally:
                    self._creating -= 1
                    if not self._creating:
                        self._creates_idle.set()
                made = summarize_job(created)
                if not self._sharded_job_made(obs, made):
                    obs.job = self._created[key] = made
                started = parse_ts(cr["metadata"].get("creationTimestamp"))
                if started:
                    metrics.JOB_CREATE_LATENCY.observe(max(0.0, (self.clock() - started).total_seconds()))
                log.info("created Job %s", made.name, extra=_obj(cr))  # obs.job: None for a cleanup Job
            except ApiError as e:
                if e.status == 409:  # already there: ours from before a restart, or a clash
                    made = summarize_job(await self._call(self.kube.get_job, ns, plan.create_job["metadata"]["name"]))
                    if not self._sharded_job_made(obs, made):
                        obs.job = made
                    log.info("adopted existing Job %s", made.name, extra=_obj(cr))
                elif 400 <= e.status < 500 and e.status != 429:
                    obs.create_error = e.message
                else:
                    raise
            obs.now = self.clock()
        else:
            raise RuntimeError("Job creation did not converge")
        return plan

    async def _ensure_identity(self, ns: str) -> Optional[str]:
        """The workers' ServiceAccount, Role and RoleBinding in `ns` (access.py): made or checked
        once, then again after IDENTITY_RECHECK_S (someone may have deleted them), not per job.
        The RoleBinding goes only once its ServiceAccount and Role are known to be as rendered,
        so a clash never binds another's identity or rules. A clash is not remembered: fixed by
        a person, the next job finds it fixed."""
        if self.clock().timestamp() - self._identity_checked.get(ns, float("-inf")) < IDENTITY_RECHECK_S:
            return None
        async with self._identity_locks.setdefault(ns, asyncio.Lock()):
            if self.clock().timestamp() - self._identity_checked.get(ns, float("-inf")) < IDENTITY_RECHECK_S:
                return None  # another job of this namespace made them while this one waited
            objs = worker_identity(ns)
            grants = [o for o in objs if o["kind"] == "RoleBinding"]
            for round_ in ([o for o in objs if o["kind"] != "RoleBinding"], grants):
                answers = await asyncio.gather(
                    *(self._call(self.kube.ensure_same, ns, obj, pool=self.create_executor) for obj in round_),
                    return_exceptions=True)
                for answer in answers:  # in KINDS order, as if made one after another
                    if isinstance(answer, ApiError) and 400 <= answer.status < 500 and answer.status not in (409, 429):
                        return answer.message
                    if isinstance(answer, BaseException):
                        raise answer
                    if answer:
                        return answer
            self._identity_checked[ns] = self.clock().timestamp()
            return None

    def _wake_slot_waiters(self, cr: dict) -> None:
        """A job of a project finished: the project's jobs waiting for a slot look now (each
        one's own timer is the safety net)."""
        waiters = self._slot_waiters.pop((cr["metadata"]["namespace"], _project_of(cr)), set())
        for key in sorted(waiters):
            asyncio.ensure_future(self.poke(key, force=True))

    async def _apply(self, key: Key, cr: dict, plan) -> None:
        ns, name = key
        if plan.waits_for_slot:
            self._slot_waiters.setdefault((ns, _project_of(cr, plan.labels)), set()).add(key)
        if plan.empty:
            if plan.requeue_after:
                self.schedule(key, plan.requeue_after)
            return
        problems = check(plan.new_status)
        if problems:  # a bug in decide(); write anyway so the job is not stuck, but say so loudly
            metrics.RECONCILE_ERRORS.labels(kind="invariant").inc()
            log.error("status invariants broken: %s", "; ".join(problems), extra=_obj(cr))
        if plan.delete_cr:
            await self._call(self.kube.delete_cr, ns, name, cr["metadata"].get("uid"))
            log.info("deleted: finished longer ago than its project's ttl_seconds_after_finished",
                     extra=_obj(cr))
            self.forget(key)
            return
        if not plan.finished:
            await self._yield_to_creates()
        for doomed in ([plan.delete_job] if plan.delete_job else []) + plan.delete_also:
            await self._call(self.kube.delete_job, ns, doomed)
            log.info("deleted Job %s (foreground)", doomed, extra=_obj(cr))
        rv = cr["metadata"].get("resourceVersion")
        if plan.labels:
            patched = await self._call(self.kube.patch_cr_labels, ns, name, plan.labels)
            rv = patched["metadata"]["resourceVersion"]
            cr = patched
        if plan.status:
            try:
                written = await self._call(self.kube.patch_cr_status, ns, name, plan.status, rv)
            except ApiError as e:
                if e.status == 409:  # changed since we looked: decide again on the fresh object
                    self._written[key] = summarize_cr(await self._call(self.kube.get_cr, ns, name))
                    self._keys[key].dirty = True
                    return
                if e.status == 404:
                    self.forget(key)
                    return
                raise
            self._written[key] = summarize_cr(written)
            cr = written
            if "shards" in plan.status:  # the shards' progress: within the job's write budget
                self._budget(key).spent(self.clock().timestamp())
        elif plan.labels:
            self._written[key] = summarize_cr(cr)
        metrics.observe_plan(plan)
        if plan.finished:
            self._wake_slot_waiters(cr)
        for typ, reason, message in plan.events:
            asyncio.ensure_future(self._event(cr, typ, reason, message))
        for src, dst, _secs in plan.transitions:
            log.info("phase %s -> %s", src, dst, extra=_obj(cr))
        if plan.requeue_after:
            self.schedule(key, plan.requeue_after)

    async def _yield_to_creates(self) -> None:
        """Wait while other AugmentationJobs' Jobs are being created, up to `status_yield_seconds`.

        On a small control plane every request competes for the same apiserver CPU; measured
        with 500 CRs created at once, Job creation waited behind the status patches and Events
        of jobs that had already started. A new job's Job matters more than an older job's
        bookkeeping, which is written a moment later (decided on the CR as it was; a CR changed
        meanwhile answers 409 and the decision is made again)."""
        limit = self.config.status_yield_seconds
        if limit <= 0 or self._creates_idle.is_set():
            return
        try:
            await asyncio.wait_for(self._creates_idle.wait(), timeout=limit)
        except asyncio.TimeoutError:
            pass

    async def _event(self, cr: dict, typ: str, reason: str, message: str) -> None:
        try:
            await asyncio.get_running_loop().run_in_executor(
                self.event_executor, self.kube.post_event, cr, typ, reason, message)
        except Exception as e:  # an Event is a courtesy; never fail the job for it
            log.warning("could not post Event %s: %s", reason, e, extra=_obj(cr))


def _own_project(cr: dict) -> str:
    return str((cr.get("spec") or {}).get("project_id") or "").lower()


def _project_of(cr: dict, labels: Optional[dict] = None) -> str:
    """The project a job runs under: the default project it was labelled with (`labels`, the
    plan's, first: not written yet), else its own."""
    return cr_project(cr, labels)


def _obj(cr: dict) -> dict:
    m = cr.get("metadata") or {}
    return {"object": {"namespace": m.get("namespace"), "name": m.get("name")}}
