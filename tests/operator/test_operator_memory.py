"""Issue 14 item 8: the operator keeps what its decisions need, not every CR body forever.

The AugmentationJob index holds a small record per job (`observe.CrView`): the body while the
job runs, packed once it has finished; the controller's per-job state goes once a job has
finished and nothing is pending for it. bench/bench_operator.py --finished 5000 measures it.
"""

from __future__ import annotations

import asyncio
import copy
import json
import sys

import kopf

from roboaug.api.models import GROUP, PLURAL
from roboaug.operator import handlers
from roboaug.operator.observe import CrView, summarize_cr

from tests.operator._operator_factories import PROJECT, cr, job
from tests.operator.test_operator_controller import FakeKube, _controller, _cr
from tests.operator.test_operator_steps import CFG  # noqa: F401  (same config defaults as the steps)


def _finished(name="aug-a"):
    body = _cr(name)
    body["status"] = {"status": "completed", "current_phase": "completed", "job_id": "j",
                      "phases": [{"name": p, "status": "completed", "started_at": "2026-01-01T00:00:00Z",
                                  "completed_at": "2026-01-01T00:00:01Z",
                                  "events": [{"status": "completed", "message": "x" * 200}] * 5}
                                 for p in ("queued", "scheduling", "downloading", "augmenting",
                                           "uploading", "completed")],
                      "effective_spec": dict(body["spec"]), "observed_generation": 1}
    return body


def _deep_size(obj, seen=None) -> int:
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    size = sys.getsizeof(obj)
    if isinstance(obj, dict):
        size += sum(_deep_size(k, seen) + _deep_size(v, seen) for k, v in obj.items())
    elif isinstance(obj, (list, tuple, set)):
        size += sum(_deep_size(v, seen) for v in obj)
    elif isinstance(obj, CrView):
        size += sum(_deep_size(v, seen) for v in vars(obj).values())
    return size


def test_the_index_keeps_a_finished_job_as_a_small_record_and_its_body_intact():
    body = _finished()
    stored = copy.deepcopy(body)
    entry = asyncio.run(handlers.aj_index(namespace="ns1", name="aug-a", body=kopf.Body(body)))
    view = entry[("ns1", "aug-a")]
    assert isinstance(view, CrView) and view.finished
    assert view.body is None  # no dict of the body is held for a finished job
    assert (view.name, view.uid, view.phase, view.project, view.resource_version) == \
        ("aug-a", "u-aug-a", "completed", PROJECT, 100)
    assert view.full() == json.loads(json.dumps(stored))  # decide still sees the body as stored
    assert _deep_size(view) * 4 < _deep_size(stored), (_deep_size(view), _deep_size(stored))


def test_the_index_keeps_a_running_jobs_body():
    body = cr(name="aug-r", status={"status": "running", "current_phase": "augmenting"})
    stored = copy.deepcopy(body)
    view = asyncio.run(handlers.aj_index(namespace="ns1", name="aug-r", body=kopf.Body(body)))[("ns1", "aug-r")]
    assert not view.finished and view.body == stored and view.full() is view.body


# -- what kopf holds: its copy of each listed object, parked until every index is filled ------
_MANAGED = [{"manager": "kube-apiserver", "operation": "Update", "fieldsType": "FieldsV1",
             "fieldsV1": {"f:status": {"f:phases": {}}}}]


def test_indexing_leaves_kopf_only_the_metadata_of_each_augmentation_job():
    finished, running = _finished(), cr(name="aug-r", status={"status": "running"})
    for raw in (finished, running):
        raw["metadata"]["managedFields"] = copy.deepcopy(_MANAGED)
        stored = copy.deepcopy(raw)
        name = raw["metadata"]["name"]
        view = asyncio.run(handlers.aj_index(namespace="ns1", name=name, body=kopf.Body(raw)))[("ns1", name)]
        assert set(raw) == {"apiVersion", "kind", "metadata"}, sorted(raw)
        # what kopf and aj_event still read is there...
        assert raw["metadata"] == {k: v for k, v in stored["metadata"].items() if k != "managedFields"}
        # ...and the index has the whole job (a running job's body is its own shallow copy)
        assert view.full()["spec"] == stored["spec"] and view.full()["status"] == stored["status"]


def test_no_kopf_handler_reads_an_augmentation_job_after_its_index():
    # release_body empties kopf's AugmentationJob objects once they are indexed: a kopf handler
    # on them, added anywhere in the operator, would silently see no spec or status. Such a
    # handler reads the index (or release_body keeps what it needs), and this list changes.
    import importlib
    import pkgutil

    import roboaug.operator as pkg

    for mod in pkgutil.iter_modules(pkg.__path__):
        if mod.name != "__main__":
            importlib.import_module(f"{pkg.__name__}.{mod.name}")
    registry = kopf.get_default_registry()
    on_jobs = {(h.fn.__module__, h.fn.__name__)
               for reg in (registry._indexing, registry._watching, registry._spawning,
                           registry._changing, registry._webhooks)
               for h in reg.get_all_handlers()
               if h.selector is not None and h.selector.group == GROUP and PLURAL in (
                   h.selector.any_name, getattr(h.selector, "plural", None))}
    assert on_jobs == {("roboaug.operator.handlers", "aj_index"), ("roboaug.operator.handlers", "aj_event")}


def test_the_initial_listing_is_one_request(monkeypatch):
    # Paged, the listing outlived its continue token (410 Expired after ~5 min: kopf fetches the
    # next page only when its loop is free, minutes with 5,000 parked objects) and kopf stopped.
    monkeypatch.setattr(handlers, "_controller", None)  # no sweeper task
    settings = kopf.OperatorSettings()
    settings.watching.chunk_size = 200
    asyncio.run(handlers.configure(settings=settings))
    assert settings.watching.chunk_size is None


def test_a_finished_job_is_unpacked_only_after_its_project_read(monkeypatch):
    # At start-up every finished job waits for its project read at once: the packed record,
    # not the body, is what waits.
    order = []
    kube = FakeKube()
    kube.projects = {("ns1", PROJECT): {"spec": {"allowed_sources": ["*"], "allowed_outputs": ["*"]}}}
    real_get, real_full = kube.get_project, CrView.full
    monkeypatch.setattr(kube, "get_project", lambda *a: order.append("project") or real_get(*a))
    monkeypatch.setattr(CrView, "full", lambda self: order.append("unpack") or real_full(self))
    ctl = _controller(kube)
    key = ("ns1", "aug-a")
    ctl.crs[key] = [summarize_cr(_finished())]
    asyncio.run(ctl.poke(key))
    assert order and order[0] == "project" and "unpack" in order, order


class MergingKube(FakeKube):
    """Status patches merge onto the CR as last written, as the apiserver does."""

    def patch_cr_status(self, ns, name, status, rv):
        before = copy.deepcopy(self.bodies.get(name) or _cr(name))
        body = super().patch_cr_status(ns, name, status, rv)
        merged = {**(before.get("status") or {}), **status}
        body["status"] = {k: v for k, v in merged.items() if v is not None}
        self.bodies[name] = body
        return body


def test_a_finished_job_leaves_no_per_job_state_in_the_controller():
    kube = MergingKube()
    ctl = _controller(kube)
    key = ("ns1", "aug-a")
    running = _cr("aug-a")
    kube.bodies["aug-a"] = running
    ctl.crs[key] = [summarize_cr(running)]
    ctl.jobs[key] = [job(name="aug-a-worker", owner="u-aug-a", active=0, complete=True)]

    async def run():
        for _ in range(6):  # each pass, then its write coming back through the watch
            await ctl.poke(key)
            if key in ctl._written:  # the watch's own copy of what we wrote
                ctl.crs[key] = [summarize_cr(ctl._written[key].full())]
            if ctl.crs[key][0].finished and key not in ctl._written:
                await ctl.poke(key)  # a late event (the Job's pods going) for the finished job
                return

    asyncio.run(run())
    view = ctl.crs[key][0]
    assert view.phase == "completed", view
    assert view.body is None
    assert key not in ctl._keys and key not in ctl._written and key not in ctl._created


def test_a_finished_job_with_a_pending_timer_keeps_its_state():
    # Its project's TTL has not run out: the timer that deletes it later must stay.
    kube = FakeKube()
    kube.projects = {("ns1", PROJECT): {"spec": {"allowed_sources": ["*"], "allowed_outputs": ["*"],
                                                 "ttl_seconds_after_finished": 3600}}}
    ctl = _controller(kube)
    key = ("ns1", "aug-a")
    ctl.crs[key] = [summarize_cr(_finished())]

    async def go():
        await ctl.poke(key)
        return ctl._keys.get(key)

    st = asyncio.run(go())
    assert st is not None and st.timer is not None


# -- start-up: the initial listing, and kopf's wait for every index (issue 14 item 8) --------
def test_the_streaming_switch_reaches_kopf(monkeypatch):
    from kopf._cogs.aiokits import aiotoggles

    from roboaug.operator.config import parse_config

    from roboaug.operator import kopf_startup

    assert parse_config({}).watch_initial_streaming == "auto"  # resolved by a probe at start-up
    # configs from before auto: booleans (and YAML's bare on/off) read as on/off
    assert [parse_config({"watch_initial_streaming": v}).watch_initial_streaming
            for v in (True, False, "true", "off")] == ["on", "off", "on", "off"]
    # as kopf ships it, whatever other tests have installed already
    monkeypatch.setattr(aiotoggles.ToggleSet, kopf_startup._MARK, False, raising=False)  # undone: absent again
    for name in ("make_toggle", "drop_toggle", "drop_toggles"):
        monkeypatch.setattr(aiotoggles.ToggleSet, name, lambda *a, **k: None)
    monkeypatch.setattr(handlers, "_controller", None)  # no sweeper task
    for streaming in (True, False):
        monkeypatch.setattr(handlers, "_initial_streaming", streaming)
        settings = kopf.OperatorSettings()
        settings.watching.initial_streaming = not streaming
        asyncio.run(handlers.configure(settings=settings))
        assert settings.watching.initial_streaming is streaming
    # the start-up fix is put in place by the same start-up handler
    assert aiotoggles.ToggleSet.drop_toggle is kopf_startup._drop_toggle


def _park_and_release(n: int):
    """n per-object workers as kopf runs them while it lists: each drops its toggle and waits
    for the whole set; the drops come one by one, with the loop turning in between, so every
    notification a drop makes reaches the workers already parked. Returns how often the set's
    state was computed, and whether any worker left before the last toggle went."""
    from kopf._cogs.aiokits import aiotoggles

    from roboaug.operator import kopf_startup

    assert kopf_startup.install()
    checks = 0

    def counted_all(states):
        nonlocal checks
        checks += 1
        return all(states)

    async def go():
        ts = aiotoggles.ToggleSet(counted_all)
        blocker = await ts.make_toggle(name="listing")
        toggles = [await ts.make_toggle(name=str(i)) for i in range(n)]
        left_early = []

        async def worker(i, toggle):
            for _ in range(i):
                await asyncio.sleep(0)
            await ts.drop_toggle(toggle)
            await ts.wait_for(True)
            left_early.append(ts.is_on() is False)

        tasks = [asyncio.create_task(worker(i, t)) for i, t in enumerate(toggles)]
        for _ in range(n + 5):
            await asyncio.sleep(0)
        parked = not any(t.done() for t in tasks)
        await ts.drop_toggle(blocker)
        await asyncio.wait_for(asyncio.gather(*tasks), 30)
        return parked and not any(left_early)

    return asyncio.run(go()), checks


def test_parked_workers_are_woken_once_not_at_every_index():
    # kopf's own ToggleSet notifies every parked worker at each make/drop: ~n^2/2 wakeups
    # (5,000 finished jobs: ~23 min before the first handler). Patched: a few per worker.
    n = 300
    ok, checks = _park_and_release(n)
    assert ok  # none left before the last toggle was dropped; all left after it
    assert checks < 10 * n, checks  # unpatched: > n * n / 2


def test_the_toggle_set_still_wakes_on_every_flip():
    from kopf._cogs.aiokits import aiotoggles

    from roboaug.operator import kopf_startup

    kopf_startup.install()

    async def go():
        ts = aiotoggles.ToggleSet(all)
        on = asyncio.create_task(ts.wait_for(True))
        t = await ts.make_toggle(name="a")  # on (empty) -> off: a waiter for off must wake
        off = asyncio.create_task(ts.wait_for(False))
        await asyncio.wait_for(off, 5)
        await t.turn_to(True)  # a toggle's own change still notifies (kopf's Toggle)
        await asyncio.wait_for(on, 5)
        u = await ts.make_toggle(name="b")
        again = asyncio.create_task(ts.wait_for(True))
        await asyncio.sleep(0)
        await ts.drop_toggles([u])
        await asyncio.wait_for(again, 5)
        paused = aiotoggles.ToggleSet(any)
        flag = await paused.make_toggle(True, name="p")
        resumed = asyncio.create_task(paused.wait_for(False))
        await asyncio.sleep(0)
        await paused.drop_toggle(flag)
        await asyncio.wait_for(resumed, 5)

    asyncio.run(go())


def test_the_bench_finished_jobs_are_as_the_operator_leaves_them():
    # bench_operator --finished measures the steady state: if its jobs lacked anything the
    # operator derives (conditions, observedGeneration...), the operator's first look at each
    # would be a status write (5,000 PATCHes measured as memory, minutes on a loaded apiserver).
    import importlib.util
    from pathlib import Path

    from roboaug.operator.config import parse_config

    from tests.operator._operator_factories import decide_checked

    path = Path(__file__).resolve().parents[2] / "bench" / "bench_operator.py"
    spec = importlib.util.spec_from_file_location("bench_operator_under_test", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    job_id = "3e4ac97e-515b-4b01-9f50-b367600f2fa4"
    body = cr(name="done-00007", spec={"project_id": bench.PROJECT, "dataset_id": "lerobot/pusht",
                                       "job_id": job_id},
              status=bench.finished_status("done-00007", job_id, 7))
    plan = decide_checked(body, parse_config({}), now=10**6)
    assert plan.status == {} and plan.empty, plan.status
