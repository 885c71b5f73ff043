"""Feature statistics the way lerobot computes them, with constant memory for camera features.

Camera stats: lerobot samples `estimate_num_samples(len)` evenly spaced frames, stride-downsamples
frames whose longer side is >= 300 px, and reduces per channel over the uint8 pixels. Pixels are
8-bit, so a 256-bin histogram per channel is a sufficient statistic: min, max, mean, std and
numpy's linear-interpolation quantiles follow from it exactly, and frames can be dropped as soon
as they are counted.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

QUANTILES = {"q01": 0.01, "q10": 0.10, "q50": 0.50, "q90": 0.90, "q99": 0.99}
BASIC_KEYS = ("min", "max", "mean", "std", "count")


def estimate_num_samples(n: int, lo: int = 100, hi: int = 10_000, power: float = 0.75) -> int:
    if n < lo:
        lo = n
    return max(lo, min(int(n**power), hi))


def sample_indices(n: int) -> np.ndarray:
    return np.round(np.linspace(0, n - 1, estimate_num_samples(n))).astype(int)


def downsample(frames: np.ndarray) -> np.ndarray:
    """(..., H, W, C) strided the way lerobot's auto_downsample_height_width does (target 150 px)."""
    h, w = frames.shape[-3], frames.shape[-2]
    if max(h, w) < 300:
        return frames
    f = int(w / 150) if w > h else int(h / 150)
    return frames[..., ::f, ::f, :]


class CameraStatsAccumulator:
    """Per-channel histograms of the sampled frames of one episode of one camera."""

    def __init__(self, n_frames: int, channels: int = 3):
        self.wanted = set(sample_indices(n_frames).tolist()) if n_frames else set()
        self.n_samples = len(sample_indices(n_frames)) if n_frames else 0
        self.hist = np.zeros((channels, 256), dtype=np.int64)
        self.seen = 0

    def add(self, frames: np.ndarray, first_index: int) -> None:
        """Count the sampled frames among `frames` (n, H, W, C), whose first is frame `first_index`."""
        for i in range(len(frames)):
            if first_index + i in self.wanted:
                small = downsample(frames[i])
                for c in range(self.hist.shape[0]):
                    self.hist[c] += np.bincount(small[..., c].ravel(), minlength=256)
                self.seen += 1

    def result(self, with_quantiles: bool) -> dict[str, np.ndarray]:
        if self.seen != self.n_samples:
            raise RuntimeError(f"camera stats saw {self.seen} of {self.n_samples} sampled frames")
        return stats_from_histogram(self.hist, self.n_samples, with_quantiles)


def _hist_quantile(cum: np.ndarray, total: int, q: float) -> float:
    """numpy's default (linear) quantile of the sorted values a histogram describes."""
    pos = q * (total - 1)
    lo, frac = int(np.floor(pos)), pos - np.floor(pos)
    v_lo = int(np.searchsorted(cum, lo, side="right"))
    v_hi = int(np.searchsorted(cum, min(lo + 1, total - 1), side="right"))
    return v_lo + (v_hi - v_lo) * frac


def stats_from_histogram(hist: np.ndarray, n_frames: int, with_quantiles: bool) -> dict[str, np.ndarray]:
    """lerobot's image stats (values / 255, shape (C,1,1), count [n_frames]) from (C, 256) histograms."""
    values = np.arange(256, dtype=np.float64)
    out: dict[str, list] = {k: [] for k in ("min", "max", "mean", "std", *(QUANTILES if with_quantiles else ()))}
    for h in hist:
        total = int(h.sum())
        nz = np.nonzero(h)[0]
        mean = float((h * values).sum() / total)
        out["min"].append(float(nz[0]))
        out["max"].append(float(nz[-1]))
        out["mean"].append(mean)
        out["std"].append(float(np.sqrt((h * (values - mean) ** 2).sum() / total)))
        if with_quantiles:
            cum = np.cumsum(h)
            for name, q in QUANTILES.items():
                out[name].append(_hist_quantile(cum, total, q))
    stats = {k: (np.array(v, dtype=np.float64) / 255.0).reshape(-1, 1, 1) for k, v in out.items()}
    stats["count"] = np.array([n_frames], dtype=np.int64)
    return stats


def aggregate(stats_list: Iterable[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Dataset stats of one feature from episode stats: count-weighted mean and pooled variance,
    global min/max, quantiles as count-weighted means (what lerobot's aggregate_stats does)."""
    stats_list = list(stats_list)
    counts = np.stack([np.asarray(s["count"], dtype=np.float64) for s in stats_list])
    total = counts.sum(axis=0)
    means = np.stack([np.asarray(s["mean"], dtype=np.float64) for s in stats_list])
    while counts.ndim < means.ndim:
        counts = counts[..., None]
    mean = (means * counts).sum(axis=0) / total.reshape((-1,) + (1,) * (means.ndim - 2))
    var = np.stack([np.asarray(s["std"], dtype=np.float64) ** 2 for s in stats_list])
    pooled = ((var + (means - mean) ** 2) * counts).sum(axis=0) / total.reshape((-1,) + (1,) * (means.ndim - 2))
    out = {
        "min": np.min(np.stack([np.asarray(s["min"]) for s in stats_list]), axis=0),
        "max": np.max(np.stack([np.asarray(s["max"]) for s in stats_list]), axis=0),
        "mean": mean,
        "std": np.sqrt(pooled),
        "count": np.asarray(total, dtype=np.int64),
    }
    for q in QUANTILES:
        if all(q in s for s in stats_list):
            qs = np.stack([np.asarray(s[q], dtype=np.float64) for s in stats_list])
            out[q] = (qs * counts).sum(axis=0) / total.reshape((-1,) + (1,) * (qs.ndim - 2))
    return out


def to_jsonable(stats: dict[str, np.ndarray]) -> dict[str, list]:
    return {k: np.asarray(v).tolist() for k, v in stats.items()}


def numeric_stats(values: np.ndarray, with_quantiles: bool) -> dict[str, np.ndarray]:
    """Stats of one numeric feature over one episode's rows (axis 0), lerobot's shapes: a scalar
    column gives (1,) arrays, a vector column (D,). min/max keep the column's dtype; quantiles
    are numpy's exact ones (lerobot approximates them with 5000-bin histograms)."""
    v = np.asarray(values)
    if v.ndim == 1:
        v = v[:, None]
    if v.dtype == np.bool_:
        v = v.astype(np.int64)
    f = v.astype(np.float64)
    out = {"min": v.min(0), "max": v.max(0), "mean": f.mean(0), "std": f.std(0)}
    if with_quantiles:
        for name, q in QUANTILES.items():
            out[name] = np.quantile(f, q, axis=0)
    out["count"] = np.array([len(v)], dtype=np.int64)
    return out
