"""Parameter sampling for augmented copies, and `apply_clip`, which runs the kernels on a clip.

Randomness is keyed, never sequential: every draw comes from a generator seeded with a tuple
(seed, purpose, episode, copy[, camera][, frame]) through numpy's SeedSequence, so a value does
not depend on which process handles an episode, on how a clip is cut into chunks, or on what
was drawn before it.

- lighting: keyed without the camera, so all cameras of one copy see the same light;
- blur, occlusion, and the noise type and level: keyed per camera (each camera has its own lens,
  view and sensor); drawn once per copy and held for all its frames;
- sensor noise itself: different values for every frame, chosen by the frame's index in the
  episode alone (see below), so chunks, processes and frame order do not change them.

Sensor noise, statistically. For one (seed, episode, copy, camera) two banks A and B hold
n + M - 1 values each (n = H*W*3 values a frame, M = max(n, 2^20) offsets), every value
T[u] for an independent uniform random byte u, T the 256-entry table of the noise kind (normal
quantiles of variance s^2 / 2, rounded; see `functional`). Frame f draws two offsets a_f, b_f,
independent and uniform on [0, M), from word f of a keyed stream, and its noise at value index p
(row-major over H, W, channel) is A[a_f + p] + B[b_f + p]. Hence:
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

Sampling rules: brightness, contrast, noise sigma, shot gain, defocus sigma, patch sizes and
overlay alpha are uniform over their ranges; colour temperature is uniform in mireds (1e6 / K),
the photographic unit in which equal steps look like equal shifts; the motion kernel length is
uniform over the odd integers of its range and its angle uniform in [0, 180) degrees; the patch
count is uniform over its integer range and each patch lies wholly inside the frame. A `mixed`
type picks one sub-type per copy (and camera) with equal odds: noise one of gaussian, shot or read
(read noise takes its sigma from the gaussian sigma range), blur motion or defocus, occlusion
rectangle or overlay.

Only uniform doubles (`Generator.random`) and raw generator words (`random_raw`) are used, the
parts of numpy's random API whose streams are fixed for a given bit generator.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Optional

import cv2
import numpy as np

from roboaug.api.models import APPLY_ORDER, TRANSFORMS

from . import functional as F

# Purpose tags: part of every key, so two purposes never share a stream.
_LIGHTING, _OCCLUSION, _BLUR, _NOISE, _NOISE_FRAME, _TEXTURE, _NOISE_ROWS, _NOISE_BANK = 1, 2, 3, 4, 5, 6, 7, 8
OVERLAY_ALPHA_RANGE = (0.35, 0.75)
TEXTURE_GRID = 4  # cells per side of an overlay texture before upsampling
READ_ROW_FRACTION = 0.5


def _rng(*key: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64DXSM(np.random.SeedSequence([int(k) for k in key])))


def _uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(lo + (hi - lo) * rng.random())


def _choice(rng: np.random.Generator, options: tuple):
    return options[min(int(rng.random() * len(options)), len(options) - 1)]


def _int_between(rng: np.random.Generator, lo: int, hi: int) -> int:
    return int(lo) + min(int(rng.random() * (int(hi) - int(lo) + 1)), int(hi) - int(lo))


# -- parameter records ------------------------------------------------------------------------
@dataclass(frozen=True)
class LightingParams:
    brightness: float  # percent of full scale
    contrast: float  # percent
    temperature_k: float  # kelvin, 6500 = neutral

    def affine(self) -> tuple[np.ndarray, np.ndarray]:
        return F.lighting_affine(self.brightness, self.contrast, self.temperature_k)


@dataclass(frozen=True)
class Patch:
    x: int  # left edge, pixels
    y: int  # top edge, pixels
    width: int  # pixels
    height: int  # pixels
    colour: tuple[int, int, int]  # rectangle fill (RGB)
    alpha: float = 1.0  # overlay opacity; 1 for rectangles
    texture_seed: Optional[int] = None  # overlay texture; None for rectangles

    @property
    def box(self) -> tuple[int, int, int, int]:
        return (self.x, self.y, self.width, self.height)

    def texture(self) -> np.ndarray:
        """The overlay's texture: a TEXTURE_GRID^2 colour grid from its seed, upsampled to the box."""
        words = _rng(self.texture_seed, _TEXTURE).bit_generator.random_raw(
            math.ceil(TEXTURE_GRID * TEXTURE_GRID * 3 / 8))
        grid = np.asarray(words, dtype="<u8").view(np.uint8)[: TEXTURE_GRID * TEXTURE_GRID * 3]
        return F.smooth_texture(grid.reshape(TEXTURE_GRID, TEXTURE_GRID, 3), self.height, self.width)


@dataclass(frozen=True)
class OcclusionParams:
    kind: str  # "rectangle" | "overlay"
    patches: tuple[Patch, ...]


@dataclass(frozen=True)
class BlurParams:
    kind: str  # "motion" | "defocus"
    length: Optional[int] = None  # motion: odd kernel length, pixels
    angle_deg: Optional[float] = None  # motion: 0 = horizontal, 90 = vertical
    sigma: Optional[float] = None  # defocus: gaussian sigma, pixels


@dataclass(frozen=True)
class NoiseParams:
    kind: str  # "gaussian" | "shot" | "read"
    sigma: Optional[float] = None  # gaussian / read: std, 8-bit levels
    gain: Optional[float] = None  # shot: variance = gain x level
    row_fraction: Optional[float] = None  # read: share of sigma that is per-row banding


@dataclass(frozen=True)
class CopyParams:
    """Everything that decides one augmented copy of one camera of one episode."""

    transforms: tuple[str, ...]  # in APPLY_ORDER
    seed: int
    episode: int
    copy: int
    camera: int
    width: int
    height: int
    lighting: Optional[LightingParams] = None
    occlusion: Optional[OcclusionParams] = None
    blur: Optional[BlurParams] = None
    noise: Optional[NoiseParams] = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready provenance: sampled values per transform, None fields left out."""

        def clean(value):
            if isinstance(value, dict):
                return {k: clean(v) for k, v in value.items() if v is not None}
            if isinstance(value, (list, tuple)):
                return [clean(v) for v in value]
            if isinstance(value, (np.integer,)):
                return int(value)
            if isinstance(value, (np.floating,)):
                return float(value)
            return value

        return clean(dataclasses.asdict(self))


# -- sampling ---------------------------------------------------------------------------------
def _check_index(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


def _ordered_transforms(transforms) -> tuple[str, ...]:
    names = [str(t).strip().lower() for t in transforms]
    unknown = [n for n in names if n not in TRANSFORMS]
    if unknown:
        raise ValueError(f"transforms: unknown {unknown}; allowed: {', '.join(TRANSFORMS)}")
    if len(set(names)) != len(names):
        raise ValueError(f"transforms: duplicates in {names}")
    return tuple(t for t in APPLY_ORDER if t in names)


def _sample_lighting(spec, rng) -> LightingParams:
    lo_k, hi_k = float(spec.augment_color_temp_min), float(spec.augment_color_temp_max)
    mired = _uniform(rng, 1e6 / hi_k, 1e6 / lo_k)
    kelvin = min(max(1e6 / mired, lo_k), hi_k)  # guard float round-off at the ends
    return LightingParams(
        brightness=_uniform(rng, spec.augment_brightness_min, spec.augment_brightness_max),
        contrast=_uniform(rng, spec.augment_contrast_min, spec.augment_contrast_max),
        temperature_k=kelvin,
    )


def _sample_occlusion(spec, rng, width: int, height: int) -> OcclusionParams:
    kind = spec.occlusion_type if spec.occlusion_type != "mixed" else _choice(rng, ("rectangle", "overlay"))
    count = _int_between(rng, spec.occlusion_num_patches_min, spec.occlusion_num_patches_max)
    patches = []
    for _ in range(count):
        pw = min(width, max(1, round(_uniform(rng, spec.occlusion_patch_width_min, spec.occlusion_patch_width_max) * width)))
        ph = min(height, max(1, round(_uniform(rng, spec.occlusion_patch_height_min, spec.occlusion_patch_height_max) * height)))
        x = _int_between(rng, 0, width - pw)
        y = _int_between(rng, 0, height - ph)
        colour = tuple(_int_between(rng, 0, 255) for _ in range(3))
        if kind == "overlay":
            alpha = _uniform(rng, *OVERLAY_ALPHA_RANGE)
            texture_seed = _int_between(rng, 0, 2**32 - 1)
            patches.append(Patch(x, y, pw, ph, colour, alpha, texture_seed))
        else:
            patches.append(Patch(x, y, pw, ph, colour))
    return OcclusionParams(kind=kind, patches=tuple(patches))


def _sample_blur(spec, rng) -> BlurParams:
    kind = spec.blur_type if spec.blur_type != "mixed" else _choice(rng, ("motion", "defocus"))
    if kind == "motion":
        lo, hi = int(spec.blur_motion_kernel_min), int(spec.blur_motion_kernel_max)
        length = lo + 2 * _int_between(rng, 0, (hi - lo) // 2)
        return BlurParams(kind="motion", length=length, angle_deg=_uniform(rng, 0.0, 180.0))
    return BlurParams(kind="defocus", sigma=_uniform(rng, spec.blur_defocus_sigma_min, spec.blur_defocus_sigma_max))


def _sample_noise(spec, rng) -> NoiseParams:
    kind = spec.noise_type if spec.noise_type != "mixed" else _choice(rng, ("gaussian", "shot", "read"))
    if kind == "shot":
        return NoiseParams(kind="shot", gain=_uniform(rng, spec.noise_shot_scale_min, spec.noise_shot_scale_max))
    sigma = _uniform(rng, spec.noise_gaussian_sigma_min, spec.noise_gaussian_sigma_max)
    if kind == "read":
        return NoiseParams(kind="read", sigma=sigma, row_fraction=READ_ROW_FRACTION)
    return NoiseParams(kind="gaussian", sigma=sigma)


def sample_copy_params(spec, transforms: tuple[str, ...], *, seed: int, episode: int, copy: int,
                       camera: int, width: int, height: int) -> CopyParams:
    """Draw the scene- and sensor-level parameters of one copy of one camera of one episode.

    `spec` is an `AugmentationJobSpec` (or request); its bounds are already validated there.
    """
    seed, episode, copy, camera = (_check_index(n, v) for n, v in
                                   (("seed", seed), ("episode", episode), ("copy", copy), ("camera", camera)))
    for name, value in (("width", width), ("height", height)):
        if _check_index(name, value) < 1:
            raise ValueError(f"{name} must be >= 1 pixel, got {value}")
    chosen = _ordered_transforms(transforms)
    return CopyParams(
        transforms=chosen, seed=seed, episode=episode, copy=copy, camera=camera,
        width=int(width), height=int(height),
        lighting=_sample_lighting(spec, _rng(seed, _LIGHTING, episode, copy)) if "lighting" in chosen else None,
        occlusion=(_sample_occlusion(spec, _rng(seed, _OCCLUSION, episode, copy, camera), int(width), int(height))
                   if "occlusion" in chosen else None),
        blur=_sample_blur(spec, _rng(seed, _BLUR, episode, copy, camera)) if "blur" in chosen else None,
        noise=_sample_noise(spec, _rng(seed, _NOISE, episode, copy, camera)) if "noise" in chosen else None,
    )


# -- application ------------------------------------------------------------------------------
BLOCK_BYTES = 1 << 20
"""apply_clip runs every transform over blocks of about this many bytes of frames, so a block
stays in cache from the lighting table to the noise (1 frame at 480x640, ~36 at 96x96)."""


def _noise_bytes(params: CopyParams, tag: int, first: int, frames: int, per_frame: int):
    """Two planes of random bytes (u1, u2), each (frames, per_frame), for consecutive frames.

    One stream per (seed, episode, copy, camera, purpose); frame f owns the 64-bit words
    [f * w, (f + 1) * w) of it, w = ceil(2 * per_frame / 8), reached with PCG's O(log n)
    `advance`: a frame's values depend on its index alone, not on the chunk it arrives in.
    Used for the read noise's per-row offsets (a few bytes a frame).
    """
    words = math.ceil(2 * per_frame / 8)
    bits = np.random.PCG64DXSM(np.random.SeedSequence(
        [params.seed, tag, params.episode, params.copy, params.camera]))
    bits.advance(first * words)
    raw = np.asarray(bits.random_raw(frames * words), dtype="<u8").reshape(frames, words).view(np.uint8)
    return raw[:, :per_frame], raw[:, per_frame:2 * per_frame]


# -- sensor noise: two banks and per-frame offsets ---------------------------------------------
BANK_MIN_OFFSETS = 1 << 20
"""Offsets a frame can draw per bank: at least this many, and at least one frame's worth."""


def bank_offsets(per_frame: int) -> int:
    """M, the number of distinct offsets into each bank (banks hold per_frame + M - 1 values)."""
    return max(int(per_frame), BANK_MIN_OFFSETS)


_BANK_CACHE: "OrderedDict[tuple, tuple[np.ndarray, np.ndarray]]" = OrderedDict()
_BANK_CACHE_SIZE = 2  # one camera's episode at a time; chunks of it reuse the banks
_BANK_LOCK = threading.Lock()


def _noise_banks(params: CopyParams, per_frame: int, table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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
    bits = np.random.PCG64DXSM(np.random.SeedSequence(
        [params.seed, _NOISE_BANK, params.episode, params.copy, params.camera]))
    raw = np.asarray(bits.random_raw(math.ceil(2 * length / 8)), dtype="<u8").view(np.uint8)
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


def frame_offsets(params: CopyParams, first: int, frames: int, per_frame: int) -> np.ndarray:
    """(frames, 2) int64: each frame's offsets (a_f, b_f) into banks A and B, uniform in [0, M).

    Frame f owns word f of a stream keyed (seed, episode, copy, camera): its low and high 32
    bits pick a_f and b_f (multiply-shift, bias < M / 2^32).
    """
    bits = np.random.PCG64DXSM(np.random.SeedSequence(
        [params.seed, _NOISE_FRAME, params.episode, params.copy, params.camera]))
    bits.advance(first)
    words = np.asarray(bits.random_raw(frames), dtype=np.uint64)
    m = np.uint64(bank_offsets(per_frame))
    lo = ((words & np.uint64(0xFFFFFFFF)) * m) >> np.uint64(32)
    hi = ((words >> np.uint64(32)) * m) >> np.uint64(32)
    return np.stack([lo, hi], axis=1).astype(np.int64)


def _bank_noise(params: CopyParams, table: np.ndarray, offsets: np.ndarray, per_frame: int,
                scratch: str) -> np.ndarray:
    """(len(offsets), per_frame) noise, one row per frame: A[a_f:a_f+n] + B[b_f:b_f+n]."""
    bank_a, bank_b = _noise_banks(params, per_frame, table)
    noise = F._scratch(scratch, (len(offsets), per_frame), table.dtype)
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


def _noise_draws(noise: NoiseParams, params: CopyParams, indices: np.ndarray, frame_shape: tuple) -> _NoiseDraws:
    """Every frame's draws, read from the keyed streams once per clip (one stream set-up per run
    of consecutive frame indices, not one per block)."""
    per_frame = int(np.prod(frame_shape))
    t, h = len(indices), frame_shape[0]
    offsets = np.empty((t, 2), np.int64)
    rows = np.empty((t, h), np.int16) if noise.kind == "read" else None
    for start, first, count in _runs(indices):
        offsets[start:start + count] = frame_offsets(params, first, count, per_frame)
        if rows is not None:
            r1, r2 = _noise_bytes(params, _NOISE_ROWS, first, count, h)
            rows[start:start + count] = F.read_row_offsets(noise.sigma, noise.row_fraction, r1, r2)
    return _NoiseDraws(offsets, rows)


def _apply_noise(block: np.ndarray, noise: NoiseParams, params: CopyParams, draws: _NoiseDraws) -> None:
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


def apply_clip(frames: np.ndarray, params: CopyParams, frame_indices: np.ndarray, *,
               out: Optional[np.ndarray] = None) -> np.ndarray:
    """Apply a copy's transforms (in APPLY_ORDER) to a clip (T, H, W, 3) uint8; returns a new array.

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
    affine = params.lighting.affine() if params.lighting is not None else None
    occ = params.occlusion
    textures = [p.texture() for p in occ.patches] if occ is not None and occ.kind == "overlay" else None
    draws = _noise_draws(params.noise, params, indices, clip.shape[1:]) if params.noise is not None else None
    step = max(1, BLOCK_BYTES // clip[0].nbytes)
    for start in range(0, clip.shape[0], step):
        block = clip[start:start + step]
        if affine is None:
            np.copyto(block, frames[start:start + step])
        for name in params.transforms:
            if name == "lighting":
                # first in APPLY_ORDER: the affine pass copies the frames into the block as it maps them
                F.apply_affine(frames[start:start + step], *affine, out=block)
            elif name == "occlusion":
                if textures is None:
                    F.fill_rectangles(block, [p.box for p in occ.patches], [p.colour for p in occ.patches], out=block)
                else:
                    for patch, texture in zip(occ.patches, textures):
                        F.blend_overlay(block, patch.box, texture, patch.alpha, out=block)
            elif name == "blur":
                if params.blur.kind == "motion":
                    F.motion_blur(block, params.blur.length, params.blur.angle_deg, out=block)
                else:
                    F.defocus_blur(block, params.blur.sigma, out=block)
            elif name == "noise":
                _apply_noise(block, params.noise, params, draws[start:start + step])
    return clip
