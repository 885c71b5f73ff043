"""Two operator replicas against the local control plane: the Lease lets one act at a time, and the
standby takes over when the leader dies (SIGKILL: after the lease expires) or stops (SIGTERM: at
once, the leader releases the lease) without a second Job, a retry or a repeated phase.
"""
from __future__ import annotations

import os
import signal
import time

import pytest

from tests.operator._cluster_helpers import (KWOK_DELAY, SHORT_LEASE, OperatorProcess, assert_consistent, base_config,
                                             create_cr, final, jobs_of, lease_holder, phase_names, wait_cr)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture
def replicas(cluster, crd, namespace, k8s, tmp_path):
    """Factory: replicas(**config overrides) starts replicas A and B with the same config, and
    returns (leader, standby) once one of them holds the Lease."""
    k8s.core.create_namespaced_service_account(namespace, {"metadata": {"name": "roboaug-worker"}})
    started: list[OperatorProcess] = []

    def start(**over):
        cfg = base_config(namespace, **over)
        a = OperatorProcess(cluster, cfg, tmp_path, name="replica-a").start()
        b = OperatorProcess(cluster, cfg, tmp_path, name="replica-b").start()
        started.extend((a, b))
        holder = cluster.wait_for(lambda: lease_holder(k8s, namespace), 60, what="a replica to take the Lease")
        assert holder in (a.identity, b.identity), holder
        leader, standby = (a, b) if holder == a.identity else (b, a)
        # the other one waits for the Lease before it starts kopf: no watches, no writes
        cluster.wait_for(lambda: f"held by {leader.identity}" in standby.log.read_text(), 30,
                         what="the standby to wait for the Lease")
        assert leader.alive() and standby.alive()
        return leader, standby

    yield start
    for op in started:
        op.stop()
        print(f"--- {op.name} log ({op.log}) ---\n{op.tail(60)}")


def created_jobs(*ops) -> int:
    """How many times any replica created a Job (the controller logs each creation)."""
    return sum(op.log.read_text().count("created Job ") for op in ops)


def test_leader_killed_mid_job_standby_takes_over(replicas, cluster, k8s, namespace):
    lease_s = SHORT_LEASE["lease_duration_seconds"]
    leader, standby = replicas(cpu={"pod_annotations": {KWOK_DELAY: "20s"}},
                               leader_election={"enabled": True, "lease_namespace": namespace, **SHORT_LEASE})
    create_cr(k8s, namespace, "failover")
    before = wait_cr(cluster, k8s, namespace, "failover", lambda s: s.get("current_phase") == "downloading",
                     "downloading", op=leader)["status"]
    (job_before,) = jobs_of(k8s, namespace)
    assert lease_holder(k8s, namespace) == leader.identity

    leader.kill()  # no release: the standby must wait for the lease to expire
    killed = time.monotonic()
    cluster.wait_for(lambda: lease_holder(k8s, namespace) == standby.identity, lease_s + 20, interval=0.1,
                     what="the standby to take the Lease")
    took = time.monotonic() - killed
    # lease duration + one renew period of the standby's polling + slack for a small machine
    assert took <= lease_s + 6, f"takeover took {took:.1f}s"
    print(f"takeover after SIGKILL: {took:.2f}s (lease {lease_s}s)")
    assert not jobs_of(k8s, namespace)[0].status.succeeded  # still mid-job: the new leader finishes it

    st = wait_cr(cluster, k8s, namespace, "failover", final, "final status", op=standby)["status"]
    assert st["status"] == "completed", st
    assert_consistent(st)
    assert phase_names(st) == ["queued", "scheduling", "downloading", "completed"]
    assert st["attempt"] == 0
    assert all(e["retry_attempt"] == 0 for p in st["phases"] for e in p["events"])
    assert not any(e["status"] == "retry" for p in st["phases"] for e in p["events"])
    # the new leader adopted the Job; it neither created a second one nor rewrote history
    (job_after,) = jobs_of(k8s, namespace)
    assert job_after.metadata.uid == job_before.metadata.uid
    assert created_jobs(leader, standby) == 1 and "created Job " in leader.log.read_text()
    assert st["phases"][: len(before["phases"]) - 1] == before["phases"][:-1]
    assert standby.alive()


def test_leader_stopped_releases_the_lease(replicas, cluster, k8s, namespace):
    # A lease long enough that a takeover by expiry could not pass for one by release.
    lease_s = 30
    leader, standby = replicas(leader_election={"enabled": True, "lease_namespace": namespace,
                                                "lease_duration_seconds": lease_s, "renew_period_seconds": 1})
    create_cr(k8s, namespace, "before")
    st = wait_cr(cluster, k8s, namespace, "before", final, "final status", op=leader)["status"]
    assert st["status"] == "completed", st

    os.killpg(leader.proc.pid, signal.SIGTERM)
    stopped = time.monotonic()
    cluster.wait_for(lambda: lease_holder(k8s, namespace) == standby.identity, lease_s + 20, interval=0.1,
                     what="the standby to take the Lease")
    took = time.monotonic() - stopped
    # kopf's graceful stop and the standby's 1 s poll, far below the 30 s an expiry would take
    assert took < 12, f"takeover took {took:.1f}s"
    assert leader.proc.wait(30) == 0  # a clean exit
    assert "released lease" in leader.log.read_text()
    assert "became leader" in standby.log.read_text()

    create_cr(k8s, namespace, "after")
    st = wait_cr(cluster, k8s, namespace, "after", final, "final status", op=standby)["status"]
    assert st["status"] == "completed", st
    assert_consistent(st)
    assert phase_names(st) == ["queued", "scheduling", "downloading", "completed"]
    assert "created Job after-worker" in standby.log.read_text()
    print(f"takeover after SIGTERM: {took:.2f}s")
