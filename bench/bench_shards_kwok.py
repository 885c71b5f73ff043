"""Operator at scale, simulated: one AugmentationJob planned as N shards on kwok nodes (issue 16).

    python bench/bench_shards_kwok.py                       # N = 1,000 then 10,000, side by side
    python bench/bench_shards_kwok.py --shards 1000         # one size
    python bench/bench_shards_kwok.py --kubeconfig KC --shards 200   # an existing cluster (CRD, kwok cpu nodes)

Each size runs on a fresh devstack LocalCluster (real kube-apiserver, controller-manager with the
Job controller, scheduler, kwok nodes that "run" pods with devstack/kwok/stages.yaml) and a fresh
operator process (`python -m roboaug.operator`, as in production). One CR with `shards: N` and
`max_parallelism` at its ceiling; the pool's bound is set to its ceiling too, so the Indexed
Job's parallelism is the least of those and N (printed with the reason).

Figures, per size, from one run:
  cr_to_job_s           CR create returned -> the shards' Indexed Job seen
  cr_to_all_pods_s      CR create returned -> a pod seen for every one of the N indexes
  cr_to_finalize_s      -> the `<cr>-finalize` Job seen (every shard succeeded)
  cr_to_completed_s     -> the CR's status `completed` (the finalize pod also runs on kwok)
  operator_requests_per_shard   the operator's own API requests (its `roboaug_api_requests_total`
                        counter: every call besides kopf's list/watch streams) / N, by verb+resource
  apiserver_requests_per_shard  every client's requests (apiserver_request_total: the Job
                        controller's pod creates, the scheduler's binds, kwok's status writes) / N
  status_writes         the operator's PATCH augmentationjobs/status: total, mean per second over
                        the run, the most in any 1 s sample and in any 10 s window (the operator
                        claims a bound per job whatever N: `shard_progress_writes_per_second`)
  operator VmRSS / VmHWM (/proc at the end) and its CPU seconds
kwok pods never run the worker, so no shard reports frames: what this measures is the
operator's cost per shard pod (watch events, decisions, status writes), not progress reports.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import psutil
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_operator import (  # noqa: E402  (bench/ is not a package)
    PROJECT, apiserver_requests, cpu_steal_s, free_port, proc_memory_mb, scrape, stop_operator)

from roboaug.api.models import GROUP, PLURAL, TERMINAL_STATUSES, VERSION  # noqa: E402
from roboaug.api.models.spec import MAX_PARALLELISM  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TERMINAL = {s.value for s in TERMINAL_STATUSES}
INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
STATUS = 'resource="augmentationjobs/status"'
POOL_CEILING = 1000  # config.Pool.max_parallelism's upper bound (le=1000)


def _watch_pods(kubeconfig: str, namespace: str, worker_job: str, out, ready) -> None:
    """Child process (the parent's sampling threads must not delay it): the first sighting of a
    pod for each index of `worker_job`, and of each other Job-owned pod, as (kind, key, time)."""
    from kubernetes import client, config, watch

    core = client.CoreV1Api(config.new_client_from_config(config_file=kubeconfig))
    seen: set = set()
    rv = None
    while True:
        try:
            kw = {"timeout_seconds": 120, "deserialize": False}
            if rv:
                kw["resource_version"] = rv
            ready.set()
            for ev in watch.Watch().stream(core.list_namespaced_pod, namespace, **kw):
                now = time.time()
                meta = ev["object"]["metadata"]
                rv = meta["resourceVersion"]
                job = (meta.get("labels") or {}).get("job-name") or ""
                if job == worker_job:
                    key = ("shard", (meta.get("annotations") or {}).get(INDEX_ANNOTATION))
                else:
                    key = ("other", job or meta["name"])
                if key not in seen:
                    seen.add(key)
                    out.put((*key, now))
        except Exception:  # expired or reset: resume from the last version (or relist)
            rv = None
            time.sleep(0.2)


class Sampler:
    """Every `every` s: the operator's status-write counter, its RSS, and the CR's status."""

    def __init__(self, metrics_url: str, pid: int, custom, ns: str, name: str, every: float = 1.0):
        self.url, self.pid, self.custom, self.ns, self.name, self.every = metrics_url, pid, custom, ns, name, every
        self.writes: list[tuple[float, float]] = []  # (time, cumulative status PATCHes)
        self.peak_rss = 0
        self.status: dict = {}
        self.terminal_at: float | None = None
        self.job_seen_at: float | None = None
        self.finalize_seen_at: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> "Sampler":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _loop(self) -> None:
        proc = psutil.Process(self.pid)
        while not self._stop.is_set():
            t = time.time()
            try:
                self.writes.append((t, scrape(self.url, "roboaug_api_requests_total", STATUS)))
                self.peak_rss = max(self.peak_rss, proc.memory_info().rss)
                cr = self.custom.get_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, self.name)
                self.status = cr.get("status") or {}
                if self.status.get("status") in TERMINAL and self.terminal_at is None:
                    self.terminal_at = t
            except Exception:  # noqa: BLE001 - one missed sample is fine
                pass
            self._stop.wait(max(0.0, self.every - (time.time() - t)))

    def rates(self, t_from: float, t_to: float) -> dict:
        pts = [(t, c) for t, c in self.writes if t_from - self.every <= t <= t_to + self.every]
        if len(pts) < 2:
            return {}
        per_sample = [(c1 - c0) / (t1 - t0) for (t0, c0), (t1, c1) in zip(pts, pts[1:]) if t1 > t0]
        win = []
        j = 0
        for i, (t1, c1) in enumerate(pts):
            while pts[j][0] < t1 - 10:
                j += 1
            if t1 - pts[j][0] >= 9:
                win.append((c1 - pts[j][1]) / (t1 - pts[j][0]))
        total = pts[-1][1] - pts[0][1]
        return {"status_writes": int(total),
                "status_writes_per_s_mean": round(total / max(1e-9, pts[-1][0] - pts[0][0]), 2),
                "status_writes_per_s_max_1s": round(max(per_sample), 2),
                "status_writes_per_s_max_10s": round(max(win), 2) if win else None}


def run_size(api, kubeconfig: Path, n: int, workdir: Path, env: dict, delay: str, timeout: float,
             log=print) -> dict:
    from kubernetes import client
    import multiprocessing as mp
    import queue as queue_mod

    core, custom, batch = client.CoreV1Api(api), client.CustomObjectsApi(api), client.BatchV1Api(api)
    ns = f"bench-shards-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": ns}})
    metrics_port = free_port()
    cfg = {
        "namespaces": [ns],
        "pools": {"cpu": {"node_selector": {"roboaug.dev/pool": "cpu"},
                          "resources": {"requests": {"cpu": "1m", "memory": "1Mi"}},
                          "image": "example.invalid/roboaug-worker:bench",
                          "max_parallelism": POOL_CEILING,
                          "pod_annotations": {"roboaug.dev/kwok-delay": delay}},
                  "gpu": {"node_selector": {"roboaug.dev/pool": "gpu"}}},
        "hub_token_secret": None,
        "pending_timeout_seconds": 3600,
        # one replica without its Lease: on this loaded 2-core machine a Lease GET took over
        # 5 s and the operator exited at its renew deadline (bench_operator --no-leader-election)
        "leader_election": {"enabled": False},
        "health_port": None, "metrics_port": metrics_port,
        "log_format": "json", "log_level": "WARNING",
    }
    cfg_path = workdir / f"operator-{n}.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    oplog = open(workdir / f"operator-{n}.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "roboaug.operator"],
                            env=dict(env, KUBECONFIG=str(kubeconfig), ROBOAUG_OPERATOR_CONFIG=str(cfg_path)),
                            stdout=oplog, stderr=subprocess.STDOUT, start_new_session=True)
    metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
    name = f"shards-{n}"
    ctx = mp.get_context("spawn")
    q, ready = ctx.Queue(), ctx.Event()
    watcher = ctx.Process(target=_watch_pods, daemon=True,
                          args=(str(kubeconfig), ns, f"{name}-worker", q, ready))
    sampler = None
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                scrape(metrics_url, "roboaug_api_requests_total")
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"operator did not start; see {workdir}/operator-{n}.log")
                time.sleep(0.5)
        watcher.start()
        ready.wait(30)
        time.sleep(3)  # kopf's initial listing of the (empty) namespace
        op_before = scrape(metrics_url, "roboaug_api_requests_total")
        api_before = apiserver_requests(api)
        cpu0 = psutil.Process(proc.pid).cpu_times()
        steal0 = cpu_steal_s()
        job_id = str(uuid.uuid4())
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "AugmentationJob",
                "metadata": {"name": name, "labels": {"roboaug.dev/job-id": job_id,
                                                      "roboaug.dev/project-id": PROJECT}},
                "spec": {"project_id": PROJECT, "dataset_id": "lerobot/pusht", "job_id": job_id,
                         "shards": n, "max_parallelism": MAX_PARALLELISM}}
        t0 = time.time()
        custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body)
        t_created = time.time()
        sampler = Sampler(metrics_url, proc.pid, custom, ns, name).start()
        shard_seen: dict[str, float] = {}
        other_seen: dict[str, float] = {}
        t_job = None
        job_spec = {}
        end = time.monotonic() + timeout
        next_note = time.monotonic() + 30
        while time.monotonic() < end and sampler.terminal_at is None:
            # at most 0.5 s of draining: thousands of pod sightings keep the queue busy, and the
            # Job poll below must still run (it measured 75 s of "CR -> Job" at 10,000 shards)
            drain_end = time.monotonic() + 0.5
            try:
                while time.monotonic() < drain_end:
                    kind, key, t = q.get(timeout=max(0.01, drain_end - time.monotonic()))
                    (shard_seen if kind == "shard" else other_seen).setdefault(key, t)
            except queue_mod.Empty:
                pass
            if proc.poll() is not None:
                raise RuntimeError(f"operator exited ({proc.returncode}); see {workdir}/operator-{n}.log")
            if t_job is None:
                try:
                    j = batch.read_namespaced_job(f"{name}-worker", ns)
                    t_job = time.time()  # polled: within 0.5 s of its creation
                    job_spec = {"parallelism": j.spec.parallelism, "completions": j.spec.completions}
                except client.ApiException:
                    pass
            if time.monotonic() > next_note:
                next_note += 30
                log(f"  [{n}] {time.time() - t0:.0f}s: {len(shard_seen)} shard pods seen, "
                    f"shards status {sampler.status.get('shards')}, load {os.getloadavg()[0]:.1f}")
        t_end = time.time()
        cpu1 = psutil.Process(proc.pid).cpu_times()
        steal1 = cpu_steal_s()
        mem = proc_memory_mb(proc.pid)
        time.sleep(2)  # trailing requests land in the counters
        sampler.stop()
        op_after = scrape(metrics_url, "roboaug_api_requests_total")
        api_after = apiserver_requests(api)
        by_kind: dict[str, float] = {}
        import re

        for line in __import__("urllib.request").request.urlopen(metrics_url, timeout=10).read().decode().splitlines():
            if line.startswith("roboaug_api_requests_total{"):
                labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
                by_kind[f"{labels.get('verb')} {labels.get('resource')}"] = float(line.rsplit(" ", 1)[1])
        status = sampler.status
        plan = status.get("shards") or {}
        all_pods = max(shard_seen.values()) if len(shard_seen) >= n else None
        fin = next((t for k, t in other_seen.items() if k.endswith("-finalize")), None)
        rates = sampler.rates(t_created, sampler.terminal_at or t_end)
        return {
            "shards": n,
            "final_status": status.get("status"),
            "phases": [p.get("name") for p in status.get("phases") or []],
            "parallelism_status": plan.get("parallelism"),
            "job_spec": job_spec,
            "cr_to_job_s": round(t_job - t_created, 2) if t_job else None,
            "shard_pods_seen": len(shard_seen),
            "cr_to_all_pods_s": round(all_pods - t_created, 1) if all_pods else None,
            "pods_per_s": round(n / (all_pods - t_created), 1) if all_pods else None,
            "cr_to_finalize_pod_s": round(fin - t_created, 1) if fin else None,
            "cr_to_completed_s": round(sampler.terminal_at - t_created, 1) if sampler.terminal_at else None,
            "operator_requests": int(op_after - op_before),
            "operator_requests_per_shard": round((op_after - op_before) / n, 3),
            "operator_requests_by_kind": {k: int(v) for k, v in sorted(by_kind.items())},
            "apiserver_requests_per_shard": round((sum(api_after.values()) - sum(api_before.values())) / n, 2),
            "apiserver_requests_per_shard_by_kind": {
                k: round((v - api_before.get(k, 0.0)) / n, 2) for k, v in sorted(api_after.items())
                if (v - api_before.get(k, 0.0)) / n >= 0.05},
            **rates,
            "operator_vmrss_mb": mem.get("VmRSS"), "operator_vmhwm_mb": mem.get("VmHWM"),
            "operator_cpu_s": round(cpu1.user + cpu1.system - cpu0.user - cpu0.system, 1),
            "cpu_steal_s": round(steal1 - steal0, 1) if steal0 is not None and steal1 is not None else None,
            "loadavg_1m_at_end": round(os.getloadavg()[0], 1),
        }
    finally:
        if sampler is not None:
            sampler.stop()
        if watcher.is_alive():
            watcher.terminate()
            watcher.join(5)
        stop_operator(proc, oplog)


def cluster_nodes(total_pods: int) -> list[dict]:
    """kwok cpu nodes holding `total_pods` pods at once (250 per node, as in bench_operator)."""
    from roboaug.devstack.cluster import DEFAULT_NODES

    nodes = [d for d in DEFAULT_NODES if d["labels"].get("roboaug.dev/pool") != "cpu"]
    template = next(d for d in DEFAULT_NODES if d["labels"].get("roboaug.dev/pool") == "cpu")
    for i in range(-(-total_pods // 250)):
        nodes.append({**template, "name": f"cpu-{i}", "capacity": {"cpu": "64", "memory": "256Gi", "pods": "250"}})
    return nodes


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shards", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--kwok-delay", default="1s", help="how long each kwok shard pod 'runs' (Go duration)")
    ap.add_argument("--timeout", type=float, default=1800, help="per size: longest wait for the job to end (s)")
    ap.add_argument("--kubeconfig", type=Path, help="existing cluster (CRD installed, kwok cpu nodes)")
    ap.add_argument("--crd", type=Path, default=REPO / "manifests" / "crd" / "roboaug.dev_augmentationjobs.yaml")
    ap.add_argument("--json", type=Path, help="write the figures here too")
    args = ap.parse_args(argv)
    from kubernetes import client, config

    workdir = Path(tempfile.mkdtemp(prefix="bench-shards-"))
    results = []
    for n in args.shards:
        local = None
        env = dict(os.environ)
        load0 = os.getloadavg()
        try:
            if args.kubeconfig:
                kubeconfig = args.kubeconfig
            else:
                from roboaug.devstack.cluster import LocalCluster

                local = LocalCluster(nodes=cluster_nodes(min(n, MAX_PARALLELISM, POOL_CEILING) + 10)).start()
                kubeconfig, env = local.kubeconfig, local.env()
                local.kubectl("apply", "--server-side", "-f", str(args.crd))
                # at load 10-13 on 2 cores `kubectl wait` failed at once (the CRD not listed
                # yet) or after 60 s: try again for up to 5 minutes
                deadline = time.monotonic() + 300
                while True:
                    r = local.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                                      "crd/augmentationjobs.roboaug.dev", check=False, timeout=90)
                    if r.returncode == 0:
                        break
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"CRD not Established: {r.stderr.strip()}")
                    print(f"  (CRD not Established yet: {r.stderr.strip()[:200]})", flush=True)
                    time.sleep(2)
            cfg = client.Configuration()
            config.load_kube_config(config_file=str(kubeconfig), client_configuration=cfg)
            with client.ApiClient(cfg) as api:
                print(f"shards={n}: running (load {load0[0]:.1f} {load0[1]:.1f} {load0[2]:.1f})", flush=True)
                r = run_size(api, Path(kubeconfig), n, workdir, env, args.kwok_delay, args.timeout,
                             log=lambda s: print(s, flush=True))
                r["loadavg_at_start"] = [round(x, 1) for x in load0]
                results.append(r)
        finally:
            if local is not None:
                local.stop()
    print("\nsharded job on kwok nodes (one CR; operator process; per-shard figures side by side)")
    for r in results:
        js = r["job_spec"]
        print(f"  shards={r['shards']}: Indexed Job parallelism {js.get('parallelism')} (status.shards "
              f"{r['parallelism_status']}) = min(shards {r['shards']}, spec max_parallelism {MAX_PARALLELISM} "
              f"[its ceiling], pool max_parallelism {POOL_CEILING} [its ceiling], no project limit)")
    rows = [
        ("final status", "final_status"), ("CR -> Indexed Job (s)", "cr_to_job_s"),
        ("CR -> all shard pods created (s)", "cr_to_all_pods_s"), ("shard pods created per s", "pods_per_s"),
        ("CR -> finalize pod (s)", "cr_to_finalize_pod_s"), ("CR -> completed (s)", "cr_to_completed_s"),
        ("operator requests / shard", "operator_requests_per_shard"),
        ("apiserver requests / shard (all clients)", "apiserver_requests_per_shard"),
        ("status writes (total)", "status_writes"), ("status writes/s, mean", "status_writes_per_s_mean"),
        ("status writes/s, max 10 s window", "status_writes_per_s_max_10s"),
        ("status writes/s, max 1 s sample", "status_writes_per_s_max_1s"),
        ("operator VmRSS at end (MB)", "operator_vmrss_mb"), ("operator VmHWM (MB)", "operator_vmhwm_mb"),
        ("operator CPU (s)", "operator_cpu_s"), ("CPU steal during run (s)", "cpu_steal_s"),
        ("1-min load at start / end", None),
    ]
    print(f"  {'':44s}" + "".join(f"{'N=' + str(r['shards']):>14s}" for r in results))
    for label, key in rows:
        cells = [(f"{r['loadavg_at_start'][0]} / {r['loadavg_1m_at_end']}" if key is None else str(r.get(key)))
                 for r in results]
        print(f"  {label:44s}" + "".join(f"{c:>14s}" for c in cells))
    for r in results:
        print(f"  N={r['shards']} operator requests by kind: {r['operator_requests_by_kind']}")
        print(f"  N={r['shards']} apiserver requests / shard by kind: {r['apiserver_requests_per_shard_by_kind']}")
    print(f"  machine: {os.cpu_count()} CPUs; logs in {workdir}")
    print(json.dumps(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0 if all(r["final_status"] == "completed" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
