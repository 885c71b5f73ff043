"""The pipeline benchmark runs end to end in --quick mode and reports every figure."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_bench_quick_prints_every_figure(tmp_path):
    out = tmp_path / "figures.json"
    res = subprocess.run([sys.executable, str(REPO / "bench/bench_pipeline.py"), "--quick", "--json", str(out)],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    for words in ("wall-time shares", "codec-only", "2 processes", "1 process on 1 core",
                  "output video size / input", "peak RSS"):
        assert words in res.stdout
    figures = json.loads(out.read_text())
    assert [r["size"] for r in figures["sizes"]] == ["96x96", "480x640"]
    for r in figures["sizes"]:
        assert abs(sum(r["shares"].values()) - 1) < 1e-6
        assert r["fps_end_to_end_1proc"] > 0 and r["fps_codec_only_1proc"] > 0
        assert r["output_over_input_size"] > 0
        assert r["fps_end_to_end_1proc_1core"] > 0 and r["two_cores_over_one_core"] > 0
    assert all(v > 0 for v in figures["peak_rss_mib"].values())
    assert sorted(figures["image_peak_rss_mib"]) == ["100", "1000"] and "64x64 image dataset" in res.stdout
    assert figures["photo_12mp_peak_rss_mib"] > 0 and "12 MP (4000x3000) JPEG photos" in res.stdout
