"""The local control plane behaves like a cluster: pools, scheduling, Jobs through kwok."""
import time

import pytest
from kubernetes import client

from roboaug.devstack.cluster import (KWOK_DELAY_ANNOTATION, KWOK_EXIT_CODE_ANNOTATION,
                                      KWOK_FAIL_LABEL, KWOK_WAITING_MESSAGE_ANNOTATION,
                                      KWOK_WAITING_REASON_ANNOTATION)

pytestmark = pytest.mark.slow


def job(name, pool="cpu", labels=None, annotations=None, backoff_limit=0, resources=None,
        tolerations=None):
    return {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
        "spec": {"backoffLimit": backoff_limit, "template": {
            "metadata": {"labels": labels or {}, "annotations": annotations or {}},
            "spec": {"restartPolicy": "Never",
                     "nodeSelector": {"roboaug.dev/pool": pool},
                     "tolerations": tolerations or [],
                     "containers": [{"name": "main", "image": "example.invalid/worker:0",
                                     "command": ["true"],
                                     "resources": resources or {}}]}}},
    }


def pods_of(k8s, ns, job_name):
    return k8s.core.list_namespaced_pod(ns, label_selector=f"job-name={job_name}").items


def job_condition(k8s, ns, name, typ):
    j = k8s.batch.read_namespaced_job(name, ns)
    return any(c.type == typ and c.status == "True" for c in (j.status.conditions or []))


def test_server_version_is_stamped(cluster):
    from roboaug.devstack.build import K8S_VERSION

    if cluster.local is None:
        pytest.skip("existing cluster: any version")
    assert cluster.kube_version == K8S_VERSION
    out = cluster.kubectl("version", "-o", "json").stdout
    assert K8S_VERSION in out


def test_node_pools(cluster, k8s):
    nodes = {n.metadata.name: n for n in k8s.core.list_node().items}
    if cluster.local is None:
        pytest.skip("existing cluster: pools are not ours")
    for name in ("cpu-0", "cpu-1", "gpu-0"):
        assert any(c.type == "Ready" and c.status == "True"
                   for c in nodes[name].status.conditions), name
    cpu = nodes["cpu-0"]
    assert cpu.metadata.labels["node.kubernetes.io/instance-type"] == "c7i.4xlarge"
    assert cpu.metadata.labels["topology.kubernetes.io/region"] == "us-east-1"
    assert cpu.metadata.labels["roboaug.dev/pool"] == "cpu"
    assert cpu.status.capacity["cpu"] == "16" and cpu.status.capacity["memory"] == "32Gi"
    gpu = nodes["gpu-0"]
    assert gpu.metadata.labels["node.kubernetes.io/instance-type"] == "g6e.2xlarge"
    assert gpu.metadata.labels["nvidia.com/gpu.product"] == "NVIDIA-L40S"
    assert gpu.status.allocatable["nvidia.com/gpu"] == "1"
    assert [(t.key, t.value, t.effect) for t in gpu.spec.taints] == [
        ("nvidia.com/gpu", "present", "NoSchedule")]
    if cluster.has_node_agent:
        local = nodes["local-0"]
        assert local.metadata.labels["roboaug.dev/pool"] == "local"
        assert local.metadata.labels["node.kubernetes.io/instance-type"] == "local-dev"
        assert any(c.type == "Ready" and c.status == "True" for c in local.status.conditions)


def test_cpu_job_completes_via_kwok(cluster, k8s, namespace):
    k8s.batch.create_namespaced_job(namespace, job(
        "ok", annotations={KWOK_DELAY_ANNOTATION: "3s"}))
    # The delay annotation keeps the pod Running long enough to observe it.
    running = cluster.wait_for(
        lambda: [p for p in pods_of(k8s, namespace, "ok") if p.status.phase == "Running"],
        30, what="pod Running")
    assert running[0].spec.node_name in ("cpu-0", "cpu-1")
    cluster.wait_for(lambda: job_condition(k8s, namespace, "ok", "Complete"), 60,
                     what="Job Complete")
    pod = pods_of(k8s, namespace, "ok")[0]
    assert pod.status.phase == "Succeeded"
    assert pod.status.container_statuses[0].state.terminated.exit_code == 0


def test_failure_label_fails_with_exit_code(cluster, k8s, namespace):
    k8s.batch.create_namespaced_job(namespace, job("bad", labels={KWOK_FAIL_LABEL: "true"}))
    k8s.batch.create_namespaced_job(namespace, job(
        "bad3", labels={KWOK_FAIL_LABEL: "true"}, annotations={KWOK_EXIT_CODE_ANNOTATION: "3"}))
    for name, code in (("bad", 1), ("bad3", 3)):
        cluster.wait_for(lambda: job_condition(k8s, namespace, name, "Failed"), 60,
                         what=f"Job {name} Failed")
        pod = pods_of(k8s, namespace, name)[0]
        assert pod.status.phase == "Failed"
        assert pod.status.container_statuses[0].state.terminated.exit_code == code


def test_job_retries_failed_pods(cluster, k8s, namespace):
    k8s.batch.create_namespaced_job(namespace, job(
        "retry", labels={KWOK_FAIL_LABEL: "true"}, backoff_limit=1))
    cluster.wait_for(lambda: job_condition(k8s, namespace, "retry", "Failed"), 90,
                     what="Job Failed after retries")
    assert k8s.batch.read_namespaced_job("retry", namespace).status.failed == 2


def test_gpu_pod_that_does_not_fit_stays_pending(cluster, k8s, namespace):
    gpu_tol = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    k8s.batch.create_namespaced_job(namespace, job(
        "gpu", pool="gpu", tolerations=gpu_tol,
        resources={"limits": {"nvidia.com/gpu": "2"}}))

    def unschedulable():
        for p in pods_of(k8s, namespace, "gpu"):
            for c in p.status.conditions or []:
                if c.type == "PodScheduled" and c.status == "False":
                    return c
        return None

    cond = cluster.wait_for(unschedulable, 30, what="PodScheduled=False")
    assert cond.reason == "Unschedulable"
    assert "nvidia.com/gpu" in cond.message
    assert pods_of(k8s, namespace, "gpu")[0].status.phase == "Pending"


def test_waiting_annotation_keeps_a_bound_pod_from_starting(cluster, k8s, namespace):
    msg = 'secret "roboaug-hf-token" not found'
    k8s.batch.create_namespaced_job(namespace, job("stuck", annotations={
        KWOK_WAITING_REASON_ANNOTATION: "CreateContainerConfigError",
        KWOK_WAITING_MESSAGE_ANNOTATION: msg, KWOK_DELAY_ANNOTATION: "0s"}))

    def waiting():
        for p in pods_of(k8s, namespace, "stuck"):
            for cs in p.status.container_statuses or []:
                if cs.state and cs.state.waiting:
                    return p
        return None

    pod = cluster.wait_for(waiting, 30, what="container waiting")
    w = pod.status.container_statuses[0].state.waiting
    assert (w.reason, w.message) == ("CreateContainerConfigError", msg)
    assert pod.spec.node_name in ("cpu-0", "cpu-1") and pod.status.phase == "Pending"
    time.sleep(3)  # the ready/complete stages must leave it alone
    pod = pods_of(k8s, namespace, "stuck")[0]
    assert pod.status.phase == "Pending" and not pod.status.pod_ip
    assert pod.status.container_statuses[0].state.waiting.reason == "CreateContainerConfigError"
    assert not job_condition(k8s, namespace, "stuck", "Complete")


def test_deleting_a_running_pod_removes_it(cluster, k8s, namespace):
    k8s.core.create_namespaced_pod(namespace, {
        "metadata": {"name": "long", "finalizers": ["roboaug.dev/test"]},
        "spec": {"nodeSelector": {"roboaug.dev/pool": "cpu"},
                 "containers": [{"name": "c", "image": "x", "command": ["sleep"]}]}})
    cluster.wait_for(lambda: k8s.core.read_namespaced_pod("long", namespace).status.phase
                     == "Running", 30, what="pod Running")
    k8s.core.delete_namespaced_pod("long", namespace)

    def gone():
        try:
            k8s.core.read_namespaced_pod("long", namespace)
            return False
        except client.exceptions.ApiException as e:
            return e.status == 404

    cluster.wait_for(gone, 30, what="pod deleted (finalizers emptied by kwok)")


def test_crd_fixture_installs_every_generated_crd(cluster, crd, k8s):
    established = {c.metadata.name for c in k8s.apiext.list_custom_resource_definition().items
                   if any(x.type == "Established" and x.status == "True"
                          for x in c.status.conditions or [])}
    assert set(crd) <= established
