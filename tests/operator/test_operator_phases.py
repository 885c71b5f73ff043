"""Phase-history bookkeeping and its invariants, without a cluster."""
import pytest

from roboaug.api.models import AugmentationJobStatus
from roboaug.operator.phases import History, PhaseError, check, job_status_for, ts

from tests.operator._operator_factories import JOB_ID, at, iso


def started():
    h = History()
    h.start(JOB_ID, iso(0), at(0))
    return h


def test_happy_path_keeps_status_current_phase_and_last_phase_in_step():
    h = started()
    assert (h.status["status"], h.status["current_phase"]) == ("queued", "queued")
    for i, p in enumerate(["scheduling", "downloading", "augmenting", "uploading"], 1):
        assert h.advance(p, at(i))
        assert check(h.status) == []
        assert h.status["current_phase"] == p == h.status["phases"][-1]["name"]
        assert h.status["status"] == job_status_for(p)
    h.complete(at(9), "done")
    assert check(h.status) == []
    assert [p["name"] for p in h.status["phases"]] == ["queued", "scheduling", "downloading", "augmenting",
                                                       "uploading", "completed"]
    assert all(p["status"] == "completed" and p["completed_at"] for p in h.status["phases"])
    assert h.status["status"] == "completed"
    assert [t[:2] for t in h.transitions][0] == ("queued", "scheduling")
    assert h.transitions[0][2] == 1.0
    AugmentationJobStatus.model_validate(h.status)  # the CR's status model accepts it


def spans(*rows):
    """Progress.phases as the worker writes them: (name, began, ended or None), seconds after T0."""
    return [{"name": n, "started_at": iso(a), **({"completed_at": iso(b)} if b is not None else {})}
            for n, a, b in rows]


def times(h):
    return [(p["name"], p["started_at"], p["completed_at"]) for p in h.status["phases"]]


def test_worker_phases_seen_at_once_enter_the_history_at_the_workers_times():
    h = started()
    h.advance("scheduling", at(1))
    h.worker_phases(spans(("downloading", 3, 5), ("augmenting", 5, 9), ("uploading", 9, 12)), at(20))
    h.complete(at(20), "done", at=at(12))
    assert times(h) == [("queued", ts(at(0)), ts(at(1))), ("scheduling", ts(at(1)), ts(at(3))),
                        ("downloading", ts(at(3)), ts(at(5))), ("augmenting", ts(at(5)), ts(at(9))),
                        ("uploading", ts(at(9)), ts(at(12))), ("completed", ts(at(12)), ts(at(12)))]
    assert [e["timestamp"] for e in h.find("augmenting")["events"]] == [ts(at(5))]
    assert [(src, secs) for src, _dst, secs in h.transitions] == [
        ("queued", 1.0), ("scheduling", 2.0), ("downloading", 2.0), ("augmenting", 4.0), ("uploading", 3.0)]
    assert check(h.status) == []
    AugmentationJobStatus.model_validate(h.status)


def test_worker_times_stay_between_the_previous_phase_and_now():
    h = started()
    h.advance("scheduling", at(10))
    # a worker clock behind the operator's, and one ahead of it
    h.worker_phases(spans(("downloading", 4, 6), ("augmenting", 6, 30), ("uploading", 30, None)), at(20))
    assert times(h)[1:] == [("scheduling", ts(at(10)), ts(at(10))), ("downloading", ts(at(10)), ts(at(10))),
                            ("augmenting", ts(at(10)), ts(at(20))), ("uploading", ts(at(20)), None)]
    assert check(h.status) == []


def test_an_open_phase_the_operator_saw_late_moves_back_to_the_workers_start_never_forward():
    h = started()
    h.advance("scheduling", at(1))
    h.advance("downloading", at(8))  # the operator saw the pod running at 8
    h.worker_phases(spans(("downloading", 3, None)), at(9))
    assert times(h)[1:] == [("scheduling", ts(at(1)), ts(at(3))), ("downloading", ts(at(3)), None)]
    assert h.transitions[-1] == ("scheduling", "downloading", 2.0)
    # a retry's pod downloads again later: the phase keeps when it first began
    h.worker_phases(spans(("downloading", 15, None)), at(16))
    assert times(h)[2] == ("downloading", ts(at(3)), None)
    # a phase already closed is not reopened or moved; unknown names are ignored
    h.worker_phases(spans(("augmenting", 10, None)), at(11))
    h.worker_phases(spans(("downloading", 2, 10), ("augmenting", 10, None), ("queued", 0, 1)), at(12))
    assert times(h)[2:] == [("downloading", ts(at(3)), ts(at(10))), ("augmenting", ts(at(10)), None)]
    assert check(h.status) == []


def test_no_going_back_and_no_double_entry():
    h = started()
    h.advance("augmenting", at(1))
    assert not h.advance("downloading", at(2))
    assert not h.advance("augmenting", at(2))
    assert [p["name"] for p in h.status["phases"]] == ["queued", "augmenting"]
    with pytest.raises(PhaseError):
        h.advance("completed", at(3))


def test_failure_closes_running_phase_as_failed():
    h = started()
    h.advance("scheduling", at(1))
    h.fail(at(2), "no node could run the worker within 60s: 0/3 nodes", "pending timeout")
    assert check(h.status) == []
    sched, failed = h.status["phases"][-2:]
    assert sched["status"] == "failed" and sched["events"][-1]["status"] == "failed"
    assert failed["name"] == "failed" and failed["status"] == "failed"
    assert h.status["error"].startswith("no node could run") and h.status["status"] == "failed"
    with pytest.raises(PhaseError, match="already failed"):
        h.advance("downloading", at(3))


def test_cancel_is_not_a_failure():
    h = started()
    h.advance("downloading", at(1))
    h.cancel(at(2))
    assert check(h.status) == []
    dl, cancelled = h.status["phases"][-2:]
    assert dl["status"] == "completed" and dl["events"][-1]["status"] == "cancelled"
    assert cancelled["name"] == "cancelled" and h.status["status"] == "cancelled"
    assert h.status["error"] is None


def test_retry_counts_attempts_in_events():
    h = started()
    h.advance("downloading", at(1))
    h.retry(1, at(2), "attempt 0 failed", "worker exited with code 75")
    assert h.status["attempt"] == 1
    h.advance("augmenting", at(3))
    ev = h.status["phases"][-1]["events"][0]
    assert ev["retry_attempt"] == 1
    assert h.status["phases"][1]["events"][-1]["status"] == "retry"
    with pytest.raises(PhaseError):
        h.retry(1, at(4), "again", None)


def test_progress_events_are_deduplicated_and_capped():
    h = started()
    h.advance("augmenting", at(1))
    p = {"phase": "augmenting", "episodes_done": 1, "episodes_total": 200, "frames_done": 10, "frames_total": 20000}
    assert h.progress(p, at(2))
    assert not h.progress(dict(p, frames_done=11), at(3))  # less than 10 % of frames moved
    assert h.progress(dict(p, frames_done=2500), at(4))
    for i in range(2, 200):
        h.progress(dict(p, episodes_done=i), at(5 + i))
    prog = [e for e in h.status["phases"][-1]["events"] if e["status"] == "progress"]
    assert len(prog) == 50
    assert prog[0]["data"]["episodes_done"] == 1 and prog[-1]["data"]["episodes_done"] == 199
    assert check(h.status) == []


@pytest.mark.parametrize("mutate, problem", [
    (lambda s: s.update(current_phase="queued"), "current_phase"),
    (lambda s: s.update(status="queued"), "does not match phase"),
    (lambda s: s["phases"].append(dict(s["phases"][0])), "appears twice"),
    (lambda s: s["phases"][0].update(status="in_progress"), "earlier phase"),
    (lambda s: s.update(error="boom"), "error must be set exactly"),
    (lambda s: s["phases"].reverse(), "out of order"),
])
def test_check_catches_inconsistencies(mutate, problem):
    h = started()
    h.advance("scheduling", at(1))
    h.advance("downloading", at(2))
    mutate(h.status)
    assert any(problem in p for p in check(h.status)), check(h.status)


def test_worker_warnings_become_warning_events_once_per_job():
    from roboaug.operator.phases import History

    h = History()
    h.start(JOB_ID, iso(0), at(0))
    h.advance("downloading", at(1))
    assert h.warnings(["input stats differ"], at(2)) == ["input stats differ"]
    h.advance("augmenting", at(3))
    assert h.warnings(["input stats differ", "image std 0"], at(4)) == ["image std 0"]
    events = [(p["name"], e["message"]) for p in h.status["phases"] for e in p["events"] if e["status"] == "warning"]
    assert events == [("downloading", "input stats differ"), ("augmenting", "image std 0")]
