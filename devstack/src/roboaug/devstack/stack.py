"""The whole product running locally (dev/test only): control plane, Hub, operator, gateway.

`DevStack` is what `./dev demo` and the end-to-end tests stand on:

* a `LocalCluster` with the dev node agent (node `local-0` really runs worker pods as processes;
  `local_nodes=` or ROBOAUG_DEVSTACK_LOCAL_NODES="0;1" gives several nodes, each held to its own
  CPUs, and then pool `local` requests one CPU per worker pod so the scheduler spreads them),
* the CRD from manifests/crd/ and the worker's ServiceAccount and RBAC rendered from the chart
  (so the worker runs under the same least-privilege rules as in production),
* the local Hub test server holding the sample dataset as `lerobot/pusht`, and a Secret with a
  write token for it (referenced by the operator's config, never copied into a CR),
* the operator (`python -m roboaug.operator`) routing deterministic jobs to pool `local`,
* the preview service (`python -m roboaug.worker.preview_server`) reading the local Hub without a
  token, as in the chart (no credential at all),
* the gateway (`python -m roboaug.api.gateway`) on a free port with a generated API key, calling
  that preview service.

Each component is a real process with its log in `<work_dir>/logs/`.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

from roboaug.api.models import TERMINAL_STATUSES

from .cluster import LocalCluster, check_local_nodes, free_port, local_nodes_from_env
from .hubserver import WRITE_TOKEN
from .hubserver.server import LocalHub
from .nodeagent import NODE_TAINT
from .procs import Proc
from .sample_dataset import write_sample_dataset

# devstack/src/roboaug/devstack/stack.py -> the repository root (devstack runs from a checkout)
REPO = Path(__file__).resolve().parents[4]
CRD_DIR = REPO / "manifests" / "crd"
WORKER_POLICY = REPO / "manifests" / "admission" / "worker-policy.yaml"
SAMPLE_REPO_ID = "lerobot/pusht"
HUB_TOKEN_SECRET = "roboaug-hf-token"


class StackError(RuntimeError):
    pass


class DevStack:
    """Start with `start()` (or use as a context manager); `stop()` ends every process it started."""

    def __init__(self, work_dir: str | Path | None = None, namespace: str = "roboaug-demo",
                 cluster: LocalCluster | None = None, log=None, operator_overrides: dict | None = None,
                 local_nodes: list[dict] | None = None):
        if cluster is not None and local_nodes is not None:
            raise StackError("local_nodes applies to the cluster the stack starts; not with cluster=")
        # checked now, before anything starts (the env knob's errors name it)
        self.local_nodes = check_local_nodes(
            local_nodes if local_nodes is not None else local_nodes_from_env() or [{"name": "local-0"}]) \
            if cluster is None else cluster.local_nodes
        self._own_work_dir = work_dir is None
        self.work_dir = Path(work_dir or tempfile.mkdtemp(prefix="roboaug-stack-"))
        self.log_dir = self.work_dir / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.namespace = namespace
        self.cluster = cluster
        self._own_cluster = cluster is None
        self.operator_overrides = operator_overrides or {}
        self.hub: LocalHub | None = None
        self.operator: Proc | None = None
        self.gateway: Proc | None = None
        self.gateway_url: str | None = None
        self.preview: Proc | None = None
        self.preview_url: str | None = None
        self.api_key = "rk_" + secrets.token_hex(16)
        self.timings: dict[str, float] = {}
        self._log = log or (lambda s: print(f"[stack] {s}", file=sys.stderr, flush=True))

    # -- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> "DevStack":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> "DevStack":
        t0 = time.monotonic()
        try:
            if self.cluster is None:
                self._log("starting the local control plane")
                self.cluster = LocalCluster(local_nodes=self.local_nodes).start()
            self.timings["cluster_s"] = time.monotonic() - t0
            self._install_cluster_objects()
            self._start_hub()
            self._start_operator()
            self._start_preview()
            self._start_gateway()
        except BaseException:
            self.stop(failed=True)
            raise
        self.timings["total_s"] = time.monotonic() - t0
        self._log(f"stack up in {self.timings['total_s']:.1f}s (logs in {self.log_dir})")
        return self

    def stop(self, failed: bool = False) -> None:
        for proc in (self.gateway, self.preview, self.operator):
            if proc is not None:
                proc.terminate()
        self.gateway = self.preview = self.operator = None
        if self.hub is not None:
            self.hub.stop()
            self.hub = None
        if self._own_cluster and self.cluster is not None:
            if failed:
                self.cluster.failed = True
            self.cluster.stop()
            self.cluster = None
        if self._own_work_dir and not failed and os.environ.get("ROBOAUG_DEVSTACK_KEEP", "") in ("", "0"):
            shutil.rmtree(self.work_dir, ignore_errors=True)

    # -- helpers -----------------------------------------------------------------------------
    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        res = subprocess.run([self.cluster.kubectl_path, "--kubeconfig", str(self.cluster.kubeconfig), *args],
                             input=input, capture_output=True, text=True, timeout=120)
        if check and res.returncode != 0:
            raise StackError(f"kubectl {' '.join(args)} failed: {res.stderr.strip()}")
        return res

    def _install_cluster_objects(self) -> None:
        for crd in sorted(CRD_DIR.glob("*.yaml")):
            self.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crd))
        self.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/augmentationjobs.roboaug.dev")
        ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": self.namespace}}
        self.kubectl("apply", "-f", "-", input=json.dumps(ns))
        # The workers' identity is the operator's to make (operator/access.py); what narrows it
        # to each worker's own job is this policy, which the chart installs with the CRDs.
        self.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(WORKER_POLICY))

    def _start_hub(self) -> None:
        self.hub = LocalHub(self.work_dir / "hub").start()
        sample = write_sample_dataset(self.work_dir / "sample-pusht")
        files = {str(p.relative_to(sample)): p.read_bytes() for p in sorted(sample.rglob("*")) if p.is_file()}
        self.hub.seed(SAMPLE_REPO_ID, files)
        secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": HUB_TOKEN_SECRET},
                  "type": "Opaque", "stringData": {"token": WRITE_TOKEN}}
        self.kubectl("apply", "-n", self.namespace, "-f", "-", input=json.dumps(secret))

    @property
    def pinned(self) -> bool:
        """True when the local nodes hold their pods to CPU sets (real per-node capacity)."""
        return any(n["cpus"] is not None for n in self.local_nodes)

    def operator_config(self) -> dict:
        local_pool = {
            "instance_type": "local-dev",
            "node_selector": {"roboaug.dev/pool": "local"},
            "tolerations": [{"key": NODE_TAINT["key"], "operator": "Exists", "effect": NODE_TAINT["effect"]}],
            "image": "roboaug-worker:dev",
            "image_pull_policy": "Never",
        }
        worker_env = {"HF_ENDPOINT": self.hub.endpoint, "HF_HUB_DISABLE_TELEMETRY": "1",
                      "HF_HUB_DISABLE_PROGRESS_BARS": "1", "NO_PROXY": "127.0.0.1,localhost"}
        if self.pinned:
            # a CPU each, so the scheduler puts no more pods on a node than it has CPUs; the worker
            # sizes its pool from the CPUs it is held to (pool.default_processes)
            local_pool["resources"] = {"requests": {"cpu": "1"}}
        else:
            # unpinned pods share the machine with everything else: one process each
            worker_env["ROBOAUG_PROCESSES"] = "1"
        config = {
            "namespaces": [self.namespace],
            "pools": {
                "local": local_pool,
                "gpu": {
                    "instance_type": "g6e.2xlarge",
                    "node_selector": {"roboaug.dev/pool": "gpu"},
                    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                    "resources": {"requests": {"nvidia.com/gpu": "1"}, "limits": {"nvidia.com/gpu": "1"}},
                },
            },
            "routing": {"deterministic": "local", "generative": "gpu"},
            "hub_token_secret": {"name": HUB_TOKEN_SECRET, "key": "token"},
            # Tests submit jobs under fresh random project ids with no AugmentationProject; the
            # chart's `refuse` is tested on its own (tests/operator, tests/gateway, tests/chart).
            "jobs_without_project": {"action": "allow"},
            "worker_env": worker_env,
            "leader_election": {"lease_namespace": self.namespace},
            "health_port": free_port(),
            "metrics_port": free_port(),
            "log_format": "json",
        }
        for key, value in self.operator_overrides.items():
            config[key] = value
        return config

    def _start_operator(self) -> None:
        path = self.work_dir / "operator-config.yaml"
        path.write_text(yaml.safe_dump(self.operator_config(), sort_keys=False))
        env = {**os.environ, "KUBECONFIG": str(self.cluster.kubeconfig), "ROBOAUG_OPERATOR_CONFIG": str(path)}
        self.operator = Proc("operator", [sys.executable, "-m", "roboaug.operator"], self.log_dir, env=env)

    def restart_operator(self, sig: int = signal.SIGKILL) -> int:
        """Sends `sig` to the operator's process group (if it still runs), reaps it and starts a new
        operator process with the same settings, as a pod restart would; returns the old pid.
        SIGKILL gives no clean shutdown: the old Lease stays held until it expires, and the new
        operator takes over only then (`leader_election` in `operator_overrides` sets how long)."""
        old = self.operator
        with contextlib.suppress(ProcessLookupError):
            os.killpg(old.pid, sig)
        old.popen.wait(timeout=30)
        old.stop(grace=0)  # the group's leftovers, and its log handle
        self._start_operator()
        return old.pid

    def _start_preview(self) -> None:
        # No Hub token by any route (variables, a saved token under HF_HOME): as in the chart, a
        # preview reads sources without one, so a private source here fails as it would there.
        env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}
        port = free_port()
        env.update({"HF_ENDPOINT": self.hub.endpoint, "HF_HOME": str(self.work_dir / "preview-hf"),
                    "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
                    "NO_PROXY": "127.0.0.1,localhost", "ROBOAUG_PREVIEW_HOST": "127.0.0.1",
                    "ROBOAUG_PREVIEW_PORT": str(port)})
        self.preview = Proc("preview", [sys.executable, "-m", "roboaug.worker.preview_server"], self.log_dir, env=env)
        self.preview_url = f"http://127.0.0.1:{port}"
        self._wait_ready(self.preview, self.preview_url + "/healthz")

    def _wait_ready(self, proc: Proc, url: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while True:
            for p in (proc, self.operator):
                if not p.alive():
                    raise StackError(f"{p.name} exited:\n{p.tail()}")
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise StackError(f"{proc.name} not ready after {timeout:.0f}s:\n{proc.tail()}")
            time.sleep(0.3)

    def _start_gateway(self) -> None:
        keys = self.work_dir / "api-keys"
        keys.write_text(f"# generated for the dev stack\n{self.api_key}\n")
        keys.chmod(0o600)
        port = free_port()
        env = {**os.environ,
               "ROBOAUG_GATEWAY_NAMESPACE": self.namespace,
               "ROBOAUG_GATEWAY_API_KEYS_FILE": str(keys),
               "ROBOAUG_GATEWAY_KUBECONFIG": str(self.cluster.kubeconfig),
               "ROBOAUG_GATEWAY_HOST": "127.0.0.1",
               "ROBOAUG_GATEWAY_PORT": str(port),
               "ROBOAUG_GATEWAY_METRICS_PORT": str(free_port()),  # not 9090: the operator's may be there
               "ROBOAUG_GATEWAY_HUB_TOKEN_SECRET_NAME": HUB_TOKEN_SECRET,
               "ROBOAUG_GATEWAY_JOBS_WITHOUT_PROJECT": "allow",  # as the operator (operator_config)
               "ROBOAUG_GATEWAY_PREVIEW_URL": self.preview_url}
        self.gateway = Proc("gateway", [sys.executable, "-m", "roboaug.api.gateway"], self.log_dir, env=env)
        self.gateway_url = f"http://127.0.0.1:{port}"
        self._wait_ready(self.gateway, self.gateway_url + "/readyz")

    # -- what the demo and the tests do with it ----------------------------------------------
    def get_job(self, name: str) -> dict:
        return json.loads(self.kubectl("get", "-n", self.namespace, "augmentationjob", name, "-o", "json").stdout)

    def wait_job(self, name: str, timeout: float = 600, on_change=None) -> dict:
        """Waits until the CR's status is terminal; returns the CR. `on_change(cr)` sees each new phase."""
        deadline = time.monotonic() + timeout
        seen = None
        while True:
            cr = self.get_job(name)
            status = cr.get("status") or {}
            key = (status.get("status"), status.get("current_phase"), len(status.get("phases") or []))
            if key != seen and on_change:
                on_change(cr)
            seen = key
            if status.get("status") in {s.value for s in TERMINAL_STATUSES}:
                return cr
            for proc in (self.operator, self.gateway):
                if proc is not None and not proc.alive():
                    raise StackError(f"{proc.name} exited:\n{proc.tail()}")
            if time.monotonic() > deadline:
                raise StackError(f"job {name} not finished after {timeout}s: {json.dumps(status)[:2000]}")
            time.sleep(0.5)

    def download_output(self, dataset_id: str, dest: Path) -> Path:
        """Fetches an augmented dataset from the local Hub with the worker's own download code."""
        from roboaug.api.models import DatasetRef
        from roboaug.worker import hub as worker_hub

        old = os.environ.get("HF_ENDPOINT")
        os.environ["HF_ENDPOINT"] = self.hub.endpoint
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        try:
            return worker_hub.download(DatasetRef.parse(dataset_id), Path(dest), WRITE_TOKEN)
        finally:
            if old is None:
                os.environ.pop("HF_ENDPOINT", None)
            else:
                os.environ["HF_ENDPOINT"] = old
