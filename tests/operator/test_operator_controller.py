"""The controller's scheduling rules, without a cluster: a fake Kube records the calls and kopf's
indexes are plain dicts of lists."""
import asyncio
import copy
import threading
import time

from tests.operator._operator_factories import PROJECT, at, cr, iso, job

from roboaug.operator import controller as controller_mod
from roboaug.operator.config import OperatorConfig
from roboaug.operator.controller import Controller
from roboaug.operator.observe import summarize_cr


class FakeKube:
    """Records calls; creating a Job named in `slow` blocks until `release` is set (a Job POST
    still in flight)."""

    def __init__(self, slow=()):
        self.calls: list[tuple[str, float]] = []
        self.slow = set(slow)
        self.release = threading.Event()
        self.rv = 100
        self.bodies: dict = {}  # name -> the CR as the test built it, when not `_cr`

    def _log(self, what):
        self.calls.append((what, time.monotonic()))

    same_clash: dict = {}  # kind -> what ensure_same answers for it (a clash); none by default

    def ensure_same(self, ns, body):
        """The workers' identity (access.py): (kind, namespace) in `identity`, in call order."""
        self.__dict__.setdefault("identity", []).append((body["kind"], ns))
        return self.same_clash.get(body["kind"])

    def create_job(self, ns, body):
        self._log("create " + body["metadata"]["name"])
        if body["metadata"]["name"] in self.slow:
            self.release.wait(10)
            self._log("created " + body["metadata"]["name"])
        return {"metadata": {"name": body["metadata"]["name"], "uid": "job-uid-1",
                             "ownerReferences": body["metadata"]["ownerReferences"]}}

    def patch_cr_status(self, ns, name, status, rv):
        """A merge patch onto the CR as the test built it (`bodies`, else `_cr`)."""
        self._log("status " + name)
        self.rv += 1
        body = copy.deepcopy(self.bodies[name]) if name in self.bodies else _cr(name)
        body["metadata"]["resourceVersion"] = str(self.rv)
        body["status"] = {k: v for k, v in status.items() if v is not None}
        return body

    def patch_cr_labels(self, ns, name, labels):
        raise AssertionError("the CRs in these tests carry their labels")

    def delete_cr(self, ns, name, uid):
        self._log(f"delete {name} {uid}")

    def post_event(self, *a):
        self._log("event")

    def node_labels(self, name):
        return {}

    projects: dict = {}  # (namespace, name) -> AugmentationProject; none by default

    def get_project(self, ns, name):
        self.__dict__.setdefault("project_reads", []).append((ns, name))  # apart from `calls`
        return self.projects.get((ns, name))


def _cr(name):
    body = cr(name=name)
    body["metadata"]["uid"] = "u-" + name
    return body


def _controller(kube, **config):
    ctl = Controller(OperatorConfig(**config), kube, clock=lambda: at(5))
    ctl.bind({}, {}, {})
    return ctl


def test_unchanged_inputs_skip_decide_but_a_timer_poke_decides(monkeypatch):
    kube = FakeKube()
    ctl = _controller(kube)
    body = _cr("aug-a")
    key = ("ns1", "aug-a")
    ctl.crs[key] = [summarize_cr(body)]
    ctl.jobs[key] = [job(name="aug-a-worker", owner="u-aug-a")]
    calls = []
    real = controller_mod.decide
    monkeypatch.setattr(controller_mod, "decide", lambda obs, cfg: calls.append(1) or real(obs, cfg))

    async def run():
        await ctl.poke(key)
        first = len(calls)
        assert first >= 1
        # What kopf would show after our own write: the CR we wrote, at its new version.
        ctl.crs[key] = [ctl._written.get(key, summarize_cr(body))]
        await ctl.poke(key)  # the write's own watch event: decided once more (new version)
        settled = len(calls)
        await ctl.poke(key)  # a Pod/Job event that changed nothing decide reads
        await ctl.poke(key)
        assert len(calls) == settled
        await ctl.poke(key, force=True)  # timers and the sweep decide regardless
        assert len(calls) == settled + 1

    asyncio.run(run())


def test_status_writes_wait_for_job_creations_in_flight():
    kube = FakeKube(slow={"aug-b-worker"})
    ctl = _controller(kube, status_yield_seconds=5)
    a, b = ("ns1", "aug-a"), ("ns1", "aug-b")
    ctl.crs[a], ctl.crs[b] = [summarize_cr(_cr("aug-a"))], [summarize_cr(_cr("aug-b"))]

    async def run():
        creating_b = asyncio.ensure_future(ctl.poke(b))  # b's Job POST hangs
        await asyncio.sleep(0.2)
        poke_a = asyncio.ensure_future(ctl.poke(a))      # a's Job is created at once ...
        await asyncio.sleep(0.3)
        names = [c for c, _ in kube.calls]
        assert "create aug-a-worker" in names
        assert "status aug-a" not in names, names         # ... its status waits for b's create
        kube.release.set()
        await asyncio.wait_for(asyncio.gather(creating_b, poke_a), 5)
        names = [c for c, _ in kube.calls]
        assert names.index("created aug-b-worker") < names.index("status aug-a")
        assert "status aug-b" in names

    asyncio.run(run())


def test_status_writes_do_not_wait_without_creations_or_when_disabled():
    for limit in (0, 5):
        kube = FakeKube()
        ctl = _controller(kube, status_yield_seconds=limit)
        key = ("ns1", "aug-a")
        ctl.crs[key] = [summarize_cr(_cr("aug-a"))]
        if limit == 0:  # a creation in flight forever: with the wait switched off, no delay
            ctl._creating += 1
            ctl._creates_idle.clear()
        started = time.monotonic()
        asyncio.run(ctl.poke(key))
        assert time.monotonic() - started < 2
        assert [c for c, _ in kube.calls][:2] == ["create aug-a-worker", "status aug-a"]


def test_a_status_write_waits_at_most_status_yield_seconds():
    kube = FakeKube()
    ctl = _controller(kube, status_yield_seconds=0.5)
    key = ("ns1", "aug-a")
    ctl.crs[key] = [summarize_cr(_cr("aug-a"))]
    ctl._creating += 1  # another job's create that never finishes
    ctl._creates_idle.clear()
    started = time.monotonic()
    asyncio.run(ctl.poke(key))
    took = time.monotonic() - started
    assert 0.4 < took < 3, took
    assert "status aug-a" in [c for c, _ in kube.calls]


def test_project_is_read_by_name_before_the_job_and_its_policy_refuses_it():
    kube = FakeKube()
    ctl = _controller(kube)
    body = cr(name="aug-p", spec={"project_id": PROJECT.upper(), "output_dataset_id": "acme/leak"})
    body["metadata"]["uid"] = "u-aug-p"
    kube.projects = {("ns1", PROJECT.lower()): {"spec": {"allowed_sources": ["*"], "allowed_outputs": ["team-b"]}}}
    key = ("ns1", "aug-p")
    ctl.crs[key] = [summarize_cr(body)]

    asyncio.run(ctl.poke(key))
    names = [c for c, _ in kube.calls]
    assert kube.project_reads == [("ns1", PROJECT.lower())]
    assert not any(n.startswith("create ") for n in names), names
    written = ctl._written[key].full()["status"]
    assert written["status"] == "failed" and "allowed_outputs" in written["error"]


def test_project_is_not_read_once_the_job_exists():
    kube = FakeKube()
    ctl = _controller(kube)
    key = ("ns1", "aug-a")
    accepted = _cr("aug-a")
    accepted["status"] = {"effective_spec": {"project_id": PROJECT, "dataset_id": "lerobot/pusht"},
                          "spec_sources": {}}
    ctl.crs[key] = [summarize_cr(accepted)]
    ctl.jobs[key] = [job(name="aug-a-worker", owner="u-aug-a")]
    asyncio.run(ctl.poke(key))
    assert not getattr(kube, "project_reads", [])


def test_project_is_read_while_the_effective_spec_is_not_settled_even_with_a_job():
    # The Job was created but the status write after it was refused (409): the next pass must
    # settle the effective spec from the project, as the Job's spec was.
    kube = FakeKube()
    kube.projects = {("ns1", PROJECT.lower()): {"spec": {"allowed_sources": ["*"], "allowed_outputs": ["*"],
                                                          "defaults": {"augment_copies": 2}}}}
    ctl = _controller(kube)
    key = ("ns1", "aug-a")
    ctl.crs[key] = [summarize_cr(_cr("aug-a"))]
    ctl.jobs[key] = [job(name="aug-a-worker", owner="u-aug-a")]
    asyncio.run(ctl.poke(key))
    assert kube.project_reads == [("ns1", PROJECT.lower())]
    written = ctl._written[key].full()["status"]
    assert written["effective_spec"]["augment_copies"] == 2 and written["spec_sources"]["augment_copies"] == "project"


def _project_cr(name, created, project=PROJECT):
    body = cr(name=name, spec={"project_id": project})
    body["metadata"].update(uid="u-" + name, creationTimestamp=iso(created))
    return body


def test_max_running_jobs_holds_new_jobs_oldest_first_until_a_slot_frees():
    kube = FakeKube()
    kube.projects = {("ns1", PROJECT): {"spec": {"allowed_sources": ["*"], "allowed_outputs": ["*"],
                                                 "limits": {"max_running_jobs": 2}}}}
    ctl = _controller(kube)
    other = "3c5e2a1b-0000-4000-8000-000000000000"
    for name, created, project, worker in (
            ("aug-run", 0, PROJECT, job(name="aug-run-worker", owner="u-aug-run")),
            ("aug-done", 0, PROJECT, job(name="aug-done-worker", owner="u-aug-done", complete=True)),
            ("aug-elsewhere", 0, other, job(name="aug-elsewhere-worker", owner="u-aug-elsewhere")),
            ("aug-old", 1, PROJECT, None), ("aug-new", 2, PROJECT, None)):
        ctl.crs[("ns1", name)] = [summarize_cr(kube.bodies.setdefault(name, _project_cr(name, created, project)))]
        if worker is not None:
            ctl.jobs[("ns1", name)] = [worker]
    ctl.crs[("ns2", "aug-x")] = [summarize_cr(_project_cr("aug-x", 0))]  # another namespace: not counted
    ctl.jobs[("ns2", "aug-x")] = [job(name="aug-x-worker", owner="u-aug-x")]
    new, old, run = ("ns1", "aug-new"), ("ns1", "aug-old"), ("ns1", "aug-run")

    def created():
        return [c.removeprefix("create ") for c, _ in kube.calls if c.startswith("create ")]

    async def go():
        # 1 running + 1 older waiting fill the 2 slots: the newer job waits, queued
        assert ctl._project_load(ctl.crs[new][0].full()) == (1, 1)
        await ctl.poke(new)
        assert created() == []
        status = ctl._written[new].full()["status"]
        assert status["status"] == "queued"
        assert "has 1 of 2 running jobs and 1 older jobs waiting" in status["phases"][-1]["events"][-1]["message"]
        # the older one takes the free slot; then the newer one still waits (2 of 2)
        await ctl.poke(old)
        assert created() == ["aug-old-worker"]
        assert ctl._project_load(ctl.crs[new][0].full()) == (2, 0)
        await ctl.poke(new, force=True)
        assert created() == ["aug-old-worker"]
        # a running job completes: the waiting one is woken at once and starts
        ctl.jobs[run] = [job(name="aug-run-worker", owner="u-aug-run", complete=True)]
        await ctl.poke(run)
        assert ctl._written[run].full()["status"]["status"] == "completed"
        for _ in range(50):
            await asyncio.sleep(0.02)
            if len(created()) == 2:
                break
        assert created() == ["aug-old-worker", "aug-new-worker"]

    asyncio.run(go())


def test_a_job_whose_creation_is_in_flight_counts_as_running_for_an_older_job_seen_later():
    """Seen in a CI run: 30 jobs submitted at once in the same second, limit 3, and 4 Jobs at
    once. A job whose Job POST was still in flight had no Job view, and a job older by
    creationTimestamp that the index showed only then did not count it as `ahead` either."""
    kube = FakeKube(slow={"aug-new-worker"})
    kube.projects = {("ns1", PROJECT): {"spec": {"allowed_sources": ["*"], "allowed_outputs": ["*"],
                                                 "limits": {"max_running_jobs": 1}}}}
    ctl = _controller(kube)
    new, old = ("ns1", "aug-new"), ("ns1", "aug-old")
    ctl.crs[new] = [summarize_cr(kube.bodies.setdefault("aug-new", _project_cr("aug-new", 2)))]

    def created():
        return [c.removeprefix("create ") for c, _ in kube.calls if c.startswith("create ")]

    async def go():
        creating = asyncio.ensure_future(ctl.poke(new))  # its Job POST hangs
        for _ in range(100):
            await asyncio.sleep(0.01)
            if created():
                break
        assert created() == ["aug-new-worker"]
        ctl.crs[old] = [summarize_cr(kube.bodies.setdefault("aug-old", _project_cr("aug-old", 1)))]
        assert ctl._project_load(ctl.crs[old][0].full()) == (1, 0)
        await ctl.poke(old)
        assert created() == ["aug-new-worker"], "two Jobs for a limit of one"
        assert ctl._written[old].full()["status"]["status"] == "queued"
        kube.release.set()
        await asyncio.wait_for(creating, 5)
        assert not ctl._starting  # a settled pass leaves no mark behind

    asyncio.run(go())


def test_a_finished_job_past_its_projects_ttl_is_deleted_and_one_before_it_waits():
    from roboaug.operator.phases import History

    h = History()
    h.start("j", iso(0), at(0))
    h.cancel(at(1))
    for ttl, deleted in ((4, True), (60, False)):
        kube = FakeKube()
        kube.projects = {("ns1", PROJECT): {"spec": {"allowed_sources": ["*"], "allowed_outputs": ["*"],
                                                     "ttl_seconds_after_finished": ttl}}}
        ctl = _controller(kube)  # its clock says 5 s: 4 s since the job ended
        key = ("ns1", "aug-a")
        body = _cr("aug-a")
        body["status"] = h.status
        ctl.crs[key] = [summarize_cr(body)]

        async def go():
            await ctl.poke(key)
            return ctl._keys.get(key)

        st = asyncio.run(go())
        assert kube.project_reads == [("ns1", PROJECT)]
        names = [c for c, _ in kube.calls]
        if deleted:
            assert names == ["delete aug-a u-aug-a"] and st is None  # forgotten
        else:
            assert not any(n.startswith("delete") for n in names) and st.timer is not None


def test_the_project_comes_from_the_watch_and_a_get_only_when_the_watch_has_not_shown_it():
    kube = FakeKube()
    ctl = Controller(OperatorConfig(), kube, clock=lambda: at(5))
    refusing = {"spec": {"allowed_sources": ["*"], "allowed_outputs": ["team-b"]}}
    ctl.bind({}, {}, {}, {("ns1", PROJECT.lower()): [refusing]})
    seen = cr(name="aug-w", spec={"output_dataset_id": "acme/leak"})
    seen["metadata"]["uid"] = "u-aug-w"
    ctl.crs[("ns1", "aug-w")] = [summarize_cr(seen)]
    asyncio.run(ctl.poke(("ns1", "aug-w")))
    assert not getattr(kube, "project_reads", [])  # no GET: the watch's copy decided
    assert "allowed_outputs" in ctl._written[("ns1", "aug-w")].full()["status"]["error"]

    # a project the watch has not shown yet (created a moment before its job): read by GET
    other = "0f0e0d0c-0b0a-4908-8706-050403020100"
    kube.projects = {("ns1", other): refusing}
    fresh = cr(name="aug-g", spec={"project_id": other, "output_dataset_id": "acme/leak"})
    fresh["metadata"]["uid"] = "u-aug-g"
    ctl.crs[("ns1", "aug-g")] = [summarize_cr(fresh)]
    asyncio.run(ctl.poke(("ns1", "aug-g")))
    assert kube.project_reads == [("ns1", other)]
    assert "allowed_outputs" in ctl._written[("ns1", "aug-g")].full()["status"]["error"]
