"""A small pusht-like LeRobot v3.0 dataset, rendered deterministically, for the demo and tests.

`lerobot/pusht` itself cannot be fetched on machines without Hub access, so the demo and the
end-to-end tests serve this look-alike under that name from the local Hub test server: the same
layout (v3.0, episodes concatenated in one AV1 mp4, 96x96 at 10 fps, state/action float32[2]),
a T-shaped block pushed by a round agent, so the preview picture shows something recognisable.
Written by devstack's one synthetic LeRobot writer (synthetic.make_lerobot), not by the worker's,
so it is an independent input; this module only draws the scene.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from .synthetic import make_lerobot

TASK = "Push the T-shaped block onto the T-shaped target."
VIDEO_KEY = "observation.image"
FPS = 10
SIZE = 96


def scene(t: float, episode: int) -> tuple[np.ndarray, tuple[float, float]]:
    """The picture at progress t in [0, 1] of an episode, and where the agent is (pixels)."""
    img = np.full((SIZE, SIZE, 3), (236, 236, 230), np.uint8)
    cv2.rectangle(img, (4, 4), (SIZE - 5, SIZE - 5), (200, 200, 190), 1)

    def tee(cx, cy, angle, colour, thickness):
        pts = np.array([[-12, -10], [12, -10], [12, -4], [3, -4], [3, 14], [-3, 14], [-3, -4], [-12, -4]], float)
        c, s = math.cos(angle), math.sin(angle)
        pts = np.round(pts @ np.array([[c, s], [-s, c]]) + (cx, cy)).astype(np.int32)
        if thickness > 0:
            cv2.polylines(img, [pts], True, colour, thickness, cv2.LINE_AA)
        else:
            cv2.fillPoly(img, [pts], colour, cv2.LINE_AA)

    tee(60, 58, 0.4, (120, 200, 120), 1)  # the target (fixed)
    start = (30 + 8 * episode, 34 + 4 * episode)
    bx = start[0] + (60 - start[0]) * t
    by = start[1] + (58 - start[1]) * t
    tee(bx, by, 0.4 * t + 0.9 * (1 - t), (110, 110, 180), -1)  # the block, moving onto it
    ax, ay = bx - 14 + 4 * math.sin(6 * t), by - 14 + 4 * math.cos(5 * t)
    cv2.circle(img, (int(round(ax)), int(round(ay))), 5, (60, 90, 220), -1, cv2.LINE_AA)  # the agent
    return img, (ax, ay)


def write_sample_dataset(root: Path, episodes: int = 3, length: int = 30) -> Path:
    """Writes the dataset under `root` (created) and returns it. Same arguments, same bytes."""

    def progress(k: int) -> float:
        return k / (length - 1)

    def render(cam: int, ep: int, k: int, h: int, w: int) -> np.ndarray:
        return scene(progress(k), ep)[0]

    def signals(ep: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        agent = np.array([scene(progress(k), ep)[1] for k in range(n)])
        # pusht's state is the agent in a 512-px frame; its action, where the agent is sent next
        return (agent * 5.3).astype(np.float32), ((agent + 2) * 5.3).astype(np.float32)

    return make_lerobot(
        root, "v3.0", lengths=(length,) * episodes, cameras={VIDEO_KEY: "av1"}, episodes_per_file=episodes,
        size=(SIZE, SIZE), fps=FPS, quantiles=False, render=render, signals=signals, tasks=[TASK],
        robot_type="2d pointer",
    )


if __name__ == "__main__":
    import sys

    print(write_sample_dataset(Path(sys.argv[1] if len(sys.argv) > 1 else "sample-pusht")))
