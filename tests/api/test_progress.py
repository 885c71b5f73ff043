"""roboaug.api.progress: percent and ETA from the worker's report, the one place they are computed."""

from datetime import datetime, timedelta, timezone

from roboaug.api.models.status import Progress
from roboaug.api.progress import eta_seconds, job_progress, percent

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def report(phase="augmenting", frames=(0, 0), episodes=(0, 0), updated=100, began=40, attempt=0) -> Progress:
    spans = [{"name": "downloading", "started_at": at(0), "completed_at": at(began)}]
    if phase != "downloading":
        spans.append({"name": "augmenting", "started_at": at(began)})
    return Progress(phase=phase, frames_done=frames[0], frames_total=frames[1], episodes_done=episodes[0],
                    episodes_total=episodes[1], updated_at=at(updated), phases=spans, attempt=attempt)


def test_percent_of_frames_else_episodes():
    assert percent(report(frames=(250, 1000), episodes=(1, 2)), "augmenting") == 25.0
    # no frame count (image datasets count rows as episodes): episodes
    assert percent(report(episodes=(1, 3)), "augmenting") == 33.3
    # a done count above the total (a report racing its total) never passes 100
    assert percent(report(frames=(1200, 1000)), "augmenting") == 100.0
    # nothing augmented while downloading; nothing known in another phase without counts
    assert percent(report(phase="downloading"), "downloading") == 0.0
    assert percent(report(phase="uploading"), "uploading") is None
    # a completed job is done, whatever its last counts said
    assert percent(report(frames=(10, 1000)), "completed") == 100.0


def test_eta_from_the_rate_since_the_worker_began_augmenting():
    # 250 of 1000 frames in the 60 s since augmenting began: 750 left at 250/60 per second = 180 s
    r = report(frames=(250, 1000), updated=100, began=40)
    assert eta_seconds(r, "augmenting", now=at(100)) == 180.0
    # seen 30 s after the report: 150 s left; never below 0, never above what the report said
    assert eta_seconds(r, "augmenting", now=at(130)) == 150.0
    assert eta_seconds(r, "augmenting", now=at(1000)) == 0.0
    assert eta_seconds(r, "augmenting", now=at(90)) == 180.0  # clocks a little apart
    assert eta_seconds(report(episodes=(1, 4), updated=70, began=40), "augmenting", now=at(70)) == 90.0


def test_no_eta_when_it_cannot_be_estimated():
    assert eta_seconds(report(frames=(0, 1000)), "augmenting", now=at(100)) is None        # no frame yet
    assert eta_seconds(report(frames=(5, 1000), updated=40), "augmenting", now=at(40)) is None  # no time spent
    assert eta_seconds(report(phase="downloading"), "downloading", now=at(100)) is None
    assert eta_seconds(report(phase="uploading", frames=(1000, 1000)), "uploading", now=at(100)) is None
    r = report(frames=(250, 1000))
    assert eta_seconds(r, "failed", now=at(100)) is None and eta_seconds(r, "cancelled", now=at(100)) is None
    no_times = Progress(phase="augmenting", frames_done=5, frames_total=10, updated_at=at(100))
    assert eta_seconds(no_times, "augmenting", now=at(100)) is None
    assert eta_seconds(r, "completed", now=at(100)) == 0.0


def test_job_progress_is_null_before_a_report_and_for_an_earlier_attempt():
    assert job_progress(None, "queued", at(0)) is None
    r = report(frames=(250, 1000), episodes=(1, 4), attempt=1)
    assert job_progress(r, "augmenting", at(100), attempt=2) is None
    got = job_progress(r, "augmenting", at(100), attempt=1)
    assert got.model_dump() == {"phase": "augmenting", "frames_done": 250, "frames_total": 1000,
                                "episodes_done": 1, "episodes_total": 4, "percent": 25.0, "eta_seconds": 180.0}
    # once the job has ended, its phase is the final one
    done = job_progress(report(phase="uploading", frames=(1000, 1000)), "completed", at(200))
    assert (done.phase, done.percent, done.eta_seconds) == ("completed", 100.0, 0.0)
    failed = job_progress(r, "failed", at(200))
    assert (failed.phase, failed.percent, failed.eta_seconds) == ("failed", 25.0, None)
