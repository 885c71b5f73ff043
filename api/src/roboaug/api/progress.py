"""How far a job is: percent done and time left, from the worker's last report.

The one place these are computed: the gateway's GET answer (`JobProgress`) and the operator's
`status.progress_percent` (the `kubectl get` column) both call `job_progress`, so the two never
disagree. Pure: the caller passes the clock.

- percent: frames augmented of the frames to augment (episodes when the worker has no frame
  count yet); 0 while downloading (nothing augmented), 100 once the job completed, else null
  when the worker has not counted anything. Upload time is not counted (its counts are final).
- eta_seconds: only in `augmenting`, where there is a rate to go by: frames done per second
  since the worker began the phase (its own clock for both ends, so no skew between machines),
  the frames left at that rate, less the time since the report. 0 once completed; null before
  the first frame, outside `augmenting` and for a job that failed or was cancelled.
"""

from __future__ import annotations

from datetime import datetime
from typing import Optional

from .models.status import JobProgress, PhaseName, Progress

_ENDED_EARLY = (PhaseName.failed.value, PhaseName.cancelled.value)


def _counts(report: Progress) -> tuple[int, int]:
    """(done, total) of the finest unit the worker counted: frames, else episodes."""
    if report.frames_total > 0:
        return min(report.frames_done, report.frames_total), report.frames_total
    return min(report.episodes_done, report.episodes_total), report.episodes_total


def percent(report: Progress, job_phase: Optional[str]) -> Optional[float]:
    if job_phase == PhaseName.completed.value:
        return 100.0
    done, total = _counts(report)
    if total > 0:
        return round(100.0 * done / total, 1)
    if report.phase == PhaseName.downloading.value:
        return 0.0
    return None


def phase_start(report: Progress) -> Optional[datetime]:
    """When the worker began the phase it reports in, by its own clock (`Progress.phases`)."""
    return next((p.started_at for p in report.phases if p.name == report.phase), None)


def eta_seconds(report: Progress, job_phase: Optional[str], now: datetime) -> Optional[float]:
    if job_phase == PhaseName.completed.value:
        return 0.0
    if job_phase in _ENDED_EARLY or report.phase != PhaseName.augmenting.value:
        return None
    done, total = _counts(report)
    began = phase_start(report)
    if done <= 0 or total <= 0 or began is None:
        return None
    spent = (report.updated_at - began).total_seconds()
    if spent <= 0:
        return None
    left = (total - done) / (done / spent)
    since_report = max(0.0, (now - report.updated_at).total_seconds())
    return round(max(0.0, left - since_report), 1)


def job_progress(report: Optional[Progress], job_phase: Optional[str], now: datetime,
                 attempt: int = 0) -> Optional[JobProgress]:
    """The progress of a job whose current phase is `job_phase`, from the worker's last report;
    None before any report, and for a report of an earlier attempt than `attempt` (the job's
    current one), which says nothing about the attempt now running."""
    if report is None or report.attempt < attempt:
        return None
    ended = job_phase in (PhaseName.completed.value, *_ENDED_EARLY)
    return JobProgress(
        phase=job_phase if ended else report.phase,
        frames_done=report.frames_done, frames_total=report.frames_total,
        episodes_done=report.episodes_done, episodes_total=report.episodes_total,
        percent=percent(report, job_phase), eta_seconds=eta_seconds(report, job_phase, now),
    )
