"""Sensor noise: gaussian, shot or read noise, different for every frame.

The noise type and level are drawn once per copy and camera (each camera has its own sensor),
uniform over their ranges; read noise takes its sigma from the gaussian sigma range. The noise
values themselves differ for every frame, chosen by the frame's index in the episode alone, so
chunks, processes and frame order do not change them.

Statistically. For one (seed, episode, copy, camera) two banks A and B hold n + M - 1 values
each (n = H*W*3 values a frame, M = max(n, 2^20) offsets), every value T[u] for an independent
uniform random byte u, T the 256-entry table of the noise kind (normal quantiles of variance
s^2 / 2, rounded; see `functional`). Frame f draws two offsets a_f, b_f, independent and uniform
on [0, M), from word f of a keyed stream, and its noise at value index p (row-major over H, W,
channel) is A[a_f + p] + B[b_f + p]. Hence:
- within a frame the values are i.i.d., with exactly the two-lookup distribution of the kernels;
- two frames f != g are independent unless an offset repeats: with probability 1/M each
  (per bank) they share that bank's half of the noise at the same pixels (correlation 0.5).
  Otherwise the only link is that g's A-half is f's A-half shifted by a_g - a_f values, while
  its B-half is shifted by an independent amount, so no shift or motion vector predicts one
  frame's noise from another's (copying the shifted frame leaves the full noise variance as
  residual, the best linear prediction 3/4 of it);
- read noise adds its per-row offsets from a separate stream, two bytes per row and frame.
The banks cost about two frames' worth of direct noise once per camera and episode, and save
the per-frame random bytes and table passes (4x faster noise at 480x640); they are cached for
the chunks of an episode (two entries, at 480x640 about 8 MB each).
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

import cv2
import numpy as np

from roboaug.api.models.spec import GAUSSIAN_SIGMA, SHOT_SCALE

from . import functional as F
from .base import Range, RequestView, Transform, reads
from .keyed import Purpose, bits, uniform

if TYPE_CHECKING:
    from .clip import CopyParams

READ_ROW_FRACTION = 0.5


@dataclass(frozen=True)
class NoiseView(RequestView):
    kind: str = reads("noise_type")
    sigma: Range = reads(GAUSSIAN_SIGMA)  # gaussian and read noise, 8-bit levels
    gain: Range = reads(SHOT_SCALE)  # shot noise: variance = gain x level


@dataclass(frozen=True)
class NoiseParams:
    kind: str  # "gaussian" | "shot" | "read"
    sigma: Optional[float] = None  # gaussian / read: std, 8-bit levels
    gain: Optional[float] = None  # shot: variance = gain x level
    row_fraction: Optional[float] = None  # read: share of sigma that is per-row banding


def _noise_bytes(params: "CopyParams", tag: int, first: int, frames: int, per_frame: int):
    """Two planes of random bytes (u1, u2), each (frames, per_frame), for consecutive frames.

    One stream per (seed, episode, copy, camera, purpose); frame f owns the 64-bit words
    [f * w, (f + 1) * w) of it, w = ceil(2 * per_frame / 8), reached with PCG's O(log n)
    `advance`: a frame's values depend on its index alone, not on the chunk it arrives in.
    Used for the read noise's per-row offsets (a few bytes a frame).
    """
    words = math.ceil(2 * per_frame / 8)
    gen = bits(params.seed, tag, params.episode, params.copy, params.camera)
    gen.advance(first * words)
    raw = np.asarray(gen.random_raw(frames * words), dtype="<u8").reshape(frames, words).view(np.uint8)
    return raw[:, :per_frame], raw[:, per_frame:2 * per_frame]


# -- two banks and per-frame offsets ----------------------------------------------------------
BANK_MIN_OFFSETS = 1 << 20
"""Offsets a frame can draw per bank: at least this many, and at least one frame's worth."""


def bank_offsets(per_frame: int) -> int:
    """M, the number of distinct offsets into each bank (banks hold per_frame + M - 1 values)."""
    return max(int(per_frame), BANK_MIN_OFFSETS)


_BANK_CACHE: "OrderedDict[tuple, tuple[np.ndarray, np.ndarray]]" = OrderedDict()
_BANK_CACHE_SIZE = 2  # one camera's episode at a time; chunks of it reuse the banks
_BANK_LOCK = threading.Lock()


def _noise_banks(params: "CopyParams", per_frame: int, table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Banks A and B: per_frame + M - 1 values table[u] each, u uniform random bytes.

    Keyed by (seed, episode, copy, camera) alone, so every chunk of an episode sees the same
    banks; cached because generating them costs about two frames' worth of direct noise.
    """
    key = (params.seed, params.episode, params.copy, params.camera, per_frame, table.dtype.str, table.tobytes())
    with _BANK_LOCK:
        hit = _BANK_CACHE.get(key)
        if hit is not None:
            _BANK_CACHE.move_to_end(key)
            return hit
    length = per_frame + bank_offsets(per_frame) - 1
    gen = bits(params.seed, Purpose.NOISE_BANK, params.episode, params.copy, params.camera)
    raw = np.asarray(gen.random_raw(math.ceil(2 * length / 8)), dtype="<u8").view(np.uint8)
    banks = []
    for u in (raw[:length], raw[length:2 * length]):
        bank = np.empty((1, length), table.dtype)
        cv2.LUT(u.reshape(1, length), table, dst=bank)
        banks.append(bank[0])
    result = (banks[0], banks[1])
    with _BANK_LOCK:
        _BANK_CACHE[key] = result
        while len(_BANK_CACHE) > _BANK_CACHE_SIZE:
            _BANK_CACHE.popitem(last=False)
    return result


def frame_offsets(params: "CopyParams", first: int, frames: int, per_frame: int) -> np.ndarray:
    """(frames, 2) int64: each frame's offsets (a_f, b_f) into banks A and B, uniform in [0, M).

    Frame f owns word f of a stream keyed (seed, episode, copy, camera): its low and high 32
    bits pick a_f and b_f (multiply-shift, bias < M / 2^32).
    """
    gen = bits(params.seed, Purpose.NOISE_FRAME, params.episode, params.copy, params.camera)
    gen.advance(first)
    words = np.asarray(gen.random_raw(frames), dtype=np.uint64)
    m = np.uint64(bank_offsets(per_frame))
    lo = ((words & np.uint64(0xFFFFFFFF)) * m) >> np.uint64(32)
    hi = ((words >> np.uint64(32)) * m) >> np.uint64(32)
    return np.stack([lo, hi], axis=1).astype(np.int64)


def _bank_noise(params: "CopyParams", table: np.ndarray, offsets: np.ndarray, per_frame: int,
                scratch: str) -> np.ndarray:
    """(len(offsets), per_frame) noise, one row per frame: A[a_f:a_f+n] + B[b_f:b_f+n]."""
    bank_a, bank_b = _noise_banks(params, per_frame, table)
    noise = F.scratch_buffer(scratch, (len(offsets), per_frame), table.dtype)
    for row, (a, b) in zip(noise, offsets):
        np.add(bank_a[a:a + per_frame], bank_b[b:b + per_frame], out=row)
    return noise


def _runs(indices: np.ndarray):
    """(start position, first frame index, length) of each run of consecutive frame indices."""
    start = 0
    for pos in range(1, len(indices) + 1):
        if pos == len(indices) or indices[pos] != indices[pos - 1] + 1:
            yield start, int(indices[start]), pos - start
            start = pos


@dataclass(frozen=True)
class _NoiseDraws:
    """Per-frame random draws of a clip's noise: bank offsets (T, 2), read-noise rows (T, H) or None."""

    offsets: np.ndarray
    rows: Optional[np.ndarray]

    def __getitem__(self, sl: slice) -> "_NoiseDraws":
        return _NoiseDraws(self.offsets[sl], None if self.rows is None else self.rows[sl])


def _noise_draws(noise: NoiseParams, params: "CopyParams", indices: np.ndarray, frame_shape: tuple) -> _NoiseDraws:
    """Every frame's draws, read from the keyed streams once per clip (one stream set-up per run
    of consecutive frame indices, not one per block)."""
    per_frame = int(np.prod(frame_shape))
    t, h = len(indices), frame_shape[0]
    offsets = np.empty((t, 2), np.int64)
    rows = np.empty((t, h), np.int16) if noise.kind == "read" else None
    for start, first, count in _runs(indices):
        offsets[start:start + count] = frame_offsets(params, first, count, per_frame)
        if rows is not None:
            r1, r2 = _noise_bytes(params, Purpose.NOISE_ROWS, first, count, h)
            rows[start:start + count] = F.read_row_offsets(noise.sigma, noise.row_fraction, r1, r2)
    return _NoiseDraws(offsets, rows)


def _apply_noise(block: np.ndarray, noise: NoiseParams, params: "CopyParams", draws: _NoiseDraws) -> None:
    """Sensor noise of each frame of `block` (see the module docs: banks and per-frame offsets)."""
    per_frame = int(np.prod(block.shape[1:]))
    if noise.kind == "gaussian":
        if noise.sigma == 0:
            return
        values = _bank_noise(params, F.noise_table(noise.sigma), draws.offsets, per_frame, "bank_noise")
        F.add_noise_i16(block, values, out=block)
    elif noise.kind == "shot":
        if noise.gain == 0:
            return
        z = _bank_noise(params, F.noise_table(float(F.SHOT_Z_ONE)), draws.offsets, per_frame, "bank_noise")
        F.add_shot_noise(block, noise.gain, z, out=block)
    elif noise.kind == "read":
        if noise.sigma == 0:
            return
        pixel = F.noise_table(noise.sigma * math.sqrt(1.0 - noise.row_fraction ** 2))
        values = _bank_noise(params, pixel, draws.offsets, per_frame, "bank_noise")
        F.add_row_offsets(values, draws.rows, block.shape[1])
        F.add_noise_i16(block, values, out=block)
    else:
        raise ValueError(f"noise kind {noise.kind!r} is not gaussian, shot or read")


class Noise(Transform):
    name = "noise"
    summary = "sensor noise of each camera: type and level drawn per copy and camera, values anew every frame"
    view = NoiseView
    purpose = Purpose.NOISE
    per_frame = True
    kinds = {
        "gaussian": "signal-independent, std sigma levels",
        "shot": "photon noise, variance = gain x level",
        "read": (f"std sigma from the gaussian sigma range, of which per-row offsets (rolling read-out "
                 f"banding) have std {READ_ROW_FRACTION:g} sigma"),
    }

    def sample(self, view: NoiseView, gen, *, width: int, height: int) -> NoiseParams:
        kind = self.pick_kind(view.kind, gen)
        if kind == "shot":
            return NoiseParams(kind="shot", gain=uniform(gen, view.gain.lo, view.gain.hi))
        sigma = uniform(gen, view.sigma.lo, view.sigma.hi)
        if kind == "read":
            return NoiseParams(kind="read", sigma=sigma, row_fraction=READ_ROW_FRACTION)
        return NoiseParams(kind="gaussian", sigma=sigma)

    def prepare(self, params: NoiseParams, copy: "CopyParams", frame_indices, frame_shape):
        return params, copy, _noise_draws(params, copy, frame_indices, frame_shape)

    def apply(self, state, block, rows: slice) -> None:
        params, copy, draws = state
        _apply_noise(block, params, copy, draws[rows])

    def card_text(self, view: NoiseView) -> str:
        return (f"noise ({view.kind}): gaussian sigma {view.sigma} levels, shot gain {view.gain}, "
                f"read sigma {view.sigma} levels (per-row banding of {READ_ROW_FRACTION:g} sigma)")
