"""Finalize-merge benchmark (issue 16): the finalize stage of a sharded LeRobot v3.0 job on
synthetic shard results, from 1,250 up to 10,000 shards.

    .venv/bin/python bench/bench_finalize.py            # 1,250 / 2,500 / 5,000 / 10,000 shards
    .venv/bin/python bench/bench_finalize.py --quick    # 125 / 250 / 500 shards (seconds)

Each size N: a synthetic v3.0 source of N/4 two-frame episodes (devstack.synthetic), 4 copies
and `video_files_size_in_mb` 0, so the job has N units (one new data file and mp4 per episode)
and N shards of one unit each. The shard results are made from the source's own statistics (what
a shard would record, without augmenting any frame) and written as the shard stage writes them;
the timed part is what the finalize pod does after resolving its source: read the N results
(stages.read_local_results) and lerobot.finalize (merge, original episodes' stats recomputed
from their rows, episodes table, info.json, stats.json aggregated over every episode,
provenance, card). Printed: seconds per size, microseconds per shard, and the ratio of the
largest size's cost per shard to the smallest's (linear: about 1). Target: 10,000 shards under
60 s here.
"""

from __future__ import annotations

import argparse
import io
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from roboaug.api.models import AugmentationJobSpec  # noqa: E402
from roboaug.devstack import synthetic  # noqa: E402
from roboaug.worker import lerobot, stages  # noqa: E402
from roboaug.worker.handler import FormatJob  # noqa: E402
from roboaug.worker.lerobot_writer import stats_lists  # noqa: E402
from roboaug.worker.progress import ProgressReporter  # noqa: E402

COPIES = 4


def make_source(root: Path, episodes: int) -> Path:
    import json

    src = synthetic.make_lerobot(root, "v3.0", lengths=(2,) * episodes, episodes_per_file=episodes)
    info = json.loads((src / "meta/info.json").read_text())
    info["video_files_size_in_mb"] = 0  # a unit per new episode
    (src / "meta/info.json").write_text(json.dumps(info, indent=4))
    return src


def shard_results(prep, area: Path) -> int:
    """One result per unit, as a shard writes it; returns the shard count."""
    import numpy as np

    ds = prep.ds
    by_out = {oe.out_index: oe for oe in prep.planned}
    frame = lerobot._png64(np.full((32, 48, 3), 128, np.uint8))
    previews = {oe.out_index for oe in prep.planned[:4]}  # the card's 4 preview rows
    fields = {"video.height": 32, "video.width": 48, "video.codec": "av1", "video.pix_fmt": "yuv420p", "video.fps": ds.fps}
    for u in prep.units:
        episodes, records = {}, {}
        for e in u.episodes:
            oe = by_out[e]
            stats = stats_lists(oe.source.stats)
            records[str(e)] = {"stats": stats, "starts": {k: 0.0 for k in ds.video_keys}}
            rec = {"params": {k: {"copy": oe.copy, "episode": oe.source.index} for k in ds.camera_keys}}
            if oe.copy == 0:
                rec["source_stats"] = {k: stats[k] for k in ds.camera_keys}
                rec["source_numeric"] = {k: v for k, v in stats.items() if k not in ds.camera_keys}
            if e in previews:
                rec["preview"] = [frame, frame]
            episodes[str(e)] = rec
        files = [f"data/chunk-000/file-{u.index:03d}.parquet"]
        body = {"units": {str(u.index): {"episodes": records, "files": files, "videos": {k: fields for k in ds.video_keys}}},
                "episodes": episodes, "frames": u.frames, "timings": {}, "episode_cpu": [], "warnings": [], "skipped": []}
        stages.write_json_atomic(area / stages.result_path(u.index), stages.shard_result(u.index, len(prep.units), [u], files, body))
    return len(prep.units)


def one(tmp: Path, shards: int) -> tuple[int, float, float]:
    src = make_source(tmp / f"src-{shards}", shards // COPIES)
    spec = AugmentationJobSpec.model_validate({
        "project_id": "00000000-0000-4000-8000-000000000001", "job_id": "11111111-2222-4333-8444-555555555555",
        "dataset_id": f"file://{src}", "output_dataset_id": f"file://{tmp}/out-{shards}",
        "augment_transforms": "lighting", "augment_copies": COPIES})
    job = FormatJob(spec, tmp / "wd", 1, ProgressReporter(stream=io.StringIO()))
    prep = lerobot.prepare(src, job)
    area = tmp / f"area-{shards}"
    n = shard_results(prep, area)
    out = tmp / f"out-{shards}"
    t0 = time.perf_counter()
    results = stages.read_local_results(area, n)
    t1 = time.perf_counter()
    lerobot.finalize(prep, src, out, job, [r["body"] for r in results])
    t2 = time.perf_counter()
    return n, t1 - t0, t2 - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    args = p.parse_args()
    sizes = (125, 250, 500) if args.quick else (1250, 2500, 5000, 10000)
    tmp = Path(tempfile.mkdtemp(prefix="bench-finalize-"))
    try:
        rows = []
        for n in sizes:
            shards, read_s, total_s = one(tmp, n)
            rows.append((shards, read_s, total_s))
            print(f"{shards:>6} shards: finalize {total_s:7.2f} s (reading results {read_s:5.2f} s), "
                  f"{total_s / shards * 1e6:8.0f} us per shard", flush=True)
        (n0, _, t0), (n1, _, t1) = rows[0], rows[-1]
        print(f"cost per shard, {n1} vs {n0} shards: {(t1 / n1) / (t0 / n0):.2f}x (linear: ~1)")
        print(f"{n1} shards: {t1:.1f} s (target < 60 s): {'ok' if t1 < 60 else 'OVER'}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
