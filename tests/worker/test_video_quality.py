"""Every output codec's quality setting reaches the encoder, and a lighting-only copy keeps the
source's quality class: >= 38 dB PSNR against the pre-encode frames, bitrate within 2x of the
source's (bench/bench_video_quality.py prints the same table for longer episodes)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from roboaug.worker import video
from roboaug.worker.video import SegmentEncoder

REPO = Path(__file__).resolve().parents[2]
QUALITY_KNOB = {"av1": ("AV1_CRF", "50"), "h264": ("H264_CRF", "45"), "mpeg4": ("MPEG4_QUANTISER", "25")}


def _bench():
    spec = importlib.util.spec_from_file_location("bench_video_quality", REPO / "bench/bench_video_quality.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _encode(path: Path, codec: str) -> int:
    rng = np.random.default_rng(0)
    frames = np.clip(np.linspace(0, 255, 64)[None, None, :, None] + rng.normal(0, 12, (6, 48, 64, 3)), 0, 255)
    with SegmentEncoder(path, codec=codec, pix_fmt="yuv420p", width=64, height=48, fps=10) as enc:
        enc.write(frames.astype(np.uint8))
    return path.stat().st_size


@pytest.mark.parametrize("codec", ["av1", "h264", "mpeg4"])
def test_the_quality_setting_reaches_the_encoder(tmp_path, monkeypatch, codec):
    """A setting the encoder ignores (mpeg4's `qscale` option was one) leaves the bytes alone."""
    fine = _encode(tmp_path / "fine.mp4", codec)
    name, coarse_value = QUALITY_KNOB[codec]
    monkeypatch.setattr(video, name, coarse_value)
    coarse = _encode(tmp_path / "coarse.mp4", codec)
    assert coarse < 0.8 * fine, f"{codec}: {name}={coarse_value} gave {coarse} bytes against {fine}"


@pytest.mark.parametrize("size", [(96, 96), (480, 640)], ids=["96x96", "640x480"])
@pytest.mark.parametrize("codec", ["av1", "h264", "mpeg4"])
def test_lighting_copy_keeps_the_source_quality_class(tmp_path, codec, size):
    row = _bench().measure(codec, size, tmp_path, lengths=(6, 6))
    print(row)
    assert row["psnr_db"] >= 38.0, row
    assert 0.5 <= row["output_over_source"] <= 2.0, row
