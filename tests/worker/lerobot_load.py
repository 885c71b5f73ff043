"""Runs inside the lerobot venv (not ours): load a dataset with lerobot's own LeRobotDataset and
dump, for every sample, its indices, timestamp and camera frames as uint8, for the test to compare.

    python lerobot_load.py REPO_ID OUT.npz

The dataset is loaded as lerobot users load one from the Hub: by repo id, default revision (lerobot
picks it from the repo's tags), no `root=`; HF_ENDPOINT, HF_TOKEN and HF_HOME (a fresh cache) come
from the environment.

Imports nothing from this project. Video decoding through lerobot's "pyav" backend (its
torchcodec backend needs the FFmpeg shared libraries of the system).
"""

import json
import sys

import numpy as np
from lerobot.datasets.lerobot_dataset import LeRobotDataset


def main(repo_id: str, out: str) -> None:
    ds = LeRobotDataset(repo_id, video_backend="pyav")
    cams = list(ds.meta.camera_keys)
    cols = {k: [] for k in ("index", "episode_index", "frame_index", "timestamp", "task_index")}
    frames = {k: [] for k in cams}
    for i in range(len(ds)):
        item = ds[i]
        for k in cols:
            cols[k].append(item[k].item())
        for k in cams:
            chw = item[k].numpy()  # float32 in [0, 1], (C, H, W)
            frames[k].append(np.rint(chw * 255.0).astype(np.uint8).transpose(1, 2, 0))
    arrays = {k: np.asarray(v) for k, v in cols.items()}
    arrays.update({f"cam:{k}": np.stack(v) for k, v in frames.items()})
    np.savez(out, **arrays)
    import lerobot

    print(json.dumps({"lerobot": getattr(lerobot, "__version__", "?"), "revision": ds.revision, "samples": len(ds),
                      "episodes": ds.num_episodes, "cameras": cams}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
