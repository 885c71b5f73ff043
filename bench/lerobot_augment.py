"""What a LeRobot user writes instead of an augmentation job: runs in the lerobot venv, not ours.

    python lerobot_augment.py SRC_ROOT OUT_ROOT [--copies 3] [--video-backend pyav|torchcodec]
    python lerobot_augment.py --check ROOT...  # load datasets (both sides' outputs) with lerobot

The bench (bench_vs_lerobot.py) runs both modes.

Imports nothing from this project. The job it stands for is the worker's default request:
`augment_transforms: lighting`, 3 copies per episode, dataset mode `copy` (the output holds the
original episodes plus the copies). Written with lerobot 0.4.4's own API, the way its docs show:

- read: `LeRobotDataset(repo_id, root=SRC_ROOT)` (local, no Hub), one sample at a time, each
  episode once (its samples kept for its copies, so the source is decoded once, as the worker does);
- augment: torchvision `ColorJitter(brightness=0.15, contrast=0.1)` on every frame, its factors
  drawn once per copy (`ColorJitter.get_params`), as the worker draws one light per copy (a fresh
  draw per frame would flicker; it costs the same). The mapping to the worker's default lighting
  (brightness +-15 % of full scale added, contrast +-10 %, colour temperature 4000-6500 K) is
  approximate: ColorJitter's brightness multiplies by [0.85, 1.15] where ours adds +-38 levels,
  and ColorJitter has no white balance, so colour temperature is left out (less work on this side);
- write: `LeRobotDataset.create(..., streaming_encoding=True)` + `add_frame` + `save_episode`,
  lerobot's encoder settings (libsvtav1, preset 12, crf 30, g 2: the worker's too), then
  `finalize()`; the originals join through lerobot's `merge_datasets`, which copies their video
  files instead of encoding them again (the worker also reuses them).

`encoder_queue_maxsize`: the streaming encoder drops frames when its queue is full (it is meant
for live recording, where waiting would stall the robot); reading from disk outruns the encoder, so
the queue holds a whole episode copy here and no frame is lost. The last stdout line is JSON:
{"frames_read", "frames_written", "total_frames", "episodes", "video_backend", "lerobot", "seconds"}.
"""

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torchvision.transforms import ColorJitter
from torchvision.transforms import functional as TF

from lerobot.datasets.dataset_tools import merge_datasets
from lerobot.datasets.lerobot_dataset import LeRobotDataset
from lerobot.datasets.utils import DEFAULT_FEATURES


def check(root: str) -> None:
    """Load a local dataset with LeRobotDataset and decode the first and last frame of every
    episode (lerobot checks each decoded frame's timestamp against the one it asked for).
    Prints one JSON line."""
    ds = LeRobotDataset("local/check", root=root, video_backend="pyav")
    cams = list(ds.meta.video_keys)
    checked = 0
    for ep in range(ds.num_episodes):
        lo, hi = int(ds.meta.episodes["dataset_from_index"][ep]), int(ds.meta.episodes["dataset_to_index"][ep])
        for i in {lo, hi - 1}:
            item = ds[i]
            assert int(item["episode_index"]) == ep, (i, int(item["episode_index"]), ep)
            for k in cams:
                assert item[k].ndim == 3 and item[k].shape[0] == 3, (k, tuple(item[k].shape))
            checked += 1
    tasks = sorted({str(t) for t in ds.meta.tasks.index})
    print(json.dumps({"samples": len(ds), "total_frames": ds.meta.total_frames, "episodes": ds.num_episodes,
                      "frames_decoded": checked, "tasks": tasks}))


def main(argv=None) -> None:
    if argv and argv[0] == "--check":
        for root in argv[1:]:  # one interpreter for all: starting torch costs seconds
            check(root)
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("src")
    ap.add_argument("out")
    ap.add_argument("--copies", type=int, default=3)
    # lerobot's default decoder, torchcodec, needs the system's FFmpeg shared libraries (absent here)
    ap.add_argument("--video-backend", default="pyav", help="pyav (default) or torchcodec")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    torch.manual_seed(args.seed)
    out = Path(args.out)
    aug_root = out.with_name(out.name + "-copies")
    for p in (out, aug_root):
        shutil.rmtree(p, ignore_errors=True)

    src = LeRobotDataset("local/src", root=args.src, video_backend=args.video_backend)
    cams = list(src.meta.video_keys)
    features = {k: v for k, v in src.meta.features.items() if k not in DEFAULT_FEATURES}
    longest = max(int(n) for n in src.meta.episodes["length"])
    aug = LeRobotDataset.create(
        "local/copies", fps=src.fps, features=features, root=aug_root, robot_type=src.meta.robot_type,
        streaming_encoding=True, encoder_queue_maxsize=longest + 1,
    )
    jitter = ColorJitter(brightness=0.15, contrast=0.1)

    frames_read = frames_written = 0
    ep_from = src.meta.episodes["dataset_from_index"]
    ep_to = src.meta.episodes["dataset_to_index"]
    for ep in range(src.num_episodes):
        samples = [src[i] for i in range(int(ep_from[ep]), int(ep_to[ep]))]
        frames_read += len(samples)
        for _copy in range(args.copies):
            _order, b, c, _s, _h = ColorJitter.get_params(jitter.brightness, jitter.contrast, None, None)
            for item in samples:
                frame = {"task": item["task"]}
                for key in features:
                    value = item[key]
                    if key in cams:
                        # float CHW in [0, 1] as LeRobotDataset returns it; the feature's shape is
                        # HWC (info.json), which add_frame checks
                        value = TF.adjust_contrast(TF.adjust_brightness(value, b), c).permute(1, 2, 0)
                    frame[key] = value.numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
                aug.add_frame(frame)
                frames_written += 1
            aug.save_episode()
    aug.finalize()

    copies = LeRobotDataset("local/copies", root=aug_root, video_backend=args.video_backend)
    merged = merge_datasets([src, copies], output_repo_id="local/out", output_dir=out)
    shutil.rmtree(aug_root)
    import lerobot

    print(json.dumps({"frames_read": frames_read, "frames_written": frames_written,
                      "total_frames": merged.meta.total_frames, "episodes": merged.meta.total_episodes,
                      "video_backend": src.video_backend, "lerobot": getattr(lerobot, "__version__", "?"),
                      "seconds": time.perf_counter() - t0}))


if __name__ == "__main__":
    main(sys.argv[1:])
