"""The operator's log archive (operator/log_archive.py): which pod events archive, what the
ConfigMap holds, the pod being gone first, and each pod archived once."""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Optional

import pytest

from tests.operator._operator_factories import CR_UID, JOB_ID, cr
from roboaug.api import joblogs
from roboaug.operator import log_archive
from roboaug.operator.kube import ApiError
from roboaug.operator.log_archive import LogArchiver, ended


def pod_body(phase: str = "Running", *, name: str = "aug-demo-worker-0-abcde", uid: str = "pod-uid-1",
             attempt: Optional[str] = "0", owner: str = "aug-demo-worker", message: Optional[str] = None) -> dict:
    annotations = {"roboaug.dev/cr-name": "aug-demo"}
    if attempt is not None:
        annotations["batch.kubernetes.io/job-index-failure-count"] = attempt
    statuses = []
    if message is not None:
        statuses = [{"name": "worker", "state": {"terminated": {"exitCode": 10, "message": message}}}]
    return {"metadata": {"name": name, "namespace": "ns1", "uid": uid, "annotations": annotations,
                         "labels": {"roboaug.dev/job-id": JOB_ID},
                         "ownerReferences": [{"kind": "Job", "name": owner, "controller": True}]},
            "status": {"phase": phase, "containerStatuses": statuses}}


# -- the decision ----------------------------------------------------------------------------------
@pytest.mark.parametrize("event,phase,want", [
    (None, "Running", None), ("MODIFIED", "Pending", None),
    ("MODIFIED", "Succeeded", False), ("MODIFIED", "Failed", False), (None, "Failed", False),
    ("DELETED", "Running", True), ("DELETED", "Failed", True),
])
def test_ended_when_the_pod_ends_or_goes(event, phase, want):
    got = ended(event, pod_body(phase))
    assert (got is None) if want is None else (got.gone is want)


def test_ended_reads_the_attempt_and_the_termination_message():
    got = ended("MODIFIED", pod_body("Failed", attempt="2", message="last words"))
    assert (got.cr_name, got.attempt, got.job_id, got.message) == ("aug-demo", 2, JOB_ID, "last words")
    assert ended("MODIFIED", pod_body("Failed", attempt=None)).attempt == 0


def test_a_look_alike_pod_archives_nothing():
    """Anyone who may create pods can copy our labels and annotation: only a pod the CR's
    worker Job controls counts."""
    assert ended("MODIFIED", pod_body("Failed", owner="someone-elses-job")) is None
    body = pod_body("Failed")
    body["metadata"]["ownerReferences"] = []
    assert ended("MODIFIED", body) is None


def test_the_archive_is_owned_by_the_cr_and_immutable():
    e = ended("MODIFIED", pod_body("Failed", attempt="1"))
    body = log_archive.archive(cr(), e, "text\n", "pod", True, part=1)
    meta = body["metadata"]
    assert meta["name"] == joblogs.archive_name("aug-demo", CR_UID, 1, 1) and meta["namespace"] == "ns1"
    assert meta["ownerReferences"] == [{"apiVersion": "roboaug.dev/v1alpha1", "kind": "AugmentationJob",
                                        "name": "aug-demo", "uid": CR_UID, "controller": True}]
    assert meta["annotations"] == {joblogs.ANNOTATION_ATTEMPT: "1", joblogs.ANNOTATION_POD: e.pod_name,
                                   joblogs.ANNOTATION_SOURCE: "pod", joblogs.ANNOTATION_TRUNCATED: "true"}
    assert body["immutable"] is True and body["data"] == {joblogs.ARCHIVE_KEY: "text\n"}


# -- archiving, against a fake apiserver -----------------------------------------------------------
class FakeKube:
    def __init__(self, log: Optional[list[bytes]] = None, log_status: int = 200, cr_status: int = 200):
        self.log, self.log_status, self.cr_status = log, log_status, cr_status
        self.config_maps: dict[str, dict] = {}
        self.calls: list[str] = []

    def get_cr(self, namespace: str, name: str) -> dict:
        self.calls.append("GET cr")
        if self.cr_status != 200:
            raise ApiError(self.cr_status, "x", None)
        return cr(name)

    def request(self, method: str, path: str, body=None, query=None, resource="?"):
        self.calls.append(f"{method} {resource}")
        name = path.rsplit("/", 1)[-1]
        if method == "GET":
            if name not in self.config_maps:
                raise ApiError(404, "Not Found", None)
            return self.config_maps[name]
        if body["metadata"]["name"] in self.config_maps:
            raise ApiError(409, "AlreadyExists", None)
        json.dumps(body)  # what goes over the wire must be JSON
        self.config_maps[body["metadata"]["name"]] = body
        return body

    def pod_log_chunks(self, namespace: str, name: str, container: str):
        self.calls.append("GET pods/log")
        if self.log_status != 200:
            raise ApiError(self.log_status, "x", None)
        return iter(self.log)


def only(kube: FakeKube) -> dict:
    assert len(kube.config_maps) == 1, list(kube.config_maps)
    return next(iter(kube.config_maps.values()))


def test_an_ended_pods_log_tail_is_archived_on_a_line_boundary():
    lines = [joblogs.render("info", f"line {i}").encode() + b"\n" for i in range(2000)]
    kube = FakeKube(log=[b"".join(lines[:1000]), b"".join(lines[1000:])])
    limit = 10_000
    name = LogArchiver(kube, limit=limit).archive(ended("MODIFIED", pod_body("Succeeded")))
    body = only(kube)
    assert name == joblogs.archive_name("aug-demo", CR_UID, 0) == body["metadata"]["name"]
    text = body["data"][joblogs.ARCHIVE_KEY]
    assert len(text.encode()) <= limit and text.endswith(lines[-1].decode())
    assert all(json.loads(x) for x in text.splitlines())  # whole lines only
    assert len(text.encode()) > limit - len(lines[0])  # as many as fit
    assert body["metadata"]["annotations"][joblogs.ANNOTATION_TRUNCATED] == "true"
    assert body["metadata"]["annotations"][joblogs.ANNOTATION_SOURCE] == "pod"


def test_a_pod_gone_before_its_log_was_read_leaves_its_termination_message():
    kube = FakeKube(log_status=404)
    LogArchiver(kube).archive(ended("MODIFIED", pod_body("Failed", message="roboaug-worker: error[10 x]: y")))
    body = only(kube)
    assert body["data"][joblogs.ARCHIVE_KEY] == "roboaug-worker: error[10 x]: y"
    assert body["metadata"]["annotations"][joblogs.ANNOTATION_SOURCE] == "termination-message"
    # deleted before it ended: the log is not even asked for; no message either
    kube = FakeKube(log=[b"never read\n"])
    LogArchiver(kube).archive(ended("DELETED", pod_body("Running")))
    text = only(kube)["data"][joblogs.ARCHIVE_KEY]
    assert "GET pods/log" not in kube.calls and "was lost" in json.loads(text)["msg"]
    assert only(kube)["metadata"]["annotations"][joblogs.ANNOTATION_SOURCE] == "none"


def test_other_api_errors_are_raised_and_logged_not_archived():
    kube = FakeKube(log_status=500)
    archiver = LogArchiver(kube)
    e = ended("MODIFIED", pod_body("Failed"))
    with pytest.raises(ApiError):
        archiver.archive(e)
    assert archiver.archive_quietly(e) is None and kube.config_maps == {}


def test_no_cr_no_archive_and_a_second_pod_of_the_attempt_gets_the_next_part():
    kube = FakeKube(log=[b"x\n"], cr_status=404)
    assert LogArchiver(kube).archive(ended("MODIFIED", pod_body("Failed"))) is None and kube.config_maps == {}
    kube = FakeKube(log=[b"first pod\n"])
    archiver = LogArchiver(kube)
    assert archiver.archive(ended("MODIFIED", pod_body("Failed"))).endswith("-0")
    assert archiver.archive(ended("MODIFIED", pod_body("Failed"))) is None  # this pod has one: a restart
    kube.log = [b"second pod\n"]
    second = archiver.archive(ended("MODIFIED", pod_body("Succeeded", name="p2", uid="pod-uid-2")))
    assert second == joblogs.archive_name("aug-demo", CR_UID, 0, 1)
    assert kube.config_maps[second]["data"][joblogs.ARCHIVE_KEY] == "second pod\n"


def test_each_pod_is_archived_once_and_forgotten_when_deleted():
    kube = FakeKube(log=[b"x\n"])
    archiver = LogArchiver(kube)

    async def events():
        futures = [archiver.pod_event("MODIFIED", pod_body("Running")),
                   archiver.pod_event("MODIFIED", pod_body("Failed")),
                   archiver.pod_event("MODIFIED", pod_body("Failed")),
                   archiver.pod_event("DELETED", pod_body("Failed"))]
        await asyncio.gather(*(f for f in futures if f is not None))
        return futures

    futures = asyncio.run(events())
    assert [f is not None for f in futures] == [False, True, False, False]
    assert kube.calls.count("GET pods/log") == 1 and len(kube.config_maps) == 1
    assert archiver._handled == set()


# -- sharded jobs: a bounded number of archives and requests, whatever the shard count ------------
def shard_pod(index: int, phase: str, *, attempt: str = "0", owner: str = "aug-demo-worker",
              stage: Optional[str] = "shard") -> dict:
    body = pod_body(phase, name=f"{owner}-{index}-{attempt}x", uid=f"{owner}-{index}-{attempt}", attempt=attempt,
                    owner=owner, message="roboaug-worker: error[10 x]: y" if phase == "Failed" else None)
    body["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"] = str(index)
    body["metadata"]["ownerReferences"][0]["uid"] = f"uid-of-{owner}"
    if stage:
        body["metadata"]["labels"]["roboaug.dev/stage"] = stage
    return body


def test_which_pods_of_a_sharded_job_are_archived():
    assert ended("MODIFIED", shard_pod(0, "Succeeded")).stage == "shard"
    assert ended("MODIFIED", shard_pod(joblogs.SHARD_LOG_SAMPLE - 1, "Succeeded")) is not None
    assert ended("MODIFIED", shard_pod(joblogs.SHARD_LOG_SAMPLE, "Succeeded")) is None  # past the sample
    assert ended("DELETED", shard_pod(500, "Running")) is None   # a cancelled job's running shard
    failed = ended("MODIFIED", shard_pod(500, "Failed", attempt="1"))
    assert (failed.index, failed.attempt, failed.stage) == (500, 1, "shard")
    # a one-pod job's pod (index 0 too, no stage label) and the finalize and cleanup pods: always
    assert ended("MODIFIED", shard_pod(0, "Succeeded", stage=None)).stage is None
    fin = ended("MODIFIED", shard_pod(0, "Succeeded", owner="aug-demo-finalize", stage="finalize"))
    assert fin.stage == "finalize"
    # the Job decides the stage, not a label anyone could copy
    assert ended("MODIFIED", shard_pod(0, "Succeeded", owner="aug-demo-cleanup", stage="shard")).stage == "cleanup"
    assert ended("MODIFIED", shard_pod(0, "Failed", owner="aug-demo-elsewhere")) is None


def test_a_thousand_shards_cost_a_bounded_number_of_archives_and_requests():
    kube = FakeKube(log=[b"a shard's log\n"])
    archiver = LogArchiver(kube)

    async def events(bodies):
        futures = [archiver.pod_event("MODIFIED", b) for b in bodies]
        await asyncio.gather(*(f for f in futures if f is not None))
        return sum(f is not None for f in futures)

    sent = asyncio.run(events([shard_pod(i, "Succeeded") for i in range(1000)]))
    assert sent == joblogs.SHARD_LOG_SAMPLE and len(kube.config_maps) == joblogs.SHARD_LOG_SAMPLE
    # each: GET cr, GET its part (and the parts before it), GET log, POST
    assert len(kube.calls) <= (4 + joblogs.SHARD_LOG_SAMPLE) * joblogs.SHARD_LOG_SAMPLE
    # 30 shards fail on attempt 0: their parts fill (8), the rest cost at most one more look
    before = len(kube.calls)
    archiver.executor = ThreadPoolExecutor(max_workers=1)  # one by one: the memo is seen in order
    asyncio.run(events([shard_pod(100 + i, "Failed") for i in range(30)]))
    assert len(kube.config_maps) == joblogs.MAX_ARCHIVE_PARTS  # the 2 samples took parts 0 and 1
    assert len(kube.calls) - before <= 8 * (2 + joblogs.MAX_ARCHIVE_PARTS) + 1 + joblogs.MAX_ARCHIVE_PARTS
    # the finalize pod's archive is its own: never crowded out by the failed shards
    asyncio.run(events([shard_pod(0, "Succeeded", owner="aug-demo-finalize", stage="finalize")]))
    name = joblogs.archive_name("aug-demo", CR_UID, 0, 0, "finalize")
    assert name in kube.config_maps and name != joblogs.archive_name("aug-demo", CR_UID, 0, 0)
