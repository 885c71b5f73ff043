"""An out-of-memory that repeats ends the job (issue 14 item 15): the first OOM-killed attempt
(container reason OOMKilled, exit 137, or the worker's own exit out_of_memory) is retried like
any retryable failure; the second fails the job for good, naming the reason, and stops its Job,
even when the first pod is gone by then."""
from roboaug.operator.steps import OOM_ATTEMPTS

from tests.operator._operator_factories import cr, job, pod
from tests.operator.test_operator_reconcile import applied, run

KILLED = {"exit_code": 137, "exit_reason": "OOMKilled"}
OWN = {"exit_code": 76, "exit_reason": "Error", "exit_message": "roboaug-worker: error[76 out_of_memory]: out of memory"}


def failed(name, created, how):
    return pod(name=name, created=created, phase="Failed", node="cpu-0", **how)


def started():
    c = applied(cr(), run(cr()))
    return applied(c, run(c, job=job(), pods=[pod(name="p0", phase="Running", node="cpu-0")]))


def test_the_second_oom_kill_fails_the_job_for_good_and_stops_it():
    assert OOM_ATTEMPTS == 2
    c = started()
    p = run(c, now=3, job=job(failed=1), pods=[failed("p0", 1, KILLED), pod(name="p1", created=2)])
    assert p.finished is None and p.retries == 1 and p.delete_job is None
    c = applied(c, p)
    # the first pod is gone (garbage-collected) by the time the second is killed: counted from the retry noted
    p = run(c, now=5, job=job(failed=2), pods=[failed("p1", 2, KILLED), pod(name="p2", created=3)])
    assert p.finished == "failed" and p.delete_job == "aug-demo-worker"
    err = p.new_status["error"]
    assert err.startswith("out of memory in 2 attempts (pods p0, p1), permanent after 2: the job needs a pool with "
                          "more memory; last: worker exited with code 137 (OOMKilled, retryable)"), err


def test_the_workers_own_out_of_memory_exit_counts_too():
    c = started()
    p = run(c, now=3, job=job(failed=2), pods=[failed("p0", 1, OWN), failed("p1", 2, KILLED), pod(name="p2", created=3)])
    assert p.finished == "failed" and "out of memory in 2 attempts (pods p0, p1)" in p.new_status["error"]


def test_one_oom_among_other_failures_is_retried():
    c = started()
    crash = {"exit_code": 70, "exit_reason": "Error"}
    p = run(c, now=3, job=job(failed=2), pods=[failed("p0", 1, KILLED), failed("p1", 2, crash), pod(name="p2", created=3)])
    assert p.finished is None and p.retries == 2, p.new_status.get("error")
