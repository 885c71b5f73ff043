"""The process pool: a function over independent tasks, results in task order.

Parallelism comes from processes (one task each, such as one output episode), never from the
kernels' own thread pools: OpenCV runs single-threaded in every process and each video encoder
gets one thread, so `processes` is the number of cores a job keeps busy.
"""

from __future__ import annotations

import os
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_all_start_methods, get_context
from typing import Any, Callable, Iterator, Optional, Sequence

from .errors import ExitCode, WorkerError


def default_processes() -> int:
    """min(2, the CPUs this process may run on): a cpuset smaller than the machine counts, not
    the machine (os.cpu_count)."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(2, usable))


def _single_threaded_kernels() -> None:
    """One OpenCV thread: parallelism comes from processes (one episode each), and OpenCV's own
    pool in each of them would only oversubscribe the cores the others use."""
    import cv2

    cv2.setNumThreads(1)


def worker_cores(processes: int) -> Optional[list[int]]:
    """The CPU each pool worker is held to, or None to let the kernel place them.

    ROBOAUG_PIN_WORKERS: "auto" (default) pins when this process may run on exactly as many CPUs
    as there are workers (an exclusive cpuset, such as the kubelet's static CPU manager gives a
    Guaranteed pod, or a small machine); "1" always pins (round robin); "0" never. A worker
    held to one CPU keeps its encoder's threads there too: measured on 2 cores, 2 pinned processes
    did 4-13 % more frames per second than unpinned ones, with 1-9 % less CPU
    (bench/bench_pipeline.py; the gain is largest at small frames). On a shared node, whose CPUs
    other pods also use, pinning would tie a worker to a CPU someone else may be busy on.
    """
    mode = os.environ.get("ROBOAUG_PIN_WORKERS", "auto").strip().lower()
    if mode not in ("auto", "0", "1"):
        raise WorkerError(ExitCode.INVALID_SPEC, f"ROBOAUG_PIN_WORKERS must be auto, 0 or 1, got {mode!r}")
    if processes <= 1 or mode == "0" or not hasattr(os, "sched_getaffinity"):
        return None
    cpus = sorted(os.sched_getaffinity(0))
    if mode == "auto" and len(cpus) != processes:
        return None
    return [cpus[k % len(cpus)] for k in range(processes)]


def _init_pool_worker(fresh_interpreter: bool, cores) -> None:
    if fresh_interpreter:  # spawn: nothing inherited from the parent
        _single_threaded_kernels()
    if cores is not None:
        core = cores.get()
        try:
            os.sched_setaffinity(0, {core})
        except OSError:  # the cpuset changed under us: a placement hint is not worth a failed job
            pass


def run_tasks(fn: Callable, tasks: Sequence, processes: int, on_done: Callable[[Any, Any], None]) -> list:
    """fn over tasks, results in task order whatever the completion order (so the output does
    not depend on `processes`); `on_done(task, result)` runs in this process as each finishes."""
    return list(iter_tasks(fn, tasks, processes, on_done))


def iter_tasks(fn: Callable, tasks: Sequence, processes: int, on_done: Callable[[Any, Any], None],
               window: Optional[int] = None) -> Iterator:
    """`run_tasks` as a generator: each result is yielded in task order as soon as it and all
    before it are done. `window`: at most that many tasks (at least `processes`) are submitted
    and not yet yielded, so at most that many results wait here (None: all submitted at once)."""
    # Set here, before any fork, never first in a forked child: a child that resizes OpenCV's
    # pool while the parent's pool threads were live deadlocks (pthread_cond_destroy on a
    # condition variable whose waiters exist only in the parent). Forked workers inherit it.
    _single_threaded_kernels()
    cores = worker_cores(processes)  # read first: a bad setting is refused even when unused
    if processes <= 1 or len(tasks) <= 1:
        for task in tasks:
            result = fn(task)
            on_done(task, result)
            yield result
        return
    # fork where there is one (no codec is open here yet, and it saves each worker the imports);
    # spawn elsewhere
    method = "fork" if "fork" in get_all_start_methods() else "spawn"
    ctx = get_context(method)
    queue = None
    if cores:
        queue = ctx.SimpleQueue()
        for core in cores:
            queue.put(core)
    limit = len(tasks) if window is None else max(window, processes)
    with ProcessPoolExecutor(max_workers=processes, mp_context=ctx, initializer=_init_pool_worker,
                             initargs=(method == "spawn", queue)) as pool:
        pending: dict = {}  # future -> task index
        finished: dict[int, Any] = {}  # task index -> result, until its turn
        submitted = yielded = 0
        try:
            while yielded < len(tasks):
                while submitted < len(tasks) and submitted - yielded < limit:
                    pending[pool.submit(fn, tasks[submitted])] = submitted
                    submitted += 1
                if yielded in finished:
                    yield finished.pop(yielded)
                    yielded += 1
                    continue
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    i = pending.pop(fut)
                    finished[i] = fut.result()
                    on_done(tasks[i], finished[i])
        except BaseException:  # a failed task, or the consumer gave up: nothing more is started
            for fut in pending:
                fut.cancel()
            raise
