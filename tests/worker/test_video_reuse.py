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


def test_frames_match_pyav_per_frame_conversion(tmp_path):
    """The stream-wide converter gives the pixels frame.to_ndarray(format="rgb24") gives (what a
    PyAV-based loader sees), also after a seek into the middle of a file."""
    import fixtures

    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 256, (24, 40, 3), dtype=np.uint8) for _ in range(12)]
    seg = tmp_path / "av1.mp4"
    reference = np.stack(fixtures.encode(seg, frames, codec="av1", fps=10))
    ours = np.concatenate(list(iter_frames(seg, 0.0, 12, 10, chunk=5)))
    assert ours.tobytes() == reference.tobytes()
    tail = np.concatenate(list(iter_frames(seg, 0.6, 6, 10, chunk=5)))
    assert tail.tobytes() == reference[6:].tobytes()
