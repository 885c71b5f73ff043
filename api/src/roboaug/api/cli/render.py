"""What the CLI prints for a person: a job's status, a table of jobs."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Optional, Sequence

from roboaug.api.client.progress import duration, percent_of, progress_of
from roboaug.api.models import AugmentationStatusResponse


def age(when: Optional[datetime], now: Optional[datetime] = None) -> str:
    """kubectl's AGE: 45s, 12m, 3h, 5d."""
    if when is None:
        return "-"
    now = now or datetime.now(timezone.utc)
    s = max(0, int((now - when).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s // size}{unit}"
    return f"{s}s"


def progress_cell(job: AugmentationStatusResponse) -> str:
    view = progress_of(job)
    percent = view.percent if view.percent is not None else percent_of(view.frames_done, view.frames_total)
    if job.status == "completed":
        return "100%"
    return "-" if percent is None else f"{percent:.0f}%"


def table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    cells = [list(header), *[list(map(str, r)) for r in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return "\n".join("   ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells)


LIST_HEADER = ("JOB ID", "STATUS", "PHASE", "PROGRESS", "DATASET", "OUTPUT", "AGE")


def jobs_table(jobs: Sequence[AugmentationStatusResponse], now: Optional[datetime] = None) -> str:
    rows = [(str(j.job_id), str(j.status), j.current_phase, progress_cell(j),
             j.effective_spec.dataset_id if j.effective_spec else "-", j.augmented_dataset_id or "-",
             age(j.created_at, now)) for j in jobs]
    return table(rows, LIST_HEADER)


def status_text(job: AugmentationStatusResponse, now: Optional[datetime] = None) -> str:
    view = progress_of(job)
    lines = [f"job:       {job.job_id}",
             f"status:    {job.status} (phase {job.current_phase})"]
    if view.frames_total or view.episodes_total:
        lines.append(f"progress:  {view.frames_done}/{view.frames_total} frames, "
                     f"{view.episodes_done}/{view.episodes_total} episodes"
                     + (f", ETA {duration(view.eta_seconds)}" if view.eta_seconds is not None else ""))
    if job.effective_spec is not None:
        lines.append(f"dataset:   {job.effective_spec.dataset_id}")
    if job.augmented_dataset_id:
        lines.append(f"output:    {job.augmented_dataset_id}"
                     + (f" @ {job.augmented_dataset_revision[:12]}" if job.augmented_dataset_revision else ""))
    if job.instance_type:
        lines.append(f"node:      {job.instance_type}" + (f" ({job.region})" if job.region else ""))
    if job.created_at:
        lines.append(f"created:   {job.created_at.isoformat()} ({age(job.created_at, now)} ago)")
    if job.error:
        lines.append(f"error:     {job.error}")
    if job.phases:
        rows = []
        for ph in job.phases:
            took = (duration((ph.completed_at - ph.started_at).total_seconds())
                    if ph.started_at and ph.completed_at else "")
            last = ph.events[-1].message if ph.events else ""
            rows.append((ph.name, str(ph.status), ph.started_at.strftime("%H:%M:%S") if ph.started_at else "-",
                         took, last or ""))
        lines += ["", table(rows, ("PHASE", "STATUS", "STARTED", "TOOK", "LAST EVENT"))]
    return "\n".join(lines)
