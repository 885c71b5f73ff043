"""Video quality of what the worker writes: PSNR of the written frames against the frames handed
to the encoder, and output bitrate against the source's, per codec and size.

    .venv/bin/python bench/bench_video_quality.py            # 96x96 and 640x480, every codec
    .venv/bin/python bench/bench_video_quality.py --quick    # 96x96 and 640x480, short episodes

Sources are synthetic LeRobot v3.0 datasets (roboaug.devstack.synthetic, one camera, the codec
under test); the job is a lighting-only copy. Each episode goes through the worker's own episode
task (decode, augment, encode a segment); the pre-encode frames are rebuilt from the same decoded
source frames and the same sampled parameters, so the PSNR measures the encoder alone.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import uuid
from pathlib import Path

import numpy as np

from roboaug.api.models import AugmentationJobSpec
from roboaug.devstack import synthetic
from roboaug.worker.episode_task import run_episode
from roboaug.worker.lerobot import episode_tasks, plan
from roboaug.worker.lerobot_dataset import load
from roboaug.worker.transforms import apply_clip, sample_copy_params
from roboaug.worker.video import iter_frames

CODECS = ("av1", "h264", "mpeg4")
SIZES = ((96, 96), (480, 640))
KEY = "observation.images.top"


def _spec(source: Path) -> AugmentationJobSpec:
    return AugmentationJobSpec.model_validate({
        "project_id": str(uuid.UUID(int=1)), "job_id": str(uuid.UUID(int=7)), "dataset_id": f"file://{source}",
        "output_dataset_id": "file:///unused", "augment_transforms": "lighting", "augment_copies": 1,
    })


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def measure(codec: str, size: tuple[int, int], work: Path, lengths: tuple[int, ...] = (30, 30)) -> dict:
    """One source of `codec` at `size` (h, w), a lighting-only copy of every episode: PSNR (dB) of
    the written frames against the pre-encode ones, and bitrates (bit/s) of source and output."""
    source = synthetic.make_lerobot(work / f"src-{codec}-{size[0]}", "v3.0", lengths=lengths,
                                    cameras={KEY: codec}, size=size, episodes_per_file=len(lengths))
    ds = load(source)
    spec = _spec(source)
    seg_dir = work / f"seg-{codec}-{size[0]}"
    seg_dir.mkdir()
    tasks = episode_tasks(ds, plan(ds, spec), spec, seg_dir)
    src_bytes = sum((source / rel).stat().st_size for rel in {ep.videos[KEY][0] for ep in ds.episodes})
    out_bytes, sq_err, n_values = 0, 0.0, 0
    for task in tasks:
        cam = task.cameras[0]
        res = run_episode(task)
        seg, n = res.segments[KEY]
        out_bytes += Path(seg).stat().st_size
        params = sample_copy_params(spec, task.transforms, seed=int(spec.augment_seed), episode=task.source_index,
                                    copy=task.copy, camera=cam.camera_index, width=cam.width, height=cam.height)
        src = np.concatenate(list(iter_frames(Path(cam.video_path), cam.from_ts, task.length, task.fps)))
        pre = apply_clip(src, params, np.arange(task.length))
        written = np.concatenate(list(iter_frames(Path(seg), 0.0, n, task.fps)))
        sq_err += float(np.sum((pre.astype(np.float64) - written) ** 2))
        n_values += pre.size
    seconds = ds.total_frames / ds.fps
    mse = sq_err / n_values
    return {
        "codec": codec, "size": f"{size[1]}x{size[0]}",
        "psnr_db": float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse)),
        "source_kbps": src_bytes * 8 / seconds / 1000, "output_kbps": out_bytes * 8 / seconds / 1000,
        "output_over_source": out_bytes / src_bytes,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short episodes (seconds)")
    ap.add_argument("--codec", action="append", choices=CODECS, help="only these codecs (repeatable)")
    ap.add_argument("--size", action="append", choices=[f"{w}x{h}" for h, w in SIZES], help="only these sizes")
    ap.add_argument("--json", type=Path, help="also write the rows here")
    args = ap.parse_args(argv)
    lengths = (10, 10) if args.quick else (60, 60)
    rows = []
    with tempfile.TemporaryDirectory(prefix="roboaug-vq-") as tmp:
        for h, w in SIZES:
            if args.size and f"{w}x{h}" not in args.size:
                continue
            for codec in args.codec or CODECS:
                rows.append(measure(codec, (h, w), Path(tmp), lengths))
    print(f"{'codec':6} {'size':8} {'PSNR dB':>8} {'source kbit/s':>14} {'output kbit/s':>14} {'out/src':>8}")
    for r in rows:
        print(f"{r['codec']:6} {r['size']:8} {r['psnr_db']:8.2f} {r['source_kbps']:14.1f} {r['output_kbps']:14.1f} "
              f"{r['output_over_source']:8.2f}")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
