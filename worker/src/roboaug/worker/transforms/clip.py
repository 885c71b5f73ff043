"""One augmented copy: its parameters (`sample_copy_params`) and their application to a clip
(`apply_clip`), both by way of the registry.

Randomness is keyed (see `keyed`): each transform draws its copy's parameters from a generator
keyed (seed, purpose, episode, copy[, camera]): lighting without the camera, so all cameras of
one copy see the same light; the others per camera (each camera has its own lens, view and
sensor). Sensor noise values are drawn per frame (see `noise`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from .base import clean
from .keyed import check_index, rng
from .registry import BY_NAME, chosen


@dataclass(frozen=True)
class CopyParams:
    """Everything that decides one augmented copy of one camera of one episode.

    `params.<transform name>` (e.g. `params.noise`) is that transform's sampled parameters, None
    when the copy does not have it.
    """

    transforms: tuple[str, ...]  # in apply order
    seed: int
    episode: int
    copy: int
    camera: int
    width: int
    height: int
    sampled: tuple[tuple[str, Any], ...] = ()  # (transform name, its parameters), in apply order

    def get(self, name: str) -> Any:
        return dict(self.sampled).get(name)

    def __getattr__(self, name: str) -> Any:
        # only reached when normal lookup fails: the transforms' names
        if name in BY_NAME:
            return self.get(name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready provenance: the copy's key and size, then each transform's sampled values."""
        doc = clean({
            "transforms": self.transforms, "seed": self.seed, "episode": self.episode, "copy": self.copy,
            "camera": self.camera, "width": self.width, "height": self.height,
        })
        for name, params in self.sampled:
            doc[name] = BY_NAME[name].provenance(params)
        return doc


def sample_copy_params(spec, transforms: tuple[str, ...], *, seed: int, episode: int, copy: int,
                       camera: int, width: int, height: int) -> CopyParams:
    """Draw the scene- and sensor-level parameters of one copy of one camera of one episode.

    `spec` is an `AugmentationJobSpec` (or request); its bounds are already validated there.
    """
    seed, episode, copy, camera = (check_index(n, v) for n, v in
                                   (("seed", seed), ("episode", episode), ("copy", copy), ("camera", camera)))
    for name, value in (("width", width), ("height", height)):
        if check_index(name, value) < 1:
            raise ValueError(f"{name} must be >= 1 pixel, got {value}")
    picked = chosen(transforms)
    sampled = []
    for t in picked:
        key = (seed, t.purpose, episode, copy) + ((camera,) if t.per_camera else ())
        sampled.append((t.name, t.sample(t.view.of(spec), rng(*key), width=int(width), height=int(height))))
    return CopyParams(
        transforms=tuple(t.name for t in picked), seed=seed, episode=episode, copy=copy, camera=camera,
        width=int(width), height=int(height), sampled=tuple(sampled),
    )


BLOCK_BYTES = 1 << 20
"""apply_clip runs every transform over blocks of about this many bytes of frames, so a block
stays in cache from the lighting table to the noise (1 frame at 480x640, ~36 at 96x96)."""


def apply_clip(frames: np.ndarray, params: CopyParams, frame_indices: np.ndarray, *,
               out: Optional[np.ndarray] = None) -> np.ndarray:
    """Apply a copy's transforms (in apply order) to a clip (T, H, W, 3) uint8; returns a new array.

    `frame_indices[t]` is frame t's index within the episode: it keys the sensor noise, so a clip
    processed whole or in chunks gives the same bytes. `out`: a C-contiguous uint8 array of the
    frames' shape (not overlapping them) to write into instead, so a caller streaming chunks can
    reuse one buffer rather than fault in fresh pages for every chunk.
    """
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        got = f"{frames.dtype} {frames.shape}" if isinstance(frames, np.ndarray) else type(frames).__name__
        raise ValueError(f"frames: expected a uint8 clip of shape (T, H, W, 3), got {got}")
    if frames.shape[1:3] != (params.height, params.width):
        raise ValueError(
            f"frames: {frames.shape[2]}x{frames.shape[1]} but the parameters were sampled for "
            f"{params.width}x{params.height}"
        )
    indices = np.asarray(frame_indices)
    if indices.shape != (frames.shape[0],) or (indices.size and (
            not np.issubdtype(indices.dtype, np.integer) or indices.min() < 0)):
        raise ValueError(
            f"frame_indices: expected {frames.shape[0]} non-negative integers (one per frame), "
            f"got {indices.dtype} {indices.shape}"
        )
    if out is None:
        clip = np.empty(frames.shape, np.uint8)
    elif (not isinstance(out, np.ndarray) or out.shape != frames.shape or out.dtype != np.uint8
          or not out.flags.c_contiguous):
        raise ValueError(f"out: expected a C-contiguous uint8 array of shape {frames.shape}")
    elif np.shares_memory(out, frames):
        raise ValueError("out: must not overlap the input frames")
    else:
        clip = out
    if clip.shape[0] == 0:
        return clip
    stages = [(BY_NAME[name], BY_NAME[name].prepare(p, params, indices, clip.shape[1:]))
              for name, p in params.sampled]
    step = max(1, BLOCK_BYTES // clip[0].nbytes)
    for start in range(0, clip.shape[0], step):
        rows = slice(start, start + step)
        block = clip[rows]
        if not stages:
            np.copyto(block, frames[rows])
            continue
        (first, state), *rest = stages
        first.apply_from(state, frames[rows], block, rows)
        for t, state in rest:
            t.apply(state, block, rows)
    return clip

