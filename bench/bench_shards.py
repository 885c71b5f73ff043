"""Sharded-job scaling, real, through the whole stack (issue 16): a pusht-sized LeRobot v3.0
dataset x 3 copies as (a) 1 shard on one 1-CPU local node and (b) 2 shards on two 1-CPU local
nodes, one after the other on the same dev stack (operator, test Hub, real kube-scheduler, two dev
node agents each holding its pods to one CPU: LocalCluster local_nodes).

    .venv/bin/python bench/bench_shards.py                 # 206 episodes x 125 = 25,750 frames
    .venv/bin/python bench/bench_shards.py --episodes 24   # a quick run (3,000 frames)

Printed, from one run: per job the wall time (CR created -> status completed, observed by this
process), throughput (augmented frames written / wall s), where the time went (the CR's phase
history; each pod's node, start latency and run time from a watch on the pods), the ratio of
(b)'s throughput to (a)'s (target >= 1.8), the finalize pod's run time over (b)'s wall time
(target <= 5 %), and whether the two outputs are byte-identical (the product's promise for any
shard count; every file of both is downloaded from the Hub and compared by SHA-256).
The dataset: sample_dataset's pusht-like scene (96x96 AV1, 10 fps, state/action float32[2]),
all episodes in one data file and one mp4, as lerobot/pusht.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from roboaug.devstack import sample_dataset  # noqa: E402
from roboaug.devstack.stack import DevStack  # noqa: E402
from roboaug.devstack.nodeagent import LOG_ANNOTATION  # noqa: E402
from roboaug.devstack.synthetic import make_lerobot  # noqa: E402

GROUP, VERSION, PLURAL = "roboaug.dev", "v1alpha1", "augmentationjobs"
PROJECT = "2489e9ad-2ee2-8e00-8ec9-32d5f69181c0"
SOURCE = "bench/pusht-sized"
COPIES = 3


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def make_source(root: Path, episodes: int, length: int) -> Path:
    """pusht-sized: `episodes` x `length` frames, the sample's scene (its start point cycles over
    8 episodes, so every episode stays in the picture)."""
    def progress(k: int) -> float:
        return k / (length - 1)

    def render(cam, ep, k, h, w):
        return sample_dataset.scene(progress(k), ep % 8)[0]

    def signals(ep, n):
        import numpy as np

        agent = np.array([sample_dataset.scene(progress(k), ep % 8)[1] for k in range(n)])
        return (agent * 5.3).astype(np.float32), ((agent + 2) * 5.3).astype(np.float32)

    return make_lerobot(root, "v3.0", lengths=(length,) * episodes, cameras={sample_dataset.VIDEO_KEY: "av1"},
                        episodes_per_file=episodes, size=(sample_dataset.SIZE,) * 2, fps=sample_dataset.FPS,
                        quantiles=False, render=render, signals=signals, tasks=[sample_dataset.TASK],
                        robot_type="2d pointer")


class PodWatch:
    """Pods of one namespace as this process sees them: first seen, Running, ended (monotonic s)."""

    def __init__(self, api_client, namespace: str):
        from kubernetes import client

        self.core = client.CoreV1Api(api_client)
        self.ns = namespace
        self.pods: dict[str, dict] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        from kubernetes import watch

        while not self.stop.is_set():
            try:
                for ev in watch.Watch().stream(self.core.list_namespaced_pod, self.ns, timeout_seconds=5):
                    self._see(ev["object"])
            except Exception:  # noqa: BLE001 - the watch reconnects
                time.sleep(0.2)

    def _see(self, pod) -> None:
        t = time.monotonic()
        rec = self.pods.setdefault(pod.metadata.name, {"seen": t, "job": (pod.metadata.labels or {}).get("job-name")})
        rec["node"] = pod.spec.node_name or rec.get("node")
        rec["log"] = (pod.metadata.annotations or {}).get(LOG_ANNOTATION) or rec.get("log")
        phase = pod.status.phase if pod.status else None
        if phase == "Running":
            rec.setdefault("running", t)
        if phase in ("Succeeded", "Failed"):
            rec.setdefault("running", t)
            rec.setdefault("ended", t)
            rec["phase"] = phase


def run_job(stack: DevStack, custom, watcher: PodWatch, name: str, shards: int, output: str,
            timeout: float) -> dict:
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "AugmentationJob", "metadata": {"name": name},
            "spec": {"project_id": PROJECT, "dataset_id": SOURCE, "augment_copies": COPIES,
                     "output_dataset_id": output, "shards": shards}}
    t0 = time.monotonic()
    custom.create_namespaced_custom_object(GROUP, VERSION, stack.namespace, PLURAL, body)
    deadline = t0 + timeout
    while True:
        cr = custom.get_namespaced_custom_object(GROUP, VERSION, stack.namespace, PLURAL, name)
        status = (cr.get("status") or {}).get("status")
        if status in ("completed", "failed", "cancelled"):
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"{name}: not finished after {timeout}s: {cr.get('status')}")
        if not stack.operator.alive():
            raise SystemExit(f"operator exited:\n{stack.operator.tail()}")
        time.sleep(0.25)
    wall = time.monotonic() - t0
    if status != "completed":
        raise SystemExit(f"{name} {status}: {cr['status'].get('error')}")
    time.sleep(1)  # the pod watch sees the last pod's end
    pods = {k: v for k, v in watcher.pods.items() if (v.get("job") or "").startswith(name + "-")}
    return {"name": name, "shards": shards, "wall": wall, "t0": t0, "cr": cr, "pods": pods}


def _seconds(a: str, b: str) -> float:
    from datetime import datetime

    def parse(x):
        return datetime.fromisoformat(x.replace("Z", "+00:00"))
    return (parse(b) - parse(a)).total_seconds()


def worker_phases(log_path) -> str:
    """The worker's own phases in a pod (its last progress line on stdout), e.g. 'downloading 3.1 s'."""
    import json

    last = None
    try:
        for line in Path(log_path).read_text(errors="replace").splitlines():
            if '"progress"' in line:
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if rec.get("event") == "progress":
                    last = rec
    except (OSError, TypeError):
        return "no log"
    if not last:
        return "no progress line"
    return ", ".join(f"{ph['name']} {_seconds(ph['started_at'], ph['completed_at']):.1f} s"
                     for ph in last.get("phases") or [] if ph.get("completed_at"))


def report(r: dict, frames: int) -> None:
    st = r["cr"]["status"]
    print(f"\n({r['name']}) {r['shards']} shard(s): wall {r['wall']:.1f} s, {frames / r['wall']:.0f} frames/s "
          f"({frames} augmented frames)")
    for ph in st.get("phases") or []:
        if ph.get("started_at") and ph.get("completed_at"):
            d = _seconds(ph["started_at"], ph["completed_at"])
            print(f"    phase {ph['name']:<12} {d:6.0f} s (status timestamps, 1 s resolution)")
    for name, p in sorted(r["pods"].items(), key=lambda kv: kv[1]["seen"]):
        run = p.get("ended", 0) - p.get("running", 0)
        print(f"    pod {name:<34} node {p.get('node')}: created +{p['seen'] - r['t0']:5.1f} s, running "
              f"+{p.get('running', 0) - r['t0']:5.1f} s, ran {run:6.1f} s -> {p.get('phase')}")
        print(f"        worker: {worker_phases(p.get('log'))}")


def digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and ".cache" not in p.relative_to(root).parts}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--episodes", type=int, default=206, help="source episodes (pusht: 206)")
    ap.add_argument("--length", type=int, default=125, help="frames per episode (206 x 125 = pusht's 25,750)")
    ap.add_argument("--timeout", type=float, default=3600, help="per job, seconds")
    args = ap.parse_args()
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        raise SystemExit(f"needs 2 CPUs this process may use, has {cpus}")
    print(f"start: {uptime()}")
    tmp = Path(tempfile.mkdtemp(prefix="bench-shards-"))
    try:
        t = time.monotonic()
        src = make_source(tmp / "src", args.episodes, args.length)
        src_frames = args.episodes * args.length
        print(f"source: {args.episodes} episodes x {args.length} = {src_frames} frames, 96x96 AV1 "
              f"({sum(p.stat().st_size for p in src.rglob('*') if p.is_file()) / 1e6:.1f} MB), "
              f"written in {time.monotonic() - t:.0f} s")
        nodes = [{"name": "local-0", "cpus": [cpus[0]]}, {"name": "local-1", "cpus": [cpus[1]]}]
        with DevStack(local_nodes=nodes) as stack:
            from kubernetes import client

            stack.hub.seed(SOURCE, {str(p.relative_to(src)): p.read_bytes()
                                    for p in sorted(src.rglob("*")) if p.is_file()})
            api = stack.cluster.api_client()
            custom = client.CustomObjectsApi(api)
            watcher = PodWatch(stack.cluster.api_client(), stack.namespace)
            print(f"stack up in {stack.timings['total_s']:.0f} s; local nodes {nodes}")
            frames = COPIES * src_frames
            a = run_job(stack, custom, watcher, "one-shard", 1, "bench/pusht-x3-1shard", args.timeout)
            report(a, frames)
            b = run_job(stack, custom, watcher, "two-shards", 2, "bench/pusht-x3-2shards", args.timeout)
            report(b, frames)
            watcher.stop.set()

            nodes_b = {p.get("node") for n, p in b["pods"].items() if p.get("job") == "two-shards-worker"}
            fin = [p for p in b["pods"].values() if p.get("job") == "two-shards-finalize"]
            fin_s = sum(p["ended"] - p["running"] for p in fin)
            shard_end = max((p["ended"] for p in b["pods"].values() if p.get("job") == "two-shards-worker"), default=b["t0"])
            tail = b["t0"] + b["wall"] - shard_end
            ratio = a["wall"] / b["wall"]
            print(f"\nthroughput ratio (b)/(a): {ratio:.2f}x  (target >= 1.8; shard pods on nodes {sorted(map(str, nodes_b))})")
            print(f"finalize pod run time: {fin_s:.1f} s = {100 * fin_s / b['wall']:.1f} % of (b)'s wall time "
                  f"(target <= 5 %); last shard's end -> completed: {tail:.1f} s = {100 * tail / b['wall']:.1f} %")

            out_a, out_b = tmp / "out-a", tmp / "out-b"
            da = digests(stack.download_output(a["cr"]["status"]["augmented_dataset_id"], out_a))
            db = digests(stack.download_output(b["cr"]["status"]["augmented_dataset_id"], out_b))
            differ = sorted(k for k in set(da) | set(db) if da.get(k) != db.get(k))
            print(f"outputs byte-identical: {not differ} ({len(da)} files vs {len(db)})"
                  + (f"; differ: {differ[:10]}" if differ else ""))
        print(f"end: {uptime()}")
        return 0 if not differ else 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
