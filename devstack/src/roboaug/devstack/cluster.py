"""A real local Kubernetes control plane for development and tests (dev/test only).

Why: no container engine on our machines, but every operator/gateway/chart test should talk to a
real kube-apiserver, scheduler and job controller. :class:`LocalCluster` starts etcd,
kube-apiserver, kube-controller-manager, kube-scheduler and kwok (built by :mod:`.build`) on free
127.0.0.1 ports, creates fake node pools that kwok keeps Ready and whose pods kwok "runs" with our
own Stage set (``devstack/kwok/stages.yaml``), and optionally the dev node agent
(:mod:`.nodeagent`) that really runs pods bound to node ``local-0`` as local processes.

    with LocalCluster(node_agent=True) as c:
        subprocess.run([c.kubectl_path, "--kubeconfig", c.kubeconfig, "get", "nodes"])

Several local nodes with real capacity, each its own agent holding its pods to its own CPUs (the
Node's cpu capacity is the set's size, so the scheduler places at most that many 1-CPU pods):

    LocalCluster(local_nodes=[{"name": "local-0", "cpus": [0]}, {"name": "local-1", "cpus": [1]}])

Each entry: ``name`` (DNS label), ``cpus`` (CPU ids; default: unpinned, every CPU), ``labels``
(extra Node labels; every local node has ``roboaug.dev/pool: local``), ``taint`` (default True).
``ROBOAUG_DEVSTACK_LOCAL_NODES`` gives the same from the shell (:func:`local_nodes_from_env`).

Teardown kills every process group it started; the work dir (logs, PKI, etcd data) is deleted
unless the cluster failed, ``keep_work_dir=True`` was given, or ``ROBOAUG_DEVSTACK_KEEP=1`` is set.
"""
from __future__ import annotations

import copy
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from . import build as _build
from .pki import make_pki, new_token, write_kubeconfig
from .procs import Proc

STAGES_FILE = Path(__file__).with_name("kwok") / "stages.yaml"
SERVICE_CIDR = "10.0.0.0/24"

# Kwok knobs (see kwok/stages.yaml). Put them on a pod template.
KWOK_FAIL_LABEL = "roboaug.dev/kwok-fail"            # "true" -> pod ends Failed
KWOK_EXIT_CODE_ANNOTATION = "roboaug.dev/kwok-exit-code"  # failure exit code, default 1
KWOK_DELAY_ANNOTATION = "roboaug.dev/kwok-delay"     # Go duration Running lasts, default 1s
KWOK_WAITING_REASON_ANNOTATION = "roboaug.dev/kwok-waiting-reason"    # never starts: waiting reason
KWOK_WAITING_MESSAGE_ANNOTATION = "roboaug.dev/kwok-waiting-message"  # ... and its message
KWOK_NODE_ANNOTATION = {"kwok.x-k8s.io/node": "fake"}

# Node pools the operator's default configuration expects (docs/architecture.md).
DEFAULT_NODES: list[dict] = [
    {"name": "cpu-0", "labels": {"node.kubernetes.io/instance-type": "c7i.4xlarge",
                                 "topology.kubernetes.io/region": "us-east-1",
                                 "roboaug.dev/pool": "cpu"},
     "capacity": {"cpu": "16", "memory": "32Gi", "pods": "110"}},
    {"name": "cpu-1", "labels": {"node.kubernetes.io/instance-type": "c7i.4xlarge",
                                 "topology.kubernetes.io/region": "us-east-1",
                                 "roboaug.dev/pool": "cpu"},
     "capacity": {"cpu": "16", "memory": "32Gi", "pods": "110"}},
    {"name": "gpu-0", "labels": {"node.kubernetes.io/instance-type": "g6e.2xlarge",
                                 "topology.kubernetes.io/region": "us-east-1",
                                 "roboaug.dev/pool": "gpu",
                                 "nvidia.com/gpu.product": "NVIDIA-L40S"},
     "taints": [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}],
     "capacity": {"cpu": "8", "memory": "64Gi", "pods": "110", "nvidia.com/gpu": "1"}},
]

# Controllers we need: Jobs and their pods, GC, namespaces, service accounts and their tokens,
# plus Deployments/ReplicaSets/EndpointSlices so a Helm-installed chart comes up on kwok nodes.
DEFAULT_CONTROLLERS = [
    "job-controller", "garbage-collector-controller", "namespace-controller",
    "serviceaccount-controller", "serviceaccount-token-controller",
    "ttl-after-finished-controller", "pod-garbage-collector-controller",
    "deployment-controller", "replicaset-controller", "endpointslice-controller",
    "root-ca-certificate-publisher-controller", "clusterrole-aggregation-controller",
    "cronjob-controller", "statefulset-controller",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def node_manifest(spec: dict) -> dict:
    """A kwok-managed Node from a small dict: name, labels, taints, capacity, [allocatable]."""
    name = spec["name"]
    labels = {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
              "kubernetes.io/arch": "amd64", "type": "kwok", **spec.get("labels", {})}
    capacity = dict(spec.get("capacity", {"cpu": "4", "memory": "8Gi", "pods": "110"}))
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": labels,
                     "annotations": {**KWOK_NODE_ANNOTATION, **spec.get("annotations", {})}},
        "spec": {"taints": copy.deepcopy(spec.get("taints", []))},
        "status": {"capacity": capacity,
                   "allocatable": dict(spec.get("allocatable", capacity))},
    }


class ClusterError(RuntimeError):
    pass


LOCAL_NODES_ENV = "ROBOAUG_DEVSTACK_LOCAL_NODES"
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


def parse_local_nodes(text: str, where: str = LOCAL_NODES_ENV) -> list[dict]:
    """"0;1" -> local-0 on CPU 0, local-1 on CPU 1: one CPU set (cpuset syntax, "0-1,3") per node,
    separated by ';' or spaces, nodes named local-<i> in order."""
    from .nodeagent import parse_cpus

    parts = [p for p in re.split(r"[;\s]+", text.strip()) if p]
    if not parts:
        raise ClusterError(f"{where}: give one CPU set per local node, e.g. '0;1', got {text!r}")
    try:
        return [{"name": f"local-{i}", "cpus": parse_cpus(p)} for i, p in enumerate(parts)]
    except ValueError as e:
        raise ClusterError(f"{where}: {e}") from None


def local_nodes_from_env() -> list[dict] | None:
    """The local nodes ``ROBOAUG_DEVSTACK_LOCAL_NODES`` asks for, or None (unset: one node)."""
    text = os.environ.get(LOCAL_NODES_ENV, "").strip()
    return parse_local_nodes(text) if text else None


def check_local_nodes(nodes: list[dict]) -> list[dict]:
    """Validated copies of `local_nodes` entries; ClusterError naming the entry and the rule."""
    from .nodeagent import check_cpus

    out, names, taken = [], set(), {}
    for i, spec in enumerate(nodes):
        where = f"local_nodes[{i}]"
        if not isinstance(spec, dict):
            raise ClusterError(f"{where} must be a dict with name and cpus, got {spec!r}")
        unknown = set(spec) - {"name", "cpus", "labels", "taint"}
        if unknown:
            raise ClusterError(f"{where}: unknown key(s) {sorted(unknown)} (name, cpus, labels, taint)")
        name = spec.get("name", f"local-{i}")
        if not isinstance(name, str) or not _DNS_LABEL.fullmatch(name):
            raise ClusterError(f"{where}.name must be a DNS label (a-z, 0-9, '-'), got {name!r}")
        if name in names:
            raise ClusterError(f"{where}.name {name!r} is used twice")
        names.add(name)
        entry = {"name": name, "labels": dict(spec.get("labels") or {}),
                 "taint": bool(spec.get("taint", True)), "cpus": None}
        if spec.get("cpus") is not None:
            try:
                entry["cpus"] = check_cpus(spec["cpus"], f"{where}.cpus")
            except ValueError as e:
                raise ClusterError(str(e)) from None
            # disjoint: a CPU counted in two nodes' capacity would let the scheduler overbook it
            for c in entry["cpus"]:
                if c in taken:
                    raise ClusterError(f"{where}.cpus: CPU {c} already belongs to {taken[c]}")
                taken[c] = name
        out.append(entry)
    return out


class LocalCluster:
    """etcd + kube-apiserver + controller-manager + scheduler + kwok (+ dev node agent).

    Public attributes once started: ``kubeconfig`` (Path, admin token), ``server`` (URL),
    ``token``, ``ca_file``, ``bin_dir``, ``work_dir``, ``log_dir``, ``start_seconds``.
    """

    def __init__(self, work_dir: str | Path | None = None, nodes: list[dict] | None = None,
                 node_agent: bool = False, k8s_version: str = _build.K8S_VERSION,
                 bin_dir: str | Path | None = None, build: bool = True,
                 controllers: list[str] | None = None, keep_work_dir: bool | None = None,
                 node_agent_args: list[str] | None = None, timeout: float = 180, log=None,
                 kueue: bool = False, local_nodes: list[dict] | None = None):
        self.k8s_version = k8s_version
        self.kueue = kueue  # also start Kueue's manager (devstack/kueue.py); see start_kueue
        self.kueue_manager = None
        self.nodes = copy.deepcopy(DEFAULT_NODES if nodes is None else nodes)
        # local_nodes implies the agent; node_agent=True alone is one unpinned node, local-0.
        if local_nodes is not None and not local_nodes:
            raise ClusterError("local_nodes must name at least one node (or pass None)")
        self.local_nodes = check_local_nodes(
            local_nodes if local_nodes is not None
            else [{"name": "local-0"}] if node_agent else [])
        self.node_agent = bool(self.local_nodes)
        self.node_agent_args = list(node_agent_args or [])
        self.controllers = list(controllers or DEFAULT_CONTROLLERS)
        # ROBOAUG_DEVSTACK_BIN_DIR: use binaries from elsewhere (then nothing is built).
        bin_dir = bin_dir or os.environ.get("ROBOAUG_DEVSTACK_BIN_DIR") or None
        self._bin_dir = Path(bin_dir) if bin_dir else None
        self._build = build and self._bin_dir is None
        self._own_work_dir = work_dir is None
        self.work_dir = Path(work_dir) if work_dir else None
        env_keep = os.environ.get("ROBOAUG_DEVSTACK_KEEP", "") not in ("", "0")
        self.keep_work_dir = env_keep if keep_work_dir is None else keep_work_dir
        self.failed = False
        self.procs: dict[str, Proc] = {}
        self.start_seconds: float | None = None
        self.stop_seconds: float | None = None
        self.timeout = timeout  # per start step; generous because CI machines are shared
        self._log = log or (lambda s: print(f"[devstack] {s}", file=sys.stderr, flush=True))

    # -- paths / clients ---------------------------------------------------------------------
    @property
    def bin_dir(self) -> Path:
        return self._bin_dir or _build.bin_dir(self.k8s_version)

    def bin(self, name: str) -> str:
        return str(self.bin_dir / name)

    @property
    def kubectl_path(self) -> str:
        return self.bin("kubectl")

    @property
    def helm_path(self) -> str:
        return self.bin("helm")

    @property
    def kube_version(self) -> str:
        return self.k8s_version

    def env(self) -> dict:
        """os.environ plus KUBECONFIG and the cached binaries first on PATH."""
        env = dict(os.environ)
        env["KUBECONFIG"] = str(self.kubeconfig)
        env["PATH"] = f"{self.bin_dir}{os.pathsep}{env.get('PATH', '')}"
        return env

    def api_client(self):
        """A fresh `kubernetes.client.ApiClient` for the admin user."""
        from kubernetes import client, config

        cfg = client.Configuration()
        config.load_kube_config(config_file=str(self.kubeconfig), client_configuration=cfg)
        return client.ApiClient(cfg)

    def kubectl(self, *args: str, check: bool = True, input: str | None = None,
                timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([self.kubectl_path, "--kubeconfig", str(self.kubeconfig), *args],
                              input=input, capture_output=True, text=True, check=check,
                              timeout=timeout)

    def helm(self, *args: str, check: bool = True,
             timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run([self.helm_path, "--kubeconfig", str(self.kubeconfig), *args],
                              capture_output=True, text=True, check=check, timeout=timeout,
                              env=self.env())

    # -- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> "LocalCluster":
        self.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.failed = True
        self.stop()

    def start(self) -> "LocalCluster":
        t0 = time.monotonic()
        if self._build:
            _build.ensure_built(self.k8s_version, log=self._log)
        elif not _build.is_built(self.k8s_version) and not self._bin_dir:
            raise ClusterError(f"binaries missing in {self.bin_dir}: "
                               "run `python -m roboaug.devstack build`")
        if self.work_dir is None:
            self.work_dir = Path(tempfile.mkdtemp(prefix="roboaug-devstack-"))
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir = self.work_dir / "logs"
        self.log_dir.mkdir(exist_ok=True)
        try:
            self._start_all()
        except BaseException:
            self.failed = True
            self._log(f"start failed; logs kept in {self.log_dir}")
            self.stop()
            raise
        self.start_seconds = round(time.monotonic() - t0, 2)
        (self.work_dir / "cluster.json").write_text(json.dumps(self.describe(), indent=2))
        self._log(f"cluster up in {self.start_seconds}s; KUBECONFIG={self.kubeconfig}")
        return self

    def describe(self) -> dict:
        return {"kubeconfig": str(self.kubeconfig), "server": self.server,
                "work_dir": str(self.work_dir), "bin_dir": str(self.bin_dir),
                "pids": {n: p.pid for n, p in self.procs.items()},
                "start_seconds": self.start_seconds}

    def _start_all(self) -> None:
        wd = self.work_dir
        self.pki = make_pki(wd / "pki")
        self.ca_file = self.pki.ca_crt
        self.token = new_token()
        tokens = {"admin": new_token(), "kcm": new_token(), "sched": new_token(),
                  "kwok": new_token()}
        tokens["admin"] = self.token
        agents = {n["name"]: f"agent-{n['name']}" for n in self.local_nodes}
        tokens.update({user: new_token() for user in agents.values()})
        (wd / "tokens.csv").write_text(
            f'{tokens["admin"]},admin,admin,"system:masters"\n'
            f'{tokens["kcm"]},system:kube-controller-manager,kcm,"system:masters"\n'
            f'{tokens["sched"]},system:kube-scheduler,sched\n'
            f'{tokens["kwok"]},kwok,kwok,"system:masters"\n'
            + "".join(f'{tokens[user]},system:node:{node},{user},"system:masters,system:nodes"\n'
                      for node, user in agents.items()))
        (wd / "tokens.csv").chmod(0o600)

        etcd_port, etcd_peer, api_port = free_port(), free_port(), free_port()
        self.server = f"https://127.0.0.1:{api_port}"
        self.kubeconfig = write_kubeconfig(wd / "kubeconfig", self.server, self.ca_file,
                                           self.token)
        kc = {name: write_kubeconfig(wd / f"{name}.kubeconfig", self.server, self.ca_file, t,
                                     user=name) for name, t in tokens.items() if name != "admin"}

        etcd_url = f"http://127.0.0.1:{etcd_port}"
        peer_url = f"http://127.0.0.1:{etcd_peer}"
        self._spawn("etcd", [
            self.bin("etcd"), "--name=devstack", f"--data-dir={wd / 'etcd'}",
            f"--listen-client-urls={etcd_url}", f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls={peer_url}", f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=devstack={peer_url}", "--unsafe-no-fsync=true",
            "--log-level=warn"])
        self._wait(f"{etcd_url}/health", "etcd", self.timeout, ca=False)

        p = self.pki
        self._spawn("kube-apiserver", [
            self.bin("kube-apiserver"), f"--etcd-servers={etcd_url}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
            f"--secure-port={api_port}", "--endpoint-reconciler-type=none",
            f"--cert-dir={wd / 'apiserver-certs'}",
            f"--tls-cert-file={p.server_crt}", f"--tls-private-key-file={p.server_key}",
            f"--client-ca-file={p.ca_crt}", f"--token-auth-file={wd / 'tokens.csv'}",
            # Only so kube-controller-manager/scheduler find a request-header CA and stay quiet.
            f"--requestheader-client-ca-file={p.ca_crt}",
            "--requestheader-allowed-names=front-proxy-client",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            "--authorization-mode=RBAC",
            # pods/log reaches the dev node agent's kubelet endpoint (kubeletlogs.py) at the
            # Node's InternalIP; its Hostname (local-0) resolves nowhere.
            "--kubelet-preferred-address-types=InternalIP",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={p.sa_pub}",
            f"--service-account-signing-key-file={p.sa_key}",
            f"--service-cluster-ip-range={SERVICE_CIDR}", "--allow-privileged=true",
            # No node-lifecycle controller runs, so nothing would lift the not-ready taint this
            # plugin puts on new nodes; our nodes are Ready by construction.
            "--disable-admission-plugins=TaintNodesByCondition",
            "--profiling=false", "--v=1"])
        self._wait(f"{self.server}/readyz", "kube-apiserver", self.timeout)

        kcm_port, sched_port = free_port(), free_port()
        self._spawn("kube-controller-manager", [
            self.bin("kube-controller-manager"), f"--kubeconfig={kc['kcm']}",
            "--leader-elect=false", "--bind-address=127.0.0.1", f"--secure-port={kcm_port}",
            f"--cert-dir={wd / 'kcm-certs'}", f"--controllers={','.join(self.controllers)}",
            f"--service-account-private-key-file={p.sa_key}", f"--root-ca-file={p.ca_crt}",
            "--use-service-account-credentials=false", f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--concurrent-job-syncs=10", "--v=1"])
        self._spawn("kube-scheduler", [
            self.bin("kube-scheduler"), f"--kubeconfig={kc['sched']}",
            f"--authentication-kubeconfig={kc['sched']}",
            f"--authorization-kubeconfig={kc['sched']}",
            "--leader-elect=false", "--bind-address=127.0.0.1", f"--secure-port={sched_port}",
            f"--cert-dir={wd / 'sched-certs'}", "--v=1"])
        self._spawn("kwok", [
            self.bin("kwok"), f"--kubeconfig={kc['kwok']}", "--manage-all-nodes=false",
            "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
            f"--config={STAGES_FILE}", f"--server-address=127.0.0.1:{free_port()}",
            "--node-ip=127.0.0.1", "--cidr=10.244.0.0/16", "--node-lease-duration-seconds=40"])
        self._wait(f"https://127.0.0.1:{kcm_port}/healthz", "kube-controller-manager",
                   self.timeout, ca=False)
        self._wait(f"https://127.0.0.1:{sched_port}/healthz", "kube-scheduler", self.timeout,
                   ca=False)

        for spec in self.nodes:
            self.add_node(spec, wait=False)
        for node in self.local_nodes:  # one agent per node: its own process, port and CPU set
            name = node["name"]
            single = len(self.local_nodes) == 1  # keeps logs/node-agent.log where it always was
            args = [sys.executable, "-m", "roboaug.devstack.nodeagent",
                    f"--kubeconfig={kc[agents[name]]}", f"--node-name={name}",
                    f"--work-dir={wd / ('node-agent' if single else f'node-agent-{name}')}",
                    *(f"--label={k}={v}" for k, v in node["labels"].items())]
            if node["cpus"] is not None:
                args.append("--cpus=" + ",".join(map(str, node["cpus"])))
            if not node["taint"]:
                args.append("--no-taint")
            self._spawn("node-agent" if single else f"node-agent-{name}",
                        args + self.node_agent_args)
        self.wait_nodes_ready(timeout=self.timeout)
        self._wait_default_sa("default", self.timeout)
        if self.kueue:
            self.start_kueue()

    def start_kueue(self):
        """Install Kueue's CRDs and run its manager (built by :mod:`.kueue`, cached) with this
        cluster; it stops with the cluster, or earlier with ``kueue_manager.stop()``."""
        from .kueue import KueueManager

        if self.kueue_manager is None or "kueue" not in self.procs:
            self.kueue_manager = KueueManager(self, timeout=self.timeout).start()
            self._log(f"kueue up in {self.kueue_manager.start_seconds}s")
        return self.kueue_manager

    def stop(self, keep_work_dir: bool | None = None) -> None:
        """Stop every component (node agent first, etcd last); drop the work dir if clean."""
        t0 = time.monotonic()
        agents = [self.procs.pop(n) for n in list(self.procs) if n.startswith("node-agent")]
        for agent in agents:  # first: they kill the pods' processes they started
            agent.terminate()
        for agent in agents:
            agent.stop(grace=10)
        # The rest together: we throw their state away, so a quick SIGTERM (then SIGKILL) is fine.
        for p in self.procs.values():
            p.terminate()
        for p in self.procs.values():
            p.stop(grace=max(0.5, 5 - (time.monotonic() - t0)))
        self.procs.clear()
        self.stop_seconds = round(time.monotonic() - t0, 2)
        keep = self.keep_work_dir if keep_work_dir is None else keep_work_dir
        if self.work_dir and self._own_work_dir and not keep and not self.failed:
            shutil.rmtree(self.work_dir, ignore_errors=True)
        elif self.work_dir:
            self._log(f"work dir kept: {self.work_dir} (logs in {self.work_dir / 'logs'})")

    # -- helpers -----------------------------------------------------------------------------
    def _spawn(self, name: str, args: list[str]) -> Proc:
        env = dict(os.environ)
        env.pop("KUBECONFIG", None)
        proc = Proc(name, args, self.log_dir, env=env, cwd=self.work_dir)
        self.procs[name] = proc
        return proc

    def _ssl_ctx(self, verify: bool = True):
        if verify:
            return ssl.create_default_context(cafile=str(self.ca_file))
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx

    def _wait(self, url: str, name: str, timeout: float, ca: bool = True) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            proc = self.procs.get(name)
            if proc is not None and not proc.alive():
                raise ClusterError(f"{name} exited ({proc.popen.returncode}):\n{proc.tail()}")
            req = urllib.request.Request(url)
            if url.startswith("https://") and ca:
                req.add_header("Authorization", f"Bearer {self.token}")
            try:
                ctx = self._ssl_ctx(ca) if url.startswith("https://") else None
                with urllib.request.urlopen(req, timeout=5, context=ctx) as r:
                    if r.status == 200:
                        return
            except Exception as e:  # noqa: BLE001 - keep polling until the deadline
                last = str(e)
            time.sleep(0.2)
        proc = self.procs.get(name)
        raise ClusterError(f"{name} not healthy at {url} after {timeout}s ({last})\n"
                           + (proc.tail() if proc else ""))

    def add_node(self, spec: dict, wait: bool = True, timeout: float = 60) -> dict:
        """Create one kwok-managed Node (see :func:`node_manifest`); optionally wait for Ready."""
        from kubernetes import client

        body = node_manifest(spec)
        with self.api_client() as api:
            client.CoreV1Api(api).create_node(body)
        if wait:
            self.wait_nodes_ready([spec["name"]], timeout=timeout)
        return body

    def node_names(self) -> list[str]:
        return [n["name"] for n in self.nodes] + self.local_node_names

    @property
    def local_node_names(self) -> list[str]:
        """The nodes the dev node agents run (empty without them)."""
        return [n["name"] for n in self.local_nodes]

    @property
    def local_node_name(self) -> str | None:
        """The first local node (``local-0`` by default)."""
        return self.local_nodes[0]["name"] if self.local_nodes else None

    def wait_nodes_ready(self, names: list[str] | None = None, timeout: float = 60) -> None:
        from kubernetes import client

        names = list(names or self.node_names())
        deadline = time.monotonic() + timeout
        pending = set(names)
        with self.api_client() as api:
            core = client.CoreV1Api(api)
            while pending and time.monotonic() < deadline:
                for n in core.list_node().items:
                    if n.metadata.name in pending and any(
                            c.type == "Ready" and c.status == "True"
                            for c in (n.status.conditions or [])):
                        pending.discard(n.metadata.name)
                if pending:
                    self._check_alive()
                    time.sleep(0.2)
        if pending:
            raise ClusterError(f"nodes not Ready after {timeout}s: {sorted(pending)}")

    def _wait_default_sa(self, namespace: str, timeout: float) -> None:
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        deadline = time.monotonic() + timeout
        with self.api_client() as api:
            core = client.CoreV1Api(api)
            while time.monotonic() < deadline:
                try:
                    core.read_namespaced_service_account("default", namespace)
                    return
                except ApiException as e:
                    if e.status != 404:
                        raise
                time.sleep(0.2)
        raise ClusterError(f"no default ServiceAccount in {namespace} after {timeout}s")

    def _check_alive(self) -> None:
        for name, p in self.procs.items():
            if not p.alive():
                raise ClusterError(f"{name} exited ({p.popen.returncode}):\n{p.tail()}")

    def alive(self) -> bool:
        return bool(self.procs) and all(p.alive() for p in self.procs.values())

    def pids(self) -> dict[str, int]:
        return {n: p.pid for n, p in self.procs.items()}
