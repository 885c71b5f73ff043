"""The demo's pusht-like sample: pusht's shape, a valid LeRobot v3.0 dataset, the same bytes every time."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pyarrow.parquet as pq

from roboaug.devstack.sample_dataset import SIZE, TASK, VIDEO_KEY, scene, write_sample_dataset
from roboaug.worker.video import iter_frames, probe
from tests.worker.checker import check_lerobot


def _digest(root):
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_sample_has_pushts_shape_and_passes_the_lerobot_checker(tmp_path):
    root = write_sample_dataset(tmp_path / "a", episodes=3, length=30)
    info = json.loads((root / "meta/info.json").read_text())
    assert (info["codebase_version"], info["fps"], info["total_episodes"], info["total_frames"]) == ("v3.0", 10, 3, 90)
    cams = [k for k, f in info["features"].items() if f["dtype"] in ("video", "image")]
    assert cams == [VIDEO_KEY]
    for key in ("observation.state", "action"):
        assert (info["features"][key]["dtype"], info["features"][key]["shape"]) == ("float32", [2])
    videos = sorted((root / "videos").rglob("*.mp4"))
    assert len(videos) == 1  # every episode in one file, as pusht's
    p = probe(videos[0])
    assert (p.codec, p.width, p.height, p.frames) == ("av1", SIZE, SIZE, 90)
    episodes = pq.read_table(root / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    assert [e["length"] for e in episodes] == [30, 30, 30] and all(e["tasks"] == [TASK] for e in episodes)
    state = pq.read_table(root / "data/chunk-000/file-000.parquet").column("observation.state").to_pylist()
    assert state[0] != state[29] and state[0] != state[30]  # the agent moves, and differently per episode
    # the video holds the drawn scene (within AV1's loss): episode 1 starts where its block starts
    first = next(iter_frames(videos[0], 3.0, 1, 10))[0]
    assert np.abs(first.astype(int) - scene(0.0, 1)[0]).mean() < 6
    report = check_lerobot(root)
    assert report["episodes"] == 3 and report["frames"] == 90


def test_same_arguments_same_bytes(tmp_path):
    assert _digest(write_sample_dataset(tmp_path / "a", 2, 12)) == _digest(write_sample_dataset(tmp_path / "b", 2, 12))
