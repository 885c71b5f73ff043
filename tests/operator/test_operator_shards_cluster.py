"""A sharded job against a real control plane (apiserver, job controller, GC) with kwok nodes:
the Indexed Job of 3 shards, then the finalize Job, then `completed` (issue 16 items 1 and 4).
kwok makes every pod succeed after its delay (`_cluster_helpers`)."""
from __future__ import annotations

import pytest

from tests.operator._cluster_helpers import (KWOK_DELAY, KWOK_EXIT, KWOK_FAIL, assert_consistent, create_cr, events_of,
                                             final, jobs_of, pods_of, wait_cr)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def _env(job) -> dict:
    return {e.name: e.value for e in job.spec.template.spec.containers[0].env}


def test_three_shards_then_finalize_then_completed(operator, cluster, k8s, namespace):
    op = operator(cpu={"max_parallelism": 2})
    create_cr(k8s, namespace, "sh", shards=3)
    cr = wait_cr(cluster, k8s, namespace, "sh", final, "final status", op=op)
    st = cr["status"]
    assert st["status"] == "completed", st
    assert_consistent(st)
    assert st["shards"]["count"] == 3 and st["shards"]["source"] == "spec"
    assert (st["shards"]["done"], st["shards"]["stage"], st["shards"]["parallelism"]) == (3, "finalize", 2)
    jobs = {j.metadata.name: j for j in jobs_of(k8s, namespace)}
    assert set(jobs) == {"sh-worker", "sh-finalize"}
    shards, fin = jobs["sh-worker"], jobs["sh-finalize"]
    assert (shards.spec.completion_mode, shards.spec.completions, shards.spec.parallelism) == ("Indexed", 3, 2)
    assert shards.status.succeeded == 3 and fin.status.succeeded == 1
    assert _env(shards)["ROBOAUG_STAGE"] == "shard" and _env(fin)["ROBOAUG_STAGE"] == "finalize"
    assert _env(fin)["ROBOAUG_SHARDS"] == "3"
    # the finalize pod started only after every shard pod had succeeded
    pods = pods_of(k8s, namespace)
    shard_ends = [p.status.container_statuses[0].state.terminated.finished_at for p in pods
                  if p.metadata.labels.get("job-name") == "sh-worker"]
    [fin_pod] = [p for p in pods if p.metadata.labels.get("job-name") == "sh-finalize"]
    assert len(shard_ends) == 3 and fin_pod.metadata.creation_timestamp >= max(shard_ends)
    assert fin_pod.spec.service_account_name == shards.spec.template.spec.service_account_name


def test_cancel_stops_the_shards_and_starts_the_cleanup_pod(operator, cluster, k8s, namespace):
    op = operator(cpu={"pod_annotations": {"roboaug.dev/kwok-delay": "600s"}})
    create_cr(k8s, namespace, "shc", shards=2)
    cluster.wait_for(lambda: len([p for p in pods_of(k8s, namespace)
                                  if p.metadata.labels.get("job-name") == "shc-worker"]) == 2, 120,
                     what="two shard pods")
    k8s.custom.patch_namespaced_custom_object("roboaug.dev", "v1alpha1", namespace, "augmentationjobs", "shc",
                                              {"spec": {"cancel_requested": True}})
    cr = wait_cr(cluster, k8s, namespace, "shc", final, "cancelled", op=op)
    assert cr["status"]["status"] == "cancelled"
    cluster.wait_for(lambda: {j.metadata.name for j in jobs_of(k8s, namespace)} == {"shc-cleanup"}, 120,
                     what="the shards' Job gone and the cleanup Job made")
    (cleanup,) = jobs_of(k8s, namespace)
    assert _env(cleanup)["ROBOAUG_STAGE"] == "cleanup"
    cr = wait_cr(cluster, k8s, namespace, "shc", lambda s: (s.get("shards") or {}).get("cleanup") == "started",
                 "cleanup started", op=op)


def test_a_cleanup_that_keeps_failing_is_recorded_and_started_again_three_times(operator, cluster, k8s, namespace):
    # Every pod of the pool fails (exit 75, retryable) and no Job retries a pod: the shards fail the
    # job, then each cleanup Job fails at once; the operator records each, starts it again, and
    # gives up after CLEANUP_ATTEMPTS saying the staging area is left.
    from roboaug.operator.shard_steps import CLEANUP_ATTEMPTS

    op = operator(backoff_limit=0, cpu={"pod_labels": {KWOK_FAIL: "true"},
                                        "pod_annotations": {KWOK_DELAY: "1s", KWOK_EXIT: "75"}})
    create_cr(k8s, namespace, "shf", shards=2)
    cr = wait_cr(cluster, k8s, namespace, "shf", lambda s: (s.get("shards") or {}).get("cleanup") == "failed",
                 "cleanup given up", op=op, timeout=300)
    st = cr["status"]
    assert st["status"] == "failed" and st["shards"]["cleanup_attempts"] == CLEANUP_ATTEMPTS
    assert "75" in st["shards"]["cleanup_error"], st["shards"]  # its pod's exit
    noted = [e for ph in st["phases"] for e in ph["events"] if e["status"] == "cleanup_failed"]
    assert [e["data"]["attempt"] for e in noted] == list(range(1, CLEANUP_ATTEMPTS + 1))
    assert "left behind" in noted[-1]["message"] and "roboaug-staging-" in noted[-1]["message"]
    assert "CleanupFailed" in events_of(k8s, namespace, "shf")
    # the last cleanup Job is kept (its pod's logs say why); no fourth is made
    assert [j.metadata.name for j in jobs_of(k8s, namespace) if j.metadata.name.endswith("-cleanup")] == ["shf-cleanup"]
