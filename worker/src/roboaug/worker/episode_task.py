"""One unit of parallel work: augment every camera of one output episode.

A task is a plain picklable record and its result depends on nothing but the task (parameters
are keyed by seed, source episode, copy and camera), so running tasks in any process, in any
order, gives the same bytes. Each video camera becomes its own mp4 segment on disk; image
cameras come back as PNG bytes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from roboaug.worker.transforms import CopyParams, apply_clip, sample_copy_params

from .errors import ExitCode, WorkerError
from .png import decode_png, png_bytes
from .stats import CameraStatsAccumulator
from .video import SegmentEncoder, iter_frames

CHUNK_FRAMES = 16
"""Frames in flight per camera: peak memory is this many frames, whatever the episode length."""


@dataclass(frozen=True)
class CameraSource:
    key: str
    camera_index: int  # position among the dataset's camera features: keys the sampled parameters
    kind: str  # "video" | "image"
    width: int
    height: int
    video_path: str | None = None
    from_ts: float = 0.0
    codec: str | None = None
    pix_fmt: str | None = None
    images: tuple[bytes, ...] = ()


@dataclass(frozen=True)
class EpisodeTask:
    out_index: int
    source_index: int
    copy: int
    transforms: tuple[str, ...]
    length: int
    fps: int
    cameras: tuple[CameraSource, ...]
    seg_dir: str
    spec: Any  # AugmentationJobSpec
    with_quantiles: dict[str, bool]
    preview: bool = False
    source_stats: bool = False  # also the camera stats of the decoded source frames (the original episode's)


@dataclass
class EpisodeResult:
    out_index: int
    params: dict[str, dict] = field(default_factory=dict)
    stats: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    source_stats: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # task.source_stats
    segments: dict[str, tuple[str, int]] = field(default_factory=dict)
    images: dict[str, list[bytes]] = field(default_factory=dict)
    preview: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    # wall seconds per phase, plus "cpu": this process's CPU seconds (all its threads, the
    # encoder's included) for the whole episode and "augment_cpu": CPU seconds in the kernels
    timings: dict[str, float] = field(default_factory=lambda: {"decode": 0.0, "augment": 0.0, "encode": 0.0, "stats": 0.0,
                                                               "cpu": 0.0, "augment_cpu": 0.0})
    skipped: str | None = None  # run_episode_or_skip: why the source episode could not be decoded


def _timed(timings: dict[str, float], key: str, it):
    """Iterate `it`, charging the time spent inside it to timings[key]."""
    while True:
        t0 = time.perf_counter()
        try:
            item = next(it)
        except StopIteration:
            timings[key] += time.perf_counter() - t0
            return
        timings[key] += time.perf_counter() - t0
        yield item


def _image_chunks(images: tuple[bytes, ...]):
    for start in range(0, len(images), CHUNK_FRAMES):
        yield np.stack([decode_png(b) for b in images[start : start + CHUNK_FRAMES]])


def camera_params(task: EpisodeTask, cam: CameraSource) -> CopyParams:
    """The parameters of `task`'s copy for one camera: how every augmented frame of the job (and
    of a preview, worker/preview.py) is keyed: seed, source episode, copy, camera."""
    return sample_copy_params(
        task.spec, task.transforms, seed=int(task.spec.augment_seed), episode=task.source_index,
        copy=task.copy, camera=cam.camera_index, width=cam.width, height=cam.height,
    )


def source_chunks(task: EpisodeTask, cam: CameraSource, first: int = 0, count: int | None = None, *,
                  reuse: bool = False) -> Iterator[np.ndarray]:
    """The camera's decoded source frames `first`..`first + count - 1` of the episode (default:
    all of them), in chunks of at most CHUNK_FRAMES. A video is sought to the first one's
    timestamp (the decoder starts at the keyframe before it), so a preview decodes a few frames,
    not the episode."""
    count = task.length - first if count is None else count
    if cam.kind == "video":
        start = cam.from_ts + first / task.fps if first else cam.from_ts
        return iter_frames(Path(cam.video_path), start, count, task.fps, chunk=CHUNK_FRAMES, reuse=reuse)
    return _image_chunks(cam.images[first:first + count])


def augment_chunk(frames: np.ndarray, params: CopyParams, first: int, *, out: np.ndarray | None = None) -> np.ndarray:
    """Augment consecutive frames of one camera, the first being frame `first` of the episode
    (it keys the per-frame noise): the same bytes for a frame whatever chunk it arrives in."""
    return apply_clip(frames, params, np.arange(first, first + len(frames)), out=out)


def run_episode(task: EpisodeTask) -> EpisodeResult:
    # OpenCV runs single-threaded here: `pool.run_tasks` sets that before it forks workers
    # (setting it first in a forked child can deadlock)
    cpu0 = time.process_time()
    result = EpisodeResult(out_index=task.out_index)
    tm = result.timings
    mid = task.length // 2
    for cam in task.cameras:
        params = camera_params(task, cam)
        result.params[cam.key] = params.to_dict()
        acc = CameraStatsAccumulator(task.length)
        src_acc = CameraStatsAccumulator(task.length) if task.source_stats else None
        if cam.kind == "video":
            # each chunk is done with (augmented into `buffer`, preview copied) before the next
            source = source_chunks(task, cam, reuse=True)
            seg_path = Path(task.seg_dir) / f"{cam.key}__{task.out_index:06d}.mp4"
            sink = SegmentEncoder(
                seg_path, codec=cam.codec, pix_fmt=cam.pix_fmt, width=cam.width, height=cam.height, fps=task.fps
            )
        else:
            source = source_chunks(task, cam)
            sink, pngs = None, []
        first = 0
        buffer = None  # one output chunk reused for the whole camera: no fresh pages per chunk
        try:
            for frames in _timed(tm, "decode", source):
                t0 = time.perf_counter()
                if src_acc is not None:  # before augmenting: `frames` is the decoder's reused buffer
                    src_acc.add(frames, first)
                    tm["stats"] += time.perf_counter() - t0
                    t0 = time.perf_counter()
                if buffer is None or buffer.shape[1:] != frames.shape[1:] or len(buffer) < len(frames):
                    buffer = np.empty(frames.shape, np.uint8)
                c0 = time.thread_time()
                out = augment_chunk(frames, params, first, out=buffer[:len(frames)])
                tm["augment_cpu"] += time.thread_time() - c0
                t1 = time.perf_counter()
                tm["augment"] += t1 - t0
                # lerobot's rule: stats of the frames handed to the encoder (as for the originals)
                acc.add(out, first)
                if task.preview and first <= mid < first + len(frames):
                    result.preview[cam.key] = (frames[mid - first].copy(), out[mid - first].copy())
                t2 = time.perf_counter()
                tm["stats"] += t2 - t1
                if sink is not None:
                    sink.write(out)
                else:
                    pngs.extend(png_bytes(f) for f in out)
                tm["encode"] += time.perf_counter() - t2
                first += len(frames)
            t0 = time.perf_counter()
            if sink is not None:
                sink.close()
                sink = None
                result.segments[cam.key] = (str(seg_path), first)
            else:
                result.images[cam.key] = pngs
            tm["encode"] += time.perf_counter() - t0
        finally:
            if sink is not None:  # an error mid-episode: release the encoder without flushing
                sink.__exit__(RuntimeError, None, None)
        result.stats[cam.key] = acc.result(task.with_quantiles.get(cam.key, False))
        if src_acc is not None:
            result.source_stats[cam.key] = src_acc.result(task.with_quantiles.get(cam.key, False))
    tm["cpu"] += time.process_time() - cpu0
    return result


def run_episode_or_skip(task: EpisodeTask) -> EpisodeResult:
    """run_episode, but an undecodable source episode (on_bad_sample: skip) gives an empty result
    saying why instead of failing the job; other errors still fail it."""
    try:
        return run_episode(task)
    except WorkerError as exc:
        if exc.code != ExitCode.CORRUPT_VIDEO:
            raise
        return EpisodeResult(out_index=task.out_index, skipped=f"episode {task.source_index}: {exc.message}")
