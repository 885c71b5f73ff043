"""A job's progress as the watcher shows it: counts from the GET answer, rate and ETA measured
between polls, and the one line that draws it. Pure functions: the CLI only prints their text."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Optional

from roboaug.api.models import AugmentationStatusResponse

_COUNTS = ("frames_done", "frames_total", "episodes_done", "episodes_total")


@dataclass(frozen=True)
class ProgressView:
    phase: str
    frames_done: int = 0
    frames_total: int = 0
    episodes_done: int = 0
    episodes_total: int = 0
    percent: Optional[float] = None
    eta_seconds: Optional[float] = None
    """The gateway's estimate, when it gives one."""


def _get(obj: Any, key: str) -> Any:
    return obj.get(key) if isinstance(obj, dict) else getattr(obj, key, None)


def progress_of(status: AugmentationStatusResponse) -> ProgressView:
    """The answer's `progress` when it has one; else the counts of the latest progress event in
    the phase history (the operator records one each time the worker moves by >= 10 %)."""
    phase = str(status.current_phase)
    reported = getattr(status, "progress", None)
    if reported is not None:
        counts = {k: int(_get(reported, k) or 0) for k in _COUNTS}
        percent, eta = _get(reported, "percent"), _get(reported, "eta_seconds")
        return ProgressView(phase=phase if status.status != "running" else str(_get(reported, "phase") or phase),
                            **counts, percent=None if percent is None else float(percent),
                            eta_seconds=None if eta is None else float(eta))
    data: dict = {}
    for ph in status.phases:
        for event in ph.events:
            if event.status == "progress" and event.data:
                data = event.data
    counts = {k: int(data.get(k) or 0) for k in _COUNTS}
    return ProgressView(phase=phase, **counts, percent=percent_of(counts["frames_done"], counts["frames_total"]))


def percent_of(done: int, total: int) -> Optional[float]:
    return min(100.0, 100.0 * done / total) if total > 0 else None


class RateMeter:
    """Frames per second over the last `window` seconds of samples (the job's own pace now,
    not its average since a slow download)."""

    def __init__(self, window: float = 30.0):
        self.window = window
        self._samples: deque[tuple[float, int]] = deque()

    def add(self, t: float, frames_done: int) -> None:
        if self._samples and frames_done < self._samples[-1][1]:
            self._samples.clear()  # a retry started over
        self._samples.append((t, frames_done))
        while len(self._samples) > 2 and t - self._samples[0][0] > self.window:
            self._samples.popleft()

    def rate(self) -> Optional[float]:
        if len(self._samples) < 2:
            return None
        (t0, f0), (t1, f1) = self._samples[0], self._samples[-1]
        if t1 <= t0 or f1 <= f0:
            return None
        return (f1 - f0) / (t1 - t0)


def eta_of(view: ProgressView, rate: Optional[float]) -> Optional[float]:
    if view.eta_seconds is not None:
        return view.eta_seconds
    if rate and view.frames_total > view.frames_done:
        return (view.frames_total - view.frames_done) / rate
    return None


def duration(seconds: Optional[float]) -> str:
    if seconds is None:
        return "--:--"
    s = max(0, int(round(seconds)))
    h, m, s = s // 3600, s % 3600 // 60, s % 60
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def bar(fraction: float, width: int) -> str:
    filled = int(round(max(0.0, min(1.0, fraction)) * width))
    return "[" + "#" * filled + "." * (width - filled) + "]"


def render_line(view: ProgressView, rate: Optional[float], elapsed: float, width: int = 100) -> str:
    """`augmenting [#####.....]  45%  120/270 frames  1/3 episodes  32.1 fr/s  ETA 0:05  (0:09)`,
    fitted to `width` columns (the bar shrinks first, then trailing fields go)."""
    percent = view.percent if view.percent is not None else percent_of(view.frames_done, view.frames_total)
    fields = []
    if percent is not None:
        fields.append(f"{percent:3.0f}%")
    if view.frames_total:
        fields.append(f"{view.frames_done}/{view.frames_total} frames")
    if view.episodes_total:
        fields.append(f"{view.episodes_done}/{view.episodes_total} episodes")
    if rate is not None:
        fields.append(f"{rate:.1f} fr/s")
    if percent is not None and percent < 100:
        fields.append(f"ETA {duration(eta_of(view, rate))}")
    fields.append(f"({duration(elapsed)})")
    head = f"{view.phase:<11}"
    while True:
        tail = "  ".join(fields)
        room = width - len(head) - len(tail) - 3
        if percent is not None and room >= 12:
            return f"{head} {bar(percent / 100, min(30, room - 2))}  {tail}"
        line = f"{head} {tail}"
        if len(line) <= width or len(fields) == 1:
            return line[:width]
        fields.pop(-2)
