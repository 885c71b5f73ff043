"""Shared by the operator's cluster tests (test_operator_cluster, test_operator_failover): the
operator as a separate process, its test configuration, and small helpers over the CRs, Jobs,
Pods, Events and the leader Lease of one test namespace.

kwok knobs (devstack/kwok/stages.yaml): pod label `roboaug.dev/kwok-fail=true` makes a pod
fail, annotation `roboaug.dev/kwok-exit-code` gives its exit code, `roboaug.dev/kwok-delay` how
long it stays Running, and `roboaug.dev/kwok-waiting-reason` / `-message` keep it bound but
never started (the container `waiting`, as a kubelet reports a missing Secret).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import yaml

from roboaug.operator.phases import check
from roboaug.api.models import TERMINAL_STATUSES

GROUP, VERSION, PLURAL = "roboaug.dev", "v1alpha1", "augmentationjobs"
PROJECT = "2489e9ad-2ee2-8e00-8ec9-32d5f69181c0"
KWOK_FAIL = "roboaug.dev/kwok-fail"
KWOK_EXIT = "roboaug.dev/kwok-exit-code"
KWOK_DELAY = "roboaug.dev/kwok-delay"
KWOK_WAITING_REASON = "roboaug.dev/kwok-waiting-reason"
KWOK_WAITING_MESSAGE = "roboaug.dev/kwok-waiting-message"
WAIT = 180  # seconds; generous: CI machines are small and shared


# renew deadline (period + duration) / 2: 8.5 s and 2.5 s
TOLERANT_LEASE = {"lease_duration_seconds": 15, "renew_period_seconds": 2}
SHORT_LEASE = {"lease_duration_seconds": 4, "renew_period_seconds": 1}


def base_config(namespace: str, **over) -> dict:
    cpu = {"node_selector": {"roboaug.dev/pool": "cpu"},
           "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
           "image": "example.invalid/roboaug-worker:test",
           "pod_annotations": {KWOK_DELAY: "2s"}}
    cpu.update(over.pop("cpu", {}))
    cfg = {
        "namespaces": [namespace],
        "pools": {"cpu": cpu,
                  "gpu": {"node_selector": {"roboaug.dev/pool": "gpu"},
                          "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                          "resources": {"limits": {"nvidia.com/gpu": "1"}}}},
        "hub_token_secret": None,
        "backoff_limit": 2,
        "pending_timeout_seconds": 600,
        # Leader election on, as deployed, with a Lease long enough that a loaded CI machine
        # (apiserver, Kueue and workers on 2 cores) does not stall a renewal past its deadline:
        # a 4 s Lease's 2.5 s deadline did, and the operator exited mid-test. The tests about
        # the Lease itself ask for SHORT_LEASE.
        "leader_election": {"enabled": True, "lease_namespace": namespace, **TOLERANT_LEASE},
        "api_timeout_seconds": 3,  # below the lease, as the config requires
        "health_port": None,
        "metrics_port": None,
        "resync_seconds": 5,
        "log_format": "json",
    }
    cfg.update(over)
    return cfg


class OperatorProcess:
    """`python -m roboaug.operator` in its own process group, logs in a file.

    `name` keeps replicas apart: their config and log files, and (as $HOSTNAME) the first part
    of their Lease identity, `<name>-<pid>`."""

    def __init__(self, cluster, config: dict, workdir: Path, name: str = "operator",
                 kubeconfig: Path | None = None):
        self.cluster = cluster
        self.kubeconfig = kubeconfig  # another way to the apiserver (a proxy), else the cluster's
        self.name = name
        self.path = workdir / f"{name}.yaml"
        self.path.write_text(yaml.safe_dump(config))
        self.log = workdir / f"{name}.log"
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    @property
    def identity(self) -> str | None:
        """Its Lease holderIdentity while it runs (see `roboaug.operator.leader.default_identity`)."""
        return f"{self.name}-{self.proc.pid}" if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> "OperatorProcess":
        env = self.cluster.env()
        env["ROBOAUG_OPERATOR_CONFIG"] = str(self.path)
        if self.kubeconfig:
            env["KUBECONFIG"] = str(self.kubeconfig)
        env["HOSTNAME"] = self.name
        self.starts += 1
        with open(self.log, "a") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "roboaug.operator"], env=env,
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def kill(self) -> None:
        """SIGKILL: no clean-up, no lease release, like a node dying."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def tail(self, n: int = 40) -> str:
        return "\n".join(self.log.read_text().splitlines()[-n:]) if self.log.exists() else ""


def create_cr(k8s, ns, name, **spec):
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "AugmentationJob",
            "metadata": {"name": name},
            "spec": {"project_id": PROJECT, "dataset_id": "lerobot/pusht", **spec}}
    return k8s.custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body)


def get_cr(k8s, ns, name):
    return k8s.custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)


def wait_cr(cluster, k8s, ns, name, pred, what, timeout=WAIT, op=None):
    def probe():
        cr = get_cr(k8s, ns, name)
        return cr if pred(cr.get("status") or {}) else None
    try:
        return cluster.wait_for(probe, timeout, interval=0.5, what=f"{name}: {what}")
    except AssertionError:
        status = (get_cr(k8s, ns, name).get("status") or {})
        raise AssertionError(f"{name}: {what} not reached; status={status}\n"
                             f"operator log:\n{op.tail() if op else ''}") from None


def final(status):
    return status.get("status") in {s.value for s in TERMINAL_STATUSES}


def phase_names(status):
    return [p["name"] for p in status.get("phases") or []]


def jobs_of(k8s, ns):
    return k8s.batch.list_namespaced_job(ns).items


def pods_of(k8s, ns):
    return k8s.core.list_namespaced_pod(ns).items


def events_of(k8s, ns, name):
    evs = k8s.core.list_namespaced_event(ns, field_selector=f"involvedObject.name={name}").items
    return {e.reason for e in evs}


def assert_consistent(status):
    assert check(status) == [], check(status)




def lease_holder(k8s, ns, name="roboaug-operator"):
    """holderIdentity of the operator's Lease (None: no Lease, or released)."""
    from kubernetes import client
    try:
        lease = client.CoordinationV1Api(k8s.api).read_namespaced_lease(name, ns)
    except client.exceptions.ApiException as e:
        if e.status == 404:
            return None
        raise
    return lease.spec.holder_identity or None
