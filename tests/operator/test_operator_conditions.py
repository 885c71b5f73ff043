"""status.conditions, observedGeneration and the printer-column fields: derived from the phase
history (`phases.conditions`, `History.derive`), so they never disagree with status/current_phase."""

from roboaug.operator.config import parse_config
from roboaug.operator.decision import Observed
from roboaug.operator.phases import History, check, conditions, human_duration, ts
from roboaug.operator.reconcile import decide

from tests.operator._operator_factories import JOB_ID, at, cr, iso, job, pod

CFG = parse_config({"backoff_limit": 2, "pending_timeout_seconds": 60})
KINDS = ["Accepted", "Running", "Succeeded", "Failed", "Reconciling", "Stalled"]


def table(status):
    """type -> (status, reason) of the derived conditions, checking their order and shape."""
    conds = status["conditions"]
    assert [c["type"] for c in conds] == KINDS
    return {c["type"]: (c["status"], c["reason"]) for c in conds}


def times(status):
    return {c["type"]: c["lastTransitionTime"] for c in status["conditions"]}


def derived(h, now, generation=1, report=None):
    h.derive(generation, report, at(now))
    return h.status


def test_conditions_follow_a_job_through_its_phases():
    h = History()
    h.start(JOB_ID, iso(0), at(0))
    h.status["effective_spec"] = {"dataset_id": "lerobot/pusht"}
    assert table(derived(h, 0)) == {
        "Accepted": ("True", "Accepted"), "Running": ("False", "Queued"), "Succeeded": ("Unknown", "Queued"),
        "Failed": ("False", "Queued"), "Reconciling": ("True", "Queued"), "Stalled": ("False", "Queued")}
    h.advance("scheduling", at(2))
    h.advance("downloading", at(5), "worker started on node cpu-0")
    t = table(derived(h, 5))
    assert t["Running"] == ("True", "Downloading") and t["Reconciling"] == ("True", "Downloading")
    assert next(c for c in h.status["conditions"] if c["type"] == "Running")["message"] == "worker started on node cpu-0"
    h.advance("augmenting", at(9))
    assert table(derived(h, 9))["Running"] == ("True", "Augmenting")
    h.complete(at(20), "augmented dataset: org/out")
    assert table(derived(h, 20)) == {
        "Accepted": ("True", "Accepted"), "Running": ("False", "Completed"),
        "Succeeded": ("True", "Completed"), "Failed": ("False", "Completed"),
        "Reconciling": ("False", "Completed"), "Stalled": ("False", "Completed")}
    succeeded = next(c for c in h.status["conditions"] if c["type"] == "Succeeded")
    assert succeeded["message"] == "augmented dataset: org/out" and succeeded["observedGeneration"] == 1
    assert check(h.status) == []


def test_last_transition_time_moves_only_when_the_status_flips():
    h = History()
    h.start(JOB_ID, iso(0), at(0))
    h.status["effective_spec"] = {"dataset_id": "lerobot/pusht"}
    first = times(derived(h, 0))
    h.advance("scheduling", at(2))
    h.advance("downloading", at(5))
    running = times(derived(h, 6))
    # Running flipped when downloading began (the history's time, not the observation's)
    assert running["Running"] == ts(at(5))
    # the others kept their status and so their time, though their reason changed
    assert {k: v for k, v in running.items() if k != "Running"} == {k: v for k, v in first.items() if k != "Running"}
    h.advance("augmenting", at(9))
    assert times(derived(h, 30, generation=2)) == running  # still running: nothing flipped
    assert all(c["observedGeneration"] == 2 for c in h.status["conditions"])
    h.complete(at(40), "done")
    end = times(derived(h, 41))
    assert end["Running"] == end["Succeeded"] == end["Reconciling"] == ts(at(40))
    assert end["Failed"] == first["Failed"] and end["Accepted"] == first["Accepted"]


def test_a_fast_job_seen_once_gets_each_condition_at_its_own_time():
    h = History()
    h.start(JOB_ID, iso(0), at(0))
    for name, t in (("scheduling", 1), ("downloading", 2), ("augmenting", 3)):
        h.advance(name, at(t))
    got = times(derived(h, 10))
    assert got["Running"] == ts(at(2)) and got["Succeeded"] == ts(at(0)) and got["Accepted"] == ts(at(10))


def test_a_failure_names_its_reason():
    # an invalid spec: refused before anything was accepted
    p = decide(Observed(cr=cr(spec={"augment_transforms": "sparkles"}), now=at(1)), CFG)
    t = table(p.new_status)
    assert t == {"Accepted": ("False", "InvalidSpec"), "Running": ("False", "Failed"),
                 "Succeeded": ("False", "InvalidSpec"), "Failed": ("True", "InvalidSpec"),
                 "Reconciling": ("False", "Failed"), "Stalled": ("True", "InvalidSpec")}
    failed = next(c for c in p.new_status["conditions"] if c["type"] == "Failed")
    assert failed["message"] == p.new_status["error"] and "sparkles" in failed["message"]
    # a permanent exit code, after acceptance: the exit code's name
    first = decide(Observed(cr=cr(), now=at(1)), CFG)
    running = decide(Observed(cr=cr(status=first.new_status), job=job(), now=at(2),
                              pods=[pod(phase="Running", node="cpu-0")]), CFG)
    gone = pod(phase="Failed", node="cpu-0", exit_code=10, exit_message="no such dataset")
    p = decide(Observed(cr=cr(status=running.new_status), job=job(failed=1), pods=[gone], now=at(3)), CFG)
    t = table(p.new_status)
    assert t["Accepted"] == ("True", "Accepted") and t["Failed"] == ("True", "DatasetNotFound")
    assert t["Stalled"] == ("True", "DatasetNotFound") and t["Running"] == ("False", "Failed")
    assert check(p.new_status) == []


def test_a_pending_timeout_and_a_cancel():
    first = decide(Observed(cr=cr(), now=at(1)), CFG)
    stuck = pod(unschedulable="0/3 nodes are available")
    p = decide(Observed(cr=cr(status=first.new_status), job=job(), pods=[stuck], now=at(200)), CFG)
    assert table(p.new_status)["Failed"] == ("True", "PendingTimeout")
    p = decide(Observed(cr=cr(spec={"cancel_requested": True}, status=first.new_status), now=at(2)), CFG)
    assert table(p.new_status) == {
        "Accepted": ("True", "Accepted"), "Running": ("False", "Cancelled"), "Succeeded": ("False", "Cancelled"),
        "Failed": ("False", "Cancelled"), "Reconciling": ("False", "Cancelled"), "Stalled": ("False", "Cancelled")}


def test_accepted_is_unknown_while_the_policy_cannot_be_read():
    p = decide(Observed(cr=cr(), now=at(1), project_error="503 from the apiserver"), CFG)
    assert p.new_status["status"] == "queued" and "effective_spec" not in p.new_status
    assert table(p.new_status)["Accepted"] == ("Unknown", "Pending")
    later = decide(Observed(cr=cr(status=p.new_status), now=at(12)), CFG)
    accepted = next(c for c in later.new_status["conditions"] if c["type"] == "Accepted")
    assert (accepted["status"], accepted["lastTransitionTime"]) == ("True", ts(at(12)))


def test_derive_writes_observed_generation_and_the_printer_columns():
    h = History()
    assert derived(h, 0) == {"phases": [], "observedGeneration": 1, "conditions": []}
    h.start(JOB_ID, iso(0), at(0))
    h.advance("scheduling", at(1))
    st = derived(h, 1, generation=4)
    assert st["observedGeneration"] == 4 and "started_at" not in st and "progress_percent" not in st
    h.advance("downloading", at(3))
    h.advance("augmenting", at(10))
    report = {"phase": "augmenting", "frames_done": 333, "frames_total": 1000, "updated_at": iso(20),
              "phases": [{"name": "augmenting", "started_at": iso(10)}]}
    st = derived(h, 20, report=report)
    assert st["started_at"] == ts(at(3)) and st["progress_percent"] == 33 and "duration" not in st
    st = derived(h, 21)  # no report from the current pod this pass: the last percent stays
    assert st["progress_percent"] == 33
    h.complete(at(3 + 192), "done")
    st = derived(h, 200)
    assert st["progress_percent"] == 100 and st["duration"] == "3m12s"


def test_decide_keeps_progress_percent_to_the_current_pods_report():
    first = decide(Observed(cr=cr(), now=at(1)), CFG)
    runner = pod(name="p2", phase="Running", node="cpu-0")
    report = {"phase": "augmenting", "frames_done": 50, "frames_total": 100, "updated_at": iso(5), "pod": "p1"}
    st = decide(Observed(cr=cr(status={**first.new_status, "progress": report}), job=job(), pods=[runner],
                         now=at(6)), CFG).new_status
    assert "progress_percent" not in st  # another pod's report
    st = decide(Observed(cr=cr(status={**first.new_status, "progress": {**report, "pod": "p2"}}), job=job(),
                         pods=[runner], now=at(6)), CFG).new_status
    assert st["progress_percent"] == 50
    # a decision that ends before steps.progress (the Job failed) still reads only the current pod's
    gone = pod(name="p2", phase="Failed", node="cpu-0", exit_code=10)
    st = decide(Observed(cr=cr(status={**first.new_status, "progress": report}), job=job(failed=1), pods=[gone],
                         now=at(6)), CFG).new_status
    assert st["status"] == "failed" and "progress_percent" not in st


def test_human_duration_reads_like_kubectl():
    cases = {0: "0s", 59: "59s", 119: "119s", 120: "2m", 192: "3m12s", 599: "9m59s", 600: "10m",
             10799: "179m", 3 * 3600: "3h", 3 * 3600 + 5 * 60: "3h5m", 30 * 3600: "30h",
             50 * 3600: "2d2h", 48 * 3600: "2d", 10 * 86400: "10d", -5: "0s"}
    assert {s: human_duration(s) for s in cases} == cases


def test_check_flags_conditions_that_disagree_with_the_history():
    h = History()
    h.start(JOB_ID, iso(0), at(0))
    h.advance("scheduling", at(1))
    h.advance("downloading", at(2))
    st = derived(h, 2)
    assert check(st) == []
    stale = [{**c, "status": "True"} if c["type"] == "Succeeded" else c for c in st["conditions"]]
    assert any("disagree" in p for p in check({**st, "conditions": stale}))
    assert conditions({"phases": []}, 1, at(0)) == []
