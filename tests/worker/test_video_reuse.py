"""iter_frames(reuse=True): the same frames as fresh chunks, from one buffer."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from roboaug.worker.video import SegmentEncoder, iter_frames


def test_reused_chunks_equal_fresh_chunks(tmp_path):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (11, 32, 48, 3), dtype=np.uint8)
    seg = tmp_path / "seg.mp4"
    with SegmentEncoder(seg, codec="mpeg4", pix_fmt="yuv420p", width=48, height=32, fps=10) as enc:
        enc.write(frames)
    fresh = [c.copy() for c in iter_frames(seg, 0.0, 11, 10, chunk=4)]
    reused, bases = [], set()
    for chunk in iter_frames(seg, 0.0, 11, 10, chunk=4, reuse=True):
        reused.append(chunk.copy())  # the next chunk overwrites this one
        bases.add(chunk.__array_interface__["data"][0])
    assert [len(c) for c in reused] == [4, 4, 3]
    assert len(bases) == 1  # one buffer throughout
    assert np.concatenate(reused).tobytes() == np.concatenate(fresh).tobytes()


def test_frames_match_pyav_per_frame_conversion(tmp_path):
    """The stream-wide converter gives the pixels frame.to_ndarray(format="rgb24") gives (what a
    PyAV-based loader sees), also after a seek into the middle of a file."""
    from roboaug.devstack import synthetic as fixtures

    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 256, (24, 40, 3), dtype=np.uint8) for _ in range(12)]
    seg = tmp_path / "av1.mp4"
    reference = np.stack(fixtures.encode(seg, frames, codec="av1", fps=10))
    ours = np.concatenate(list(iter_frames(seg, 0.0, 12, 10, chunk=5)))
    assert ours.tobytes() == reference.tobytes()
    tail = np.concatenate(list(iter_frames(seg, 0.6, 6, 10, chunk=5)))
    assert tail.tobytes() == reference[6:].tobytes()


@pytest.mark.skipif(not hasattr(os, "sched_getscheduler") or not os.path.isdir("/proc/self/task"),
                    reason="thread scheduling policies are Linux's")
def test_opening_an_av1_encoder_leaves_every_thread_in_normal_scheduling(tmp_path):
    """SVT-AV1 (as root) puts its opener and its threads in SCHED_FIFO 99; processes started
    afterwards would inherit it. Run in a child so a regression cannot leak into this session."""
    script = textwrap.dedent("""
        import os, sys, numpy as np
        from pathlib import Path
        from roboaug.worker.video import SegmentEncoder
        enc = SegmentEncoder(Path(sys.argv[1]), codec="av1", pix_fmt="yuv420p", width=64, height=64, fps=10)
        enc.write(np.zeros((3, 64, 64, 3), np.uint8))
        policies = {os.sched_getscheduler(int(t)) for t in os.listdir("/proc/self/task")}
        enc.close()
        print("POLICIES", sorted(policies), os.sched_getscheduler(0))
    """)
    res = subprocess.run([sys.executable, "-c", script, str(tmp_path / "a.mp4")], capture_output=True,
                         text=True, timeout=120, env={**os.environ, "SVT_LOG": "1"})
    assert res.returncode == 0, res.stderr[-2000:]
    line = next(l for l in res.stdout.splitlines() if l.startswith("POLICIES"))
    assert line == f"POLICIES [{os.SCHED_OTHER}] {os.SCHED_OTHER}", line
