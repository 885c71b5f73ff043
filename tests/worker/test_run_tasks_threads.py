"""run_tasks makes OpenCV single-threaded before it forks, so workers inherit one thread and a
worker resizing OpenCV's pool cannot deadlock on the parent's pool state."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import os, cv2, numpy as np
    from roboaug.worker.pool import run_tasks
    cv2.setNumThreads(2)
    frame = np.zeros((480, 640, 3), np.uint8)
    for _ in range(10):
        cv2.GaussianBlur(frame, (15, 15), 3)  # the parent's OpenCV pool is live, threads waiting

    def work(i):
        threads = cv2.getNumThreads()
        cv2.setNumThreads(1)  # what a worker might do itself: must not hang
        cv2.GaussianBlur(frame, (15, 15), 3)
        return threads, os.getpid()

    results = run_tasks(work, list(range(4)), 2, lambda task, result: None)
    print("THREADS", sorted({t for t, _ in results}), "PIDS", len({p for _, p in results}))
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the hazard is fork's (Linux default)")
def test_forked_workers_inherit_one_opencv_thread_without_deadlock():
    res = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    line = next(l for l in res.stdout.splitlines() if l.startswith("THREADS"))
    assert line.startswith("THREADS [1] PIDS")
    assert int(line.split()[-1]) >= 1
