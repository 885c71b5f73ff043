"""Small generated datasets for tests and benchmarks, written directly with PyAV / pyarrow / datasets
(not with the worker's writer), shaped like what lerobot and `datasets` write.

- `make_lerobot(root, "v3.0", ...)`: several episodes concatenated per AV1 mp4, data and videos
  split over more than one file;
- `make_lerobot(root, "v2.1", ...)`: one parquet and one mp4 per episode;
- multi-camera: pass several cameras (codecs may differ per camera) and/or `image_keys`;
- other content: `render` draws the frames, `signals` the state/action rows (sample_dataset.py
  draws a pusht-like scene this way);
- `make_image_dataset(root)`: a `datasets` parquet with an Image column and a dataset card.
"""

from __future__ import annotations

import io
import json
from fractions import Fraction
from pathlib import Path
from typing import Callable, Sequence

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from roboaug.worker.video import open_encoder

H, W, FPS = 32, 48, 10
TASKS = ["pick the cube", "push the block"]
ENCODERS = {
    "av1": ("libsvtav1", {"g": "2", "crf": "30", "preset": "12"}),
    "h264": ("libx264", {"g": "2", "crf": "23"}),
    "mpeg4": ("mpeg4", {"g": "2"}),
}


def frame(cam: int, ep: int, k: int, h: int = H, w: int = W) -> np.ndarray:
    """A gradient with a moving square: enough structure for blur/noise to change the pixels."""
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([(x * 255 // max(w - 1, 1)), (y * 255 // max(h - 1, 1)), np.full_like(x, 40 * cam + 20 * ep)], -1)
    s = max(4, h // 4)
    x0, y0 = (3 * k + 7 * ep) % (w - s), (2 * k + 5 * cam) % (h - s)
    img[y0 : y0 + s, x0 : x0 + s] = (230, 60 + 30 * cam, 40)
    return np.clip(img, 0, 255).astype(np.uint8)


def encode(path: Path, frames: list[np.ndarray], codec: str = "av1", fps: int = FPS) -> list[np.ndarray]:
    """Encode frames with pts 0..N-1 and return them as decoded (the lossy pixels stats must see)."""
    name, opts = ENCODERS[codec]
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format="mp4") as c:
        s = c.add_stream(name, rate=Fraction(fps), options=opts)
        s.width, s.height, s.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        open_encoder(s)  # keeps the test process (and the clusters it starts later) out of SCHED_FIFO
        for i, f in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(f, format="rgb24")
            vf.pts = i
            for p in s.encode(vf):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def png(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def _sampled(n: int) -> list[int]:
    k = n if n < 100 else max(100, min(int(n ** 0.75), 10_000))
    return np.round(np.linspace(0, n - 1, k)).astype(int).tolist()


def image_stats(frames: list[np.ndarray], quantiles: bool) -> dict:
    arr = np.stack([frames[i] for i in _sampled(len(frames))]).transpose(0, 3, 1, 2)
    st = {"min": arr.min((0, 2, 3)), "max": arr.max((0, 2, 3)), "mean": arr.mean((0, 2, 3)), "std": arr.std((0, 2, 3))}
    if quantiles:
        flat = arr.transpose(1, 0, 2, 3).reshape(3, -1)
        for n, q in {"q01": .01, "q10": .1, "q50": .5, "q90": .9, "q99": .99}.items():
            st[n] = np.quantile(flat, q, axis=1)
    out = {k: (np.asarray(v, float) / 255).reshape(3, 1, 1).tolist() for k, v in st.items()}
    out["count"] = [len(_sampled(len(frames)))]
    return out


def numeric_stats(values: np.ndarray, quantiles: bool) -> dict:
    v = values if values.ndim > 1 else values[:, None]
    st = {"min": v.min(0), "max": v.max(0), "mean": v.astype(float).mean(0), "std": v.astype(float).std(0)}
    if quantiles:
        for n, q in {"q01": .01, "q10": .1, "q50": .5, "q90": .9, "q99": .99}.items():
            st[n] = np.quantile(v.astype(float), q, axis=0)
    out = {k: np.asarray(x).tolist() for k, x in st.items()}
    out["count"] = [len(v)]
    return out


def default_signals(ep: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    """(state, action), float32 (length, 2) each: smooth curves that differ per episode."""
    k = np.arange(length)
    state = np.stack([np.sin(k / 5 + ep), np.cos(k / 7 + ep)], 1).astype(np.float32)
    return state, (state * 0.5 + 0.1).astype(np.float32)


def _features(cameras: dict[str, str], image_keys: list[str], h: int, w: int, fps: int) -> dict:
    feats = {
        "observation.state": {"dtype": "float32", "shape": [2], "names": ["x", "y"]},
        "action": {"dtype": "float32", "shape": [2], "names": ["x", "y"]},
    }
    for key, codec in cameras.items():
        feats[key] = {
            "dtype": "video", "shape": [h, w, 3], "names": ["height", "width", "channels"],
            "info": {"video.height": h, "video.width": w, "video.codec": codec, "video.pix_fmt": "yuv420p",
                     "video.is_depth_map": False, "video.fps": fps, "video.channels": 3, "has_audio": False},
        }
    for key in image_keys:
        feats[key] = {"dtype": "image", "shape": [h, w, 3], "names": ["height", "width", "channels"]}
    for col, dt in (("timestamp", "float32"), ("frame_index", "int64"), ("episode_index", "int64"), ("index", "int64"), ("task_index", "int64")):
        feats[col] = {"dtype": dt, "shape": [1], "names": None}
    return feats



def _tasks_table(tasks: list[str]) -> pa.Table:
    """meta/tasks.parquet as LeRobot writes it: a pandas frame indexed by the task string.

    The pandas metadata is what makes the ``__index_level_0__`` column the index when LeRobot reads
    the file back; without it every task reads as its row number and ``add_frame`` records "0".
    """
    pandas_meta = {
        "index_columns": ["__index_level_0__"],
        "column_indexes": [{"name": None, "field_name": None, "pandas_type": "unicode",
                            "numpy_type": "object", "metadata": {"encoding": "UTF-8"}}],
        "columns": [
            {"name": "task_index", "field_name": "task_index", "pandas_type": "int64",
             "numpy_type": "int64", "metadata": None},
            {"name": None, "field_name": "__index_level_0__", "pandas_type": "unicode",
             "numpy_type": "object", "metadata": None},
        ],
        "attributes": {}, "creator": {"library": "pyarrow", "version": pa.__version__},
        "pandas_version": "2.2.3",
    }
    table = pa.table({"task_index": pa.array(range(len(tasks)), pa.int64()),
                      "__index_level_0__": pa.array(list(tasks), pa.string())})
    return table.replace_schema_metadata({b"pandas": json.dumps(pandas_meta).encode()})

def make_lerobot(
    root: Path,
    version: str = "v3.0",
    *,
    lengths: tuple[int, ...] = (12, 15, 10),
    cameras: dict[str, str] | None = None,
    image_keys: tuple[str, ...] = (),
    episodes_per_file: int = 2,
    size: tuple[int, int] = (H, W),
    fps: int = FPS,
    quantiles: bool = True,
    render: Callable[[int, int, int, int, int], np.ndarray] = frame,
    signals: Callable[[int, int], tuple[np.ndarray, np.ndarray]] = default_signals,
    tasks: Sequence[str] = TASKS,
    robot_type: str = "fixture_arm",
) -> Path:
    """A LeRobot dataset under `root`. `render(cam, ep, k, h, w)` is frame k of episode ep seen by
    camera cam (video cameras first, then image keys); `signals(ep, length)` its (state, action);
    episode e does task `tasks[e % len(tasks)]`. Same arguments, same bytes."""
    root = Path(root)
    cameras = cameras or {"observation.images.top": "av1"}
    h, w = size
    quantiles = quantiles and version == "v3.0"
    feats = _features(cameras, list(image_keys), h, w, fps)
    E = len(lengths)
    starts = np.concatenate([[0], np.cumsum(lengths)]).astype(int)

    # per-episode data + stats
    ep_tables, ep_stats = [], []
    for e, L in enumerate(lengths):
        k = np.arange(L)
        state, action = signals(e, L)
        cols = {
            "observation.state": state, "action": action,
            "timestamp": (k / fps).astype(np.float32), "frame_index": k.astype(np.int64),
            "episode_index": np.full(L, e, np.int64), "index": (starts[e] + k).astype(np.int64),
            "task_index": np.full(L, e % len(tasks), np.int64),
        }
        stats = {n: numeric_stats(v, quantiles) for n, v in cols.items()}
        images = {}
        for cam_i, key in enumerate(image_keys, start=len(cameras)):
            frames = [render(cam_i, e, j, h, w) for j in range(L)]
            images[key] = [{"bytes": png(f), "path": f"frame_{j:06d}.png"} for j, f in enumerate(frames)]
            stats[key] = image_stats(frames, quantiles)
        vec = pa.list_(pa.float32()) if version == "v3.0" else pa.list_(pa.float32(), 2)
        arrays = {
            "observation.state": pa.array(state.tolist(), type=vec), "action": pa.array(action.tolist(), type=vec),
            **{key: pa.array(v, type=pa.struct([("bytes", pa.binary()), ("path", pa.string())])) for key, v in images.items()},
            **{n: pa.array(cols[n]) for n in ("timestamp", "frame_index", "episode_index", "index", "task_index")},
        }
        ep_tables.append(pa.table(arrays))
        ep_stats.append(stats)

    # videos
    video_loc: dict[tuple[str, int], tuple[int, float]] = {}
    for cam_i, (key, codec) in enumerate(cameras.items()):
        if version == "v3.0":
            for fi, first in enumerate(range(0, E, episodes_per_file)):
                members = list(range(first, min(E, first + episodes_per_file)))
                frames = [render(cam_i, e, j, h, w) for e in members for j in range(lengths[e])]
                decoded = encode(root / f"videos/{key}/chunk-000/file-{fi:03d}.mp4", frames, codec, fps)
                off = 0
                for e in members:
                    video_loc[(key, e)] = (fi, off / fps)
                    ep_stats[e][key] = image_stats(decoded[off : off + lengths[e]], quantiles)
                    off += lengths[e]
        else:
            for e in range(E):
                decoded = encode(root / f"videos/chunk-000/{key}/episode_{e:06d}.mp4",
                                 [render(cam_i, e, j, h, w) for j in range(lengths[e])], codec, fps)
                ep_stats[e][key] = image_stats(decoded, quantiles)

    info = {
        "codebase_version": version, "robot_type": robot_type, "total_episodes": E, "total_frames": int(starts[-1]),
        "total_tasks": len(tasks), "chunks_size": 1000, "fps": fps, "splits": {"train": f"0:{E}"},
        "features": feats,
    }
    (root / "meta").mkdir(parents=True, exist_ok=True)
    if version == "v3.0":
        info.update(
            data_path="data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
            video_path="videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4",
            data_files_size_in_mb=100, video_files_size_in_mb=200,
        )
        rows = []
        for fi, first in enumerate(range(0, E, episodes_per_file)):
            members = list(range(first, min(E, first + episodes_per_file)))
            path = root / f"data/chunk-000/file-{fi:03d}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(pa.concat_tables([ep_tables[e] for e in members]), path)
            for e in members:
                row = {
                    "episode_index": e, "data/chunk_index": 0, "data/file_index": fi,
                    "dataset_from_index": int(starts[e]), "dataset_to_index": int(starts[e + 1]),
                }
                for key in cameras:
                    vf, t0 = video_loc[(key, e)]
                    row.update({f"videos/{key}/chunk_index": 0, f"videos/{key}/file_index": vf,
                                f"videos/{key}/from_timestamp": t0, f"videos/{key}/to_timestamp": t0 + lengths[e] / fps})
                row.update({"tasks": [tasks[e % len(tasks)]], "length": lengths[e]})
                for feat, st in ep_stats[e].items():
                    for n, v in st.items():
                        row[f"stats/{feat}/{n}"] = v
                row.update({"meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0})
                rows.append(row)
        (root / "meta/episodes/chunk-000").mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(rows), root / "meta/episodes/chunk-000/file-000.parquet")
        pq.write_table(_tasks_table(tasks), root / "meta/tasks.parquet")
        agg = {}
        for feat in ep_stats[0]:
            per = [s[feat] for s in ep_stats]
            cnt = np.array([p["count"][0] for p in per], float)
            means = np.stack([np.asarray(p["mean"], float) for p in per])
            wgt = cnt.reshape((-1,) + (1,) * (means.ndim - 1))
            mean = (means * wgt).sum(0) / cnt.sum()
            var = ((np.stack([np.asarray(p["std"], float) for p in per]) ** 2 + (means - mean) ** 2) * wgt).sum(0) / cnt.sum()
            agg[feat] = {"min": np.min([p["min"] for p in per], 0).tolist(), "max": np.max([p["max"] for p in per], 0).tolist(),
                         "mean": mean.tolist(), "std": np.sqrt(var).tolist(), "count": [int(cnt.sum())]}
        (root / "meta/stats.json").write_text(json.dumps(agg, indent=4))
    else:
        info.update(
            total_videos=E * len(cameras), total_chunks=1,
            data_path="data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
            video_path="videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4",
        )
        for e in range(E):
            path = root / f"data/chunk-000/episode_{e:06d}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(ep_tables[e], path)
        (root / "meta/episodes.jsonl").write_text(
            "".join(json.dumps({"episode_index": e, "tasks": [tasks[e % len(tasks)]], "length": L}) + "\n" for e, L in enumerate(lengths)))
        (root / "meta/episodes_stats.jsonl").write_text(
            "".join(json.dumps({"episode_index": e, "stats": s}) + "\n" for e, s in enumerate(ep_stats)))
        (root / "meta/tasks.jsonl").write_text("".join(json.dumps({"task_index": i, "task": t}) + "\n" for i, t in enumerate(tasks)))
    (root / "meta/info.json").write_text(json.dumps(info, indent=4))
    return root


def make_image_dataset(root: Path, rows: int = 6, size: tuple[int, int] = (H, W),
                       splits: dict[str, int] | None = None, explicit_files: bool = False) -> Path:
    """A `datasets` image dataset as push_to_hub lays it out: data/{split}-00000-of-00001.parquet
    + card. `splits`: rows per split (default: `rows` in train). `explicit_files`: the card lists
    each file by name instead of push_to_hub's `data/{split}-*` globs (as hand-written cards do)."""
    import datasets

    root = Path(root)
    splits = splits or {"train": rows}
    (root / "data").mkdir(parents=True, exist_ok=True)
    split_yaml, files_yaml = "", ""
    for k, (split, n) in enumerate(splits.items()):
        imgs = [Image.fromarray(frame(k, i, i, *size)) for i in range(n)]
        ds = datasets.Dataset.from_dict(
            {"image": imgs, "label": [i % 3 for i in range(n)]},
            features=datasets.Features({"image": datasets.Image(), "label": datasets.Value("int64")}),
        )
        ds.to_parquet(str(root / f"data/{split}-00000-of-00001.parquet"))
        split_yaml += f"  - name: {split}\n    num_bytes: 1234\n    num_examples: {n}\n"
        path = f"data/{split}-00000-of-00001.parquet" if explicit_files else f"data/{split}-*"
        files_yaml += f"  - split: {split}\n    path: {path}\n"
    card = (
        "---\n"
        "dataset_info:\n  features:\n  - name: image\n    dtype: image\n  - name: label\n    dtype: int64\n"
        f"  splits:\n{split_yaml}"
        f"configs:\n- config_name: default\n  data_files:\n{files_yaml}"
        "---\n\n# fixture\n"
    )
    (root / "README.md").write_text(card)
    return root
