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
