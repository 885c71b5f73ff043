"""Phase-history bookkeeping and its invariants, without a cluster."""
import pytest

from roboaug.api.models import AugmentationJobStatus
from roboaug.operator.phases import History, PhaseError, check, job_status_for

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
