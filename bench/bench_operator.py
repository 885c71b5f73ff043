"""Operator benchmark: N AugmentationJobs created at once onto kwok nodes.

    python bench/bench_operator.py            # N=500 on a fresh local control plane
    python bench/bench_operator.py --quick    # N=20
    python bench/bench_operator.py --kubeconfig KUBECONFIG   # an existing cluster with the CRD
    python bench/bench_operator.py --compare-src /tmp/old-checkout   # that checkout's operator
        # first, then this one's, same control plane, each in a fresh namespace: ratios printed
    python bench/bench_operator.py --operator-src /tmp/old-checkout  # that checkout's operator
        # alone, on its own fresh control plane (no order effect)
    python bench/bench_operator.py --finished 5000 [--compare-src /tmp/old-checkout]
        # memory only: 5,000 finished AugmentationJobs present; the operator's VmRSS/VmHWM once
        # it has listed and looked at them all (and the same for another checkout's operator)

Prints (and with --json writes) these figures:
  all_completed_s     first CR created -> last CR seen `completed`
  cr_to_job_p50/p95   CR create call returned -> its Job seen by a watch (seconds); also the
                      p95 of the first, middle and last third of the CRs in creation order
  operator_peak_rss   peak resident memory of the operator process (psutil, sampled every 0.1 s)
  requests_per_job    the operator's own API requests (its `roboaug_api_requests_total`
                      counter: every call it makes besides kopf's list/watch streams) / N
  apiserver_requests_per_job  all clients' requests (apiserver_request_total, watches and
                      the benchmark's own creates included) / N, for context
  cpu_steal_s         CPU time the hypervisor gave other guests during the burst (a VM's noise)
Targets (issue 4): CR -> Job p95 < 2 s, all N completed, RSS < 300 MB; with 5,000 finished
jobs present (issue 14), VmHWM < 300 MB.
The operator runs as a separate process (`python -m roboaug.operator`), as in production.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import psutil
import yaml

from roboaug.api.models import GROUP, PLURAL, TERMINAL_STATUSES, VERSION

REPO = Path(__file__).resolve().parents[1]
TERMINAL = {s.value for s in TERMINAL_STATUSES}
PROJECT = "2489e9ad-2ee2-8e00-8ec9-32d5f69181c0"
PROJECT_CRD = REPO / "manifests" / "crd" / "roboaug.dev_augmentationprojects.yaml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}" if a is not None and b else "n/a"


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    k = (len(values) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def cpu_steal_s() -> float | None:
    """CPU time the hypervisor gave to other guests (all CPUs, /proc/stat), or None off Linux:
    on a shared VM a slow run with high steal says more about the host than about the operator."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
        return int(fields[8]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def cpu_by_process(operator_pid: int) -> dict[str, float]:
    """CPU seconds (user + system) so far of every process on this machine, summed by role: the
    burst shares 2 cores between the apiserver, etcd, the controllers, the operator and this
    bench, and the split over the burst says which of them the p95 waits on."""
    me = os.getpid()
    out: dict[str, float] = {}
    for p in psutil.process_iter(["pid", "ppid", "name", "cmdline", "cpu_times"]):
        try:
            info = p.info
            t = info["cpu_times"]
            if t is None:
                continue
            cmd = " ".join(info["cmdline"] or [])
            name = info["name"] or "?"
            if info["pid"] == operator_pid:
                role = "operator"
            elif info["pid"] == me or info["ppid"] == me and "python" in name:
                role = "bench (creates + watches)"
            elif "kube-apiserver" in cmd:
                role = "kube-apiserver"
            elif "etcd" in name:
                role = "etcd"
            elif "kube-controller-manager" in cmd:
                role = "kube-controller-manager"
            elif "kube-scheduler" in cmd:
                role = "kube-scheduler"
            elif "kwok" in cmd:
                role = "kwok"
            else:
                role = "other"
            out[role] = out.get(role, 0.0) + t.user + t.system
        except (psutil.Error, TypeError):
            continue
    return out


def scrape(url: str, metric: str, label_filter: str = "") -> float:
    """Sum of a Prometheus counter's samples (optionally only lines containing `label_filter`)."""
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(metric) and (line[len(metric)] in "{ ") and label_filter in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def apiserver_requests(api) -> dict[str, float]:
    """apiserver_request_total (the apiserver's /metrics) summed per "VERB resource[/sub]"."""
    resp = api.call_api(*api.param_serialize("GET", "/metrics", auth_settings=["BearerToken"]))
    resp.read()
    out: dict[str, float] = {}
    for line in resp.data.decode().splitlines():
        if line.startswith("apiserver_request_total{"):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
            key = f"{labels.get('verb')} {labels.get('resource')}"
            if labels.get("subresource"):
                key += "/" + labels["subresource"]
            out[key] = out.get(key, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


def _watch_process(kubeconfig: str, namespace: str, kind: str, out, ready) -> None:
    """Child process: stream one watch and send (name, wall time, final status or None) for each
    Job's first sighting / each CR's first terminal status. A process of its own, because in
    the benchmark's process the 16 creating threads held the GIL and delayed the watch by
    seconds, which was then counted as operator latency."""
    from kubernetes import client, config, watch

    api = config.new_client_from_config(config_file=kubeconfig)
    if kind == "jobs":
        fn, args = client.BatchV1Api(api).list_namespaced_job, (namespace,)
    else:
        fn, args = client.CustomObjectsApi(api).list_namespaced_custom_object, (GROUP, VERSION, namespace, PLURAL)
    seen: set[str] = set()
    rv = None
    while True:
        try:
            # Plain JSON, not the client's typed models: deserializing every Job update into
            # V1Job costs milliseconds per event.
            kw = {"timeout_seconds": 60, "allow_watch_bookmarks": False, "deserialize": False}
            if rv:
                kw["resource_version"] = rv
            ready.set()
            for ev in watch.Watch().stream(fn, *args, **kw):
                now = time.time()
                obj = ev["object"]
                meta = obj["metadata"]
                rv = meta["resourceVersion"]
                if kind == "jobs":
                    owner = (meta.get("annotations") or {}).get("roboaug.dev/cr-name")
                    if owner and owner not in seen:
                        seen.add(owner)
                        out.put((owner, now, None))
                else:
                    st = (obj.get("status") or {}).get("status")
                    if st in TERMINAL and meta["name"] not in seen:
                        seen.add(meta["name"])
                        out.put((meta["name"], now, st))
        except Exception:  # watch expired or connection reset: resume
            rv = None
            time.sleep(0.2)


class Watcher:
    """Records when each CR's Job first appears (kind "jobs") or when each CR is first seen
    finished (kind "crs"), from a watch running in a child process; times are time.time()."""

    def __init__(self, kubeconfig: Path, namespace: str, kind: str):
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        self.seen: dict[str, float] = {}
        self.final: dict[str, tuple[float, str]] = {}
        self._queue = ctx.Queue()
        self.ready = ctx.Event()
        self._proc = ctx.Process(target=_watch_process, daemon=True,
                                 args=(str(kubeconfig), namespace, kind, self._queue, self.ready))
        self._drain = threading.Thread(target=self._drain_loop, daemon=True)
        self._stopping = False

    def start(self) -> None:
        self._proc.start()
        self._drain.start()

    def _drain_loop(self) -> None:
        import queue

        while not self._stopping:
            try:
                name, t, st = self._queue.get(timeout=0.5)
            except queue.Empty:
                continue
            if st is None:
                self.seen.setdefault(name, t)
            else:
                self.final.setdefault(name, (t, st))

    def stop(self) -> None:
        self._stopping = True
        self._proc.terminate()
        self._proc.join(5)


def finished_status(name: str, job_id: str, i: int) -> dict:
    """A completed job's status shaped as the operator writes it: six phases with their events,
    the worker's progress events, the effective spec and its sources."""
    t = lambda s: f"2026-01-01T{(i // 60) % 24:02d}:{i % 60:02d}:{s:02d}Z"  # noqa: E731
    ev = lambda st, msg, s, data=None: {"status": st, "message": msg, "error": None,  # noqa: E731
                                        "timestamp": t(s), "retry_attempt": 0, "data": data}
    phases = [
        {"name": "queued", "status": "completed", "started_at": t(0), "completed_at": t(1),
         "events": [ev("created", "accepted", 0), ev("completed", "Job created", 1)]},
        {"name": "scheduling", "status": "completed", "started_at": t(1), "completed_at": t(3),
         "events": [ev("in_progress", f"Job {name}-worker created", 1),
                    ev("completed", "pod scheduled on node cpu-3 (c7i.4xlarge, us-east-1)", 3)]},
        {"name": "downloading", "status": "completed", "started_at": t(3), "completed_at": t(9),
         "events": [ev("in_progress", "downloading lerobot/pusht", 3),
                    ev("completed", "downloaded 206 episodes", 9, {"bytes": 123456789, "files": 412})]},
        {"name": "augmenting", "status": "completed", "started_at": t(9), "completed_at": t(40),
         "events": [ev("in_progress", f"episode {k * 20}/206", 9 + k,
                       {"episodes_done": k * 20, "episodes_total": 206, "frames_done": k * 5000})
                    for k in range(11)] + [ev("completed", "augmented 206 episodes x 2 copies", 40)]},
        {"name": "uploading", "status": "completed", "started_at": t(40), "completed_at": t(55),
         "events": [ev("in_progress", "uploading 824 files", 40),
                    ev("completed", "uploaded", 55, {"bytes": 246913578, "files": 824})]},
        {"name": "completed", "status": "completed", "started_at": t(55), "completed_at": t(55),
         "events": [ev("completed", "completed", 55)]},
    ]
    output = f"roboaug/pusht-aug-{job_id[:8]}"
    spec = {"project_id": PROJECT, "dataset_id": "lerobot/pusht", "augmentation_type": "deterministic",
            "augment_transforms": "lighting,noise,blur", "augment_mode": "stacked", "augment_copies": 2,
            "augment_dataset_mode": "copy", "augment_brightness_min": 0.8, "augment_brightness_max": 1.2,
            "augment_contrast_min": 0.8, "augment_contrast_max": 1.2, "noise_type": "gaussian",
            "noise_gaussian_sigma_min": 0.01, "noise_gaussian_sigma_max": 0.05, "blur_type": "motion",
            "blur_motion_kernel_min": 3, "blur_motion_kernel_max": 9, "augment_seed": i,
            "output_dataset_id": output, "output_visibility": "private", "pending_timeout_seconds": 3600}
    status = {
        "job_id": job_id, "current_phase": "completed", "status": "completed",
        "instance_type": "c7i.4xlarge", "region": "us-east-1", "phases": phases, "error": None,
        "augmented_dataset_id": output, "source_revision": "a" * 40,
        "augmented_dataset_revision": "b" * 40, "created_at": t(0),
        "effective_spec": spec,
        "spec_sources": {k: ("request" if k in ("project_id", "dataset_id", "augment_copies") else "default")
                         for k in spec},
        "progress": {"phase": "uploading", "episodes_done": 206, "episodes_total": 206,
                     "frames_done": 25650, "frames_total": 25650, "attempt": 0,
                     "pod": f"{name}-worker-x7k2p", "updated_at": t(55), "output_dataset_id": output},
        "attempt": 1, "job_name": f"{name}-worker", "observed_generation": 1,
    }
    return settled(status)


def settled(status: dict) -> dict:
    """`status` with the fields the operator derives from the history (conditions,
    observedGeneration, ...) as it writes them: without them, the operator's first look at each
    job would be a status write, not the steady state this bench measures."""
    from roboaug.operator.phases import History

    history = History(status)
    history.derive(1, None, datetime.now(timezone.utc))
    return history.status


def stop_operator(proc: subprocess.Popen, log) -> None:
    """SIGTERM the operator's process group, SIGKILL it if it lingers, close its log."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    log.close()


def proc_memory_mb(pid: int) -> dict[str, float]:
    """VmRSS (now) and VmHWM (peak) of a process, from /proc/PID/status, in MB."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = round(int(value.split()[0]) / 1024, 1)
    return out


# Runs the operator with tracemalloc on; SIGUSR1 writes a snapshot (after a gc) to argv[1], and a
# thread keeps one of the largest traced moment so far in argv[1].peak (checked every 0.5 s).
# tracemalloc costs memory and time of its own: its runs say *where*, the plain runs *how much*.
_TRACED_OPERATOR = """
import gc, os, runpy, signal, sys, threading, time, tracemalloc
tracemalloc.start(int(sys.argv[2]))
def _write(path):
    tracemalloc.take_snapshot().dump(path + ".part")
    os.replace(path + ".part", path)
def _dump(*_):
    gc.collect()
    _write(sys.argv[1])
def _peaks():
    top = 0
    while True:
        time.sleep(0.5)
        now = tracemalloc.get_traced_memory()[0]
        if now > top * 1.05 and now > 50 * 2**20:
            top = now
            _write(sys.argv[1] + ".peak")
signal.signal(signal.SIGUSR1, _dump)
threading.Thread(target=_peaks, daemon=True).start()
sys.argv = [sys.argv[0]]
runpy.run_module("roboaug.operator", run_name="__main__", alter_sys=True)
"""


def top_allocations(snapshot_path: Path, n: int) -> list[str]:
    """The `n` largest allocation sites (by line, then by a 4-frame traceback) still live."""
    import tracemalloc

    snap = tracemalloc.Snapshot.load(str(snapshot_path)).filter_traces(
        [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, "<frozen *>")])
    stats = snap.statistics("lineno")
    total = sum(s.size for s in stats)
    lines = [f"traced total {total / 2**20:.1f} MB in {sum(s.count for s in stats)} blocks"]
    for s in stats[:n]:
        f = s.traceback[0]
        lines.append(f"  {s.size / 2**20:7.1f} MB {s.count:8d} blocks  {_short(f.filename)}:{f.lineno}")
    lines.append("by traceback:")
    for s in snap.statistics("traceback")[: max(3, n // 3)]:
        lines.append(f"  {s.size / 2**20:7.1f} MB {s.count:8d} blocks")
        lines.extend(f"      {_short(f.filename)}:{f.lineno}" for f in s.traceback)
    return lines


def _short(filename: str) -> str:
    for marker in ("site-packages/", "/src/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


def create_finished(custom, ns: str, n: int) -> None:
    """N AugmentationJobs, each completed as the operator would have left it (status written
    through the status subresource)."""
    def one(i: int) -> None:
        name, job_id = f"done-{i:05d}", str(uuid.uuid4())
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "AugmentationJob",
                "metadata": {"name": name, "labels": {"roboaug.dev/job-id": job_id,
                                                      "roboaug.dev/project-id": PROJECT}},
                "spec": {"project_id": PROJECT, "dataset_id": "lerobot/pusht", "job_id": job_id}}
        custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body)
        custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, ns, PLURAL, name, {"status": finished_status(name, job_id, i)})

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(one, range(n)))


def _last_words(log: Path) -> str:
    lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    return (lines[-1] if lines else "(no log)")[:400]


def run_finished(api, kubeconfig: Path, n: int, workdir: Path, env: dict,
                 sources: dict[str, str | None], settle_s: float = 10.0, trace: int = 0,
                 namespace: str | None = None, look_s: float = 1800,
                 overrides: dict[str, dict] | None = None) -> dict:
    """Memory with N finished jobs present: for each operator checkout in `sources` (label ->
    directory whose api/src and operator/src go first on PYTHONPATH; None: this one), start the
    operator, wait until it has looked at every job (its API request counter, one project read
    per finished job, Lease renewals aside, stops growing) and read its VmRSS and VmHWM.
    With `trace` > 0 the operator runs under tracemalloc (that many frames) and the run's
    figures include its top allocation sites once it has looked at every job.
    `namespace`: one that already holds the N finished jobs (an earlier run's, kept), used as
    it is and kept; else a fresh one is filled and deleted afterwards. `overrides`: label ->
    operator configuration keys set for that run (e.g. watch_initial_streaming)."""
    from kubernetes import client

    overrides = overrides or {}

    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    ns, keep = namespace or f"bench-mem-{uuid.uuid4().hex[:6]}", namespace is not None
    t0 = time.monotonic()
    if keep:
        have = len(custom.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL)["items"])
        if have < n:
            raise SystemExit(f"namespace {ns} holds {have} AugmentationJobs, not {n}")
    else:
        core.create_namespace({"metadata": {"name": ns}})
        create_finished(custom, ns, n)
    out: dict = {"n_finished": n, "namespace": ns, "create_s": round(time.monotonic() - t0, 1), "runs": {}}
    try:
        for label, src in sources.items():
            metrics_port = free_port()
            cfg = {"namespaces": [ns], "pools": {"cpu": {"node_selector": {"roboaug.dev/pool": "cpu"}},
                                                 "gpu": {"node_selector": {"roboaug.dev/pool": "gpu"}}},
                   "hub_token_secret": None,
                   # Memory, not failover, is measured here: on a loaded machine a leader that
                   # misses its renew deadline exits by design (item 13) and ends the run.
                   "leader_election": {"enabled": False},
                   "health_port": None, "metrics_port": metrics_port, "log_format": "json",
                   "log_level": "WARNING"}
            cfg.update(overrides.get(label) or {})
            cfg_path = workdir / f"operator-{label}.yaml"
            cfg_path.write_text(yaml.safe_dump(cfg))
            op_env = dict(env, KUBECONFIG=str(kubeconfig), ROBOAUG_OPERATOR_CONFIG=str(cfg_path))
            if src:
                paths = [str(Path(src) / d / "src") for d in ("api", "operator")]
                op_env["PYTHONPATH"] = os.pathsep.join(paths + [op_env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
            log = open(workdir / f"operator-{label}.log", "w")
            snapshot = workdir / f"operator-{label}.tracemalloc"
            cmd = [sys.executable, "-c", _TRACED_OPERATOR, str(snapshot), str(trace)] if trace \
                else [sys.executable, "-m", "roboaug.operator"]
            proc = subprocess.Popen(cmd, env=op_env, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
            url = f"http://127.0.0.1:{metrics_port}/metrics"
            try:
                t0 = time.monotonic()
                last, stable_since, first = -1.0, time.monotonic(), None
                exited = None
                while time.monotonic() - t0 < look_s:
                    if proc.poll() is not None:  # a figure too (e.g. streaming refused): the other runs go on
                        exited = f"operator exited ({proc.returncode}) after {time.monotonic() - t0:.0f} s: " + \
                            _last_words(workdir / f"operator-{label}.log")
                        break
                    try:  # the Lease's renewals go on for ever: not counted
                        count = scrape(url, "roboaug_api_requests_total") - \
                            scrape(url, "roboaug_api_requests_total", 'resource="leases"')
                    except OSError:
                        count = -1.0
                    if count > 0 and first is None:
                        first = time.monotonic() - t0
                    if count != last:
                        last, stable_since = count, time.monotonic()
                    elif count >= n and time.monotonic() - stable_since >= settle_s:
                        break
                    time.sleep(0.5)
                if exited:
                    out["runs"][label] = {"exited": exited}
                    continue
                mem = proc_memory_mb(proc.pid)
                # first_request_s: kopf hands no event to a handler before every object of the
                # initial listings is indexed; the operator's first request comes after that.
                out["runs"][label] = {**mem, "operator_requests": last,
                                      "first_request_s": round(first, 1) if first is not None else None,
                                      "seen_all_s": round(time.monotonic() - t0 - settle_s, 1),
                                      "looked_at_all": last >= n}
                if trace:
                    os.kill(proc.pid, signal.SIGUSR1)
                    deadline = time.monotonic() + 120
                    while not snapshot.exists() and time.monotonic() < deadline:
                        time.sleep(0.5)
                    out["runs"][label]["top_allocations"] = (
                        ["at the end:"] + top_allocations(snapshot, 25)
                        + (["at the largest traced moment:"] + top_allocations(Path(f"{snapshot}.peak"), 25)
                           if Path(f"{snapshot}.peak").exists() else []))
            finally:
                stop_operator(proc, log)
    finally:
        try:
            if not keep:
                core.delete_namespace(ns)
        except Exception:
            pass
    return out


def run_bench(api, kubeconfig: Path, n: int, timeout: float, workdir: Path, env: dict,
              profile: Path | None = None, leader_election: bool = True, src: str | None = None) -> dict:
    """The burst: N CRs at once in a fresh namespace holding their project (as teams run it),
    against the operator of this checkout, or of checkout `src` (its api/src and operator/src
    first on PYTHONPATH)."""
    from kubernetes import client

    core = client.CoreV1Api(api)
    custom = client.CustomObjectsApi(api)
    ns = f"bench-op-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": ns}})
    core.create_namespaced_service_account(ns, {"metadata": {"name": "roboaug-worker"}})
    try:
        custom.create_namespaced_custom_object(GROUP, VERSION, ns, "augmentationprojects", {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "AugmentationProject",
            "metadata": {"name": PROJECT}, "spec": {"allowed_sources": ["*"], "allowed_outputs": ["*"]}})
    except client.exceptions.ApiException as e:  # an existing cluster without the project CRD
        print(f"  (no AugmentationProject: {e.status} {e.reason}; jobs run without a project)")
    metrics_port = free_port()
    cfg = {
        "namespaces": [ns],
        "pools": {"cpu": {"node_selector": {"roboaug.dev/pool": "cpu"},
                          "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
                          "image": "example.invalid/roboaug-worker:bench",
                          "pod_annotations": {"roboaug.dev/kwok-delay": "1s"}},
                  "gpu": {"node_selector": {"roboaug.dev/pool": "gpu"}}},
        "hub_token_secret": None,
        "pending_timeout_seconds": 3600,
        "jobs_without_project": {"action": "allow"},
        "leader_election": {"enabled": leader_election, "lease_namespace": ns},
        "health_port": None,
        "metrics_port": metrics_port,
        "log_format": "json",
        "log_level": "WARNING",
    }
    cfg_path = workdir / "operator.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    log = open(workdir / "operator.log", "w")
    op_env = dict(env, KUBECONFIG=str(kubeconfig), ROBOAUG_OPERATOR_CONFIG=str(cfg_path))
    if src:
        paths = [str(Path(src) / d / "src") for d in ("api", "operator")]
        op_env["PYTHONPATH"] = os.pathsep.join(paths + [op_env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    prof = ["-m", "cProfile", "-o", str(profile)] if profile else []
    proc = subprocess.Popen([sys.executable, *prof, "-m", "roboaug.operator"], env=op_env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
    peak = {"rss": 0}
    sampling = threading.Event()

    def sample_rss():
        p = psutil.Process(proc.pid)
        while not sampling.is_set():
            try:
                peak["rss"] = max(peak["rss"], p.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(0.1)

    threading.Thread(target=sample_rss, daemon=True).start()
    try:
        deadline = time.monotonic() + 120
        while True:  # the operator is up once its metrics answer and it has watched the namespace
            try:
                scrape(metrics_url, "roboaug_api_requests_total")
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"operator did not start; see {workdir / 'operator.log'}")
                time.sleep(0.5)
        time.sleep(3)  # kopf's initial listing of the (empty) namespace
        jobs_w, crs_w = Watcher(kubeconfig, ns, "jobs"), Watcher(kubeconfig, ns, "crs")
        jobs_w.start(), crs_w.start()
        jobs_w.ready.wait(10), crs_w.ready.wait(10)
        time.sleep(1)
        op_before = scrape(metrics_url, "roboaug_api_requests_total")
        api_before = apiserver_requests(api)
        created: dict[str, float] = {}

        def create(i: int) -> None:
            name = f"bench-{i:04d}"
            job_id = str(uuid.uuid4())
            body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "AugmentationJob",
                    "metadata": {"name": name, "labels": {"roboaug.dev/job-id": job_id,
                                                          "roboaug.dev/project-id": PROJECT}},
                    "spec": {"project_id": PROJECT, "dataset_id": "lerobot/pusht", "job_id": job_id}}
            custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body)
            created[name] = time.time()

        t0 = time.time()  # wall clock: the watch processes stamp their events with it
        steal0 = cpu_steal_s()
        cpu0 = cpu_by_process(proc.pid)
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(create, range(n)))
        t_created = time.time()
        while len(jobs_w.seen) < n and time.time() - t_created < 60:
            time.sleep(0.05)
        steal1 = cpu_steal_s()
        cpu1 = cpu_by_process(proc.pid)
        t_seen = time.time()
        deadline = time.monotonic() + timeout
        while len(crs_w.final) < n and time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"operator exited ({proc.returncode}); see {workdir / 'operator.log'}")
            time.sleep(0.25)
        t_end = max((t for t, _ in crs_w.final.values()), default=time.time())
        cpu = psutil.Process(proc.pid).cpu_times()
        time.sleep(2)  # let trailing Events land in the counters
        op_after = scrape(metrics_url, "roboaug_api_requests_total")
        api_after = apiserver_requests(api)
        by_kind: dict[str, float] = {}
        text = urllib.request.urlopen(metrics_url, timeout=10).read().decode()
        for line in text.splitlines():
            if line.startswith("roboaug_api_requests_total{"):
                labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
                by_kind[f"{labels.get('verb')} {labels.get('resource')}"] = float(line.rsplit(" ", 1)[1])
        api_lat: dict[str, dict[str, float]] = {}
        for line in text.splitlines():
            for kind in ("sum", "count"):
                if line.startswith(f"roboaug_api_request_seconds_{kind}{{"):
                    labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
                    api_lat.setdefault(f"{labels.get('verb')} {labels.get('resource')}", {})[kind] = \
                        float(line.rsplit(" ", 1)[1])
        mean_ms = {k: round(1000 * v["sum"] / v["count"], 1) for k, v in sorted(api_lat.items())
                   if v.get("count")}
        lat = [jobs_w.seen[k] - created[k] for k in created if k in jobs_w.seen]
        # by creation order: a p95 that grows from the first third to the last is a queue
        # building up behind the burst; a flat one is per-job cost
        order = sorted((t, k) for k, t in created.items() if k in jobs_w.seen)
        thirds = [order[i * len(order) // 3:(i + 1) * len(order) // 3] for i in range(3)]
        p95_thirds = [round(pct([jobs_w.seen[k] - t for t, k in part], 0.95), 3) for part in thirds]
        statuses: dict[str, int] = {}
        for _t, s in crs_w.final.values():
            statuses[s] = statuses.get(s, 0) + 1
        jobs_w.stop(), crs_w.stop()
        return {
            "n": n,
            "completed": statuses.get("completed", 0),
            "final_statuses": statuses,
            "create_all_s": round(t_created - t0, 2),
            "all_completed_s": round(t_end - t0, 2),
            "cr_to_job_p50_s": round(pct(lat, 0.50), 3),
            "cr_to_job_p95_s": round(pct(lat, 0.95), 3),
            "cr_to_job_max_s": round(max(lat), 3) if lat else None,
            "cr_to_job_p95_by_creation_third_s": p95_thirds,
            "cpu_steal_s_during_burst": (round(steal1 - steal0, 2) if steal0 is not None and steal1 is not None
                                         else None),
            "jobs_seen": len(lat),
            "burst_s": round(t_seen - t0, 2),
            # CPU seconds each role used from the first create until every Job was seen
            "burst_cpu_s_by_process": {k: round(cpu1.get(k, 0.0) - v, 1) for k, v in
                                       sorted(cpu0.items(), key=lambda kv: kv[1] - cpu1.get(kv[0], 0.0))
                                       if cpu1.get(k, 0.0) - v >= 0.05},
            "operator_peak_rss_mb": round(peak["rss"] / 2**20, 1),
            "operator_cpu_s": round(cpu.user + cpu.system, 1),
            "requests_per_job": round((op_after - op_before) / n, 2),
            "operator_requests_by_kind": {k: v for k, v in sorted(by_kind.items())},
            "apiserver_requests_per_job": round((sum(api_after.values()) - sum(api_before.values())) / n, 2),
            "apiserver_requests_per_job_by_kind": {
                k: round((v - api_before.get(k, 0.0)) / n, 2) for k, v in sorted(api_after.items())
                if (v - api_before.get(k, 0.0)) / n >= 0.05},
            "operator_request_mean_ms": mean_ms,
            "cpus": os.cpu_count(),
            "loadavg_1m_at_end": round(os.getloadavg()[0], 1),
        }
    finally:
        sampling.set()
        stop_operator(proc, log)
        try:
            core.delete_namespace(ns)
        except Exception:
            pass


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--quick", action="store_true", help="N=20")
    ap.add_argument("--kubeconfig", type=Path, help="existing cluster (CRD installed, kwok cpu nodes)")
    ap.add_argument("--crd", type=Path, default=REPO / "manifests" / "crd" / "roboaug.dev_augmentationjobs.yaml",
                    help="CRD to apply on the fresh local cluster")
    ap.add_argument("--cpu-nodes", type=int, default=6, help="kwok cpu nodes on a fresh local cluster")
    ap.add_argument("--timeout", type=float, default=900)
    ap.add_argument("--json", type=Path, help="write the figures here too")
    ap.add_argument("--profile", type=Path, help="run the operator under cProfile, stats to this file")
    ap.add_argument("--no-leader-election", dest="leader_election", action="store_false",
                    help="one replica without its Lease: on a machine loaded far past its cores a Lease "
                         "GET can take longer than the renew deadline, and the operator then exits mid-run")
    ap.add_argument("--finished", type=int, metavar="N",
                    help="memory only: N finished jobs present, the operator's VmRSS/VmHWM")
    ap.add_argument("--operator-src", type=Path, metavar="DIR",
                    help="the burst against that checkout's operator alone (a fresh cluster each run "
                         "avoids --compare-src's order effect: the second run meets the first's objects)")
    ap.add_argument("--compare-src", type=Path, metavar="DIR",
                    help="also measure the operator of another checkout (e.g. a `git worktree` of the "
                         "previous commit), side by side: the burst (its own namespace, first) or --finished")
    ap.add_argument("--namespace", help="with --finished and --kubeconfig: a namespace that already "
                    "holds the N finished jobs (kept afterwards); default: a fresh one, filled and deleted")
    ap.add_argument("--look-s", type=float, default=1800,
                    help="with --finished: longest wait for the operator to look at every job (s)")
    ap.add_argument("--initial-streaming", choices=("auto", "on", "off", "both"),
                    help="with --finished: the operator's watch_initial_streaming (both: two runs of "
                         "this checkout, labelled list and stream); default: its configuration default "
                         "(auto: streamed where the apiserver supports it)")
    ap.add_argument("--tracemalloc", type=int, default=0, metavar="FRAMES",
                    help="with --finished: run the operator under tracemalloc and print its top "
                         "allocation sites (its RSS figures then include tracemalloc's own cost)")
    args = ap.parse_args(argv)
    n = 20 if args.quick else args.n
    from kubernetes import client, config

    workdir = Path(tempfile.mkdtemp(prefix="bench-operator-"))
    local = None
    env = dict(os.environ)
    try:
        if args.kubeconfig:
            kubeconfig = args.kubeconfig
        else:
            from roboaug.devstack.cluster import DEFAULT_NODES, LocalCluster

            nodes = [d for d in DEFAULT_NODES if d["labels"].get("roboaug.dev/pool") != "cpu"]
            template = next(d for d in DEFAULT_NODES if d["labels"].get("roboaug.dev/pool") == "cpu")
            for i in range(args.cpu_nodes):
                nodes.append({**template, "name": f"cpu-{i}",
                              "capacity": {"cpu": "64", "memory": "256Gi", "pods": "250"}})
            local = LocalCluster(nodes=nodes).start()
            kubeconfig = local.kubeconfig
            env = local.env()
            local.kubectl("apply", "--server-side", "-f", str(args.crd), "-f", str(PROJECT_CRD))
            local.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                          "crd/augmentationjobs.roboaug.dev", "crd/augmentationprojects.roboaug.dev")
        cfg = client.Configuration()
        config.load_kube_config(config_file=str(kubeconfig), client_configuration=cfg)
        cfg.connection_pool_maxsize = 32
        with client.ApiClient(cfg) as api:
            if args.finished:
                sources, overrides = {"this": None}, {}
                if args.initial_streaming == "both":  # the same checkout, LIST then streamed
                    sources = {"list": None, "stream": None}
                    overrides = {"list": {"watch_initial_streaming": "off"},
                                 "stream": {"watch_initial_streaming": "on"}}
                elif args.initial_streaming:
                    overrides = {"this": {"watch_initial_streaming": args.initial_streaming}}
                if args.compare_src:
                    sources = {"other": str(args.compare_src), **sources}
                result = run_finished(api, Path(kubeconfig), args.finished, workdir, env, sources,
                                      trace=args.tracemalloc, namespace=args.namespace,
                                      look_s=args.look_s, overrides=overrides)
            else:
                # each operator in its own fresh namespace, one after the other on the same
                # control plane (the other checkout first)
                runs = {}
                for label, src in ({"other": str(args.compare_src)} if args.compare_src else {}).items():
                    (workdir / label).mkdir()
                    runs[label] = run_bench(api, Path(kubeconfig), n, args.timeout, workdir / label, env,
                                            None, args.leader_election, src)
                result = run_bench(api, Path(kubeconfig), n, args.timeout, workdir, env, args.profile,
                                   args.leader_election, str(args.operator_src) if args.operator_src else None)
                if runs:
                    result["compared"] = runs
    finally:
        if local is not None:
            local.stop()
    if args.finished:
        print(f"operator memory with {result['n_finished']} finished jobs present "
              f"(created in {result['create_s']} s); target VmHWM < 300 MB")
        for label, run in result["runs"].items():
            if "exited" in run:
                print(f"  {label:6s} {run['exited']}")
                continue
            print(f"  {label:6s} VmRSS {run.get('VmRSS')} MB  VmHWM {run.get('VmHWM')} MB  "
                  f"(API requests {run['operator_requests']:.0f}, first after {run['first_request_s']} s, "
                  f"all looked at in {run['seen_all_s']} s{'' if run['looked_at_all'] else ': NOT ALL'})")
            for line in run.pop("top_allocations", ()):
                print(f"    {line}")
        print(json.dumps(result))
        if args.json:
            args.json.write_text(json.dumps(result, indent=2))
        return 0 if all((r.get("VmHWM") or 1e9) < 300 for label, r in result["runs"].items()
                        if label != "other") else 1
    for label, other in (result.get("compared") or {}).items():
        print(f"{label} checkout ({args.compare_src}): CR -> Job p50 {other['cr_to_job_p50_s']} s, "
              f"p95 {other['cr_to_job_p95_s']} s, by creation third "
              f"{' / '.join(str(x) for x in other['cr_to_job_p95_by_creation_third_s'])} s; all completed in "
              f"{other['all_completed_s']} s; operator requests/job {other['requests_per_job']}, CPU "
              f"{other['operator_cpu_s']} s")
        print(f"  this / {label}: CR -> Job p95 {ratio(result['cr_to_job_p95_s'], other['cr_to_job_p95_s'])}x, "
              f"p50 {ratio(result['cr_to_job_p50_s'], other['cr_to_job_p50_s'])}x, operator requests/job "
              f"{ratio(result['requests_per_job'], other['requests_per_job'])}x")
    print(f"operator bench: N={result['n']}  completed={result['completed']}  "
          f"statuses={result['final_statuses']}")
    print(f"  all completed in {result['all_completed_s']} s (creating the CRs took {result['create_all_s']} s)")
    print(f"  CR -> Job: p50 {result['cr_to_job_p50_s']} s, p95 {result['cr_to_job_p95_s']} s, "
          f"max {result['cr_to_job_max_s']} s  (target p95 < 2 s)")
    print(f"  operator peak RSS {result['operator_peak_rss_mb']} MB (target < 300 MB), "
          f"CPU {result['operator_cpu_s']} s")
    print(f"  operator API requests per job {result['requests_per_job']} "
          f"{result['operator_requests_by_kind']}")
    print(f"  apiserver requests per job, all clients: {result['apiserver_requests_per_job']} "
          f"{result['apiserver_requests_per_job_by_kind']}")
    print(f"  operator request latency, mean ms: {result['operator_request_mean_ms']}")
    print(f"  CR -> Job p95 by creation order (first / middle / last third): "
          f"{' / '.join(str(x) for x in result['cr_to_job_p95_by_creation_third_s'])} s")
    print(f"  CPU seconds by process during the burst ({result['burst_s']} s, "
          f"{result['cpus']} CPUs): {result['burst_cpu_s_by_process']}")
    print(f"  machine: {result['cpus']} CPUs, 1-min load at end {result['loadavg_1m_at_end']}, "
          f"CPU steal during the burst {result['cpu_steal_s_during_burst']} s (time the host gave other guests)")
    print(json.dumps(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0 if result["completed"] == n else 1


if __name__ == "__main__":
    sys.exit(main())
