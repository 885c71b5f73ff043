"""With a real Kueue controller (built from its Go module, devstack/kueue.py) on the local control
plane with kwok nodes: a ClusterQueue whose quota admits one worker Job at a time, two jobs. The
second stays `queued` with Kueue's reason while the first runs, far past the pending timeout,
then runs once the first is done. A project naming the LocalQueue on a pool that names none is
admitted the same way. The operator side alone: test_operator_kueue.py."""
from __future__ import annotations

import time
import uuid

import pytest

from roboaug.devstack import kueue as devkueue
from roboaug.operator.phases import parse_ts

from tests.operator._cluster_helpers import (KWOK_DELAY, PROJECT, OperatorProcess, assert_consistent, base_config,
                                             create_cr, final, get_cr, jobs_of, pods_of, wait_cr)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
KUEUE = "kueue.x-k8s.io", "v1beta2"
QUEUE = "roboaug-cpu"
PENDING_TIMEOUT = 10  # seconds: the held job waits much longer and must not fail on it


@pytest.fixture(scope="module")
def kueue(cluster):
    """Kueue's manager running against the session's local cluster for this module's tests."""
    if cluster.local is None:
        pytest.skip("needs the local dev cluster (Kueue runs as one of its processes)")
    if not devkueue.is_built():
        pytest.skip(f"Kueue is not built: {devkueue.BUILD_HINT}")
    mgr = cluster.local.start_kueue()
    print(f"kueue started in {mgr.start_seconds}s")
    yield mgr
    mgr.stop()


@pytest.fixture
def one_job_queue(kueue, k8s, namespace):
    """A ResourceFlavor, a ClusterQueue with quota for exactly one worker pod (the test pool
    requests cpu 100m, memory 64Mi) and a LocalQueue for it in the test namespace."""
    group, version = KUEUE
    suffix = uuid.uuid4().hex[:6]
    flavor, cq = f"flavor-{suffix}", f"cq-{suffix}"
    k8s.custom.create_cluster_custom_object(group, version, "resourceflavors", {
        "apiVersion": f"{group}/{version}", "kind": "ResourceFlavor", "metadata": {"name": flavor}})
    k8s.custom.create_cluster_custom_object(group, version, "clusterqueues", {
        "apiVersion": f"{group}/{version}", "kind": "ClusterQueue", "metadata": {"name": cq},
        "spec": {"namespaceSelector": {}, "queueingStrategy": "BestEffortFIFO",
                 "resourceGroups": [{"coveredResources": ["cpu", "memory"], "flavors": [
                     {"name": flavor, "resources": [{"name": "cpu", "nominalQuota": "100m"},
                                                    {"name": "memory", "nominalQuota": "64Mi"}]}]}]}})
    k8s.custom.create_namespaced_custom_object(group, version, namespace, "localqueues", {
        "apiVersion": f"{group}/{version}", "kind": "LocalQueue",
        "metadata": {"name": QUEUE, "namespace": namespace}, "spec": {"clusterQueue": cq}})
    yield cq
    for plural, name in (("clusterqueues", cq), ("resourceflavors", flavor)):
        try:
            k8s.custom.delete_cluster_custom_object(group, version, plural, name)
        except Exception:  # noqa: BLE001 - best effort; the namespace goes anyway
            pass


def admission_events(status):
    return [e for ph in status.get("phases") or () for e in ph["events"] if e["status"] == "waiting_for_admission"]


def test_kueue_admits_one_job_at_a_time_and_the_held_one_waits_queued(cluster, crd, k8s, namespace, one_job_queue,
                                                                     tmp_path):
    k8s.core.create_namespaced_service_account(namespace, {"metadata": {"name": "roboaug-worker"}})
    config = base_config(namespace, cpu={"kueue_queue": QUEUE, "pod_annotations": {KWOK_DELAY: "30s"}},
                         pending_timeout_seconds=PENDING_TIMEOUT)
    op = OperatorProcess(cluster, config, tmp_path).start()
    try:
        create_cr(k8s, namespace, "first")
        wait_cr(cluster, k8s, namespace, "first", lambda s: s.get("current_phase") == "downloading",
                "first running", op=op)
        create_cr(k8s, namespace, "second")
        t0 = time.monotonic()
        # Kueue's own words about the quota, from the second job's Workload
        st = wait_cr(cluster, k8s, namespace, "second",
                     lambda s: any("insufficient unused quota" in e["message"] for e in admission_events(s)),
                     "Kueue's reason on the held job", op=op)["status"]
        assert st["current_phase"] == "queued" and st["status"] == "queued", st
        said = [e for e in admission_events(st) if "insufficient unused quota" in e["message"]][-1]
        assert said["message"].startswith(f"waiting for Kueue to admit the Job (LocalQueue {QUEUE}): "), said
        assert said["data"]["queue"] == QUEUE and said["data"]["workload"], said
        held = next(j for j in jobs_of(k8s, namespace) if j.metadata.name == "second-worker")
        assert held.spec.suspend is True and held.metadata.labels["kueue.x-k8s.io/queue-name"] == QUEUE
        assert not [p for p in pods_of(k8s, namespace) if p.metadata.name.startswith("second-worker")]

        # the first one finishes; the held one was queued far longer than the pending timeout
        first = wait_cr(cluster, k8s, namespace, "first", final, "first done", op=op)["status"]
        assert first["status"] == "completed", first
        waited = time.monotonic() - t0
        assert waited > 2 * PENDING_TIMEOUT, waited
        # ... and then Kueue admits it: it runs through the normal phases to the end
        st = wait_cr(cluster, k8s, namespace, "second", final, "second done", op=op)["status"]
        assert st["status"] == "completed", st
        assert_consistent(st)
        names = [p["name"] for p in st["phases"]]
        assert names[:3] == ["queued", "scheduling", "downloading"], names
        queued_for = (parse_ts(st["phases"][1]["started_at"]) - parse_ts(st["phases"][0]["started_at"])).total_seconds()
        assert queued_for > 2 * PENDING_TIMEOUT, st["phases"][:2]
        assert admission_events(st) and all(e in st["phases"][0]["events"] for e in admission_events(st))
        # the first waited on Kueue only while Kueue admitted it (under load its reason may change
        # a few times: each change said once, never the same reason twice in a row)
        said_first = [e["message"] for e in admission_events(get_cr(k8s, namespace, "first")["status"])]
        assert all(a != b for a, b in zip(said_first, said_first[1:])), said_first
    finally:
        op.stop()
        print(f"--- operator log ---\n{op.tail(60)}")


def test_a_projects_queue_admits_its_job_on_a_pool_naming_none(cluster, crd, k8s, namespace, one_job_queue,
                                                                tmp_path):
    """The pool names no queue, the job's AugmentationProject does: its Job is created suspended
    in the project's LocalQueue, and Kueue admits it (a Workload in that queue) and it completes."""
    from kubernetes import watch

    from roboaug.api.models import GROUP, VERSION
    from roboaug.api.models.project import PROJECT_PLURAL
    from roboaug.operator import kueue as opkueue

    k8s.core.create_namespaced_service_account(namespace, {"metadata": {"name": "roboaug-worker"}})
    k8s.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PROJECT_PLURAL, {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "AugmentationProject", "metadata": {"name": PROJECT.lower()},
        "spec": {"allowed_sources": ["*"], "allowed_outputs": ["*"], "kueue_queue": QUEUE}})
    config = base_config(namespace, pending_timeout_seconds=PENDING_TIMEOUT)
    assert "kueue_queue" not in config["pools"]["cpu"]
    before = k8s.batch.list_namespaced_job(namespace).metadata.resource_version
    op = OperatorProcess(cluster, config, tmp_path).start()
    try:
        create_cr(k8s, namespace, "team")
        st = wait_cr(cluster, k8s, namespace, "team", final, "team done", op=op)["status"]
        assert st["status"] == "completed", st
        assert_consistent(st)
    finally:
        op.stop()
        print(f"--- operator log ---\n{op.tail(60)}")
    # the Job as it was created (replayed from before it existed): suspended, in the project's queue
    first = None
    for ev in watch.Watch().stream(k8s.batch.list_namespaced_job, namespace, resource_version=before,
                                   timeout_seconds=5):
        if ev["type"] == "ADDED" and ev["object"].metadata.name == "team-worker":
            first = ev["object"]
            break
    assert first is not None, "no ADDED event of the worker Job"
    assert first.spec.suspend is True and first.metadata.labels[opkueue.LABEL_QUEUE_NAME] == QUEUE
    # ... and Kueue admitted it through that queue
    group, version = KUEUE
    wls = k8s.custom.list_namespaced_custom_object(group, version, namespace, "workloads",
                                                   label_selector=opkueue.job_uid_selector(first.metadata.uid))
    [wl] = wls["items"]
    assert wl["spec"]["queueName"] == QUEUE
    assert opkueue.summarize_workload(wl).admitted or any(
        c["type"] == "Finished" and c["status"] == "True" for c in wl["status"].get("conditions", [])), wl["status"]
