"""Per-episode statistics recomputed from the data, and the input's own stats checked against them.

Every episode the output holds gets stats computed here (numeric columns from its data rows, index
columns included) or by the episode task (cameras, from decoded pixels): the input's per-episode
stats are never carried over, since real datasets ship wrong ones (image std 0, index stats of a
larger parent dataset). Where the input's stats disagree with the data, a warning says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from .stats import numeric_stats

NUMERIC_SKIP_DTYPES = ("video", "image", "string")
NUMERIC_RTOL, NUMERIC_ATOL = 1e-4, 1e-6
CAMERA_TOL = 0.02
"""Camera stats (0..1) of decoded pixels differ from those of the pre-encode frames lerobot saw
by the codec's error: only a difference beyond ~5 grey levels is an inconsistency."""
MAX_EPISODES_NAMED = 5


def numeric_features(features: dict[str, dict], table: pa.Table) -> list[str]:
    """The features lerobot computes stats for from data rows: every non-camera, non-string one."""
    return [k for k, f in features.items() if f.get("dtype") not in NUMERIC_SKIP_DTYPES and k in table.column_names]


def column_values(table: pa.Table, name: str) -> np.ndarray:
    """A column as (rows,) or (rows, D) numpy values (fixed or variable list columns alike)."""
    col = table.column(name).combine_chunks()
    if pa.types.is_list(col.type) or pa.types.is_fixed_size_list(col.type) or pa.types.is_large_list(col.type):
        flat = col.flatten().to_numpy(zero_copy_only=False)
        return np.asarray(flat).reshape(len(col), -1)
    return np.asarray(col.to_numpy(zero_copy_only=False))


def episode_numeric_stats(features: dict[str, dict], table: pa.Table,
                          with_quantiles: dict[str, bool]) -> dict[str, dict[str, np.ndarray]]:
    """Stats of every numeric feature of one episode's rows (as they are written)."""
    return {k: numeric_stats(column_values(table, k), with_quantiles.get(k, False)) for k in numeric_features(features, table)}


@dataclass
class StatsWarnings:
    """Input inconsistencies, grouped by (feature, what is wrong) so one message names many episodes."""

    found: dict[tuple[str, str], list[int]] = field(default_factory=dict)

    def add(self, what: str, problem: str, episode: int) -> None:
        self.found.setdefault((what, problem), []).append(episode)

    def check(self, episode: int, given: dict[str, dict], recomputed: dict[str, dict], camera_keys: set[str]) -> None:
        """Compare the input's stats of one episode with the ones recomputed from its data."""
        for feat, new in recomputed.items():
            old = given.get(feat)
            if not old:
                continue
            if feat in camera_keys:
                std = np.asarray(old.get("std", 1.0), dtype=np.float64)
                if np.all(std == 0) and np.any(np.asarray(new["std"]) > 0):
                    self.add(f"stats of {feat!r}", "image std 0 (recomputed from the pixels)", episode)
                    continue
                keys, close = ("mean", "std"), lambda a, b: np.allclose(a, b, rtol=0, atol=CAMERA_TOL)
            else:
                keys = ("min", "max", "mean", "std")
                close = lambda a, b: np.allclose(a, b, rtol=NUMERIC_RTOL, atol=NUMERIC_ATOL)  # noqa: E731
            if "count" in old and np.asarray(old["count"]).ravel().tolist() != np.asarray(new["count"]).ravel().tolist():
                self.add(f"stats of {feat!r}", "count differs from the data (recomputed)", episode)
                continue
            bad = [k for k in keys if k in old and (np.asarray(old[k]).size != np.asarray(new[k]).size
                                                     or not close(np.asarray(old[k], dtype=np.float64).ravel(),
                                                                  np.asarray(new[k], dtype=np.float64).ravel()))]
            if bad:
                self.add(f"stats of {feat!r}", f"{'/'.join(bad)} differ from the data (recomputed)", episode)

    def messages(self) -> list[str]:
        out = []
        for (what, problem), eps in sorted(self.found.items()):
            named = ", ".join(str(e) for e in eps[:MAX_EPISODES_NAMED])
            more = f" and {len(eps) - MAX_EPISODES_NAMED} more" if len(eps) > MAX_EPISODES_NAMED else ""
            out.append(f"input {what}: {problem} in episode(s) {named}{more}")
        return out
