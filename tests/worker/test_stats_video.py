"""Units under the pipeline: histogram stats equal numpy's, streaming decode stays bounded,
segments concatenate onto the grid, encoder settings are refused when invalid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from roboaug.worker import stats
from roboaug.worker.errors import ExitCode, WorkerError
from roboaug.worker.video import SegmentEncoder, concat_segments, encoder_settings, iter_frames, probe


@pytest.mark.parametrize("n,h,w", [(7, 20, 30), (250, 16, 24), (40, 320, 480)])
def test_histogram_stats_equal_numpy_on_sampled_frames(n, h, w):
    rng = np.random.default_rng(n)
    frames = rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8)
    acc = stats.CameraStatsAccumulator(n)
    for start in range(0, n, 16):
        acc.add(frames[start : start + 16], start)
    got = acc.result(with_quantiles=True)
    idx = np.round(np.linspace(0, n - 1, n if n < 100 else max(100, int(n ** 0.75)))).astype(int)
    sub = frames[idx]
    if max(h, w) >= 300:
        f = int(max(h, w) / 150)
        sub = sub[:, ::f, ::f]
    chw = sub.transpose(3, 0, 1, 2).reshape(3, -1).astype(np.float64)
    np.testing.assert_allclose(got["mean"].ravel(), chw.mean(1) / 255, atol=1e-12)
    np.testing.assert_allclose(got["std"].ravel(), chw.std(1) / 255, atol=1e-12)
    np.testing.assert_allclose(got["min"].ravel(), chw.min(1) / 255)
    np.testing.assert_allclose(got["q10"].ravel(), np.quantile(chw, 0.10, axis=1) / 255, atol=1e-12)
    np.testing.assert_allclose(got["q99"].ravel(), np.quantile(chw, 0.99, axis=1) / 255, atol=1e-12)
    assert got["count"].tolist() == [len(idx)] and got["mean"].shape == (3, 1, 1)


def test_aggregate_pools_mean_and_variance():
    a, b = np.arange(10.0)[:, None], np.arange(100.0, 130.0)[:, None]
    sa = {"min": a.min(0), "max": a.max(0), "mean": a.mean(0), "std": a.std(0), "count": np.array([10])}
    sb = {"min": b.min(0), "max": b.max(0), "mean": b.mean(0), "std": b.std(0), "count": np.array([30])}
    both = np.concatenate([a, b])
    agg = stats.aggregate([sa, sb])
    np.testing.assert_allclose(agg["mean"], both.mean(0))
    np.testing.assert_allclose(agg["std"], both.std(0))
    assert agg["count"].tolist() == [40] and agg["max"].tolist() == [129.0]


def _segment(path: Path, n: int, seed: int, codec="av1") -> Path:
    frames = np.random.default_rng(seed).integers(0, 256, (n, 32, 48, 3), dtype=np.uint8)
    with SegmentEncoder(path, codec=codec, pix_fmt="yuv420p", width=48, height=32, fps=15) as enc:
        enc.write(frames)
    return path


@pytest.mark.parametrize("codec", ["av1", "h264", "mpeg4"])
def test_concatenated_segments_sit_on_the_grid(tmp_path, codec):
    segs = [(_segment(tmp_path / f"s{i}.mp4", n, i, codec), n) for i, n in enumerate((5, 9, 4))]
    starts = concat_segments(segs, tmp_path / "cat.mp4", 15)
    assert starts == [0.0, 5 / 15, 14 / 15]
    info = probe(tmp_path / "cat.mp4")
    assert (info.codec, info.frames, info.fps) == (codec, 18, 15)
    for (_, n), s in zip(segs, starts):
        assert sum(len(c) for c in iter_frames(tmp_path / "cat.mp4", s, n, 15, chunk=4)) == n


def test_streaming_decode_yields_bounded_chunks(tmp_path):
    seg = _segment(tmp_path / "long.mp4", 70, 3)
    sizes = [len(c) for c in iter_frames(seg, 0.0, 70, 15, chunk=8)]
    assert max(sizes) <= 8 and sum(sizes) == 70


def test_asking_for_more_frames_than_exist_is_corrupt(tmp_path):
    seg = _segment(tmp_path / "short.mp4", 6, 4)
    with pytest.raises(WorkerError) as err:
        list(iter_frames(seg, 0.0, 9, 15))
    assert err.value.code == ExitCode.CORRUPT_VIDEO


def test_same_frames_same_segment_bytes(tmp_path):
    a = _segment(tmp_path / "a.mp4", 10, 1).read_bytes()
    b = _segment(tmp_path / "b.mp4", 10, 1).read_bytes()
    assert a == b


def test_encoder_settings(monkeypatch):
    name, opts = encoder_settings("av1")
    assert name == "libsvtav1" and opts["g"] == "2" and opts["crf"] == "30" and opts["preset"] == "12"
    monkeypatch.setenv("ROBOAUG_SVTAV1_PRESET", "8")
    assert encoder_settings("av1")[1]["preset"] == "8"
    monkeypatch.setenv("ROBOAUG_SVTAV1_PRESET", "fast")
    with pytest.raises(WorkerError) as err:
        encoder_settings("av1")
    assert "ROBOAUG_SVTAV1_PRESET" in err.value.message
    with pytest.raises(WorkerError) as err:
        encoder_settings("vp9")
    assert err.value.code == ExitCode.UNSUPPORTED_FORMAT
