"""Augmentation kernels vs the equivalent albumentations pipeline, and 1 vs 2 processes.

    .venv/bin/python bench/bench_kernels.py            # full run (about 1-2 minutes on an idle machine)
    .venv/bin/python bench/bench_kernels.py --quick    # smoke run (seconds)

All four transforms stacked (lighting, occlusion, blur, noise), on the same synthetic frames at
96x96 (pusht-like) and 480x640, in one run, printed side by side with the ratio. Two matched
pairs of pipelines:

  gauss+motion  ours: lighting, rectangle occlusion, motion blur 5..15 px, gaussian noise 3..15
                alb.: RandomBrightnessContrast, PlanckianJitter(blackbody 4000..6500 K),
                      CoarseDropout, MotionBlur(5..15), GaussNoise(3..15 levels)
  shot+defocus  ours: lighting, overlay occlusion, defocus sigma 0.5..2.5, shot noise gain 0.3..1
                alb.: RandomBrightnessContrast, PlanckianJitter, CoarseDropout(random fill),
                      GaussianBlur(sigma 0.5..2.5), ShotNoise

Every copy draws fresh parameters on both sides. Scene-level transforms run on the whole clip
(albumentations: `images=`, which holds one set of parameters for all frames, as ours does).
Sensor noise must differ from frame to frame, and albumentations' `images=` reuses one noise map
for every frame of the clip, so its noise transform is called once per frame. Ours and theirs
are timed alternately, best of the repeats, to be fair to both on a busy machine. OpenCV runs single-threaded in every process
(`cv2.setNumThreads(1)`): the worker scales by spreading episodes over processes, which the last
table measures (frames/s of our kernels with one process and with two), by wall clock and by
CPU time: on a machine other people load, wall-clock scaling reads their load, while frames per
CPU-second of the busiest worker is what an idle machine would give, and "cpu/frame 2 vs 1" shows
whether two processes cost more CPU per frame (contention, duplicated work) than one.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import time

import cv2
import numpy as np

from roboaug.api.models import AugmentationJobSpec
from roboaug.worker.transforms import apply_clip, functional as F, sample_copy_params

SIZES = ((96, 96), (480, 640))
PROJECT = "00000000-0000-0000-0000-000000000000"
CONFIGS = {
    "gauss+motion": dict(noise_type="gaussian", blur_type="motion", occlusion_type="rectangle"),
    "shot+defocus": dict(noise_type="shot", blur_type="defocus", occlusion_type="overlay"),
}
TRANSFORMS = ("lighting", "occlusion", "blur", "noise")


def make_clip(frames: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """Smooth colour fields with hard-edged shapes and mild grain: camera-like, not white noise."""
    rng = np.random.default_rng(seed)
    clip = np.empty((frames, height, width, 3), np.uint8)
    for t in range(frames):
        grid = rng.integers(0, 256, (5, 5, 3), dtype=np.uint8)
        frame = F.smooth_texture(grid, height, width)
        for _ in range(4):
            x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
            cv2.circle(frame, (x, y), max(2, width // 10), tuple(int(c) for c in rng.integers(0, 256, 3)), -1)
        clip[t] = frame
    return clip


def make_spec(config: str) -> AugmentationJobSpec:
    return AugmentationJobSpec(project_id=PROJECT, dataset_id="bench/bench",
                               augment_transforms=",".join(TRANSFORMS), **CONFIGS[config])


def make_albumentations(config: str, seed: int):
    """(scene pipeline for the clip, sensor-noise pipeline for each frame)."""
    import albumentations as A

    dropout = dict(num_holes_range=(1, 3), hole_height_range=(0.05, 0.2), hole_width_range=(0.05, 0.2))
    common = [
        A.RandomBrightnessContrast(brightness_limit=(-0.15, 0.15), contrast_limit=(-0.1, 0.1), p=1),
        A.PlanckianJitter(mode="blackbody", temperature_limit=(4000, 6500), p=1),
    ]
    if config == "gauss+motion":
        rest = [A.CoarseDropout(**dropout, fill=0, p=1),
                A.MotionBlur(blur_limit=(5, 15), angle_range=(0, 180), p=1)]
        noise = A.GaussNoise(std_range=(3 / 255, 15 / 255), p=1)
    else:
        rest = [A.CoarseDropout(**dropout, fill="random", p=1),
                A.GaussianBlur(sigma_limit=(0.5, 2.5), p=1)]
        noise = A.ShotNoise(scale_range=(0.3, 1.0), p=1)
    return A.Compose(common + rest, seed=seed), A.Compose([noise], seed=seed + 1)


def run_ours(spec, clip: np.ndarray, copies: range, episode: int = 0) -> int:
    t, h, w, _ = clip.shape
    indices = np.arange(t)
    for copy in copies:
        params = sample_copy_params(spec, TRANSFORMS, seed=7, episode=episode, copy=copy, camera=0,
                                    width=w, height=h)
        apply_clip(clip, params, indices)
    return t * len(copies)


def run_albumentations(pipelines, clip: np.ndarray, copies: range) -> int:
    scene, sensor = pipelines
    for _ in copies:
        frames = scene(images=clip)["images"]
        for frame in frames:
            sensor(image=frame)
    return clip.shape[0] * len(copies)


def timed_pair(first, second, repeats: int) -> tuple[list[float], list[float]]:
    """Best frames per wall second and per CPU second of each, over alternating runs.

    Frames per CPU second (this process's user + system time) is the figure that holds on a
    shared machine: other people's work stretches wall time, not our CPU time.
    """
    wall, cpu = [0.0, 0.0], [0.0, 0.0]
    for _ in range(repeats):
        for i, fn in enumerate((first, second)):
            start, start_cpu = time.perf_counter(), time.process_time()
            frames = fn()
            wall[i] = max(wall[i], frames / (time.perf_counter() - start))
            cpu[i] = max(cpu[i], frames / max(time.process_time() - start_cpu, 1e-9))
    return wall, cpu


_SHARED: dict = {}  # set before the pool forks, so workers share the frames instead of rebuilding them


def _process_share(args) -> tuple[int, float]:
    """(frames done, this worker's CPU seconds for them)."""
    config, episodes, first = args
    cv2.setNumThreads(1)
    spec, clip = make_spec(config), _SHARED["clip"]
    done, cpu0 = 0, time.process_time()
    for episode in range(first, first + episodes):
        done += run_ours(spec, clip, range(2), episode=episode)
    return done, time.process_time() - cpu0


def process_scaling(config: str, height: int, width: int, frames: int, episodes: int) -> dict:
    """Frames/s with one process doing all episodes and with two doing half each, by wall clock
    and by CPU time: `cpu_fps` is frames over the busiest worker's CPU seconds (what an idle
    machine would give), `cpu_per_frame` the CPU cost per frame (equal in both if nothing is
    duplicated or contended)."""
    _SHARED["clip"] = make_clip(frames, height, width)
    ctx = mp.get_context("fork")
    out: dict = {}
    for procs in (1, 2):
        with ctx.Pool(procs) as pool:
            pool.map(_process_share, [(config, 1, 0)] * procs)  # warm up: imports, tables, buffers
            share = episodes // procs
            start = time.perf_counter()
            parts = pool.map(_process_share, [(config, share, i * share) for i in range(procs)])
            wall = time.perf_counter() - start
        done = sum(p[0] for p in parts)
        out[procs] = {"fps": done / wall, "cpu_fps": done / max(p[1] for p in parts),
                      "cpu_per_frame": sum(p[1] for p in parts) / done}
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny smoke run (seconds)")
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    F.half_normal_quantiles()  # one-off table build, not a per-frame cost

    # frames per clip, copies per measurement, repeats, (frames, episodes) for the process table
    plan = {(96, 96): (200, 4, 3, (300, 8)), (480, 640): (24, 4, 3, (24, 8))}
    if args.quick:
        plan = {(96, 96): (16, 1, 1, (8, 2)), (480, 640): (2, 1, 1, (2, 2))}

    print(f"cpus={os.cpu_count()} python={sys.version.split()[0]} opencv={cv2.__version__} "
          f"numpy={np.__version__} cv2 threads=1{' QUICK' if args.quick else ''}")
    print(f"load average at start: {os.getloadavg()[0]:.2f} (figures are trustworthy only near 0)\n")
    print(f"{'size':>9} {'pipeline':>13} {'ours fps':>10} {'alb fps':>10} {'ratio':>7}"
          f" {'ours cpu-fps':>13} {'alb cpu-fps':>12} {'cpu ratio':>10}")
    ratios, cpu_ratios = [], []
    for (h, w) in SIZES:
        frames, copies, repeats, _ = plan[(h, w)]
        clip = make_clip(frames, h, w)
        for config in CONFIGS:
            spec, alb = make_spec(config), make_albumentations(config, seed=7)
            run_ours(spec, clip[:2], range(1))
            run_albumentations(alb, clip[:2], range(1))
            (ours, theirs), (ours_cpu, theirs_cpu) = timed_pair(
                lambda: run_ours(spec, clip, range(copies)),
                lambda: run_albumentations(alb, clip, range(copies)), repeats)
            ratios.append(ours / theirs)
            cpu_ratios.append(ours_cpu / theirs_cpu)
            print(f"{w}x{h:<5} {config:>13} {ours:10.1f} {theirs:10.1f} {ours / theirs:6.2f}x"
                  f" {ours_cpu:13.1f} {theirs_cpu:12.1f} {ours_cpu / theirs_cpu:9.2f}x", flush=True)

    print(f"\n{'size':>9} {'pipeline':>13} {'1 proc fps':>11} {'2 proc fps':>11} {'speedup':>8}"
          f" {'1 proc cpu-fps':>15} {'2 proc cpu-fps':>15} {'cpu speedup':>12} {'cpu/frame 2 vs 1':>17} {'load':>5}")
    for (h, w) in SIZES:
        frames, episodes = plan[(h, w)][3]
        r = process_scaling("gauss+motion", h, w, frames, episodes)
        one, two = r[1], r[2]
        print(f"{w}x{h:<5} {'gauss+motion':>13} {one['fps']:11.1f} {two['fps']:11.1f} {two['fps'] / one['fps']:7.2f}x"
              f" {one['cpu_fps']:15.1f} {two['cpu_fps']:15.1f} {two['cpu_fps'] / one['cpu_fps']:11.2f}x"
              f" {two['cpu_per_frame'] / one['cpu_per_frame'] - 1:+16.1%} {os.getloadavg()[0]:5.1f}", flush=True)
    print(f"\nmin kernel/albumentations ratio: {min(ratios):.2f}x wall, {min(cpu_ratios):.2f}x cpu "
          f"(target >= 2x); load average at end: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
