"""GET /v1/augmentation/{job_id}/logs over a fake log source (gateway/logs.py): which attempt,
live pods before archives, archives only when owned by the job's CR, follow waits and streams,
the same visibility rules as GET /v1/augmentation/{id}."""

from __future__ import annotations

import json
import threading
from typing import Iterator, Optional

import pytest

from tests.gateway.gateway_helpers import BOUND_KEY, OTHER_PROJECT, minimal_body, post_job
from roboaug.api import joblogs
from roboaug.api.gateway import logs
from roboaug.api.gateway.logs import NotStarted, PodGone, PodRef
from roboaug.api.gateway.store import Unavailable
from roboaug.api.models import cr_name


def line(msg: str, ts: str = "2025-03-01T10:00:00.000Z", **fields) -> bytes:
    return (joblogs.render("info", msg, ts=ts, **fields) + "\n").encode()


class FakeLogSource:
    """Pods per job (a list per call of `pods`, the last repeated), chunks per pod, archives by
    name; records each read as (pod, follow)."""

    def __init__(self):
        self.pod_lists: dict[str, list[list[PodRef]]] = {}
        self.logs: dict[str, list[bytes]] = {}
        self.not_started: dict[str, int] = {}  # pod -> reads answered NotStarted first
        self.failing: set[str] = set()
        self.cut: dict[str, int] = {}  # pod -> chunks the next read ends after (a read that ends early)
        self.archives: dict[str, dict] = {}
        self.reads: list[tuple[str, bool]] = []
        self.closed: list[str] = []
        self.lock = threading.Lock()

    def pods(self, job_id: str) -> list[PodRef]:
        with self.lock:
            lists = self.pod_lists.get(job_id) or [[]]
            return lists.pop(0) if len(lists) > 1 else lists[0]

    def read(self, pod: str, follow: bool) -> Iterator[bytes]:
        self.reads.append((pod, follow))
        if self.not_started.get(pod):
            self.not_started[pod] -= 1
            raise NotStarted(pod)
        if pod in self.failing:
            raise Unavailable("500 Internal Server Error: dial tcp 10.1.2.3:10250")
        if pod not in self.logs:
            raise PodGone(pod)
        chunks = list(self.logs[pod])
        if pod in self.cut:
            chunks = chunks[:self.cut.pop(pod)]
        return iter(chunks)

    def archive(self, name: str) -> Optional[dict]:
        return self.archives.get(name)

    def close(self, stream) -> None:
        self.closed.append("closed")


def pod(name: str, attempt: int = 0, created: str = "2025-03-01T10:00:00Z", ended: bool = False) -> PodRef:
    return PodRef(name=name, uid=f"uid-{name}", attempt=attempt, created=created, ended=ended)


def cm(cr: dict, attempt: int, text: str, pod_name: str, part: int = 0, owner_uid: Optional[str] = None) -> tuple[str, dict]:
    meta = cr["metadata"]
    name = joblogs.archive_name(meta["name"], meta["uid"], attempt, part)
    return name, {"metadata": {"name": name, "annotations": {joblogs.ANNOTATION_POD: pod_name},
                               "ownerReferences": [{"kind": "AugmentationJob", "uid": owner_uid or meta["uid"],
                                                    "controller": True}]},
                  "data": {joblogs.ARCHIVE_KEY: text}}


@pytest.fixture
def source(app, monkeypatch) -> FakeLogSource:
    app.state.log_source = FakeLogSource()
    monkeypatch.setattr(logs, "POLL_SECONDS", 0.01)
    return app.state.log_source


def new_job(client, store, **body) -> tuple[str, dict]:
    job_id = post_job(client, minimal_body(**body)).json()["job_id"]
    return job_id, store.get_job_named(cr_name(job_id))


def got(resp) -> list[dict]:
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith(joblogs.MEDIA_TYPE)
    return [json.loads(x) for x in resp.text.splitlines()]


def test_a_running_pods_lines_are_served_and_foreign_lines_wrapped(client, store, source):
    job_id, _ = new_job(client, store)
    source.pod_lists[job_id] = [[pod("p0")]]
    source.logs["p0"] = [line("downloading", phase="downloading")[:20], line("downloading", phase="downloading")[20:],
                         b"Svt[info]: encoder ready\n", line("augmenting", ts="2025-03-01T10:00:02.000Z"),
                         b"no newline at the end"]
    out = got(client.get(f"/v1/augmentation/{job_id}/logs"))
    assert [x["msg"] for x in out] == ["downloading", "Svt[info]: encoder ready", "augmenting", "no newline at the end"]
    assert out[0]["phase"] == "downloading" and "raw" not in out[0]
    # a wrapped line takes the time of the line before it
    assert out[1] == {"ts": "2025-03-01T10:00:00.000Z", "level": "info", "msg": "Svt[info]: encoder ready", "raw": True}
    assert out[3]["ts"] == "2025-03-01T10:00:02.000Z" and out[3]["raw"] is True
    assert source.reads == [("p0", False)]


def test_unknown_job_and_a_job_of_another_project_are_404(client, store, source):
    assert client.get("/v1/augmentation/00000000-0000-4000-8000-000000000000/logs").status_code == 404
    job_id, _ = new_job(client, store, project_id=OTHER_PROJECT)
    source.pod_lists[job_id] = [[pod("p0")]]
    source.logs["p0"] = [line("secret of another team")]
    resp = client.get(f"/v1/augmentation/{job_id}/logs", headers={"x-api-key": BOUND_KEY})
    assert resp.status_code == 404 and "secret" not in resp.text
    assert source.reads == []
    assert client.get(f"/v1/augmentation/{job_id}/logs", headers={"x-api-key": "nope"}).status_code == 401


def test_attempt_defaults_to_the_latest_and_picks_one(client, store, source):
    job_id, cr = new_job(client, store)
    store.patch_status(cr["metadata"]["name"], {"attempt": 1})
    source.pod_lists[job_id] = [[pod("p1", attempt=1, created="2025-03-01T10:05:00Z"), pod("p0", ended=True)]]
    source.logs.update(p0=[line("first try")], p1=[line("second try")])
    assert [x["msg"] for x in got(client.get(f"/v1/augmentation/{job_id}/logs"))] == ["second try"]
    assert [x["msg"] for x in got(client.get(f"/v1/augmentation/{job_id}/logs?attempt=0"))] == ["first try"]
    resp = client.get(f"/v1/augmentation/{job_id}/logs?attempt=2")
    assert resp.status_code == 404 and "attempt" in resp.json()["detail"]
    assert client.get(f"/v1/augmentation/{job_id}/logs?attempt=-1").status_code == 422


def test_after_the_pod_is_gone_the_archive_is_served_if_the_cr_owns_it(client, store, source):
    job_id, cr = new_job(client, store)
    store.patch_status(cr["metadata"]["name"], {"attempt": 1, "status": "completed"})
    source.pod_lists[job_id] = [[]]
    source.archives.update([cm(cr, 1, line("kept").decode() + "Traceback (most recent call last):\n", "p1"),
                            cm(cr, 0, line("attempt zero").decode(), "p0")])
    out = got(client.get(f"/v1/augmentation/{job_id}/logs"))
    assert [x["msg"] for x in out] == ["kept", "Traceback (most recent call last):"] and out[1]["raw"]
    assert [x["msg"] for x in got(client.get(f"/v1/augmentation/{job_id}/logs?attempt=0"))] == ["attempt zero"]
    # a ConfigMap of that name that another object owns is not this job's log
    source.archives.update([cm(cr, 0, line("forged").decode(), "p0", owner_uid="someone-else")])
    assert got(client.get(f"/v1/augmentation/{job_id}/logs?attempt=0")) == []


def test_an_attempt_with_a_replaced_pod_serves_the_archive_then_the_live_pod(client, store, source):
    """A pod lost to a node disruption keeps its attempt number: part 0 is the lost pod's
    archive, the live pod follows; an archive whose pod still exists is not served twice."""
    job_id, cr = new_job(client, store)
    source.pod_lists[job_id] = [[pod("p0b", created="2025-03-01T10:05:00Z")]]
    source.archives.update([cm(cr, 0, line("evicted pod").decode(), "p0a"),
                            cm(cr, 0, line("live pod, archived").decode(), "p0b", part=1)])
    source.logs["p0b"] = [line("live pod")]
    assert [x["msg"] for x in got(client.get(f"/v1/augmentation/{job_id}/logs"))] == ["evicted pod", "live pod"]


def test_follow_waits_for_the_pod_and_its_container_then_streams_to_the_end(client, store, source):
    job_id, cr = new_job(client, store)
    # no pod yet, then a pod whose container has not started (twice), then it has ended
    source.pod_lists[job_id] = [[], [pod("p0")], [pod("p0")], [pod("p0", ended=True)]]
    source.not_started["p0"] = 2
    source.logs["p0"] = [line("downloading"), line("done")]
    out = got(client.get(f"/v1/augmentation/{job_id}/logs?follow=true"))
    assert [x["msg"] for x in out] == ["downloading", "done"]
    assert source.reads == [("p0", True), ("p0", True), ("p0", False)]
    # without follow, a pod not started yet is an empty answer, at once
    source.pod_lists[job_id] = [[pod("p0")]]
    source.not_started["p0"] = 1
    assert got(client.get(f"/v1/augmentation/{job_id}/logs")) == []


def test_a_followed_read_that_ends_early_is_made_again_without_repeating_lines(client, store, source):
    """The apiserver answers an empty log for a pod not on a node yet, and a read may end before
    the pod does: following goes on until a listing shows the pod ended, each line once."""
    job_id, _ = new_job(client, store)
    source.pod_lists[job_id] = [[pod("p0")], [pod("p0")], [pod("p0", ended=True)]]
    b = line("b")
    source.logs["p0"] = [line("a") + b[:5], b[5:], line("c")]
    source.cut["p0"] = 1  # the first read ends within line b
    out = got(client.get(f"/v1/augmentation/{job_id}/logs?follow=true"))
    assert [x["msg"] for x in out] == ["a", "b", "c"]
    assert source.reads == [("p0", True), ("p0", True), ("p0", False)]


def test_follow_of_an_ended_pod_or_a_finished_job_without_pods_ends(client, store, source):
    job_id, cr = new_job(client, store)
    source.pod_lists[job_id] = [[pod("p0", ended=True)]]
    source.logs["p0"] = [line("all done")]
    assert [x["msg"] for x in got(client.get(f"/v1/augmentation/{job_id}/logs?follow=true"))] == ["all done"]
    assert source.reads == [("p0", False)]  # an ended pod's log is read, not followed
    store.patch_status(cr["metadata"]["name"], {"status": "cancelled"})
    source.pod_lists[job_id] = [[]]
    assert got(client.get(f"/v1/augmentation/{job_id}/logs?follow=true")) == []


def test_the_store_being_unavailable_is_503(client, store, source):
    job_id, _ = new_job(client, store)
    store.unavailable = True
    assert client.get(f"/v1/augmentation/{job_id}/logs").status_code == 503


def test_the_apiserver_failing_mid_answer_ends_it_with_one_error_line_and_no_details(client, store, source):
    job_id, _ = new_job(client, store)
    source.pod_lists[job_id] = [[pod("p0", ended=True), pod("p1", created="2025-03-01T10:05:00Z", ended=True)]]
    source.logs["p0"] = [line("from p0")]
    source.failing.add("p1")
    out = got(client.get(f"/v1/augmentation/{job_id}/logs"))
    assert [x["msg"] for x in out[:1]] == ["from p0"] and len(out) == 2
    assert out[1]["level"] == "error" and out[1]["event"] == "log_unavailable" and "10.1.2.3" not in out[1]["msg"]


def test_pod_ref_ignores_pods_no_job_controls_and_reads_the_attempt():
    base = {"metadata": {"name": "p", "uid": "u", "creationTimestamp": "t",
                         "annotations": {"batch.kubernetes.io/job-index-failure-count": "2"},
                         "ownerReferences": [{"kind": "Job", "name": "j", "controller": True}]},
            "status": {"phase": "Failed"}}
    assert logs.pod_ref(base) == PodRef(name="p", uid="u", attempt=2, created="t", ended=True, failed=True)
    shard = {**base, "metadata": {**base["metadata"], "labels": {"roboaug.dev/stage": "shard"},
                                  "annotations": {"batch.kubernetes.io/job-completion-index": "7"}},
             "status": {"phase": "Succeeded"}}
    ref = logs.pod_ref(shard)
    assert (ref.stage, ref.index, ref.failed, ref.attempt, ref.kept) == ("shard", 7, False, 0, False)
    assert logs.pod_ref({**base, "metadata": {**base["metadata"], "ownerReferences": []}}) is None


def test_the_route_is_in_the_openapi_document(app):
    op = app.openapi()["paths"]["/v1/augmentation/{job_id}/logs"]["get"]
    assert {p["name"] for p in op["parameters"]} >= {"job_id", "follow", "attempt"}
    assert joblogs.MEDIA_TYPE in op["responses"]["200"]["content"]


def test_a_kubernetes_stream_cut_short_ends_a_followed_read_and_fails_another():
    """A followed read that times out (a quiet worker) is made again by `lines`; a plain read cut
    short is the apiserver failing."""
    from urllib3.exceptions import ReadTimeoutError

    class Resp:
        def stream(self, size):
            yield b"a\n"
            raise ReadTimeoutError(None, "/log", "read timed out")

        def close(self):
            pass

    assert list(logs._Stream(Resp(), follow=True)) == [b"a\n"]
    with pytest.raises(Unavailable):
        list(logs._Stream(Resp(), follow=False))


def test_a_sharded_job_serves_the_kept_pods_and_archives_and_counts_the_rest(client, store, source):
    """10,000 shards are not 10,000 log reads: the rule the operator archives by (failed shard
    pods, shards 0 and 1, finalize and cleanup) picks the pods served; the rest are counted."""
    job_id, cr = new_job(client, store)
    store.patch_status(cr["metadata"]["name"], {"shards": {"count": 1000, "source": "spec"}})
    shards = [PodRef(name=f"w-{i}", uid=f"u{i}", attempt=0, created=f"2025-03-01T10:00:{i % 60:02d}Z",
                     ended=True, stage="shard", index=i, failed=i == 500) for i in range(1000)]
    fin = PodRef(name="fin", uid="uf", attempt=0, created="2025-03-01T11:00:00Z", ended=False, stage="finalize",
                 index=0)
    source.pod_lists[job_id] = [shards + [fin]]
    source.logs.update({p.name: [line(f"log of {p.name}")] for p in shards + [fin]})
    meta = cr["metadata"]
    # an earlier finalize pod, gone: its archive has a name of its own (the failed shards' parts
    # cannot crowd it out)
    name = joblogs.archive_name(meta["name"], meta["uid"], 0, 0, "finalize")
    source.archives[name] = {"metadata": {"name": name, "annotations": {joblogs.ANNOTATION_POD: "fin-old"},
                                          "ownerReferences": [{"uid": meta["uid"], "controller": True}]},
                             "data": {joblogs.ARCHIVE_KEY: line("finalize, first pod").decode()}}
    out = got(client.get(f"/v1/augmentation/{job_id}/logs"))
    msgs = [x["msg"] for x in out]
    assert msgs[0] == "finalize, first pod"
    assert out[1]["event"] == "logs_left_out" and out[1]["left_out"] == 997
    assert sorted(msgs[2:]) == ["log of fin", "log of w-0", "log of w-1", "log of w-500"]
    assert msgs[-1] == "log of fin" and len(source.reads) == 4
