"""DEV-ONLY stand-in for the kubelet on one node. Never deploy this; never put it in the chart.

Why: kwok nodes never run containers, yet we want the real worker to run through the real
AugmentationJob -> Job -> Pod path on a developer machine without a container engine. This agent
registers one Node (``local-0`` by default; pool ``local``), keeps its Ready condition and Lease
fresh, and for each pod the scheduler binds to it:

* runs the first container's ``command + args`` as a local process (the image is ignored;
  ``python``/``python3`` become this agent's own interpreter so the venv is used),
* resolves the container env (``value`` with ``$(VAR)`` expansion, ``valueFrom`` secretKeyRef /
  configMapKeyRef / fieldRef, ``envFrom``),
* gives it API access like a real pod: a TokenRequest-issued, pod-bound token for the pod's
  ServiceAccount in a kubeconfig whose path is in ``KUBECONFIG`` (there is no
  ``/var/run/secrets/kubernetes.io/serviceaccount`` locally, so in-cluster config is not
  available: programs should fall back to ``KUBECONFIG``), so the SA's RBAC is really exercised,
* writes output (stdout+stderr) to ``<work-dir>/pods/<ns>_<name>_<uid>/output.log`` and puts that
  path in the pod annotation ``roboaug.dev/node-agent-log``; ``roboaug.dev/node-agent-pid`` holds
  the process id. It serves that file as the kubelet's ``/containerLogs`` endpoint
  (``kubeletlogs.py``), so ``pods/log`` (``kubectl logs [-f]``) works through the apiserver,
* reports phase Running, then Succeeded/Failed with ``state.terminated.exitCode``; on failure the
  last output lines go into ``terminated.message`` (as terminationMessagePolicy
  FallbackToLogsOnError does),
* honours deletion: SIGTERM to the process group, SIGKILL after the grace period, final status,
  then deletes the pod with grace 0 (finalizers stay with their owners, as with a kubelet).

CPU set (``--cpus 0-1,3``): every process the agent starts for a pod is held to those CPUs
(``sched_setaffinity`` between fork and exec, so the pod's threads and children inherit it), and
the Node's capacity/allocatable ``cpu`` is their count, so the real scheduler places no more
1-CPU pods on it than it has CPUs (annotation ``roboaug.dev/cpuset`` names them). Without
``--cpus`` processes may use every CPU this agent may, which is what the Node reports. Several
agents with disjoint sets give several local nodes with real capacity (``LocalCluster(local_nodes=...)``).
Memory is not divided: every local node reports the machine's.

emptyDir volumes become per-pod folders, configMap volumes per-pod folders holding their keys
as files and downwardAPI volumes per-pod folders holding their fieldRef items as files, read-only
(env values, args and workingDir under their mount path are rewritten); a configMap that is
missing fails the pod (a kubelet waits for it). Not supported (dev only): other
volume kinds, probes, init/sidecar containers, resources (requests count for scheduling only:
a pod gets its node's whole CPU set, limits are not enforced),
images, ``kubectl exec``, log options other than ``follow``. Restart policy OnFailure/Always restarts the process in place.
"""
from __future__ import annotations

import argparse
import base64
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from . import kubeletlogs
from .procs import kill_group, set_parent_death_signal

log = logging.getLogger("roboaug.nodeagent")

NODE_NAME = "local-0"
NODE_LABELS = {"node.kubernetes.io/instance-type": "local-dev",
               "topology.kubernetes.io/region": "local", "roboaug.dev/pool": "local"}
# Keeps ordinary pods (chart Deployments, kwok tests) off the node that really runs processes;
# pods meant to run locally tolerate it (operator pool `local`).
NODE_TAINT = {"key": "roboaug.dev/local", "value": "true", "effect": "NoSchedule"}
LOG_ANNOTATION = "roboaug.dev/node-agent-log"
PID_ANNOTATION = "roboaug.dev/node-agent-pid"  # process group of the pod's process
CPUSET_ANNOTATION = "roboaug.dev/cpuset"  # on the Node: the CPUs its pods' processes are held to
PASS_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "VIRTUAL_ENV", "PYTHONPATH",
            "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")
MESSAGE_BYTES = 2048  # like the kubelet's FallbackToLogsOnError cap


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def expand(value: str, env: dict) -> str:
    """Kubernetes `$(VAR)` expansion: known vars replaced, `$$` escapes, unknown kept."""
    def sub(m):
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.\-]*)\)", sub, value)



def parse_cpus(text: str) -> list[int]:
    """A CPU list in cpuset syntax ("0", "0-2,5") -> sorted CPU ids; ValueError names the rule."""
    cpus: set[int] = set()
    for part in filter(None, (p.strip() for p in str(text).split(","))):
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m or (m.group(2) is not None and int(m.group(2)) < int(m.group(1))):
            raise ValueError(f"CPU list {text!r}: {part!r} is not a CPU id or a range lo-hi (e.g. 0-1,3)")
        lo = int(m.group(1))
        cpus.update(range(lo, int(m.group(2) or lo) + 1))
    if not cpus:
        raise ValueError(f"CPU list {text!r} names no CPU")
    return sorted(cpus)


def usable_cpus() -> set[int]:
    """The CPUs this process may run on (its cpuset, not the machine's count)."""
    return set(os.sched_getaffinity(0))


def check_cpus(cpus, where: str = "cpus") -> list[int]:
    """Sorted CPU ids, each one this process may use; ValueError naming `where` otherwise."""
    if isinstance(cpus, str):
        cpus = parse_cpus(cpus)
    if not cpus or not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in cpus):
        raise ValueError(f"{where} must be a non-empty list of CPU ids (integers >= 0), got {cpus!r}")
    missing = sorted(set(cpus) - usable_cpus())
    if missing:
        raise ValueError(f"{where}: CPU {missing} not available to this process "
                         f"(available: {sorted(usable_cpus())})")
    return sorted(set(cpus))


def _remap(value: str, mounts: dict[str, str]) -> str:
    """Rewrites a path-valued string that lies under a mounted emptyDir onto its host folder."""
    for mount, host in sorted(mounts.items(), key=lambda kv: -len(kv[0])):
        if value == mount or value.startswith(mount + "/"):
            return host + value[len(mount):]
    return value

class PodRun:
    """One pod's local process and its bookkeeping."""

    def __init__(self, pod):
        self.uid = pod.metadata.uid
        self.ns = pod.metadata.namespace
        self.name = pod.metadata.name
        self.proc: subprocess.Popen | None = None
        self.deleting = False
        self.done = threading.Event()
        self.restarts = 0


class NodeAgent:
    def __init__(self, kubeconfig: str, work_dir: Path, node_name: str = NODE_NAME,
                 labels: dict | None = None, taint: bool = True, cpus: list[int] | None = None):
        self.kubeconfig = kubeconfig
        self.cpus = check_cpus(cpus) if cpus is not None else None
        self.work_dir = Path(work_dir)
        self.node_name = node_name
        self.labels = {**NODE_LABELS, **(labels or {})}
        self.taint = taint
        cfg = client.Configuration()
        config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
        self.cfg = cfg
        self.api = client.ApiClient(cfg)
        self.core = client.CoreV1Api(self.api)
        self.coord = client.CoordinationV1Api(self.api)
        self.runs: dict[str, PodRun] = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.start_queue: list = []
        self.log_port: int | None = None

    # -- node registration and heartbeats ----------------------------------------------------
    def _capacity(self) -> dict:
        mem_kib = 8 * 1024 * 1024
        try:
            for line in open("/proc/meminfo"):
                if line.startswith("MemTotal:"):
                    mem_kib = int(line.split()[1])
        except OSError:
            pass
        cpus = len(self.cpus) if self.cpus is not None else len(usable_cpus())
        return {"cpu": str(cpus), "memory": f"{mem_kib}Ki", "pods": "110"}

    def _conditions(self) -> list[dict]:
        t = now()
        return [{"type": "Ready", "status": "True", "reason": "DevNodeAgentReady",
                 "message": "roboaug dev node agent (not a kubelet)",
                 "lastHeartbeatTime": t, "lastTransitionTime": t},
                *({"type": typ, "status": "False", "reason": "DevNodeAgent", "message": "",
                   "lastHeartbeatTime": t, "lastTransitionTime": t}
                  for typ in ("MemoryPressure", "DiskPressure", "PIDPressure"))]

    def register(self) -> None:
        cap = self._capacity()
        labels = {"kubernetes.io/hostname": self.node_name, "kubernetes.io/os": "linux",
                  "kubernetes.io/arch": "amd64", **self.labels}
        annotations = {"roboaug.dev/dev-node-agent": "true"}
        if self.cpus is not None:
            annotations[CPUSET_ANNOTATION] = ",".join(map(str, self.cpus))
        body = {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": self.node_name, "labels": labels, "annotations": annotations},
                "spec": {"taints": [NODE_TAINT] if self.taint else []},
                "status": {"capacity": cap, "allocatable": cap}}
        try:
            self.core.create_node(body)
        except ApiException as e:
            if e.status != 409:
                raise
            self.core.patch_node(self.node_name, {"metadata": {"labels": labels,
                                                               "annotations": annotations},
                                                  "spec": body["spec"]})
        self.heartbeat(cap)

    def _pod_log(self, ns: str, name: str):
        """(output file, ended) of a pod this agent runs, for the kubelet log endpoint."""
        with self.lock:
            run = next((r for r in self.runs.values() if (r.ns, r.name) == (ns, name)), None)
        if run is None or getattr(run, "log_path", None) is None:
            return None
        return run.log_path, run.done

    def heartbeat(self, cap: dict | None = None) -> None:
        status = {"conditions": self._conditions(),
                  "addresses": [{"type": "InternalIP", "address": "127.0.0.1"},
                                {"type": "Hostname", "address": self.node_name}],
                  "nodeInfo": {"kubeletVersion": "roboaug-dev-node-agent",
                               "operatingSystem": "linux", "architecture": "amd64",
                               "containerRuntimeVersion": "local-process://0",
                               "kernelVersion": os.uname().release, "osImage": "local",
                               "kubeProxyVersion": "", "machineID": "", "systemUUID": "",
                               "bootID": ""}}
        if cap:
            status.update(capacity=cap, allocatable=cap)
        if self.log_port:
            status["daemonEndpoints"] = {"kubeletEndpoint": {"Port": self.log_port}}
        self.core.patch_node_status(self.node_name, {"status": status})
        self._renew_lease()

    def _renew_lease(self) -> None:
        t = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        body = {"metadata": {"name": self.node_name, "namespace": "kube-node-lease"},
                "spec": {"holderIdentity": self.node_name, "leaseDurationSeconds": 40,
                         "renewTime": t}}
        try:
            self.coord.patch_namespaced_lease(self.node_name, "kube-node-lease", body)
        except ApiException as e:
            if e.status != 404:
                raise
            self.coord.create_namespaced_lease("kube-node-lease", body)

    def _heartbeat_loop(self) -> None:
        while not self.stopping.wait(10):
            try:
                self.heartbeat()
            except Exception as e:  # noqa: BLE001 - keep beating
                log.warning("heartbeat failed: %s", e)

    # -- pod env and credentials -------------------------------------------------------------
    def _field(self, pod, path: str) -> str:
        m = re.match(r"metadata\.(labels|annotations)\['(.+)'\]$", path)
        if m:
            return (getattr(pod.metadata, m.group(1)) or {}).get(m.group(2), "")
        return {"metadata.name": pod.metadata.name, "metadata.namespace": pod.metadata.namespace,
                "metadata.uid": pod.metadata.uid, "spec.nodeName": pod.spec.node_name,
                "spec.serviceAccountName": pod.spec.service_account_name or "default",
                "status.podIP": "127.0.0.1", "status.hostIP": "127.0.0.1",
                "status.podIPs": "127.0.0.1", "status.hostIPs": "127.0.0.1",
                }.get(path, "")

    def _key_ref(self, ns: str, kind: str, ref) -> str | None:
        try:
            if kind == "secret":
                data = self.core.read_namespaced_secret(ref.name, ns).data or {}
                raw = data.get(ref.key)
                return None if raw is None else base64.b64decode(raw).decode()
            data = self.core.read_namespaced_config_map(ref.name, ns).data or {}
            return data.get(ref.key)
        except ApiException as e:
            if e.status == 404 and ref.optional:
                return None
            raise

    def resolve_env(self, pod, container) -> dict:
        """The container's env as the kubelet would build it (envFrom first, then env)."""
        ns = pod.metadata.namespace
        env: dict[str, str] = {}
        for src in container.env_from or []:
            prefix = src.prefix or ""
            try:
                if src.secret_ref is not None:
                    data = self.core.read_namespaced_secret(src.secret_ref.name, ns).data or {}
                    env.update({prefix + k: base64.b64decode(v).decode() for k, v in data.items()})
                elif src.config_map_ref is not None:
                    data = self.core.read_namespaced_config_map(
                        src.config_map_ref.name, ns).data or {}
                    env.update({prefix + k: v for k, v in data.items()})
            except ApiException as e:
                ref = src.secret_ref or src.config_map_ref
                if not (e.status == 404 and ref.optional):
                    raise
        for var in container.env or []:
            if var.value_from is None:
                env[var.name] = expand(var.value or "", env)
                continue
            vf = var.value_from
            val = None
            if vf.secret_key_ref is not None:
                val = self._key_ref(ns, "secret", vf.secret_key_ref)
            elif vf.config_map_key_ref is not None:
                val = self._key_ref(ns, "configmap", vf.config_map_key_ref)
            elif vf.field_ref is not None:
                val = self._field(pod, vf.field_ref.field_path)
            elif vf.resource_field_ref is not None:
                res = container.resources
                kind, _, rname = vf.resource_field_ref.resource.partition(".")
                val = str(((getattr(res, kind, None) if res else None) or {}).get(rname, "0"))
            if val is not None:
                env[var.name] = val
        return env

    def _pod_kubeconfig(self, pod, pod_dir: Path) -> Path | None:
        """TokenRequest for the pod's ServiceAccount, bound to the pod, in a kubeconfig file."""
        if pod.spec.automount_service_account_token is False:
            return None
        sa = pod.spec.service_account_name or "default"
        req = client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(
            audiences=[], expiration_seconds=3600,
            bound_object_ref=client.V1BoundObjectReference(
                api_version="v1", kind="Pod", name=pod.metadata.name, uid=pod.metadata.uid)))
        tok = self.core.create_namespaced_service_account_token(sa, pod.metadata.namespace, req)
        token = tok.status.token
        (pod_dir / "token").write_text(token)
        path = pod_dir / "kubeconfig"
        ca = self.cfg.ssl_ca_cert
        path.write_text(
            "apiVersion: v1\nkind: Config\n"
            f"clusters:\n- name: local\n  cluster:\n    server: {self.cfg.host}\n"
            f"    certificate-authority: {ca}\n"
            f"users:\n- name: {sa}\n  user:\n    tokenFile: {pod_dir / 'token'}\n"
            f"contexts:\n- name: local\n  context:\n    cluster: local\n    user: {sa}\n"
            f"    namespace: {pod.metadata.namespace}\n"
            "current-context: local\n")
        path.chmod(0o600)
        return path

    # -- pod lifecycle -----------------------------------------------------------------------
    def _patch_status(self, pod_ns: str, pod_name: str, status: dict) -> None:
        try:
            self.core.patch_namespaced_pod_status(pod_name, pod_ns, {"status": status})
        except ApiException as e:
            if e.status != 404:
                log.warning("status patch %s/%s failed: %s", pod_ns, pod_name, e.reason)

    def _terminal_status(self, container_name: str, image: str, code: int, started: str,
                         message: str, restarts: int) -> dict:
        t = now()
        term = {"exitCode": code, "reason": "Completed" if code == 0 else "Error",
                "startedAt": started, "finishedAt": t}
        if message:
            term["message"] = message
        cond = "PodCompleted" if code == 0 else "PodFailed"
        return {"phase": "Succeeded" if code == 0 else "Failed",
                "conditions": [{"type": "Ready", "status": "False", "reason": cond,
                                "lastTransitionTime": t},
                               {"type": "ContainersReady", "status": "False", "reason": cond,
                                "lastTransitionTime": t}],
                "containerStatuses": [{"name": container_name, "image": image,
                                       "imageID": "", "ready": False, "started": False,
                                       "restartCount": restarts,
                                       "state": {"terminated": term}}]}

    def _volume_mounts(self, pod, container, pod_dir: Path) -> dict[str, str]:
        """emptyDir and configMap mounts -> per-pod host folders, so a pod never writes into the
        host's `/scratch` or `/tmp`; other volume kinds stay unsupported (see the module docstring)."""
        volumes = {v.name: v for v in pod.spec.volumes or []}
        mounts = {}
        for m in container.volume_mounts or []:
            volume = volumes.get(m.name)
            if volume is None or (volume.empty_dir is None and volume.config_map is None
                                  and volume.downward_api is None):
                continue
            host = pod_dir / "volumes" / m.name
            host.mkdir(parents=True, exist_ok=True)
            if volume.config_map is not None:
                self._write_config_map(pod.metadata.namespace, volume.config_map, host)
            if volume.downward_api is not None:
                self._write_downward_api(pod, volume.downward_api, host)
            mounts[m.mount_path.rstrip("/") or "/"] = str(host)
        return mounts

    def _write_downward_api(self, pod, source, host: Path) -> None:
        """A downwardAPI volume as the kubelet projects it: each fieldRef item (the pod's name,
        namespace, labels or an annotation) as a file, read-only. resourceFieldRef: unsupported."""
        for item in source.items or []:
            if item.field_ref is None:
                raise ValueError(f"downwardAPI item {item.path!r}: only fieldRef is supported here")
            path = host / item.path
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(self._field(pod, item.field_ref.field_path))
            path.chmod((item.mode if item.mode is not None else source.default_mode or 0o644) & 0o555)

    def _write_config_map(self, ns: str, source, host: Path) -> None:
        """A configMap volume as the kubelet projects it: its `items` (else every key) as files,
        read-only (the mode the volume asks for, 0644 by default, without write bits)."""
        try:
            data = self.core.read_namespaced_config_map(source.name, ns).data or {}
        except ApiException as e:
            if e.status == 404 and source.optional:
                return
            raise
        items = [(i.key, i.path, i.mode) for i in source.items] if source.items else \
            [(k, k, None) for k in data]
        for key, rel, mode in items:
            if key not in data:
                if source.optional:
                    continue
                raise ValueError(f"configMap {source.name} has no key {key!r}")
            path = host / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(data[key])
            # files only: a read-only folder would outlive the work dir's cleanup (rmtree)
            path.chmod((mode if mode is not None else source.default_mode or 0o644) & 0o555)

    def start_pod(self, pod) -> None:
        """Spawn the pod's process. Called from the main loop thread only (PDEATHSIG)."""
        run = PodRun(pod)
        with self.lock:
            self.runs[run.uid] = run
        c = pod.spec.containers[0]
        pod_dir = self.work_dir / "pods" / f"{run.ns}_{run.name}_{run.uid[:8]}"
        pod_dir.mkdir(parents=True, exist_ok=True)
        log_path = pod_dir / "output.log"
        started = now()
        try:
            env = {k: os.environ[k] for k in PASS_ENV if k in os.environ}
            env["HOSTNAME"] = pod.metadata.name
            env.update(self.resolve_env(pod, c))
            mounts = self._volume_mounts(pod, c, pod_dir)
            env = {k: _remap(v, mounts) for k, v in env.items()}
            kc = self._pod_kubeconfig(pod, pod_dir)
            if kc:  # a host file the agent wrote: never remapped (a work dir under /tmp is not the pod's /tmp)
                env["KUBECONFIG"] = str(kc)
            argv = [_remap(expand(a, env), mounts) for a in (c.command or []) + (c.args or [])]
            if not c.command:
                raise ValueError("the dev node agent needs an explicit container command "
                                 "(images are not run)")
            if re.fullmatch(r"python(3(\.\d+)?)?", os.path.basename(argv[0])):
                argv[0] = sys.executable
            working_dir = _remap(c.working_dir, mounts) if c.working_dir else None
            cwd = working_dir if working_dir and Path(working_dir).is_dir() else pod_dir
        except Exception as e:  # noqa: BLE001 - report it on the pod like a CreateContainerError
            log.warning("cannot start %s/%s: %s", run.ns, run.name, e)
            self._patch_status(run.ns, run.name, self._terminal_status(
                c.name, c.image or "", 128, started, f"dev node agent: {e}", 0))
            run.done.set()
            return
        run.argv, run.env, run.cwd, run.log_path = argv, env, cwd, log_path
        run.container, run.image, run.started = c.name, c.image or "", started
        run.restart_policy = pod.spec.restart_policy or "Always"
        self._spawn(run)
        try:
            self.core.patch_namespaced_pod(run.name, run.ns, {"metadata": {"annotations": {
                LOG_ANNOTATION: str(log_path), PID_ANNOTATION: str(run.proc.pid)}}})
        except ApiException:
            pass
        t = now()
        self._patch_status(run.ns, run.name, {
            "phase": "Running", "startTime": started, "hostIP": "127.0.0.1",
            "podIP": "127.0.0.1", "podIPs": [{"ip": "127.0.0.1"}],
            "conditions": [{"type": typ, "status": "True", "lastTransitionTime": t}
                           for typ in ("Initialized", "ContainersReady", "Ready")],
            "containerStatuses": [{"name": c.name, "image": run.image, "imageID": "",
                                   "ready": True, "started": True, "restartCount": 0,
                                   "state": {"running": {"startedAt": started}}}]})
        threading.Thread(target=self._wait_pod, args=(run,), daemon=True,
                         name=f"pod-{run.name}").start()

    def _preexec(self):
        """What the child runs between fork and exec: the node's CPU set (before exec, so nothing
        the pod starts ever runs elsewhere) and, from the main thread only, PDEATHSIG (it fires
        when the forking *thread* ends)."""
        pdeath = threading.current_thread() is threading.main_thread()
        cpus = self.cpus
        if cpus is None and not pdeath:
            return None

        def preexec():
            if cpus is not None:
                os.sched_setaffinity(0, cpus)
            if pdeath:
                set_parent_death_signal()
        return preexec

    def _spawn(self, run: PodRun) -> None:
        with open(run.log_path, "ab") as out:
            run.proc = subprocess.Popen(
                run.argv, env=run.env, cwd=run.cwd, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=self._preexec())
        log.info("started %s/%s pid %s: %s", run.ns, run.name, run.proc.pid, run.argv)

    def _wait_pod(self, run: PodRun) -> None:
        while True:
            code = run.proc.wait()
            if run.deleting or self.stopping.is_set():
                break
            retry = run.restart_policy == "Always" or (
                run.restart_policy == "OnFailure" and code != 0)
            if not retry:
                break
            run.restarts += 1
            time.sleep(min(10, 2 ** min(run.restarts, 4) / 2))
            if run.deleting or self.stopping.is_set():
                break
            # Restart from this thread: PDEATHSIG is skipped here, the agent's shutdown kills it.
            self._spawn(run)
            self._patch_status(run.ns, run.name, {"containerStatuses": [{
                "name": run.container, "image": run.image, "imageID": "", "ready": True,
                "started": True, "restartCount": run.restarts,
                "state": {"running": {"startedAt": now()}},
                "lastState": {"terminated": {"exitCode": code, "finishedAt": now()}}}]})
        code = run.proc.returncode
        if code < 0:  # killed by a signal: report like a container runtime does
            code = 128 - code
        message = ""
        if code != 0:
            try:
                message = run.log_path.read_bytes()[-MESSAGE_BYTES:].decode(errors="replace")
            except OSError:
                pass
        self._patch_status(run.ns, run.name, self._terminal_status(
            run.container, run.image, code, run.started, message, run.restarts))
        log.info("%s/%s exited %s", run.ns, run.name, code)
        run.done.set()

    def delete_pod(self, pod) -> None:
        """Kill the process (grace period honoured), then remove the pod with grace 0."""
        with self.lock:
            run = self.runs.get(pod.metadata.uid)
        if run is not None and not run.deleting:
            run.deleting = True
            grace = pod.metadata.deletion_grace_period_seconds
            grace = 30 if grace is None else grace
            threading.Thread(target=self._finish_delete, args=(pod, run, grace),
                             daemon=True).start()
        elif run is None:
            self._force_delete(pod)

    def _finish_delete(self, pod, run: PodRun, grace: float) -> None:
        if run.proc is not None and run.proc.poll() is None:
            kill_group(run.proc.pid, min(grace, 30), run.proc)
        run.done.wait(timeout=10)
        self._force_delete(pod)
        with self.lock:
            self.runs.pop(pod.metadata.uid, None)

    def _force_delete(self, pod) -> None:
        try:
            self.core.delete_namespaced_pod(
                pod.metadata.name, pod.metadata.namespace, grace_period_seconds=0,
                body=client.V1DeleteOptions(grace_period_seconds=0,
                                            preconditions={"uid": pod.metadata.uid}))
        except ApiException as e:
            if e.status not in (404, 409):
                log.warning("delete %s/%s failed: %s", pod.metadata.namespace,
                            pod.metadata.name, e.reason)

    def handle(self, event_type: str, pod) -> None:
        uid = pod.metadata.uid
        if event_type == "DELETED":
            with self.lock:
                run = self.runs.pop(uid, None)
            if run and run.proc is not None and run.proc.poll() is None:
                run.deleting = True
                kill_group(run.proc.pid, 2, run.proc)
            return
        if pod.metadata.deletion_timestamp is not None:
            self.delete_pod(pod)
            return
        with self.lock:
            known = uid in self.runs
        phase = pod.status.phase if pod.status else None
        if known or phase in ("Succeeded", "Failed"):
            return
        if phase == "Running":  # left over from an earlier agent: its process is gone
            c = pod.spec.containers[0]
            self._patch_status(pod.metadata.namespace, pod.metadata.name, self._terminal_status(
                c.name, c.image or "", 137, now(), "dev node agent restarted", 0))
            return
        self.start_pod(pod)

    # -- main loop ---------------------------------------------------------------------------
    def run(self) -> None:
        self.log_port = kubeletlogs.serve(self._pod_log, self.work_dir / "kubelet-certs", self.node_name,
                                          self.stopping)
        self.register()
        threading.Thread(target=self._heartbeat_loop, daemon=True, name="heartbeat").start()
        selector = f"spec.nodeName={self.node_name}"
        while not self.stopping.is_set():
            try:
                pods = self.core.list_pod_for_all_namespaces(field_selector=selector)
                for pod in pods.items:
                    self.handle("ADDED", pod)
                w = watch.Watch()
                for ev in w.stream(self.core.list_pod_for_all_namespaces,
                                   field_selector=selector,
                                   resource_version=pods.metadata.resource_version,
                                   timeout_seconds=60):
                    if self.stopping.is_set():
                        break
                    self.handle(ev["type"], ev["object"])
            except ApiException as e:
                if e.status != 410:
                    log.warning("watch failed: %s", e.reason)
                    self.stopping.wait(1)
            except Exception as e:  # noqa: BLE001 - reconnect, the apiserver may be restarting
                if self.stopping.is_set():
                    break
                log.warning("watch error: %s", e)
                self.stopping.wait(1)

    def shutdown(self) -> None:
        self.stopping.set()
        with self.lock:
            runs = list(self.runs.values())
        for run in runs:
            if run.proc is not None and run.proc.poll() is None:
                run.deleting = True
                kill_group(run.proc.pid, 3, run.proc)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="DEV-ONLY node agent (a kubelet stand-in).")
    p.add_argument("--kubeconfig", required=True)
    p.add_argument("--work-dir", required=True)
    p.add_argument("--node-name", default=NODE_NAME)
    p.add_argument("--no-taint", action="store_true",
                   help=f"do not taint the node with {NODE_TAINT['key']}")
    p.add_argument("--cpus", default=None,
                   help="CPU set the pods' processes are held to, e.g. 0 or 0-1,3 (the Node's cpu "
                        "capacity is its size); default: every CPU this agent may use")
    p.add_argument("--label", action="append", default=[], metavar="KEY=VALUE",
                   help="an extra Node label (repeatable)")
    args = p.parse_args(argv)
    try:
        cpus = check_cpus(args.cpus, "--cpus") if args.cpus is not None else None
    except ValueError as e:
        p.error(str(e))
    bad = [kv for kv in args.label if "=" not in kv]
    if bad:
        p.error(f"--label must be KEY=VALUE, got {bad[0]!r}")
    labels = dict(kv.split("=", 1) for kv in args.label)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    agent = NodeAgent(args.kubeconfig, Path(args.work_dir), args.node_name, labels=labels,
                      taint=not args.no_taint, cpus=cpus)

    def on_signal(signum, _frame):
        agent.shutdown()
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        agent.run()
    finally:
        agent.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
