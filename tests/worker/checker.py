"""An independent check of a LeRobot (v2.1 / v3.0) or image dataset, as its loaders see it.

Written from shared/LEROBOT_FORMAT.md, without importing anything from roboaug.worker: it reads
the files with pyarrow, json and PyAV, decodes every frame, checks each frame the loader would ask
for (from_timestamp + k/fps) sits within 1e-4 s, recomputes camera statistics from the decoded
pixels with lerobot's sampling rule (full numpy, no histograms), recomputes numeric statistics
from the data rows and re-aggregates stats.json.
"""

from __future__ import annotations

import io
import json
import re
from collections import defaultdict
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pyarrow.parquet as pq
from PIL import Image

TOL_S = 1e-4
QS = {"q01": 0.01, "q10": 0.10, "q50": 0.50, "q90": 0.90, "q99": 0.99}


class CheckFailed(AssertionError):
    pass


def _req(cond, msg):
    if not cond:
        raise CheckFailed(msg)


def _sampled(n: int) -> list[int]:
    k = n if n < 100 else max(100, min(int(n ** 0.75), 10_000))
    return np.round(np.linspace(0, n - 1, k)).astype(int).tolist()


def _image_stats(frames_chw: np.ndarray, with_q: bool) -> dict:
    """lerobot's reduction over (N, C, H, W) uint8 -> per channel, /255, shape (C,1,1)."""
    out = {
        "min": frames_chw.min(axis=(0, 2, 3)), "max": frames_chw.max(axis=(0, 2, 3)),
        "mean": frames_chw.mean(axis=(0, 2, 3)), "std": frames_chw.std(axis=(0, 2, 3)),
    }
    if with_q:
        for name, q in QS.items():
            out[name] = np.quantile(frames_chw.transpose(1, 0, 2, 3).reshape(frames_chw.shape[1], -1), q, axis=1)
    return {k: (np.asarray(v, dtype=np.float64) / 255.0).reshape(-1, 1, 1) for k, v in out.items()}


def _shrink(img_hwc: np.ndarray) -> np.ndarray:
    chw = img_hwc.transpose(2, 0, 1)
    _, h, w = chw.shape
    if max(h, w) < 300:
        return chw
    f = int(w / 150) if w > h else int(h / 150)
    return chw[:, ::f, ::f]


def _close(a, b, atol, what):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    _req(a.shape == b.shape or a.size == b.size, f"{what}: shape {a.shape} vs {b.shape}")
    _req(np.allclose(a.reshape(b.shape), b, atol=atol, rtol=1e-6), f"{what}: {a.ravel()[:6]} != {b.ravel()[:6]}")


class _Video:
    """All frames of one mp4: pts in seconds, plus decoded frames at requested positions."""

    def __init__(self, path: Path, keep: set[int]):
        self.path = path
        with av.open(str(path)) as c:
            s = c.streams.video[0]
            self.codec = s.codec_context.codec.canonical_name
            self.pix_fmt = s.codec_context.pix_fmt
            self.width, self.height = s.codec_context.width, s.codec_context.height
            self.avg_rate = Fraction(s.average_rate) if s.average_rate else None
            tb = Fraction(s.time_base)
            self.pts: list[float] = []
            self.frames: dict[int, np.ndarray] = {}
            for i, fr in enumerate(c.decode(s)):
                self.pts.append(float(fr.pts * tb))
                if i in keep:
                    self.frames[i] = fr.to_ndarray(format="rgb24")
        self.pts_arr = np.array(self.pts)

    def position_at(self, t: float) -> int:
        i = int(np.argmin(np.abs(self.pts_arr - t)))
        _req(abs(self.pts_arr[i] - t) <= TOL_S, f"{self.path.name}: no frame within 1e-4 s of {t:.6f} (nearest {self.pts_arr[i]:.6f})")
        return i


def _check_lossy_stats(stored: dict, recomputed: dict, what: str) -> None:
    """Video stats describe the frames handed to the encoder (lerobot's rule); the decoded frames
    differ by the codec's loss, so only what a lossy codec preserves is compared, within bounds
    that still catch stats of the wrong episode or the wrong camera."""
    _close(stored["mean"], recomputed["mean"], 0.02, f"{what} stats mean")
    _close(stored["std"], recomputed["std"], 0.03, f"{what} stats std")
    for q in ("q10", "q50", "q90"):
        if q in recomputed:
            _req(q in stored, f"{what}: stats lack {q}")
            _close(stored[q], recomputed[q], 0.06, f"{what} stats {q}")
    lo, hi = np.asarray(stored["min"], float), np.asarray(stored["max"], float)
    _req(np.all(0 <= lo) and np.all(lo <= hi) and np.all(hi <= 1), f"{what}: min/max out of [0, 1]")


def _check_video_files(info, by_file: dict[str, list[tuple[int, float, int]]], root: Path, key: str, fps: int,
                       ep_stats: dict, with_q: dict, report: dict) -> None:
    feat = info["features"][key]
    vinfo = feat.get("info") or feat.get("video_info") or {}
    shapes = set()
    for rel, eps in sorted(by_file.items()):
        eps = sorted(eps, key=lambda e: e[1])
        keep = set()
        for ep, start, length in eps:
            base = round(start * fps)
            keep.update(base + k for k in _sampled(length))
        v = _Video(root / rel, keep)
        report["frames_decoded"] += len(v.pts)
        shapes.add((v.codec, v.pix_fmt, v.width, v.height))
        _req(v.pts and abs(v.pts[0]) <= TOL_S, f"{rel}: first frame at {v.pts[:1]}, not 0")
        _req(len(v.pts) == sum(e[2] for e in eps), f"{rel}: {len(v.pts)} frames, episodes need {sum(e[2] for e in eps)}")
        grid = np.arange(len(v.pts)) / fps
        _req(np.all(np.abs(v.pts_arr - grid) <= TOL_S), f"{rel}: frames are not on the 1/{fps} grid")
        _req(v.avg_rate is None or abs(float(v.avg_rate) - fps) < 1e-3, f"{rel}: average rate {v.avg_rate} != {fps}")
        expected_start = 0
        for ep, start, length in eps:
            _req(abs(start - expected_start / fps) <= TOL_S, f"{rel}: episode {ep} starts at {start}, expected {expected_start / fps}")
            positions = [v.position_at(start + k / fps) for k in range(length)]
            _req(positions == list(range(positions[0], positions[0] + length)), f"{rel}: episode {ep} frames not consecutive")
            sampled = np.stack([_shrink(v.frames[positions[k]]) for k in _sampled(length)])
            recomputed = _image_stats(sampled, with_q[key])
            stored = ep_stats[ep][key]
            _check_lossy_stats(stored, recomputed, f"episode {ep} {key}")
            _req(list(np.asarray(stored["count"]).ravel()) == [len(sampled)], f"episode {ep} {key} count {stored['count']}")
            expected_start += length
    _req(len(shapes) == 1, f"{key}: files differ in codec/pix_fmt/size: {shapes}")
    codec, pix_fmt, w, h = shapes.pop()
    if vinfo:
        _req(vinfo.get("video.codec") == codec, f"{key}: info codec {vinfo.get('video.codec')} but files are {codec}")
        _req(vinfo.get("video.pix_fmt") in (None, pix_fmt), f"{key}: info pix_fmt {vinfo.get('video.pix_fmt')} vs {pix_fmt}")
    _req(list(feat["shape"][:2]) == [h, w], f"{key}: feature shape {feat['shape']} vs {h}x{w}")


def _check_numeric_stats(features, rows_by_ep: dict[int, dict[str, np.ndarray]], ep_stats: dict) -> None:
    for ep, cols in rows_by_ep.items():
        for name, values in cols.items():
            stored = ep_stats[ep].get(name)
            if stored is None:
                continue
            arr = values.astype(np.float64)
            if arr.ndim == 1:
                arr = arr[:, None]
            _close(stored["min"], arr.min(axis=0), 1e-5, f"episode {ep} {name} min")
            _close(stored["max"], arr.max(axis=0), 1e-5, f"episode {ep} {name} max")
            _close(stored["mean"], arr.mean(axis=0), 1e-4, f"episode {ep} {name} mean")
            _req(list(np.asarray(stored["count"]).ravel()) == [len(arr)], f"episode {ep} {name} count")


def _check_aggregate(stats_json: dict, ep_stats: dict) -> None:
    for feat, agg in stats_json.items():
        per = [s[feat] for s in ep_stats.values() if feat in s]
        _req(per, f"stats.json has {feat} but no episode has it")
        counts = np.array([float(np.asarray(s["count"]).ravel()[0]) for s in per])
        means = np.stack([np.asarray(s["mean"], dtype=np.float64) for s in per])
        w = counts.reshape((-1,) + (1,) * (means.ndim - 1))
        mean = (means * w).sum(0) / counts.sum()
        var = ((np.stack([np.asarray(s["std"], dtype=np.float64) for s in per]) ** 2 + (means - mean) ** 2) * w).sum(0) / counts.sum()
        _close(agg["mean"], mean, 1e-6, f"stats.json {feat} mean")
        _close(agg["std"], np.sqrt(var), 1e-6, f"stats.json {feat} std")
        _close(agg["min"], np.min(np.stack([np.asarray(s["min"], dtype=np.float64) for s in per]), 0), 1e-9, f"stats.json {feat} min")
        _close(agg["max"], np.max(np.stack([np.asarray(s["max"], dtype=np.float64) for s in per]), 0), 1e-9, f"stats.json {feat} max")
        _req(int(np.asarray(agg["count"]).ravel()[0]) == int(counts.sum()), f"stats.json {feat} count")


def _stats_from_row(row: dict) -> dict:
    out: dict = defaultdict(dict)
    for k, v in row.items():
        if k.startswith("stats/") and v is not None:
            feat, _, name = k[6:].rpartition("/")
            out[feat][name] = np.asarray(v)
    return dict(out)


def _numeric_columns(info) -> list[str]:
    return [k for k, f in info["features"].items() if f["dtype"] not in ("video", "image", "string")]


def check_lerobot(root: Path) -> dict:
    """Assert every loader invariant; returns counts (episodes, frames, frames_decoded).

    Stats of PNG image features must equal a recomputation from the stored pixels (1e-6, the
    format is lossless); stats of video features are compared with the decoded frames within the
    codec's loss (see _check_lossy_stats).
    """
    root = Path(root)
    info = json.loads((root / "meta/info.json").read_text())
    version = info["codebase_version"]
    _req(version in ("v2.1", "v3.0"), f"codebase_version {version}")
    fps = int(info["fps"])
    video_keys = [k for k, f in info["features"].items() if f["dtype"] == "video"]
    image_keys = [k for k, f in info["features"].items() if f["dtype"] == "image"]
    report = {"episodes": 0, "frames": 0, "frames_decoded": 0}
    for col, dtype in (("timestamp", "float32"), ("frame_index", "int64"), ("episode_index", "int64"), ("index", "int64"), ("task_index", "int64")):
        _req(info["features"].get(col, {}).get("dtype") == dtype, f"feature {col} must be {dtype}")

    # episodes
    if version == "v3.0":
        ep_files = sorted((root / "meta/episodes").glob("chunk-*/file-*.parquet"))
        for f in ep_files:
            _req(re.fullmatch(r"chunk-\d{3}", f.parent.name) and re.fullmatch(r"file-\d{3}\.parquet", f.name), f"bad name {f}")
        episodes = [r for f in ep_files for r in pq.read_table(f).to_pylist()]
        ep_stats = {int(r["episode_index"]): _stats_from_row(r) for r in episodes}
        tasks_tbl = pq.read_table(root / "meta/tasks.parquet").to_pylist()
        _req([t["task_index"] for t in tasks_tbl] == list(range(len(tasks_tbl))), "tasks.parquet: row i must have task_index i")
        task_names = [t.get("__index_level_0__", t.get("task")) for t in tasks_tbl]
    else:
        episodes = [json.loads(l) for l in (root / "meta/episodes.jsonl").read_text().splitlines() if l.strip()]
        stats_lines = [json.loads(l) for l in (root / "meta/episodes_stats.jsonl").read_text().splitlines() if l.strip()]
        ep_stats = {int(s["episode_index"]): {f: {k: np.asarray(v) for k, v in d.items()} for f, d in s["stats"].items()} for s in stats_lines}
        tasks_tbl = [json.loads(l) for l in (root / "meta/tasks.jsonl").read_text().splitlines() if l.strip()]
        _req([t["task_index"] for t in tasks_tbl] == list(range(len(tasks_tbl))), "tasks.jsonl indices")
        task_names = [t["task"] for t in tasks_tbl]
    E = len(episodes)
    _req([int(e["episode_index"]) for e in episodes] == list(range(E)), "episode rows are not 0..E-1 in file order")
    _req(E == info["total_episodes"], f"total_episodes {info['total_episodes']} != {E}")
    _req(sorted(ep_stats) == list(range(E)), "episode stats do not cover every episode")
    _req(info["splits"] == {"train": f"0:{E}"}, f"splits {info['splits']}")
    _req(len(task_names) == info["total_tasks"], "total_tasks")
    lengths = [int(e["length"]) for e in episodes]
    total = sum(lengths)
    _req(total == info["total_frames"], f"sum(length) {total} != total_frames {info['total_frames']}")
    report["episodes"], report["frames"] = E, total

    # data rows
    if version == "v3.0":
        data_files = sorted((root / "data").glob("chunk-*/file-*.parquet"))
    else:
        data_files = [root / info["data_path"].format(episode_chunk=i // info["chunks_size"], episode_index=i) for i in range(E)]
        _req(info["total_videos"] == E * len(video_keys), "total_videos")
        _req(info["total_chunks"] == -(-E // info["chunks_size"]), "total_chunks")
    numeric = _numeric_columns(info)
    rows_by_ep: dict[int, dict[str, np.ndarray]] = {}
    image_recomputed: dict[tuple[int, str], tuple[np.ndarray, int]] = {}
    index_next, order = 0, []
    for f in data_files:
        t = pq.read_table(f)
        epi = t.column("episode_index").to_numpy()
        idx = t.column("index").to_numpy()
        _req(np.array_equal(idx, np.arange(index_next, index_next + len(idx))), f"{f.name}: index is not the global row position")
        index_next += len(idx)
        for e in np.unique(epi):
            sel = np.nonzero(epi == e)[0]
            _req(np.array_equal(sel, np.arange(sel[0], sel[0] + len(sel))), f"{f.name}: episode {e} rows not contiguous")
            cols = {}
            for name in numeric:
                col = t.column(name).take(sel)
                cols[name] = np.array(col.to_pylist(), dtype=np.float64)
            rows_by_ep[int(e)] = cols
            order.append(int(e))
            for k in image_keys:
                cells = t.column(k).take(sel).to_pylist()
                for cell in cells:
                    _req(cell and cell["bytes"][:8] == b"\x89PNG\r\n\x1a\n", f"episode {e} {k}: not PNG bytes")
                picked = np.stack([_shrink(np.asarray(Image.open(io.BytesIO(cells[i]["bytes"])).convert("RGB")))
                                   for i in _sampled(len(cells))])
                image_recomputed[(int(e), k)] = (picked, len(picked))
    _req(order == list(range(E)), "data rows are not grouped by ascending episode")
    _req(index_next == total, "data row count != total_frames")
    for e, L in enumerate(lengths):
        c = rows_by_ep[e]
        _req(len(c["frame_index"]) == L, f"episode {e}: {len(c['frame_index'])} rows, length {L}")
        _req(np.array_equal(c["frame_index"], np.arange(L)), f"episode {e}: frame_index not 0..len-1")
        _req(np.allclose(c["timestamp"], np.arange(L) / fps, atol=TOL_S), f"episode {e}: timestamp != frame_index/fps")
        _req(np.all(c["task_index"] < len(task_names)), f"episode {e}: task_index out of range")
        _req({task_names[int(i)] for i in c["task_index"]} <= set(episodes[e]["tasks"]), f"episode {e}: tasks do not match")
        if version == "v3.0":
            start = sum(lengths[:e])
            _req((episodes[e]["dataset_from_index"], episodes[e]["dataset_to_index"]) == (start, start + L), f"episode {e}: dataset_from/to_index")
    _check_numeric_stats(info["features"], {e: {k: v for k, v in c.items()} for e, c in rows_by_ep.items()}, ep_stats)

    # cameras
    with_q = {k: "q01" in ep_stats[0].get(k, {}) for k in video_keys + image_keys}
    for (e, k), (picked, n) in image_recomputed.items():
        recomputed = _image_stats(picked, with_q[k])
        for name, val in recomputed.items():
            _close(ep_stats[e][k][name], val, 1e-6, f"episode {e} {k} stats {name}")
        _req(list(np.asarray(ep_stats[e][k]["count"]).ravel()) == [n], f"episode {e} {k} count")
    for key in video_keys:
        by_file: dict[str, list] = defaultdict(list)
        for e, row in enumerate(episodes):
            if version == "v3.0":
                rel = info["video_path"].format(video_key=key, chunk_index=row[f"videos/{key}/chunk_index"], file_index=row[f"videos/{key}/file_index"])
                start = float(row[f"videos/{key}/from_timestamp"])
                _req(abs(float(row[f"videos/{key}/to_timestamp"]) - start - lengths[e] / fps) <= TOL_S, f"episode {e} {key}: to_timestamp")
            else:
                rel = info["video_path"].format(episode_chunk=e // info["chunks_size"], video_key=key, episode_index=e)
                start = 0.0
            _req((root / rel).is_file(), f"missing video {rel}")
            by_file[rel].append((e, start, lengths[e]))
        _check_video_files(info, by_file, root, key, fps, ep_stats, with_q, report)

    stats_path = root / "meta/stats.json"
    if version == "v3.0" or stats_path.is_file():
        _check_aggregate(json.loads(stats_path.read_text()), ep_stats)
    return report


def check_image_dataset(root: Path, expected_rows: int) -> dict:
    """Load with the real `datasets` loader, decode every image."""
    import datasets

    ds = datasets.load_dataset(str(root), split="train")
    _req(len(ds) == expected_rows, f"{len(ds)} rows, expected {expected_rows}")
    image_cols = [k for k, f in ds.features.items() if isinstance(f, datasets.Image)]
    _req(image_cols, "no Image column after loading")
    for row in ds:
        for k in image_cols:
            img = row[k]
            img.load()
            _req(img.size[0] > 0, "empty image")
    return {"rows": len(ds), "image_columns": image_cols}
