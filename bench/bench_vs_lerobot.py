"""Side by side: the worker's default lighting job against what a LeRobot user writes instead.

    .venv/bin/python bench/bench_vs_lerobot.py                  # 40 pusht-like episodes (minutes)
    .venv/bin/python bench/bench_vs_lerobot.py --episodes 2 --length 20   # smoke run
    .venv/bin/python bench/bench_vs_lerobot.py --source DIR      # a local LeRobot v3.0 dataset

The job: 3 lighting copies of every episode added to the dataset (the request's defaults:
augment_transforms lighting, augment_copies 3, dataset mode copy), so the output holds 4x the
source's frames. Both sides run as child processes on the same source and write AV1 with the same
encoder settings (libsvtav1 preset 12, crf 30, g 2: lerobot's):
- lerobot: bench/lerobot_augment.py in the lerobot venv (lerobot 0.4.4; `./dev setup-lerobot` builds
  it at ~/.cache/roboaug/lerobot-venv, or ROBOAUG_LEROBOT_VENV): LeRobotDataset read, torchvision
  ColorJitter on every frame, LeRobotDataset.create + add_frame + save_episode with streaming
  encoding, originals merged in with lerobot's merge_datasets (its docstring says what maps to
  what, and what does not);
- ours: the worker command (`python -m roboaug.worker`, its default processes) on file:// in and out.

Figures, for each side: wall seconds, output frames/s, CPU seconds (user + system of the child and
its descendants, from os.wait4), peak RSS of its largest process (ru_maxrss; the launching process
stays small, as Linux carries ru_maxrss across exec) and peak total PSS of its process tree
(sampled every 0.2 s from /proc: what the job as a whole holds, shared pages counted once). Then the
ratios lerobot / ours of wall time and CPU time. CPU time is the figure to trust on a machine other
people load; the wall ratio is the one a user feels on an idle one. Both outputs are loaded with
lerobot's LeRobotDataset (first and last frame of every episode decoded) and their frame counts
compared with each other and with 4x the source. Last, the encoder's own CPU for the same frames
(decode the source, encode it `copies` times, nothing else but one Python start, as each side has):
neither side can go below it, so lerobot's CPU over it is the most the CPU ratio could be.

The source is the devstack pusht look-alike (sample_dataset.py: 96x96 AV1 at 10 fps); its
meta/tasks.parquet is rewritten the way lerobot writes it (a pandas index) because devstack's
writer stores the index column without pandas' metadata, which lerobot then reads as task 0
(so add_frame would record task "0" and merge_datasets would fail on the mixed task types).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
LEROBOT_SCRIPT = HERE / "lerobot_augment.py"
TARGET_RATIO = 10.0
PROJECT = "00000000-0000-4000-8000-000000000001"
JOB = "00000000-0000-4000-8000-00000000beef"


def lerobot_python() -> Path | None:
    """The lerobot venv's interpreter, when `./dev setup-lerobot` finished installing it."""
    venv = Path(os.environ.get("ROBOAUG_LEROBOT_VENV") or Path.home() / ".cache/roboaug/lerobot-venv")
    py = venv / "bin" / "python"
    return py if py.exists() and any(venv.glob(".installed-*")) else None


# Runs in a child interpreter so that this process stays small (see ru_maxrss above).
_BUILD = """
import sys
from pathlib import Path
import pandas as pd, pyarrow.parquet as pq
from roboaug.devstack.sample_dataset import write_sample_dataset
root = write_sample_dataset(Path(sys.argv[1]), episodes=int(sys.argv[2]), length=int(sys.argv[3]))
p = root / "meta/tasks.parquet"
t = pq.read_table(p).to_pydict()
pd.DataFrame({"task_index": t["task_index"]}, index=pd.Index(t["__index_level_0__"])).to_parquet(p)
"""


def build_source(root: Path, episodes: int, length: int) -> Path:
    if (root / "meta/info.json").exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    subprocess.run([sys.executable, "-c", _BUILD, str(root), str(episodes), str(length)], check=True)
    return root


# The encoder's own cost for the same work: decode every source video, encode its frames `copies`
# times with the worker's encoder (the same settings on both sides), nothing else. Neither side can
# spend less CPU than this, so lerobot's CPU over it bounds the CPU ratio any worker could reach.
_FLOOR = """
import json, sys
from pathlib import Path
import numpy as np
from roboaug.worker.video import SegmentEncoder, iter_frames, probe
src, out, copies = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
info = json.loads((src / "meta/info.json").read_text())
n = 0
for key, feat in info["features"].items():
    if feat["dtype"] != "video":
        continue
    for i, path in enumerate(sorted((src / "videos" / key).rglob("*.mp4"))):
        p = probe(path)
        frames = list(iter_frames(path, 0.0, p.frames, info["fps"]))
        for c in range(copies):
            with SegmentEncoder(out / f"{i}_{c}.mp4", codec=p.codec, pix_fmt=p.pix_fmt, width=p.width,
                                height=p.height, fps=info["fps"]) as enc:
                for chunk in frames:
                    enc.write(chunk)
                    n += len(chunk)
print(json.dumps({"frames_encoded": n}))
"""


@dataclass
class Run:
    wall_s: float
    cpu_s: float
    maxrss_mib: float  # largest single process
    tree_pss_mib: float  # peak of the whole process tree
    stdout: str


def _tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return out


def _pss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def run_measured(argv: list[str], env: dict, timeout: float) -> Run:
    """Run `argv` to the end; wall, CPU and memory of it and everything it starts."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    peak = [0]
    done = threading.Event()

    def sample():
        while not done.wait(0.2):
            peak[0] = max(peak[0], sum(_pss_kib(p) for p in _tree(proc.pid)))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    # pipes drained by threads: wait4 below must reap the child itself to get its rusage
    chunks: dict[str, list[str]] = {"out": [], "err": []}
    readers = [threading.Thread(target=lambda s, k: chunks[k].append(s.read()), args=(s, k), daemon=True)
               for s, k in ((proc.stdout, "out"), (proc.stderr, "err"))]
    for r in readers:
        r.start()
    deadline = time.monotonic() + timeout
    while True:
        pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            os.killpg(proc.pid, 9)
            pid, status, ru = os.wait4(proc.pid, 0)
            break
        time.sleep(0.05)
    wall = time.perf_counter() - t0
    done.set()
    for r in readers:
        r.join(30)
    proc.returncode = os.waitstatus_to_exitcode(status)
    out, err = "".join(chunks["out"]), "".join(chunks["err"])
    if proc.returncode != 0:
        raise SystemExit(f"{argv[:3]} exited {proc.returncode}:\n{err[-4000:]}")
    return Run(wall_s=wall, cpu_s=ru.ru_utime + ru.ru_stime, maxrss_mib=ru.ru_maxrss / 1024,
               tree_pss_mib=peak[0] / 1024, stdout=out)


def _last_json(text: str) -> dict:
    return json.loads(text.strip().splitlines()[-1])


def lerobot_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(SVT_LOG="1", HF_HUB_OFFLINE="1", HF_DATASETS_DISABLE_PROGRESS_BARS="1")
    return env


def run_lerobot(py: Path, src: Path, out: Path, copies: int, timeout: float) -> Run:
    return run_measured([str(py), str(LEROBOT_SCRIPT), str(src), str(out), "--copies", str(copies)],
                        lerobot_env(), timeout)


def run_ours(src: Path, out: Path, work: Path, copies: int, timeout: float) -> Run:
    spec = {"project_id": PROJECT, "job_id": JOB, "dataset_id": f"file://{src}", "output_dataset_id": f"file://{out}",
            "augment_transforms": "lighting", "augment_copies": copies, "augment_dataset_mode": "copy"}
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    return run_measured([sys.executable, "-m", "roboaug.worker", "--spec", json.dumps(spec), "--workdir", str(work)],
                        {**os.environ, "SVT_LOG": "1"}, timeout)


def check_with_lerobot(py: Path, roots: list[Path]) -> list[dict]:
    res = subprocess.run([str(py), str(LEROBOT_SCRIPT), "--check", *map(str, roots)], capture_output=True, text=True,
                         env=lerobot_env(), timeout=900)
    if res.returncode != 0:
        raise SystemExit(f"lerobot could not load {' or '.join(map(str, roots))}:\n{res.stderr[-4000:]}")
    lines = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == len(roots), res.stdout[-2000:]
    return lines


def validate(checks: dict[str, dict], src_frames: int, copies: int) -> int:
    """The output frame count both sides must have (source x (1 original + copies)); SystemExit
    naming the side when a loaded output has another, or when the sides' tasks differ."""
    expected = src_frames * (1 + copies)
    for name, c in checks.items():
        if not (c["samples"] == c["total_frames"] == expected):
            raise SystemExit(f"{name}'s output: {c['samples']} samples, total_frames {c['total_frames']}; "
                             f"expected {expected} (source {src_frames} x (1 original + {copies} copies))")
    tasks = {name: c["tasks"] for name, c in checks.items()}
    if len({json.dumps(t) for t in tasks.values()}) > 1:
        raise SystemExit(f"the outputs' tasks differ: {tasks}")
    return expected


def bench(src: Path, work: Path, copies: int = 3, timeout: float = 3600) -> dict:
    py = lerobot_python()
    if py is None:
        raise SystemExit("the lerobot venv is missing: `./dev setup-lerobot` builds it (~/.cache/roboaug/lerobot-venv, "
                         "or set ROBOAUG_LEROBOT_VENV)")
    info = json.loads((src / "meta/info.json").read_text())
    src_frames = info["total_frames"]
    load = [os.getloadavg()[0]]
    lr = run_lerobot(py, src, work / "lerobot_out", copies, timeout)
    load.append(os.getloadavg()[0])
    ours = run_ours(src, work / "ours_out", work / "ours_wd", copies, timeout)
    load.append(os.getloadavg()[0])
    (work / "floor").mkdir(exist_ok=True)
    floor = run_measured([sys.executable, "-c", _FLOOR, str(src), str(work / "floor"), str(copies)],
                         {**os.environ, "SVT_LOG": "1"}, timeout)
    shutil.rmtree(work / "floor")
    load.append(os.getloadavg()[0])
    lr_summary = _last_json(lr.stdout)
    lr_check, ours_check = check_with_lerobot(py, [work / "lerobot_out", work / "ours_out"])
    expected = validate({"lerobot": lr_check, "ours": ours_check}, src_frames, copies)
    return {
        "source": str(src), "source_episodes": info["total_episodes"], "source_frames": src_frames,
        "copies": copies, "output_frames": expected, "augmented_frames": src_frames * copies,
        "lerobot": {**{k: v for k, v in asdict(lr).items() if k != "stdout"},
                    "script_s": lr_summary["seconds"], "version": lr_summary["lerobot"],
                    "video_backend": lr_summary["video_backend"]},
        "ours": {k: v for k, v in asdict(ours).items() if k != "stdout"},
        "encode_only": {"cpu_s": floor.cpu_s, "wall_s": floor.wall_s, **_last_json(floor.stdout)},
        "wall_ratio": lr.wall_s / ours.wall_s, "cpu_ratio": lr.cpu_s / ours.cpu_s,
        "load_average_1min": load, "checked": {"lerobot": lr_check, "ours": ours_check},
    }


def report(r: dict) -> None:
    n = r["augmented_frames"]
    print(f"source: {r['source_episodes']} episodes, {r['source_frames']} frames (96x96 AV1 pusht look-alike); "
          f"{r['copies']} lighting copies each -> {r['output_frames']} output frames, {n} of them augmented")
    print(f"{'':8} {'wall s':>8} {'aug fps':>8} {'CPU s':>8} {'aug/CPU-s':>9} {'max RSS':>9} {'tree PSS':>9}")
    for name in ("lerobot", "ours"):
        s = r[name]
        print(f"{name:8} {s['wall_s']:8.1f} {n / s['wall_s']:8.1f} {s['cpu_s']:8.1f} {n / s['cpu_s']:9.1f} "
              f"{s['maxrss_mib']:7.0f}Mi {s['tree_pss_mib']:7.0f}Mi")
    lr = r["lerobot"]
    print(f"lerobot {lr['version']} ({lr['video_backend']} decoding): {lr['script_s']:.1f} s of its wall time "
          f"after imports (the rest is starting Python with torch)")
    verdict = "ok" if r["wall_ratio"] >= TARGET_RATIO else f"UNDER the {TARGET_RATIO:.0f}x target"
    print(f"lerobot / ours: wall {r['wall_ratio']:.1f}x ({verdict}), CPU {r['cpu_ratio']:.1f}x; "
          f"peak memory {lr['maxrss_mib'] / r['ours']['maxrss_mib']:.1f}x (largest process), "
          f"{lr['tree_pss_mib'] / r['ours']['tree_pss_mib']:.1f}x (process tree)")
    f = r["encode_only"]
    print(f"encode-only floor (decode the source, encode its frames {r['copies']}x, same encoder, nothing else): "
          f"{f['cpu_s']:.1f} CPU s = {1000 * f['cpu_s'] / f['frames_encoded']:.2f} CPU-ms/frame; ours "
          f"{r['ours']['cpu_s'] / f['cpu_s']:.2f}x it, lerobot {lr['cpu_s'] / f['cpu_s']:.2f}x it (the CPU ratio's "
          "ceiling: no worker spends less than the encoder)")
    print("both outputs loaded by lerobot's LeRobotDataset, "
          f"{r['checked']['ours']['samples']} samples each; 1-min load average before lerobot, "
          "after it, after ours, after encode-only: " + ", ".join(f"{x:.1f}" for x in r["load_average_1min"]) + f" on {os.cpu_count()} CPUs")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--source", type=Path, help="a local LeRobot v3.0 dataset (default: build the pusht look-alike)")
    ap.add_argument("--episodes", type=int, default=40)
    ap.add_argument("--length", type=int, default=125, help="frames per episode (pusht averages about 125)")
    ap.add_argument("--copies", type=int, default=3)
    ap.add_argument("--workdir", type=Path, help="kept; default: a temporary folder, removed")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args(argv)
    tmp = None
    work = args.workdir
    if work is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench_vs_lerobot_")
        work = Path(tmp.name)
    work.mkdir(parents=True, exist_ok=True)
    try:
        src = args.source or build_source(work / f"src_{args.episodes}x{args.length}", args.episodes, args.length)
        r = bench(src.resolve(), work, args.copies)
        report(r)
        if args.json:
            args.json.write_text(json.dumps(r, indent=2))
    finally:
        if tmp is not None:
            tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
