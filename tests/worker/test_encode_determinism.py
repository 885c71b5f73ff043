"""Same frames in = same mp4 bytes out, however many encodes ran before in the process.

The promise "same request + same seed = same output bytes" rests on it. With libx264's
macroblock-tree on, re-encoding identical frames in one process gave different bytes in 2-6 of
6 episodes over 40 rounds (a fresh process always agreed with itself): a job that ran its episodes in one
process (`--processes 1`) changed bytes from run to run. Rare, so each episode is encoded
40 times per process here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from roboaug.devstack.synthetic import make_lerobot
from roboaug.worker.video import iter_frames

FPS = 10
LENGTHS = (12, 15, 10)
ROUNDS = 40  # x 6 episodes = 240 encodes per process; without the fix 2-6 episodes varied per run


def episode_frames(tmp: Path) -> list[np.ndarray]:
    """Decoded frames of a synthetic v2.1 h264 source, noised as an augmented copy would be."""
    root = make_lerobot(tmp / "src", "v2.1", cameras={"observation.images.top": "h264"}, lengths=LENGTHS, fps=FPS)
    videos = sorted((root / "videos").rglob("episode_*.mp4"))
    assert len(videos) == len(LENGTHS)
    episodes = [np.concatenate(list(iter_frames(p, 0.0, n, FPS))) for p, n in zip(videos, LENGTHS)]
    rng = np.random.default_rng(7)
    # two copies per source episode, each with its own noise: more distinct inputs per round
    out = []
    for frames in episodes * 2:
        noise = rng.normal(0, 8, frames.shape)
        out.append(np.clip(frames + noise, 0, 255).astype(np.uint8))
    return out


# Encodes every episode ROUNDS times in one bare process (numpy + the encoder only) and prints
# each episode's distinct digests. Measured: the defect depends on what the process ran before
# (the same loop inside pytest's process never showed it; this bare one shows it every run).
ENCODE_LOOP = """
import hashlib, json, sys
from pathlib import Path
import numpy as np
from roboaug.worker.video import SegmentEncoder
data = np.load(sys.argv[1])
episodes = [data[k] for k in sorted(data.files, key=int)]
out, codec, rounds = Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
seen = [set() for _ in episodes]
for _ in range(rounds):
    for i, frames in enumerate(episodes):
        frames = frames.copy()  # a new buffer each time, as the pipeline hands over new chunks
        path = out / f"ep{i}.mp4"
        h, w = frames.shape[1:3]
        enc = SegmentEncoder(path, codec=codec, pix_fmt="yuv420p", width=w, height=h, fps=%d)
        for start in range(0, len(frames), 16):
            enc.write(frames[start : start + 16])
        enc.close()
        seen[i].add(hashlib.sha256(path.read_bytes()).hexdigest())
print(json.dumps([sorted(s) for s in seen]))
""" % FPS


@pytest.mark.parametrize("codec", ["h264", "mpeg4"])
def test_same_frames_encode_to_same_bytes_in_one_process_and_across_processes(tmp_path, codec):
    npz = tmp_path / "frames.npz"
    np.savez(npz, **{str(i): f for i, f in enumerate(episode_frames(tmp_path))})
    root = Path(__file__).resolve().parents[2]
    runs = []
    for _ in range(2):  # two fresh processes, as a worker with several processes runs them
        res = subprocess.run(
            [sys.executable, "-c", ENCODE_LOOP, str(npz), str(tmp_path), codec, str(ROUNDS)],
            cwd=root, capture_output=True, text=True, timeout=300,
        )
        assert res.returncode == 0, res.stderr
        runs.append(json.loads(res.stdout))
    for digests in runs:
        varying = [i for i, d in enumerate(digests) if len(d) != 1]
        assert not varying, f"{codec}: episodes {varying} encode to different bytes across {ROUNDS} rounds in one process"
    assert runs[0] == runs[1], f"{codec}: two fresh processes encode different bytes"
