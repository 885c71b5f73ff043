"""iter_frames(reuse=True): the same frames as fresh chunks, from one buffer."""

from __future__ import annotations

import numpy as np

from roboaug_worker.video import SegmentEncoder, iter_frames


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
