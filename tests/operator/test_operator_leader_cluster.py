"""A leader cut off from the apiserver stops acting before its Lease ends (issue 14 item 13).

Replica A reaches the apiserver through a TCP proxy that the test pauses (every byte held, no
error: a silent network); replica B reaches it directly. A must exit (status 1) at its renew
deadline, before the Lease it last wrote expires and so before B may take over; B then finishes
the job A had started.
"""
from __future__ import annotations

import threading
import time
from datetime import datetime

import pytest

from tests.operator._cluster_helpers import (KWOK_DELAY, SHORT_LEASE, OperatorProcess, assert_consistent, base_config,
                                             create_cr, final, jobs_of, lease_holder, wait_cr)
from tests.operator._tcp_proxy import proxied_kubeconfig

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def _lease(k8s, ns, name="roboaug-operator"):
    from kubernetes import client
    try:
        return client.CoordinationV1Api(k8s.api).read_namespaced_lease(name, ns).spec
    except client.exceptions.ApiException:
        return None


def test_a_leader_cut_off_from_the_apiserver_stops_before_its_lease_ends(cluster, crd, namespace, k8s, tmp_path):
    k8s.core.create_namespaced_service_account(namespace, {"metadata": {"name": "roboaug-worker"}})
    cfg = base_config(namespace, cpu={"pod_annotations": {KWOK_DELAY: "20s"}},
                      leader_election={"enabled": True, "lease_namespace": namespace, **SHORT_LEASE})
    lease_s = cfg["leader_election"]["lease_duration_seconds"]
    proxy, kubeconfig = proxied_kubeconfig(cluster.kubeconfig, tmp_path / "proxied.kubeconfig")
    a = OperatorProcess(cluster, cfg, tmp_path, name="replica-a", kubeconfig=kubeconfig).start()
    b = None
    try:
        cluster.wait_for(lambda: lease_holder(k8s, namespace) == a.identity, 60, what="A to take the Lease")
        b = OperatorProcess(cluster, cfg, tmp_path, name="replica-b").start()
        cluster.wait_for(lambda: f"held by {a.identity}" in b.log.read_text(), 30, what="B to wait for the Lease")
        create_cr(k8s, namespace, "cutoff")
        wait_cr(cluster, k8s, namespace, "cutoff", lambda s: s.get("current_phase") == "downloading",
                "downloading", op=a)
        assert "created Job cutoff-worker" in a.log.read_text()

        # A's last renewal as the apiserver stored it, watched directly until the Lease changes hands
        renewals: list[datetime] = []
        watching = threading.Event()

        def watch():
            while not watching.is_set():
                spec = _lease(k8s, namespace)
                if spec is not None and spec.holder_identity == a.identity and spec.renew_time:
                    renewals.append(spec.renew_time)
                time.sleep(0.05)
        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        time.sleep(1.5)
        proxy.pause()
        paused = time.time()
        while a.alive() and time.time() - paused < 60:
            time.sleep(0.02)
        exited = time.time()
        assert not a.alive(), "A went on acting, cut off, for a minute"
        cluster.wait_for(lambda: lease_holder(k8s, namespace) == b.identity, 60, interval=0.05,
                         what="B to take the Lease")
        taken = time.time()
        watching.set()
        watcher.join(5)
        assert a.proc.returncode == 1
        assert "could not renew the lease within its renew deadline" in a.log.read_text()
        last = max(renewals).timestamp()
        print(f"paused +0; A exited +{exited - paused:.2f}s; A's Lease ends +{last + lease_s - paused:.2f}s; "
              f"B leads +{taken - paused:.2f}s")
        assert exited < last + lease_s, f"A stopped {exited - last - lease_s:.2f}s after its Lease ended"
        assert exited < taken

        proxy.resume()
        st = wait_cr(cluster, k8s, namespace, "cutoff", final, "final status", op=b)["status"]
        assert st["status"] == "completed", st
        assert_consistent(st)
        assert len(jobs_of(k8s, namespace)) == 1 and "created Job" not in b.log.read_text()
    finally:
        proxy.close()
        for op in (a, b):
            if op is not None:
                op.stop()
                print(f"--- {op.name} log ---\n{op.tail(40)}")
