"""A small pusht-like LeRobot v3.0 dataset, rendered deterministically, for the demo and tests.

`lerobot/pusht` itself cannot be fetched on machines without Hub access, so the demo and the
end-to-end tests serve this look-alike under that name from the local Hub test server: the same
layout (v3.0, episodes concatenated in one AV1 mp4, 96x96 at 10 fps, state/action float32[2]),
a T-shaped block pushed by a round agent, so the preview picture shows something recognisable.
Written with PyAV and pyarrow directly, not with the worker's writer, so it is an independent input.
"""

from __future__ import annotations

import json
import math
import os
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from roboaug.worker.video import open_encoder

os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its banner to stderr otherwise

TASK = "Push the T-shaped block onto the T-shaped target."
VIDEO_KEY = "observation.image"
FPS = 10
SIZE = 96


def _frame(t: float, episode: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    img = np.full((SIZE, SIZE, 3), (236, 236, 230), np.uint8)
    cv2.rectangle(img, (4, 4), (SIZE - 5, SIZE - 5), (200, 200, 190), 1)
    # target T (fixed), block T (moving towards it), agent (circle)
    def tee(cx, cy, angle, colour, thickness):
        pts = np.array([[-12, -10], [12, -10], [12, -4], [3, -4], [3, 14], [-3, 14], [-3, -4], [-12, -4]], float)
        c, s = math.cos(angle), math.sin(angle)
        pts = pts @ np.array([[c, s], [-s, c]]) + (cx, cy)
        cv2.polylines(img, [np.round(pts).astype(np.int32)], True, colour, thickness, cv2.LINE_AA) if thickness > 0 \
            else cv2.fillPoly(img, [np.round(pts).astype(np.int32)], colour, cv2.LINE_AA)
    tee(60, 58, 0.4, (120, 200, 120), 1)
    start = (30 + 8 * episode, 34 + 4 * episode)
    bx = start[0] + (60 - start[0]) * t
    by = start[1] + (58 - start[1]) * t
    tee(bx, by, 0.4 * t + 0.9 * (1 - t), (110, 110, 180), -1)
    ax, ay = bx - 14 + 4 * math.sin(6 * t), by - 14 + 4 * math.cos(5 * t)
    cv2.circle(img, (int(round(ax)), int(round(ay))), 5, (60, 90, 220), -1, cv2.LINE_AA)
    state = np.array([ax * 5.3, ay * 5.3], np.float32)  # pusht's state is in a 512-px frame
    action = np.array([(ax + 2) * 5.3, (ay + 2) * 5.3], np.float32)
    return img, state, action


def _stats(values: np.ndarray) -> dict:
    return {"min": values.min(0).tolist(), "max": values.max(0).tolist(), "mean": values.mean(0).tolist(),
            "std": values.std(0).tolist(), "count": [int(len(values))]}


def _image_stats(frames: np.ndarray) -> dict:
    x = frames.reshape(-1, 3).astype(np.float64) / 255.0
    per = lambda v: [[[float(c)]] for c in v]
    return {"min": per(x.min(0)), "max": per(x.max(0)), "mean": per(x.mean(0)), "std": per(x.std(0)),
            "count": [int(len(frames))]}


def write_sample_dataset(root: Path, episodes: int = 3, length: int = 30) -> Path:
    """Writes the dataset under `root` (created) and returns it. Same arguments, same bytes."""
    root = Path(root)
    for sub in ("meta/episodes/chunk-000", "data/chunk-000", f"videos/{VIDEO_KEY}/chunk-000"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    rows, ep_rows, all_frames = [], [], []
    with av.open(str(root / f"videos/{VIDEO_KEY}/chunk-000/file-000.mp4"), "w") as out:
        stream = out.add_stream("libsvtav1", rate=FPS, options={"crf": "30", "g": "2", "preset": "12"})
        stream.width = stream.height = SIZE
        stream.pix_fmt = "yuv420p"
        stream.time_base = Fraction(1, FPS)
        open_encoder(stream)  # SVT-AV1 would leave this process in SCHED_FIFO (see there)
        pts = 0
        for ep in range(episodes):
            frames, states, actions = [], [], []
            for i in range(length):
                img, s, a = _frame(i / (length - 1), ep)
                frames.append(img), states.append(s), actions.append(a)
                vf = av.VideoFrame.from_ndarray(img, format="rgb24")
                vf.pts = pts
                vf.time_base = Fraction(1, FPS)
                pts += 1
                for packet in stream.encode(vf):
                    out.mux(packet)
                rows.append({"observation.state": s.tolist(), "action": a.tolist(), "timestamp": np.float32(i / FPS),
                             "frame_index": i, "episode_index": ep, "index": ep * length + i, "task_index": 0})
            frames, states, actions = np.stack(frames), np.stack(states), np.stack(actions)
            all_frames.append(frames)
            ts = np.arange(length, dtype=np.float64) / FPS
            idx = np.arange(length) + ep * length
            stats = {"observation.state": _stats(states.astype(np.float64)), "action": _stats(actions.astype(np.float64)),
                     VIDEO_KEY: _image_stats(frames), "timestamp": _stats(ts[:, None]),
                     "frame_index": _stats(np.arange(length)[:, None]), "episode_index": _stats(np.full((length, 1), ep)),
                     "index": _stats(idx[:, None]), "task_index": _stats(np.zeros((length, 1), np.int64))}
            row = {"episode_index": ep, "data/chunk_index": 0, "data/file_index": 0,
                   "dataset_from_index": ep * length, "dataset_to_index": (ep + 1) * length,
                   f"videos/{VIDEO_KEY}/chunk_index": 0, f"videos/{VIDEO_KEY}/file_index": 0,
                   f"videos/{VIDEO_KEY}/from_timestamp": ep * length / FPS,
                   f"videos/{VIDEO_KEY}/to_timestamp": (ep + 1) * length / FPS,
                   "tasks": [TASK], "length": length}
            for feat, st in stats.items():
                for k, v in st.items():
                    row[f"stats/{feat}/{k}"] = v
            row["meta/episodes/chunk_index"] = 0
            row["meta/episodes/file_index"] = 0
            ep_rows.append(row)
        for packet in stream.encode(None):
            out.mux(packet)
    data = pa.table({
        "observation.state": pa.array([r["observation.state"] for r in rows], pa.list_(pa.float32())),
        "action": pa.array([r["action"] for r in rows], pa.list_(pa.float32())),
        "timestamp": pa.array([r["timestamp"] for r in rows], pa.float32()),
        **{k: pa.array([r[k] for r in rows], pa.int64()) for k in ("frame_index", "episode_index", "index", "task_index")},
    })
    pq.write_table(data, root / "data/chunk-000/file-000.parquet")
    pq.write_table(pa.Table.from_pylist(ep_rows), root / "meta/episodes/chunk-000/file-000.parquet")
    pq.write_table(pa.table({"task_index": pa.array([0], pa.int64()), "__index_level_0__": pa.array([TASK], pa.large_string())}),
                   root / "meta/tasks.parquet")
    frames = np.concatenate(all_frames)
    n = episodes * length
    total = {"observation.state": _stats(np.array([r["observation.state"] for r in rows], np.float64)),
             "action": _stats(np.array([r["action"] for r in rows], np.float64)), VIDEO_KEY: _image_stats(frames),
             "timestamp": _stats(np.array([r["timestamp"] for r in rows], np.float64)[:, None]),
             **{k: _stats(np.array([r[k] for r in rows])[:, None]) for k in ("frame_index", "episode_index", "index", "task_index")}}
    (root / "meta/stats.json").write_text(json.dumps(total, indent=2))
    scalar = lambda dtype: {"dtype": dtype, "shape": [1], "names": None, "fps": FPS}
    info = {
        "codebase_version": "v3.0", "robot_type": "2d pointer", "total_episodes": episodes, "total_frames": n,
        "total_tasks": 1, "chunks_size": 1000, "fps": FPS, "splits": {"train": f"0:{episodes}"},
        "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
        "video_path": "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4",
        "features": {
            "observation.state": {"dtype": "float32", "shape": [2], "names": {"motors": ["x", "y"]}, "fps": FPS},
            "action": {"dtype": "float32", "shape": [2], "names": {"motors": ["x", "y"]}, "fps": FPS},
            VIDEO_KEY: {"dtype": "video", "shape": [SIZE, SIZE, 3], "names": ["height", "width", "channel"],
                        "info": {"video.height": SIZE, "video.width": SIZE, "video.codec": "av1",
                                 "video.pix_fmt": "yuv420p", "video.is_depth_map": False, "video.fps": FPS,
                                 "video.channels": 3, "has_audio": False}},
            "timestamp": scalar("float32"), "frame_index": scalar("int64"), "episode_index": scalar("int64"),
            "index": scalar("int64"), "task_index": scalar("int64"),
        },
        "data_files_size_in_mb": 100, "video_files_size_in_mb": 200,
    }
    (root / "meta/info.json").write_text(json.dumps(info, indent=4))
    return root


if __name__ == "__main__":
    import sys

    print(write_sample_dataset(Path(sys.argv[1] if len(sys.argv) > 1 else "sample-pusht")))
