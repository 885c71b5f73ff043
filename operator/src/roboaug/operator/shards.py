"""A sharded job's bookkeeping: which shard each pod runs, progress summed over the shards, and
the bound on how often that sum is written.

A job runs sharded when its spec sets `shards` (>= 2) or when its one-pod run exits SHARD_PLAN
with a plan (contract "Sharded jobs"); `status.shards` then says so, and `steps.py` runs the
Indexed Job `<cr>-worker`, the `<cr>-finalize` Job after it, and `<cr>-cleanup` after a failed or
cancelled one. Pure functions and one small clock-driven class; no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, Optional

from .observe import PodView

COMPLETION_INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
"""The shard a pod of an Indexed Job runs (the job controller writes it on each pod)."""

PROGRESS_WRITES_PER_SECOND = 1.0
"""Most status writes per second per job carrying only the shards' summed progress (frames, and
how many shards are done), whatever the shard count: 10,000 shards report and end as often as
one. Phase moves, every shard done (finalize), a shard failed for good and the end are written
at once."""


def index_pods(pods: Iterable[PodView]) -> dict[int, PodView]:
    """The current pod of each index: the newest alive, else the newest (`decision.current_pod`'s
    rule, per index). Pods without an index (a single stage's) are left out."""
    by: dict[int, list[PodView]] = {}
    for p in pods:
        if p.index is not None:
            by.setdefault(p.index, []).append(p)
    out = {}
    for i, group in by.items():
        live = [p for p in group if not p.deleting and p.phase not in ("Failed", "Succeeded")]
        out[i] = max(live or group, key=lambda p: (p.created or "", p.name))
    return out


@dataclass(frozen=True)
class Aggregate:
    done: int           # indexes whose current pod succeeded
    frames_done: int    # summed over the current pods of each index that reported
    frames_total: int

    def as_status(self) -> dict:
        return {"done": self.done, "frames_done": self.frames_done, "frames_total": self.frames_total}


def aggregate(pods: Iterable[PodView], reports: Mapping[int, dict], succeeded: int = 0) -> Aggregate:
    """Progress summed over the shards: each index counts the last report of its current pod (a
    report of an earlier attempt of the index is dropped: a retry starts again), a succeeded
    index all of its frames. `succeeded`: the Job's own count, which outlives deleted pods."""
    current = index_pods(pods)
    done = frames_done = frames_total = 0
    for i, pod in current.items():
        report = reports.get(i)
        ok = pod.phase == "Succeeded"
        done += ok
        if report is None or report.get("pod") != pod.name:
            continue
        total = int(report.get("frames_total") or 0)
        frames_total += total
        frames_done += total if ok else min(total, int(report.get("frames_done") or 0))
    return Aggregate(done=max(done, succeeded), frames_done=frames_done, frames_total=frames_total)


def remember(reports: dict[int, dict], report: Optional[dict], pods: Iterable[PodView]) -> bool:
    """Keep `report` (the CR's status.progress as seen now) as its index's last word, when it was
    written by one of `pods` (the Indexed Job's). Each shard pod overwrites status.progress; the
    controller calls this on every look, so the last report of each index is kept. True if kept."""
    if not report or not report.get("pod"):
        return False
    pod = next((p for p in pods if p.name == report["pod"] and p.index is not None), None)
    if pod is None:
        return False
    # only what `aggregate` reads: 10,000 shards keep 10,000 small dicts, not whole reports
    reports[pod.index] = {k: report.get(k) for k in ("pod", "frames_done", "frames_total")}
    return True


class WriteBudget:
    """At most `per_second` progress-only status writes per second for one job: `due(now)` says
    whether one may go now, `spent(now)` records one, `wait(now)` how long until the next."""

    def __init__(self, per_second: float = PROGRESS_WRITES_PER_SECOND):
        self.interval = 1.0 / per_second
        self.last: Optional[float] = None

    def due(self, now: float) -> bool:
        return self.last is None or now - self.last >= self.interval

    def wait(self, now: float) -> float:
        return 0.0 if self.due(now) else self.interval - (now - self.last)

    def spent(self, now: float) -> None:
        self.last = now
