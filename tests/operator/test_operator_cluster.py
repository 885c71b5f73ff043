"""The operator as a separate process against a real control plane (apiserver, job controller,
scheduler, GC) with kwok nodes: every path of issue 4's test list.

kwok knobs used: see `_cluster_helpers` (fail, exit code, delay, a container that never starts).
The operator config's `pod_labels` / `pod_annotations` put them on the worker pods, exactly as a
production config would put any label there.
"""
from __future__ import annotations

import json
import time

import pytest

from roboaug.api.contract import JOB_INDEX_FAILURE_COUNT, SPEC_ANNOTATION
from roboaug.api.models import GENERATIVE_DISABLED_MESSAGE
from roboaug.api.models.project import PROJECT_PLURAL

from tests.operator._cluster_helpers import (GROUP, KWOK_DELAY, KWOK_EXIT, KWOK_FAIL, KWOK_WAITING_MESSAGE,
                                             KWOK_WAITING_REASON, PLURAL, PROJECT, VERSION, WAIT,
                                             assert_consistent, create_cr, events_of, final, jobs_of,
                                             phase_names, pods_of, wait_cr)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


# -- tests --------------------------------------------------------------------------------------
def test_success(operator, cluster, k8s, namespace):
    op = operator()
    create_cr(k8s, namespace, "ok")
    cr = wait_cr(cluster, k8s, namespace, "ok", final, "final status", op=op)
    st = cr["status"]
    assert st["status"] == "completed", st
    assert_consistent(st)
    assert phase_names(st) == ["queued", "scheduling", "downloading", "completed"]
    assert (st["instance_type"], st["region"]) == ("c7i.4xlarge", "us-east-1")
    assert st["job_id"] == cr["metadata"]["uid"]  # kubectl-style CR: no spec.job_id
    assert cr["metadata"]["labels"]["roboaug.dev/job-id"] == st["job_id"]
    assert st["augmented_dataset_id"] == f"lerobot/pusht-augmented-{st['job_id'].replace('-', '')[:8]}"
    (job,) = jobs_of(k8s, namespace)
    assert job.metadata.name == "ok-worker" == st["job_name"]
    ref = job.metadata.owner_references[0]
    assert (ref.kind, ref.uid, ref.controller, ref.block_owner_deletion) == (
        "AugmentationJob", cr["metadata"]["uid"], True, True)
    # the spec: a file the pod mounts from its own annotation (downward API), as stored by the
    # apiserver in the Job's pod template and in the pod
    [volume] = [v for v in job.spec.template.spec.volumes if v.downward_api is not None]
    assert volume.downward_api.items[0].field_ref.field_path == f"metadata.annotations['{SPEC_ANNOTATION}']"
    spec = json.loads(job.spec.template.metadata.annotations[SPEC_ANNOTATION])
    assert spec["output_dataset_id"] == st["augmented_dataset_id"]
    [pod] = k8s.core.list_namespaced_pod(namespace, label_selector="job-name=ok-worker").items
    assert pod.metadata.annotations[SPEC_ANNOTATION] == job.spec.template.metadata.annotations[SPEC_ANNOTATION]
    assert pod.spec.service_account_name == "roboaug-worker"
    assert "ROBOAUG_SPEC" not in {e.name for e in job.spec.template.spec.containers[0].env}
    cluster.wait_for(lambda: {"Scheduling", "Downloading", "Completed"} <= events_of(k8s, namespace, "ok"),
                     30, what="Events on the CR")


def test_no_gpu_node_fits_pending_timeout(operator, cluster, k8s, namespace):
    # deterministic jobs routed to a pool asking for more GPUs than any node has
    op = operator(pools={"big": {"node_selector": {"roboaug.dev/pool": "gpu"},
                                 "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}],
                                 "resources": {"limits": {"nvidia.com/gpu": "4"}}}},
                  routing={"deterministic": "big"}, pending_timeout_seconds=8)
    create_cr(k8s, namespace, "nogpu")
    st = wait_cr(cluster, k8s, namespace, "nogpu", final, "final status", op=op)["status"]
    assert st["status"] == "failed", st
    assert_consistent(st)
    assert st["error"].startswith("no node could run the worker within 8s: 0/")
    assert "Insufficient nvidia.com/gpu" in st["error"]
    sched = next(p for p in st["phases"] if p["name"] == "scheduling")
    assert any(e["status"] == "unschedulable" and "Insufficient nvidia.com/gpu" in e["message"]
               for e in sched["events"])
    cluster.wait_for(lambda: not jobs_of(k8s, namespace), 60, what="the Job to be deleted")


def test_container_that_never_starts_fails_with_the_kubelets_words(operator, cluster, k8s, namespace):
    # The pod gets a node, but its container stays `waiting` (kwok plays a kubelet that cannot
    # find the Hub-token Secret); the operator cannot read Secrets, so the kubelet's words are
    # the diagnosis.
    said = 'CreateContainerConfigError: secret "roboaug-hf-token" not found'
    op = operator(cpu={"pod_annotations": {KWOK_WAITING_REASON: "CreateContainerConfigError",
                                           KWOK_WAITING_MESSAGE: 'secret "roboaug-hf-token" not found'}},
                  hub_token_secret={"name": "roboaug-hf-token", "key": "token"}, pending_timeout_seconds=8)
    create_cr(k8s, namespace, "nosecret")
    st = wait_cr(cluster, k8s, namespace, "nosecret", final, "final status", op=op)["status"]
    assert st["status"] == "failed", st
    assert_consistent(st)
    assert st["error"] == f"the worker container did not start within 8s: {said}"
    assert phase_names(st) == ["queued", "scheduling", "failed"]
    sched = next(p for p in st["phases"] if p["name"] == "scheduling")
    waits = [e for e in sched["events"] if e["status"] == "container_waiting"]
    assert len(waits) == 1 and waits[0]["message"] == said, sched["events"]
    assert waits[0]["data"]["node"] in ("cpu-0", "cpu-1")
    assert st["attempt"] == 0 and not any(e["status"] == "retry" for p in st["phases"] for e in p["events"])
    cluster.wait_for(lambda: not jobs_of(k8s, namespace), 60, what="the Job to be deleted")
    cluster.wait_for(lambda: {"ContainerWaiting", "Failed"} <= events_of(k8s, namespace, "nosecret"),
                     30, what="Events on the CR")


def test_one_failed_pod_is_retried_then_completes(operator, cluster, k8s, namespace):
    op = operator(cpu={"pod_annotations": {KWOK_DELAY: "8s"}})
    create_cr(k8s, namespace, "flaky")
    first = cluster.wait_for(
        lambda: next((p for p in pods_of(k8s, namespace) if p.status.phase == "Running"), None),
        WAIT, what="first pod running")
    # make this one pod (not the template) fail now with a retryable exit code
    k8s.core.patch_namespaced_pod(first.metadata.name, namespace, {"metadata": {
        "labels": {KWOK_FAIL: "true"}, "annotations": {KWOK_EXIT: "75", KWOK_DELAY: "0s"}}})
    st = wait_cr(cluster, k8s, namespace, "flaky", final, "final status", op=op)["status"]
    assert st["status"] == "completed", st
    assert_consistent(st)
    assert st["attempt"] == 1
    retry = [e for p in st["phases"] for e in p["events"] if e["status"] == "retry"]
    assert len(retry) == 1 and retry[0]["retry_attempt"] == 1
    assert "code 75 (network, retryable)" in retry[0]["error"]
    assert st["phases"][-1]["events"][0]["retry_attempt"] == 1
    (job,) = jobs_of(k8s, namespace)
    assert (job.status.failed, job.status.succeeded) == (1, 1)
    # each pod's attempt number, which the worker reads as ROBOAUG_ATTEMPT (downward API)
    attempts = {p.metadata.name: p.metadata.annotations.get(JOB_INDEX_FAILURE_COUNT) for p in pods_of(k8s, namespace)}
    assert attempts[first.metadata.name] == "0" and sorted(attempts.values()) == ["0", "1"], attempts


def test_retries_used_up_fail_with_the_backoff_limit(operator, cluster, k8s, namespace):
    """The Job is Indexed with backoffLimitPerIndex (so pods learn their attempt) and still ends
    the way a plain Job does: reason BackoffLimitExceeded after backoff_limit + 1 pods."""
    op = operator(backoff_limit=1, cpu={"pod_labels": {KWOK_FAIL: "true"},
                                        "pod_annotations": {KWOK_EXIT: "75", KWOK_DELAY: "1s"}})
    create_cr(k8s, namespace, "giveup")
    st = wait_cr(cluster, k8s, namespace, "giveup", final, "final status", op=op)["status"]
    assert st["status"] == "failed", st
    assert_consistent(st)
    assert st["error"].startswith("worker exited with code 75 (network, retryable)"), st["error"]
    assert st["error"].endswith("(gave up after 2 attempts)"), st["error"]

    def failed_reasons():
        (job,) = jobs_of(k8s, namespace)
        return [c.reason for c in job.status.conditions or [] if c.type == "Failed" and c.status == "True"]

    assert cluster.wait_for(failed_reasons, 60, what="the Job's Failed condition") == ["BackoffLimitExceeded"]
    assert sorted(p.metadata.annotations.get(JOB_INDEX_FAILURE_COUNT) for p in pods_of(k8s, namespace)) == ["0", "1"]


def test_permanent_exit_code_fails_without_retry(operator, cluster, k8s, namespace):
    op = operator(cpu={"pod_labels": {KWOK_FAIL: "true"},
                       "pod_annotations": {KWOK_EXIT: "10", KWOK_DELAY: "1s"}})
    create_cr(k8s, namespace, "perm")
    st = wait_cr(cluster, k8s, namespace, "perm", final, "final status", op=op)["status"]
    assert st["status"] == "failed", st
    assert_consistent(st)
    assert st["error"].startswith("worker exited with code 10 (dataset_not_found, permanent)")
    assert "kwok: failure requested by label" in st["error"]  # the pod's last message
    assert st["attempt"] == 0

    def job_failed():
        (job,) = jobs_of(k8s, namespace)
        conds = job.status.conditions or []
        return job if any(c.type == "Failed" and c.status == "True" for c in conds) else None

    job = cluster.wait_for(job_failed, 60, what="the Job's Failed condition")
    # backoffLimit is 2, yet one pod only: the podFailurePolicy failed the Job at once
    assert job.status.failed == 1 and len(pods_of(k8s, namespace)) == 1
    assert any(c.type == "Failed" and c.reason == "PodFailurePolicy" for c in job.status.conditions)


def test_cancel(operator, cluster, k8s, namespace):
    op = operator(cpu={"pod_annotations": {KWOK_DELAY: "300s"}})
    create_cr(k8s, namespace, "stopme")
    wait_cr(cluster, k8s, namespace, "stopme", lambda s: s.get("current_phase") == "downloading",
            "downloading", op=op)
    k8s.custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "stopme",
                                              {"spec": {"cancel_requested": True}})
    st = wait_cr(cluster, k8s, namespace, "stopme", final, "final status", op=op)["status"]
    assert st["status"] == "cancelled", st
    assert_consistent(st)
    assert phase_names(st) == ["queued", "scheduling", "downloading", "cancelled"]
    cluster.wait_for(lambda: not jobs_of(k8s, namespace) and not pods_of(k8s, namespace), 90,
                     what="Job and pods gone after cancel")


def test_generative_cr_fails_without_a_pod(operator, cluster, k8s, namespace):
    op = operator()
    create_cr(k8s, namespace, "gen", augmentation_type="generative")
    st = wait_cr(cluster, k8s, namespace, "gen", final, "final status", op=op)["status"]
    assert (st["status"], st["error"]) == ("failed", GENERATIVE_DISABLED_MESSAGE)
    assert_consistent(st)
    time.sleep(2)
    assert not jobs_of(k8s, namespace) and not pods_of(k8s, namespace)


def test_cr_deletion_removes_job_and_pods(operator, cluster, k8s, namespace):
    op = operator(cpu={"pod_annotations": {KWOK_DELAY: "300s"}})
    create_cr(k8s, namespace, "bye")
    wait_cr(cluster, k8s, namespace, "bye", lambda s: s.get("current_phase") == "downloading",
            "downloading", op=op)
    assert jobs_of(k8s, namespace) and pods_of(k8s, namespace)
    k8s.custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "bye",
                                               propagation_policy="Foreground")
    cluster.wait_for(lambda: not jobs_of(k8s, namespace) and not pods_of(k8s, namespace), 120,
                     what="Job and pods garbage-collected")


def test_operator_killed_mid_job_and_restarted(operator, cluster, k8s, namespace):
    op = operator(cpu={"pod_annotations": {KWOK_DELAY: "25s"}})
    create_cr(k8s, namespace, "survivor")
    before = wait_cr(cluster, k8s, namespace, "survivor",
                     lambda s: s.get("current_phase") == "downloading", "downloading", op=op)["status"]
    (job_before,) = jobs_of(k8s, namespace)
    op.kill()
    op.start()  # waits for the dead leader's lease to expire, then adopts
    st = wait_cr(cluster, k8s, namespace, "survivor", final, "final status", op=op)["status"]
    assert st["status"] == "completed", st
    assert_consistent(st)
    (job_after,) = jobs_of(k8s, namespace)
    assert job_after.metadata.uid == job_before.metadata.uid  # adopted, not recreated
    assert phase_names(st) == ["queued", "scheduling", "downloading", "completed"]
    # the history written before the kill is intact, word for word
    assert st["phases"][: len(before["phases"]) - 1] == before["phases"][:-1]
    assert st["phases"][len(before["phases"]) - 1]["events"][: len(before["phases"][-1]["events"])] == \
        before["phases"][-1]["events"]
    assert op.starts == 2


def test_health_and_metrics_endpoints(operator, cluster, k8s, namespace):
    import socket
    import urllib.request

    def free_port():
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    health, prom = free_port(), free_port()
    op = operator(health_port=health, metrics_port=prom)
    create_cr(k8s, namespace, "observed")
    wait_cr(cluster, k8s, namespace, "observed", final, "final status", op=op)

    def get(port, path):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
                return r.status, r.read().decode()
        except OSError:
            return None

    status, _ = cluster.wait_for(lambda: get(health, "/healthz"), 30, what="kopf liveness endpoint")
    assert status == 200
    status, text = cluster.wait_for(lambda: get(prom, "/metrics"), 30, what="metrics endpoint")
    assert status == 200
    assert 'roboaug_jobs_finished_total{status="completed"} 1.0' in text
    assert 'roboaug_phase_duration_seconds_count{phase="scheduling"} 1.0' in text
    assert "roboaug_queue_wait_seconds_count 1.0" in text
    # structured logs: every line the operator wrote is one JSON object
    import json
    lines = [l for l in op.log.read_text().splitlines() if l.strip()]
    assert lines and all(isinstance(json.loads(l), dict) for l in lines)


def test_project_policy_tightened_after_admission_fails_the_job_with_its_reason(operator, cluster, k8s, namespace):
    # issue 13: the operator's door; the project is read as it is when the job would get its Job
    project = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "AugmentationProject",
               "metadata": {"name": PROJECT.lower()}, "spec": {"allowed_sources": ["*"], "allowed_outputs": ["*"]}}
    k8s.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PROJECT_PLURAL, project)
    create_cr(k8s, namespace, "late", output_dataset_id="acme/leak")  # admitted: the project allows it
    k8s.custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, PROJECT_PLURAL, PROJECT.lower(),
                                              {"spec": {"allowed_outputs": ["team-b"]}})
    op = operator()  # sees the job only now, under the tightened policy
    st = wait_cr(cluster, k8s, namespace, "late", final, "final status", op=op)["status"]
    assert st["status"] == "failed", st
    assert "output_dataset_id: acme/leak does not match the project's allowed_outputs (team-b)" in st["error"]
    assert st["effective_spec"]["output_dataset_id"] == "acme/leak" and st["spec_sources"]["output_dataset_id"] == "request"
    assert_consistent(st)
    time.sleep(2)
    assert not jobs_of(k8s, namespace)
