"""Against a real control plane (apiserver, job controller, GC) with kwok nodes: evictions end a
job and its Job (issue 14 items 11, 12), and a look-alike pod cannot fail another's job (item 14).
"""
from __future__ import annotations

import pytest

from tests.operator._cluster_helpers import (KWOK_DELAY, KWOK_EXIT, KWOK_FAIL, assert_consistent, create_cr,
                                             final, jobs_of, pods_of, wait_cr)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
PRESSURE = "The node was low on resource: memory. Threshold quantity: 100Mi, available: 80Mi."


def running_pod(k8s, ns, job_uid, exclude=()):
    for p in pods_of(k8s, ns):
        owners = [r.uid for r in p.metadata.owner_references or () if r.kind == "Job" and r.controller]
        if owners == [job_uid] and p.status.phase == "Running" and p.metadata.name not in exclude:
            return p
    return None


def evict(k8s, ns, pod):
    """What the kubelet writes when node pressure evicts a pod."""
    body = k8s.core.read_namespaced_pod(pod.metadata.name, ns)
    now = body.status.start_time
    body.status.phase = "Failed"
    body.status.reason = "Evicted"
    body.status.message = PRESSURE
    body.status.conditions = (body.status.conditions or []) + [
        {"type": "DisruptionTarget", "status": "True", "reason": "TerminationByKubelet", "message": PRESSURE,
         "lastTransitionTime": now}]
    for cs in body.status.container_statuses or ():
        cs.state = {"terminated": {"exitCode": 137, "reason": "Error", "startedAt": now, "finishedAt": now}}
        cs.ready = False
    k8s.core.replace_namespaced_pod_status(pod.metadata.name, ns, body)


def test_evictions_beyond_the_cap_fail_the_job_and_stop_its_job(operator, cluster, k8s, namespace):
    op = operator(cpu={"pod_annotations": {KWOK_DELAY: "300s"}}, max_evictions=1)
    create_cr(k8s, namespace, "evicted")
    wait_cr(cluster, k8s, namespace, "evicted", lambda s: s.get("current_phase") == "downloading", "downloading",
            op=op)
    (job,) = jobs_of(k8s, namespace)
    gone = []
    for _ in range(2):
        pod = cluster.wait_for(lambda: running_pod(k8s, namespace, job.metadata.uid, gone), 60,
                               what="a running worker pod")
        evict(k8s, namespace, pod)
        gone.append(pod.metadata.name)
    st = wait_cr(cluster, k8s, namespace, "evicted", final, "final status", op=op)["status"]
    assert st["status"] == "failed", st
    assert_consistent(st)
    assert st["error"].startswith("the worker pod was evicted 2 times, more than max_evictions (1) allows; last: "
                                  f"pod {gone[1]} was evicted or disrupted on node "), st["error"]
    assert PRESSURE in st["error"] and st["attempt"] == 0  # evictions are not retries
    # the Job that would have restarted it again is deleted (foreground), its pods with it
    cluster.wait_for(lambda: not jobs_of(k8s, namespace), 60, what="the Job to be deleted")
    assert not [p.metadata.name for p in pods_of(k8s, namespace) if p.status.phase in ("Pending", "Running")]
    assert "deleted Job evicted-worker (foreground)" in op.log.read_text()


def test_a_look_alike_failing_pod_does_not_fail_the_job(operator, cluster, k8s, namespace):
    op = operator(cpu={"pod_annotations": {KWOK_DELAY: "12s"}})
    create_cr(k8s, namespace, "target")
    wait_cr(cluster, k8s, namespace, "target", lambda s: s.get("current_phase") == "downloading", "downloading",
            op=op)
    # anyone who may create pods in the namespace can copy our labels and annotation
    k8s.core.create_namespaced_pod(namespace, {
        "metadata": {"name": "target-worker-fake",
                     "labels": {"app.kubernetes.io/managed-by": "roboaug-operator", KWOK_FAIL: "true",
                                "roboaug.dev/job-id": "x"},
                     "annotations": {"roboaug.dev/cr-name": "target", KWOK_EXIT: "10", KWOK_DELAY: "1s"}},
        "spec": {"nodeSelector": {"roboaug.dev/pool": "cpu"}, "restartPolicy": "Never",
                 "containers": [{"name": "worker", "image": "example.invalid/fake:1"}]}})

    def fake_failed():
        p = k8s.core.read_namespaced_pod("target-worker-fake", namespace)
        return p.status.phase == "Failed"
    cluster.wait_for(fake_failed, 60, what="the look-alike pod to fail with a permanent exit code")
    st = wait_cr(cluster, k8s, namespace, "target", final, "final status", op=op)["status"]
    assert st["status"] == "completed", st
    assert_consistent(st)
    assert st["attempt"] == 0
    assert not any(e["status"] in ("retry", "failed") for p in st["phases"] for e in p["events"])
