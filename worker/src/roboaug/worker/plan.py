"""Units of work and shards: how one job's work is cut before any of it is done.

A unit is the smallest piece of output that can be written alone (its files hold nothing of any
other unit), decided by the format from the source's metadata (lerobot_writer.layout; an image
dataset is one unit). A shard is a contiguous run of units, balanced by frames. Both follow from
the metadata and the shard count only, never from timing or from which pod runs first, so the
output of a job is the same bytes for any shard count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

from roboaug.api.contract import DEFAULT_FRAMES_PER_SHARD, MAX_SHARDS, ShardPlan

AUTO_FRAMES_PER_SHARD = DEFAULT_FRAMES_PER_SHARD
"""The automatic plan (spec.shards unset): one shard up to this many frames of work (augmented
frames written), else one shard per this many, at most one per unit, unless the pool sets its own
(contract.FRAMES_PER_SHARD). Every test dataset is far below it (the pusht-sized bench: 77,250)."""


@dataclass(frozen=True)
class Unit:
    index: int
    episodes: tuple[int, ...]
    """Output episode indices (LeRobot), in output order; empty for a format written whole."""
    frames: int
    """Augmented frames the unit writes: its share of the work."""


def shard_of_units(frames: Sequence[int], shards: int) -> list[int]:
    """The shard of each unit: contiguous runs balanced by frames. A unit goes to the shard its
    midpoint falls in (frames before it plus half its own, out of the total), so the runs are
    contiguous and a shard holds about total/shards frames; with fewer units than shards, some
    shards are empty."""
    if shards < 1:
        raise ValueError(f"shards must be >= 1, got {shards}")
    weights = [max(0, int(f)) for f in frames]
    total = sum(weights)
    if total == 0:  # nothing to weigh by: balance by count
        weights, total = [1] * len(weights), len(weights)
    out, before = [], 0
    for w in weights:
        out.append(min(shards - 1, (2 * before + w) * shards // (2 * total)))
        before += w
    return out


def units_of_shard(units: Sequence[Unit], shards: int, index: int) -> list[Unit]:
    """The units shard `index` (0..shards-1) runs."""
    if not 0 <= index < shards:
        raise ValueError(f"shard index must be 0..{shards - 1}, got {index}")
    owner = shard_of_units([u.frames for u in units], shards)
    return [u for u, s in zip(units, owner) if s == index]


def auto_shards(units: Sequence[Unit], cap: Optional[int] = None, per_shard: Optional[int] = None) -> int:
    """The automatic shard count for these units: one shard per `per_shard` frames (the pool's,
    contract.FRAMES_PER_SHARD; None: AUTO_FRAMES_PER_SHARD), at most `cap` (the project's
    limits.max_shards, contract.SHARDS_LIMIT; None: MAX_SHARDS)."""
    per_shard = per_shard or AUTO_FRAMES_PER_SHARD
    frames = sum(u.frames for u in units)
    if frames <= per_shard:
        return 1
    return max(1, min(len(units), math.ceil(frames / per_shard), cap or MAX_SHARDS, MAX_SHARDS))


def shard_plan(units: Sequence[Unit], requested: Optional[int], cap: Optional[int] = None,
               per_shard: Optional[int] = None) -> ShardPlan:
    """The plan for a job: `requested` (spec.shards) when given, else automatic, at most `cap`.
    A requested count above the cap never gets here: the project's policy refuses it first."""
    shards = requested if requested is not None else auto_shards(units, cap, per_shard)
    return ShardPlan(shards=shards, units=len(units), frames=sum(u.frames for u in units))
