"""Shared pytest fixtures for the whole suite.

Sections (add new fixtures to the section they belong to, or a new section at the end):
  1. Cluster: `cluster` (session), `namespace` (per test), `crd` (session), `k8s` (per test:
     typed API clients). Backed by the dev-only local control plane (`roboaug.devstack`), or by
     an existing cluster when ROBOAUG_TEST_KUBECONFIG points at its kubeconfig.

Tests that use `cluster` get the `cluster` marker automatically, so `pytest -m "not cluster"`
runs the rest on a machine without Go.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CRD_DIR = REPO / "manifests" / "crd"
WORKER_POLICY = REPO / "manifests" / "admission" / "worker-policy.yaml"

# =============================================================================================
# 1. Cluster
# =============================================================================================


class ClusterHandle:
    """What tests get from the `cluster` fixture, whichever cluster backs it.

    .kubeconfig      Path of an admin kubeconfig
    .local           the `LocalCluster` (None for an existing cluster)
    .has_node_agent  True when node `local-0` really runs pods as local processes
    .kube_version    e.g. "v1.34.4" (from the server)
    .api_client()    a new kubernetes.client.ApiClient (use as a context manager)
    .kubectl(*args)  subprocess.CompletedProcess; check=True by default
    .helm(*args)     same, for helm (needs the built helm or one on PATH)
    .bin(name)       path of a built tool (kubectl, helm, kwok...) or the one on PATH
    .env()           os.environ + KUBECONFIG + built tools first on PATH
    .wait_for(fn, timeout=60, interval=0.2, what="...")  -> fn()'s first truthy value
    """

    def __init__(self, kubeconfig: Path, local=None, bin_dir: Path | None = None):
        self.kubeconfig = Path(kubeconfig)
        self.local = local
        self.bin_dir = bin_dir
        self.has_node_agent = bool(local and local.node_agent)
        self.local_node = "local-0" if self.has_node_agent else None

    # -- clients ------------------------------------------------------------------------------
    def api_client(self):
        from kubernetes import client, config

        cfg = client.Configuration()
        config.load_kube_config(config_file=str(self.kubeconfig), client_configuration=cfg)
        return client.ApiClient(cfg)

    def bin(self, name: str) -> str:
        if self.bin_dir and (self.bin_dir / name).is_file():
            return str(self.bin_dir / name)
        found = shutil.which(name)
        if not found:
            pytest.skip(f"{name} is not available (run `python -m roboaug.devstack build`)")
        return found

    def env(self) -> dict:
        env = dict(os.environ)
        env["KUBECONFIG"] = str(self.kubeconfig)
        if self.bin_dir:
            env["PATH"] = f"{self.bin_dir}{os.pathsep}{env.get('PATH', '')}"
        return env

    def _run(self, tool: str, args: tuple, check: bool, input: str | None,
             timeout: float) -> subprocess.CompletedProcess:
        cmd = [self.bin(tool), "--kubeconfig", str(self.kubeconfig), *args]
        p = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout,
                           env=self.env())
        if check and p.returncode != 0:
            raise AssertionError(f"{tool} {' '.join(args)} -> exit {p.returncode}\n"
                                 f"stderr: {p.stderr}\nstdout: {p.stdout}")
        return p

    def kubectl(self, *args: str, check: bool = True, input: str | None = None,
                timeout: float = 120) -> subprocess.CompletedProcess:
        return self._run("kubectl", args, check, input, timeout)

    def helm(self, *args: str, check: bool = True, input: str | None = None,
             timeout: float = 300) -> subprocess.CompletedProcess:
        return self._run("helm", args, check, input, timeout)

    @property
    def kube_version(self) -> str:
        from kubernetes import client

        with self.api_client() as api:
            return client.VersionApi(api).get_code().git_version

    # -- helpers ------------------------------------------------------------------------------
    @staticmethod
    def wait_for(fn, timeout: float = 60, interval: float = 0.2, what: str = "condition"):
        deadline = time.monotonic() + timeout
        while True:
            value = fn()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}")
            time.sleep(interval)

    def require_node_agent(self) -> None:
        if not self.has_node_agent:
            pytest.skip("needs the dev node agent (local cluster only)")


def _cluster_skip_reason() -> str | None:
    from roboaug.devstack import build

    if build.is_built() or build.go_ok():
        return None
    return ("no cluster: set ROBOAUG_TEST_KUBECONFIG to an existing cluster's kubeconfig, or "
            "install Go >= %d.%d and run `python -m roboaug.devstack build` "
            "(builds etcd, kube-apiserver, ... into ~/.cache/roboaug)" % build.MIN_GO)


@pytest.fixture(scope="session")
def cluster(request):
    """A real Kubernetes API for the whole session (see ClusterHandle)."""
    existing = os.environ.get("ROBOAUG_TEST_KUBECONFIG")
    if existing:
        from roboaug.devstack import build

        bdir = build.bin_dir() if build.is_built() else None
        yield ClusterHandle(Path(existing), local=None, bin_dir=bdir)
        return
    reason = _cluster_skip_reason()
    if reason:
        pytest.skip(reason)
    from roboaug.devstack.cluster import LocalCluster

    local = LocalCluster(node_agent=True)  # builds on demand (minutes, once per machine)
    local.start()
    handle = ClusterHandle(local.kubeconfig, local=local, bin_dir=local.bin_dir)
    try:
        yield handle
    finally:
        if request.session.testsfailed:
            local.failed = True  # keep logs for the post-mortem
        local.stop()


def _dns_name(text: str, limit: int = 40) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:limit].strip("-") or "t"


@pytest.fixture
def namespace(cluster, request):
    """A fresh namespace (with its default ServiceAccount ready), deleted after the test."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    name = f"t-{_dns_name(request.node.name, 40)}-{uuid.uuid4().hex[:6]}"
    with cluster.api_client() as api:
        core = client.CoreV1Api(api)
        core.create_namespace({"metadata": {"name": name, "labels": {"roboaug.dev/test": "true"}}})

        def default_sa():
            try:
                return core.read_namespaced_service_account("default", name)
            except ApiException as e:
                if e.status != 404:
                    raise
                return None

        cluster.wait_for(default_sa, 30, what=f"default ServiceAccount in {name}")
        yield name
        try:
            core.delete_namespace(name, propagation_policy="Background")
        except ApiException as e:
            if e.status != 404:
                raise


@pytest.fixture(scope="session")
def crd(cluster):
    """Every CRD in manifests/crd/ applied and Established; yields the list of CRD names."""
    files = sorted(CRD_DIR.glob("*.yaml")) if CRD_DIR.is_dir() else []
    if not files:
        pytest.skip(f"no CRDs generated yet in {CRD_DIR.relative_to(REPO)}")
    names = []
    for f in files:
        out = cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(f),
                              "-o", "name")
        names += [line.split("/", 1)[1] for line in out.stdout.split() if "/" in line]
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                    *[f"crd/{n}" for n in names])
    # installed with them, as the chart does: every worker of every cluster test runs under it
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(WORKER_POLICY))
    return names


@pytest.fixture
def k8s(cluster):
    """Typed API clients sharing one ApiClient: .core, .batch, .rbac, .custom, .api."""
    from kubernetes import client

    class _K8s:
        pass

    with cluster.api_client() as api:
        k = _K8s()
        k.api = api
        k.core = client.CoreV1Api(api)
        k.batch = client.BatchV1Api(api)
        k.rbac = client.RbacAuthorizationV1Api(api)
        k.custom = client.CustomObjectsApi(api)
        k.apiext = client.ApiextensionsV1Api(api)
        yield k


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "cluster" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.cluster)


def pytest_collection_finish(session):
    """Build the dev stack once, before any test, when selected tests need it and it is missing.

    Done here (not in the fixture) so the cold build (~20 min on 2 cores) is not cut short by
    the per-test timeout.
    """
    if os.environ.get("ROBOAUG_TEST_KUBECONFIG") or os.environ.get("ROBOAUG_DEVSTACK_BIN_DIR"):
        return
    if not any("cluster" in getattr(i, "fixturenames", ()) or i.get_closest_marker("cluster")
               for i in session.items):
        return
    from roboaug.devstack import build

    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if not build.is_built() and build.go_ok():
        if reporter:
            reporter.write_line(f"building the dev stack into {build.bin_dir()} (once per machine)")
        build.build()
    from roboaug.devstack import kueue

    if (build.go_ok() and not kueue.is_built()
            and any("kueue" in getattr(i, "fixturenames", ()) for i in session.items)):
        if reporter:
            reporter.write_line(f"building Kueue into {kueue.bin_dir()} (once per machine)")
        try:  # a failed build skips the Kueue tests (their fixture says how to build it)
            kueue.build()
        except RuntimeError as e:
            if reporter:
                reporter.write_line(f"Kueue build failed: {str(e)[-2000:]}")
