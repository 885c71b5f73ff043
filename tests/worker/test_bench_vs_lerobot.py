"""The side-by-side benchmark's two sides run on a 2-episode dataset and agree on the output.

bench/bench_vs_lerobot.py times the worker against a lerobot user's script; this test runs both on
a tiny pusht look-alike (no timing asserted: figures live in the bench) so that the lerobot script
keeps working with the venv's lerobot and the bench's checks (frame counts, tasks, LeRobotDataset
loads) hold.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))
import bench_vs_lerobot as bvl  # noqa: E402

needs_lerobot = pytest.mark.skipif(bvl.lerobot_python() is None, reason=(
    "lerobot is not installed in ~/.cache/roboaug/lerobot-venv (or ROBOAUG_LEROBOT_VENV): "
    "`./dev setup-lerobot` installs lerobot with torch (about 8 GB) there"))


@pytest.mark.slow
@needs_lerobot
def test_both_sides_write_the_same_frames(tmp_path):
    out = tmp_path / "figures.json"
    res = subprocess.run([sys.executable, str(REPO / "bench/bench_vs_lerobot.py"), "--episodes", "2", "--length", "12",
                          "--copies", "2", "--workdir", str(tmp_path / "work"), "--json", str(out)],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-4000:]
    r = json.loads(out.read_text())
    assert r["source_frames"] == 24 and r["output_frames"] == 24 * 3
    for side in ("lerobot", "ours"):
        c = r["checked"][side]
        assert c["samples"] == c["total_frames"] == 72 and c["episodes"] == 2 * 3
        assert c["frames_decoded"] == 2 * 6  # first and last of each episode
        assert c["tasks"] == ["Push the T-shaped block onto the T-shaped target."]
        s = r[side]
        assert s["wall_s"] > 0 and s["cpu_s"] > 0 and s["maxrss_mib"] > 0 and s["tree_pss_mib"] > 0
    assert r["lerobot"]["version"] == "0.4.4"
    assert "lerobot / ours: wall" in res.stdout


def test_frame_count_or_task_mismatch_is_reported():
    """The bench refuses outputs whose frame count is not source x (1 + copies), or whose tasks differ."""
    good = {"samples": 72, "total_frames": 72, "tasks": ["t"]}
    assert bvl.validate({"lerobot": good, "ours": good}, 24, 2) == 72
    with pytest.raises(SystemExit, match="ours's output: 71 samples, total_frames 72; expected 72"):
        bvl.validate({"lerobot": good, "ours": {**good, "samples": 71}}, 24, 2)
    with pytest.raises(SystemExit, match="lerobot's output: 72 samples, total_frames 71"):
        bvl.validate({"lerobot": {**good, "total_frames": 71}, "ours": good}, 24, 2)
    with pytest.raises(SystemExit, match="tasks differ"):
        bvl.validate({"lerobot": good, "ours": {**good, "tasks": ["0"]}}, 24, 2)
