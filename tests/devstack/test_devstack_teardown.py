"""Starting and stopping a second, small cluster leaves no process behind."""
import os
import time

import pytest

from roboaug.devstack import build
from roboaug.devstack.cluster import LocalCluster
from roboaug.devstack.nodeagent import NODE_TAINT, PID_ANNOTATION

pytestmark = [pytest.mark.slow, pytest.mark.cluster]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0): look at its state
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not build.is_built(), reason="needs `python -m roboaug.devstack build`")
def test_teardown_leaves_no_processes(tmp_path):
    from kubernetes import client

    c = LocalCluster(work_dir=tmp_path / "stack", nodes=[], node_agent=True, build=False)
    with c:
        pids = list(c.pids().values())
        with c.api_client() as api:
            core = client.CoreV1Api(api)
            core.create_namespaced_pod("default", {
                "metadata": {"name": "sleeper"},
                "spec": {"restartPolicy": "Never",
                         "nodeSelector": {"roboaug.dev/pool": "local"},
                         "tolerations": [{"key": NODE_TAINT["key"], "operator": "Exists"}],
                         "containers": [{"name": "c", "image": "x",
                                         "command": ["sleep", "300"]}]}})
            deadline = time.monotonic() + 30
            child = 0
            while not child and time.monotonic() < deadline:
                p = core.read_namespaced_pod("sleeper", "default")
                child = int((p.metadata.annotations or {}).get(PID_ANNOTATION, 0))
                time.sleep(0.2)
        assert child, "node agent did not start the pod"
        pids.append(child)
        assert all(_alive(p) for p in pids)
        assert c.start_seconds is not None
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [p for p in pids if _alive(p)] == []
