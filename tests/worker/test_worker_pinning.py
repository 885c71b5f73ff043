"""Pool workers held to one CPU each when the worker owns exactly as many CPUs as workers."""

from __future__ import annotations

import os
import sys

import pytest

from roboaug.worker import pool
from roboaug.worker.errors import WorkerError

linux_only = pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="needs sched_getaffinity (Linux)")


@linux_only
@pytest.mark.parametrize("mode, cpus, processes, expected", [
    ("auto", {4, 7}, 2, [4, 7]),           # exclusive cpuset the size of the pool: pinned
    ("auto", set(range(16)), 2, None),     # a shared node: left to the kernel
    ("auto", {0, 1}, 1, None),             # one process: nothing to spread
    ("1", set(range(4)), 2, [0, 1]),
    ("1", {3}, 2, [3, 3]),                 # fewer CPUs than workers: round robin
    ("0", {0, 1}, 2, None),
])
def test_worker_cores(monkeypatch, mode, cpus, processes, expected):
    monkeypatch.setenv("ROBOAUG_PIN_WORKERS", mode)
    monkeypatch.setattr(pool.os, "sched_getaffinity", lambda pid: set(cpus))
    assert pool.worker_cores(processes) == expected


def test_bad_pin_setting_names_the_variable(monkeypatch):
    monkeypatch.setenv("ROBOAUG_PIN_WORKERS", "yes")
    with pytest.raises(WorkerError, match="ROBOAUG_PIN_WORKERS must be auto, 0 or 1"):
        pool.worker_cores(2)
    with pytest.raises(WorkerError, match="ROBOAUG_PIN_WORKERS"):  # also where one process makes it moot
        pool.run_tasks(_square, [1], 1, lambda task, result: None)


def _affinity(_task):
    return sorted(os.sched_getaffinity(0)), os.getpid()


@linux_only
@pytest.mark.skipif(len(getattr(os, "sched_getaffinity", lambda _p: ())(0)) < 2, reason="needs 2 CPUs")
def test_pool_workers_run_on_their_own_cpu(monkeypatch):
    monkeypatch.setenv("ROBOAUG_PIN_WORKERS", "1")
    cpus = sorted(os.sched_getaffinity(0))
    results = pool.run_tasks(_affinity, list(range(6)), 2, lambda task, result: None)
    by_pid = {pid: tuple(aff) for aff, pid in results}
    assert all(len(aff) == 1 for aff in by_pid.values())
    assert {aff[0] for aff in by_pid.values()} <= set(cpus[:2])
    if len(by_pid) == 2:  # both workers got tasks: each on its own CPU
        assert len(set(by_pid.values())) == 2
    assert sorted(os.sched_getaffinity(0)) == cpus  # the parent is left as it was


@linux_only
@pytest.mark.parametrize("cpus, expected", [({5}, 1), ({0, 3}, 2), (set(range(32)), 2)])
def test_default_processes_follow_the_cpus_this_process_may_use(monkeypatch, cpus, expected):
    monkeypatch.setattr(pool.os, "sched_getaffinity", lambda pid: set(cpus))
    assert pool.default_processes() == expected


def _refuse_affinity(pid, cpus):
    raise OSError(22, "Invalid argument")


def _square(x):
    return x * x


@linux_only
def test_a_refused_pin_does_not_fail_the_run(monkeypatch):
    """Pinning is a hint: a CPU that left the cpuset meanwhile must not break the pool."""
    monkeypatch.setenv("ROBOAUG_PIN_WORKERS", "1")
    monkeypatch.setattr(os, "sched_setaffinity", _refuse_affinity)  # inherited by the forked workers
    assert pool.run_tasks(_square, [1, 2, 3, 4], 2, lambda task, result: None) == [1, 4, 9, 16]
