"""Several local nodes with real capacity (issue 16 item 7): each dev node agent holds the processes
of its pods to its own CPU set and reports that set's size as the Node's cpu, so the real
scheduler puts no more 1-CPU pods on a node than it has CPUs. Needs 2 CPUs (one per node)."""
from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest

from roboaug.devstack.cluster import (ClusterError, check_local_nodes, local_nodes_from_env,
                                      parse_local_nodes)
from roboaug.devstack.nodeagent import CPUSET_ANNOTATION, LOG_ANNOTATION, NODE_TAINT, parse_cpus
from tests.conftest import ClusterHandle

CPUS = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
POOL = "local-pinned-test"  # its own label: the pods here select only these two nodes


# -- configuration (no cluster) ----------------------------------------------------------------
def test_cpu_lists_and_the_env_knob(monkeypatch):
    assert parse_cpus("0") == [0] and parse_cpus("3,0-1") == [0, 1, 3]
    for bad in ("", "a", "2-1", "0;1"):
        with pytest.raises(ValueError, match="CPU"):
            parse_cpus(bad)
    monkeypatch.delenv("ROBOAUG_DEVSTACK_LOCAL_NODES", raising=False)
    assert local_nodes_from_env() is None  # unset: the one unpinned local-0 of before
    monkeypatch.setenv("ROBOAUG_DEVSTACK_LOCAL_NODES", "0; 1-2")
    assert local_nodes_from_env() == [{"name": "local-0", "cpus": [0]}, {"name": "local-1", "cpus": [1, 2]}]
    with pytest.raises(ClusterError, match="ROBOAUG_DEVSTACK_LOCAL_NODES"):
        parse_local_nodes("0;x")


@pytest.mark.skipif(len(CPUS) < 2, reason="needs 2 CPUs this process may use")
def test_bad_local_nodes_are_refused_naming_the_entry_and_rule():
    a, b = CPUS[:2]
    assert check_local_nodes([{"name": "n-a", "cpus": [a]}, {"name": "n-b", "cpus": str(b)}]) == [
        {"name": "n-a", "cpus": [a], "labels": {}, "taint": True},
        {"name": "n-b", "cpus": [b], "labels": {}, "taint": True}]
    cases = [([{"name": "x", "cpus": [a]}, {"name": "y", "cpus": [a, b]}], r"local_nodes\[1\]\.cpus: CPU .* already belongs to x"),
             ([{"name": "x"}, {"name": "x"}], r"local_nodes\[1\]\.name 'x' is used twice"),
             ([{"name": "Bad_Name"}], r"local_nodes\[0\]\.name must be a DNS label"),
             ([{"name": "x", "cpus": [max(CPUS) + 1]}], r"local_nodes\[0\]\.cpus: CPU .* not available"),
             ([{"name": "x", "cpus": []}], r"local_nodes\[0\]\.cpus must be a non-empty list"),
             ([{"name": "x", "cpu": [a]}], r"local_nodes\[0\]: unknown key")]
    for nodes, rule in cases:
        with pytest.raises(ClusterError, match=rule):
            check_local_nodes(nodes)


@pytest.mark.skipif(len(CPUS) < 2, reason="needs 2 CPUs this process may use")
def test_the_stack_gives_pinned_pods_a_cpu_request_and_lets_the_worker_size_its_pool(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from roboaug.devstack.stack import DevStack

    def pool_and_env(**kw):
        stack = DevStack(work_dir=tmp_path / str(len(list(tmp_path.iterdir()))), **kw)
        stack.hub = SimpleNamespace(endpoint="http://127.0.0.1:1")
        config = stack.operator_config()
        return config["pools"]["local"], config["worker_env"], stack.local_nodes

    monkeypatch.delenv("ROBOAUG_DEVSTACK_LOCAL_NODES", raising=False)
    pool, env, nodes = pool_and_env()
    assert [(n["name"], n["cpus"]) for n in nodes] == [("local-0", None)]
    assert "resources" not in pool and env["ROBOAUG_PROCESSES"] == "1"  # as before: unpinned local-0

    monkeypatch.setenv("ROBOAUG_DEVSTACK_LOCAL_NODES", f"{CPUS[0]};{CPUS[1]}")
    pool, env, nodes = pool_and_env()
    assert [(n["name"], n["cpus"]) for n in nodes] == [("local-0", [CPUS[0]]), ("local-1", [CPUS[1]])]
    assert pool["resources"] == {"requests": {"cpu": "1"}}
    assert "ROBOAUG_PROCESSES" not in env  # the worker follows its CPU set (pool.default_processes)
    assert pool["node_selector"] == {"roboaug.dev/pool": "local"}  # every local node carries it

    monkeypatch.setenv("ROBOAUG_DEVSTACK_LOCAL_NODES", f"{CPUS[0]};{CPUS[0]}")
    with pytest.raises(ClusterError, match="already belongs to local-0"):
        pool_and_env()


# -- two 1-CPU nodes on a real control plane ---------------------------------------------------
@pytest.fixture(scope="module")
def two_nodes(request):
    """A LocalCluster of its own (the session cluster has the one unpinned local-0)."""
    if os.environ.get("ROBOAUG_TEST_KUBECONFIG"):
        pytest.skip("needs the local cluster (dev node agents), not ROBOAUG_TEST_KUBECONFIG")
    if len(CPUS) < 2:
        pytest.skip("needs 2 CPUs this process may use (one per local node)")
    from roboaug.devstack import build
    if not (build.is_built() or build.go_ok()):
        pytest.skip("needs the control plane binaries: `python -m roboaug.devstack build`")
    from roboaug.devstack.cluster import LocalCluster

    labels = {"roboaug.dev/pool": POOL}
    c = LocalCluster(nodes=[], local_nodes=[{"name": "pin-0", "cpus": [CPUS[0]], "labels": labels},
                                            {"name": "pin-1", "cpus": [CPUS[1]], "labels": labels}])
    c.start()
    try:
        yield c
    finally:
        if request.session.testsfailed:
            c.failed = True
        c.stop()


def wait_for(fn, timeout, what):
    return ClusterHandle.wait_for(fn, timeout, what=what)


# Prints the CPUs it, one of its threads and a child process may run on, then waits to be deleted.
PROBE = textwrap.dedent("""
    import json, os, subprocess, sys, threading
    seen = {}
    t = threading.Thread(target=lambda: seen.update(thread=sorted(os.sched_getaffinity(0))))
    t.start(); t.join()
    child = subprocess.run([sys.executable, "-c", "import os; print(sorted(os.sched_getaffinity(0)))"],
                           capture_output=True, text=True, check=True).stdout
    print(json.dumps({"node": os.environ["NODE"], "main": sorted(os.sched_getaffinity(0)),
                      "thread": seen["thread"], "child": json.loads(child)}), flush=True)
    import time; time.sleep(300)
""")


def probe_pod(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 1,
                     "nodeSelector": {"roboaug.dev/pool": POOL},
                     "tolerations": [{"key": NODE_TAINT["key"], "operator": "Exists"}],
                     "containers": [{"name": "c", "image": "x", "command": ["python3", "-c", PROBE],
                                     "env": [{"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
                                     "resources": {"requests": {"cpu": "1"}}}]}}


@pytest.mark.cluster
@pytest.mark.slow
def test_nodes_report_their_cpu_sets_as_capacity(two_nodes):
    from kubernetes import client

    with two_nodes.api_client() as api:
        nodes = {n.metadata.name: n for n in client.CoreV1Api(api).list_node().items}
    assert set(nodes) == {"pin-0", "pin-1"}
    for name, cpu in (("pin-0", CPUS[0]), ("pin-1", CPUS[1])):
        n = nodes[name]
        assert n.status.capacity["cpu"] == "1" and n.status.allocatable["cpu"] == "1"
        assert n.metadata.annotations[CPUSET_ANNOTATION] == str(cpu)
        assert n.metadata.labels["roboaug.dev/pool"] == POOL


@pytest.mark.cluster
@pytest.mark.slow
def test_pods_are_held_to_their_nodes_cpus_and_never_overbooked(two_nodes):
    from kubernetes import client

    ns = "pinned"
    with two_nodes.api_client() as api:
        core = client.CoreV1Api(api)
        core.create_namespace({"metadata": {"name": ns}})
        wait_for(lambda: core.list_namespaced_service_account(ns).items, 30, "default ServiceAccount")
        for name in ("p-a", "p-b", "p-c"):
            core.create_namespaced_pod(ns, probe_pod(name))

        def pods():
            return {p.metadata.name: p for p in core.list_namespaced_pod(ns).items}

        def printed(p):
            path = (p.metadata.annotations or {}).get(LOG_ANNOTATION)
            text = Path(path).read_text() if path and Path(path).exists() else ""
            return json.loads(text.splitlines()[0]) if text.strip() else None

        def two_running_one_unschedulable():
            ps = pods()
            running = [p for p in ps.values() if p.status.phase == "Running" and printed(p)]
            waiting = [p for p in ps.values() if p.status.phase == "Pending" and any(
                c.type == "PodScheduled" and c.status == "False" and c.reason == "Unschedulable"
                for c in p.status.conditions or [])]
            return (running, waiting) if len(running) == 2 and len(waiting) == 1 else None

        running, (waiting,) = wait_for(two_running_one_unschedulable, 120,
                                       "two probes running, the third unschedulable")
        assert "Insufficient cpu" in waiting.status.conditions[0].message
        assert not waiting.spec.node_name
        want = {"pin-0": [CPUS[0]], "pin-1": [CPUS[1]]}
        assert sorted(p.spec.node_name for p in running) == ["pin-0", "pin-1"]
        for p in running:
            seen = printed(p)
            cpus = want[p.spec.node_name]
            assert seen == {"node": p.spec.node_name, "main": cpus, "thread": cpus, "child": cpus}, seen

        # a CPU freed: the third pod gets it, held to that node's CPU
        freed = running[0]
        core.delete_namespaced_pod(freed.metadata.name, ns)
        third = wait_for(lambda: (lambda p: p if p.status.phase == "Running" and printed(p) else None)(
            pods()[waiting.metadata.name]), 120, "the third probe running")
        assert third.spec.node_name == freed.spec.node_name
        assert printed(third)["main"] == want[third.spec.node_name]
        core.delete_namespace(ns)
