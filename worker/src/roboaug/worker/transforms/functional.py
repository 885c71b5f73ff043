"""Pure numeric kernels over uint8 RGB frames (H, W, 3) and whole clips (T, H, W, 3).

No kernel draws random numbers: the randomness a kernel needs (noise) comes in as arrays (random
bytes, or noise values already looked up), so a kernel's output is a function of its arguments alone and
the transform modules (`lighting`, `noise`, ...) decide where the randomness comes from. Every kernel takes `out=` (which may be
the input itself, for in-place work) and otherwise leaves its input untouched.

Definitions (the units are the request's, see `roboaug.api.models.spec`):

lighting
    One per-channel affine map per copy, applied in one pass (`cv2.transform`). For an input
    level v of channel c: x = v * g_c (the illuminant's tint, see `temperature_gains`), then
    y = (x - 127.5) * (1 + contrast/100) + 127.5 + 2.55 * brightness, rounded (half to even, in
    float32) and clipped to 0..255: y = s_c v + o_c (`lighting_affine`). `lighting_lut` is the
    same map as a (3, 256) table (rounding half up, in float64); the two differ by at most one
    level (the reference the tests hold the pass to). The affine pass is ~3.5x faster than a
    3-channel table lookup at 640x480. So brightness +b % raises a mid-grey frame's mean by
    b % of 255, and contrast c % scales the standard deviation about mid-grey by (1 + c/100)
    (-100 % = flat grey) until clipping sets in. 6500 K with zero brightness and contrast is the identity.
colour temperature
    Per-channel gains g_c = rgb_c(T) / rgb_c(6500 K), where rgb(T) is Tanner Helland's fit of the
    sRGB colour of a blackbody at T kelvin (fitted to Mitchell Charity's blackbody table,
    1000..40000 K), normalised so that the Rec. 601 luma of grey is kept:
    0.299 gR + 0.587 gG + 0.114 gB = 1. The frame looks as if lit by a T-kelvin source and
    captured by a camera white-balanced for daylight: below 6500 K red rises and blue falls
    (warm), above it the reverse (cool). The gains act on 8-bit values, not linear light:
    an approximation that keeps the whole transform one affine pass.
gaussian noise
    Signal-independent, standard deviation sigma 8-bit levels, rounded to whole levels and added
    with saturation. Each value is the sum of two normal quantile lookups of variance
    sigma^2 / 2 (see `half_normal_quantiles`), each rounded to whole levels: a 65536-point,
    near-normal distribution with tails to +-4.1 sigma. The kernels here take the two lookups'
    random bytes as arguments; `noise` draws them from per-copy banks at per-frame
    offsets (its module docs give the joint distribution across pixels and frames).
shot noise
    Photon (Poisson) noise in its gaussian approximation: variance = gain x level, i.e. each
    pixel moves by round(sqrt(gain * v) * z) with z standard normal (the same two-lookup
    distribution, held to 1/256, times the std held to 1/128: fixed point, under 0.1 level of
    error before rounding), added with saturation. Black stays black; brighter pixels are noisier.
read noise
    Signal-independent sensor read-out noise of total standard deviation sigma, made of a
    per-pixel gaussian part (std sigma * sqrt(1 - r^2)) and a per-row offset shared by every
    column and channel of that row (std sigma * r, r = `row_fraction`, 0.5 by default): the
    horizontal banding of a rolling read-out. Per-pixel std is still sigma.
motion blur
    The average of `length` taps along a digital line through the centre at `angle` degrees
    (0 = horizontal, 90 = vertical, counter-clockwise with image y pointing down). The line spans
    `length` pixels along its dominant axis, one tap per pixel (the same footprint as a line
    drawn in a length x length kernel). `length` must be odd so the line has a centre pixel.
    Borders reflect (BORDER_REFLECT_101).
defocus blur
    Gaussian point-spread function of standard deviation sigma pixels (kernel +-3 sigma,
    reflecting borders); sigma 0 is the identity. A gaussian rather than a disk: it is separable
    (fast) and its parameter is the request's unit directly; real lenses sit between the two.
occlusion, rectangle
    Axis-aligned boxes filled with a solid colour, the same on every frame.
occlusion, overlay
    A semi-transparent textured patch: a smooth colour texture (a small random colour grid
    bilinearly upsampled to the box) alpha-blended over the frame, out = (1 - a) frame + a
    texture, like a smudge or a translucent film in front of the lens.
"""

from __future__ import annotations

import math
import threading
from functools import lru_cache
from statistics import NormalDist
from typing import Optional, Sequence

import cv2
import numpy as np

from roboaug.api.models.spec import COLOR_TEMP

NEUTRAL_KELVIN = 6500.0
# The request's bounds are the fit's: Tanner Helland's blackbody fit covers 1000..40000 K.
KELVIN_RANGE = (float(COLOR_TEMP.lo), float(COLOR_TEMP.hi))
MAX_MOTION_LENGTH = 257  # the uint16 accumulator holds up to 257 * 255
_LUMA = np.array([0.299, 0.587, 0.114])


# -- checks -----------------------------------------------------------------------------------
def _check_frames(frames: np.ndarray, name: str = "frames") -> np.ndarray:
    """A uint8 frame (H, W, 3) or clip (T, H, W, 3), returned as a clip view."""
    if not isinstance(frames, np.ndarray):
        raise ValueError(f"{name}: expected a numpy array, got {type(frames).__name__}")
    if frames.dtype != np.uint8:
        raise ValueError(f"{name}: expected dtype uint8, got {frames.dtype}")
    if frames.ndim not in (3, 4) or frames.shape[-1] != 3:
        raise ValueError(f"{name}: expected shape (H, W, 3) or (T, H, W, 3), got {frames.shape}")
    if min(frames.shape[:-1]) < 1:
        raise ValueError(f"{name}: empty frame or clip, shape {frames.shape}")
    return frames if frames.ndim == 4 else frames[None]


def _prepare_out(frames: np.ndarray, out: Optional[np.ndarray]) -> np.ndarray:
    """`out` as a writable C-contiguous array of the frames' shape, holding a copy of them."""
    if out is None:
        return np.ascontiguousarray(frames).copy()
    if out.shape != frames.shape or out.dtype != np.uint8:
        raise ValueError(f"out: expected uint8 {frames.shape}, got {out.dtype} {out.shape}")
    if not out.flags.c_contiguous:
        raise ValueError("out: must be C-contiguous")
    if out is not frames:
        np.copyto(out, frames)
    return out


def _finite(value: float, name: str, lo: float, hi: float) -> float:
    value = float(value)
    if not math.isfinite(value) or not lo <= value <= hi:
        raise ValueError(f"{name} must be within [{lo:g}, {hi:g}], got {value!r}")
    return value


_LOCAL = threading.local()


def scratch_buffer(name: str, shape: tuple, dtype) -> np.ndarray:
    """A reusable temporary of `shape`, private to this thread and never returned to callers.

    Fresh multi-megabyte temporaries cost page faults on every frame; reusing one growing
    buffer per purpose keeps the kernels' working set fixed.
    """
    buffers = getattr(_LOCAL, "buffers", None)
    if buffers is None:
        buffers = _LOCAL.buffers = {}
    dtype = np.dtype(dtype)
    n = math.prod(int(d) for d in shape)
    buf = buffers.get((name, dtype))
    if buf is None or buf.size < n:
        buf = buffers[(name, dtype)] = np.empty(n, dtype)
    return buf[:n].reshape(shape)


def _rows2d(clip: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) -> (T*H, W*3): single-channel view, so cv2 scalars reach every value."""
    return clip.reshape(clip.shape[0] * clip.shape[1], -1)


# -- lighting ---------------------------------------------------------------------------------
def blackbody_rgb(kelvin: float) -> np.ndarray:
    """Tanner Helland's approximation of a blackbody's sRGB colour (0..255 floats per channel)."""
    kelvin = _finite(kelvin, "colour temperature (kelvin)", *KELVIN_RANGE)
    t = kelvin / 100.0
    if t <= 66:
        r = 255.0
        g = 99.4708025861 * math.log(t) - 161.1195681661
        b = 0.0 if t <= 19 else 138.5177312231 * math.log(t - 10) - 305.0447927307
    else:
        r = 329.698727446 * (t - 60) ** -0.1332047592
        g = 288.1221695283 * (t - 60) ** -0.0755148492
        b = 255.0
    return np.clip(np.array([r, g, b], dtype=np.float64), 0.0, 255.0)


def temperature_gains(kelvin: float) -> np.ndarray:
    """Per-channel (R, G, B) gains for a light source of `kelvin`; (1, 1, 1) at 6500 K."""
    kelvin = _finite(kelvin, "colour temperature (kelvin)", *KELVIN_RANGE)
    if kelvin == NEUTRAL_KELVIN:
        return np.ones(3)
    gains = blackbody_rgb(kelvin) / blackbody_rgb(NEUTRAL_KELVIN)
    return gains / float(_LUMA @ gains)


def lighting_affine(brightness: float, contrast: float,
                    kelvin: float = NEUTRAL_KELVIN) -> tuple[np.ndarray, np.ndarray]:
    """(scale, offset), float64 (3,) each: channel c's level v maps to scale[c] * v + offset[c]."""
    brightness = _finite(brightness, "brightness (percent)", -100, 100)
    contrast = _finite(contrast, "contrast (percent)", -100, 100)
    k = 1.0 + contrast / 100.0
    scale = temperature_gains(kelvin) * k
    offset = np.full(3, 127.5 * (1.0 - k) + 2.55 * brightness)
    return scale, offset


def lighting_lut(brightness: float, contrast: float, kelvin: float = NEUTRAL_KELVIN) -> np.ndarray:
    """The (3, 256) uint8 table of brightness (%), contrast (%) and colour temperature (K)."""
    scale, offset = lighting_affine(brightness, contrast, kelvin)
    y = scale[:, None] * np.arange(256, dtype=np.float64)[None, :] + offset[:, None]
    return np.clip(np.floor(y + 0.5), 0, 255).astype(np.uint8)


def apply_affine(frames: np.ndarray, scale: Sequence[float], offset: Sequence[float], *,
                 out: Optional[np.ndarray] = None) -> np.ndarray:
    """out[..., c] = saturate(round(scale[c] * frames[..., c] + offset[c])), in one pass."""
    clip = _check_frames(frames)
    scale = np.asarray(scale, dtype=np.float64)
    offset = np.asarray(offset, dtype=np.float64)
    if scale.shape != (3,) or offset.shape != (3,) or not (np.isfinite(scale).all() and np.isfinite(offset).all()):
        raise ValueError(f"scale, offset: expected 3 finite numbers each, got {scale!r}, {offset!r}")
    matrix = np.zeros((3, 4), np.float32)
    matrix[[0, 1, 2], [0, 1, 2]] = scale
    matrix[:, 3] = offset
    if out is None:
        out = np.empty(frames.shape, np.uint8)
    elif out.shape != frames.shape or out.dtype != np.uint8 or not out.flags.c_contiguous:
        raise ValueError(f"out: expected C-contiguous uint8 {frames.shape}, got {out.dtype} {out.shape}")
    rows = clip.shape[0] * clip.shape[1]
    src = np.ascontiguousarray(clip).reshape(rows, clip.shape[2], 3)
    cv2.transform(src, matrix, dst=_check_frames(out).reshape(rows, clip.shape[2], 3))
    return out


def adjust_lighting(frames: np.ndarray, brightness: float, contrast: float,
                    kelvin: float = NEUTRAL_KELVIN, *, out: Optional[np.ndarray] = None) -> np.ndarray:
    """Brightness, contrast and colour temperature in one affine pass (see the module docs)."""
    return apply_affine(frames, *lighting_affine(brightness, contrast, kelvin), out=out)


# -- noise ------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def half_normal_quantiles() -> np.ndarray:
    """float64[256]: normal quantiles at the centres of 256 equal bins, scaled to variance 1/2.

    Noise is the sum of two table lookups driven by two independent random bytes: two
    independent variables of variance 1/2 each give variance 1 and a 65536-point distribution
    close to the normal (tails to +-3.8 sigma), at the cost of two 8-bit lookups (`cv2.LUT`)
    instead of one 16-bit gather.
    """
    inv = NormalDist().inv_cdf
    q = np.array([inv((i + 0.5) / 256.0) for i in range(256)])
    return q * math.sqrt(0.5 / float(np.mean(q * q)))


@lru_cache(maxsize=256)
def _pair_table(scale: float, dtype: str) -> np.ndarray:
    table = half_normal_quantiles() * scale
    if dtype == "int16":
        table = np.floor(table + 0.5)
    return table.astype(dtype).reshape(1, 256)


def noise_table(scale: float, dtype: str = "int16") -> np.ndarray:
    """(1, 256) table of `half_normal_quantiles() * scale`; int16 tables are rounded to nearest.

    The sum of two lookups driven by independent uniform bytes is noise of std `scale`.
    """
    return _pair_table(float(scale), dtype)


def _check_uniform8(u1: np.ndarray, u2: np.ndarray, shape: tuple) -> None:
    for name, u in (("u1", u1), ("u2", u2)):
        if not isinstance(u, np.ndarray) or u.dtype != np.uint8 or u.shape != tuple(shape):
            got = f"{u.dtype} {u.shape}" if isinstance(u, np.ndarray) else type(u).__name__
            raise ValueError(f"{name}: expected uint8 random bytes of shape {tuple(shape)}, got {got}")


def _per_frame_2d(u: np.ndarray, frames: int) -> np.ndarray:
    """(T, H, W, 3) -> (T, H*W*3): a view when each frame is contiguous (frames may be strided)."""
    return u.reshape(frames, -1)


def _normal_from_bytes(u1: np.ndarray, u2: np.ndarray, table: np.ndarray, frames: int, name: str) -> np.ndarray:
    """table[u1] + table[u2] as a (T, H*W*3) scratch array of the table's dtype."""
    a2, b2 = _per_frame_2d(u1, frames), _per_frame_2d(u2, frames)
    first = scratch_buffer(name + "_a", a2.shape, table.dtype)
    second = scratch_buffer(name + "_b", a2.shape, table.dtype)
    cv2.LUT(a2, table, dst=first)
    cv2.LUT(b2, table, dst=second)
    cv2.add(first, second, dst=first)
    return first


def add_noise_i16(frames: np.ndarray, noise: np.ndarray, *, out: Optional[np.ndarray] = None) -> np.ndarray:
    """out = clip(frames + noise, 0, 255): exact saturating add of int16 noise to uint8 frames.

    `noise`: int16 of the frames' size, (T, H*W*3) or the frames' shape; it is overwritten.
    Three plain numpy passes (widen-and-add, clip, narrow) beat OpenCV's mixed-type arithmetic,
    which converts block by block outside its SIMD paths.
    """
    clip = _check_frames(frames)
    if not isinstance(noise, np.ndarray) or noise.dtype != np.int16 or noise.size != clip.size:
        got = f"{noise.dtype} {noise.shape}" if isinstance(noise, np.ndarray) else type(noise).__name__
        raise ValueError(f"noise: expected int16 with {clip.size} values, got {got}")
    result = _prepare_out(frames, out) if out is not None else np.empty_like(clip.reshape(frames.shape))
    acc = noise.reshape(clip.shape[0], -1)
    np.add(acc, clip.reshape(acc.shape), out=acc, casting="unsafe")
    np.clip(acc, 0, 255, out=acc)
    np.copyto(_check_frames(result).reshape(acc.shape), acc, casting="unsafe")
    return result


def _saturating_add_i16(clip: np.ndarray, noise2d: np.ndarray, result: np.ndarray) -> None:
    """result = clip(clip + noise, 0, 255); noise2d is int16 (T, H*W*3) and is overwritten."""
    add_noise_i16(clip, noise2d, out=result)


def gaussian_noise(frames: np.ndarray, sigma: float, u1: np.ndarray, u2: np.ndarray, *,
                   out: Optional[np.ndarray] = None) -> np.ndarray:
    """Add i.i.d. gaussian noise of std `sigma` levels, rounded to whole levels, with saturation.

    `u1`, `u2`: uint8 random bytes of the frames' shape, the noise's only source of randomness.
    """
    clip = _check_frames(frames)
    sigma = _finite(sigma, "gaussian noise sigma (8-bit levels)", 0, 255)
    _check_uniform8(u1, u2, frames.shape)
    result = _prepare_out(frames, out)
    if sigma == 0:
        return result
    noise = _normal_from_bytes(u1, u2, _pair_table(sigma, "int16"), clip.shape[0], "noise")
    _saturating_add_i16(_check_frames(result), noise, _check_frames(result))
    return result


def read_noise(frames: np.ndarray, sigma: float, u1: np.ndarray, u2: np.ndarray,
               row_u1: np.ndarray, row_u2: np.ndarray, *, row_fraction: float = 0.5,
               out: Optional[np.ndarray] = None) -> np.ndarray:
    """Add read-out noise of total std `sigma`: per-pixel gaussian plus a per-row (banding) offset.

    `row_u1`, `row_u2`: uint8 random bytes of shape (T, H) for a clip, (H,) for a frame.
    """
    clip = _check_frames(frames)
    sigma = _finite(sigma, "read noise sigma (8-bit levels)", 0, 255)
    row_fraction = _finite(row_fraction, "read noise row_fraction", 0, 1)
    _check_uniform8(u1, u2, frames.shape)
    _check_uniform8(row_u1, row_u2, frames.shape[:-2])
    result = _prepare_out(frames, out)
    if sigma == 0:
        return result
    t, h = clip.shape[:2]
    pixel_table = _pair_table(sigma * math.sqrt(1.0 - row_fraction ** 2), "int16")
    noise = _normal_from_bytes(u1, u2, pixel_table, t, "noise")
    add_row_offsets(noise, read_row_offsets(sigma, row_fraction, row_u1.reshape(t, h), row_u2.reshape(t, h)), h)
    _saturating_add_i16(_check_frames(result), noise, _check_frames(result))
    return result


def read_row_offsets(sigma: float, row_fraction: float, row_u1: np.ndarray, row_u2: np.ndarray) -> np.ndarray:
    """int16 (T, H) per-row offsets of std sigma * row_fraction, from two random bytes per row."""
    row_table = _pair_table(float(sigma) * float(row_fraction), "int16")[0]
    return row_table[row_u1] + row_table[row_u2]


def add_row_offsets(noise: np.ndarray, rows: np.ndarray, height: int) -> None:
    """noise (T, H*W*3 int16) += rows (T, H) broadcast over each row's columns and channels."""
    t = noise.shape[0]
    view = noise.reshape(t, height, -1)
    np.add(view, rows.reshape(t, height, 1).astype(np.int16), out=view)


SHOT_Z_ONE = 256  # fixed point of the shot noise's unit normal z: Q8
SHOT_STD_ONE = 128  # fixed point of its per-level std sqrt(gain * v): Q7 (255 * 128 fits int16)


def shot_noise(frames: np.ndarray, gain: float, u1: np.ndarray, u2: np.ndarray, *,
               out: Optional[np.ndarray] = None) -> np.ndarray:
    """Add signal-dependent shot noise: variance = `gain` x level (gaussian approximation)."""
    clip = _check_frames(frames)
    gain = _finite(gain, "shot noise gain", 0, 255)
    _check_uniform8(u1, u2, frames.shape)
    result = _prepare_out(frames, out)
    if gain == 0:
        return result
    z = _normal_from_bytes(u1, u2, _pair_table(float(SHOT_Z_ONE), "int16"), clip.shape[0], "shot")
    add_shot_noise(result, gain, z, out=result)
    return result


def add_shot_noise(frames: np.ndarray, gain: float, z_q8: np.ndarray, *,
                   out: Optional[np.ndarray] = None) -> np.ndarray:
    """out = clip(v + round(sqrt(gain * v) * z)): `z_q8` is std-1 noise z x 256 (int16, overwritten).

    Fixed point throughout (z to 1/256, the std to 1/128: under 0.1 level of error before
    rounding): one int16 table pass for the std, one rounding int16 multiply, one saturating add.
    """
    clip = _check_frames(frames)
    gain = _finite(gain, "shot noise gain", 0, 255)
    if not isinstance(z_q8, np.ndarray) or z_q8.dtype != np.int16 or z_q8.size != clip.size:
        raise ValueError(f"shot noise z: expected int16 with {clip.size} values")
    result = _prepare_out(frames, out)
    z = z_q8.reshape(clip.shape[0], -1)
    std = scratch_buffer("shot_std", z.shape, np.int16)
    cv2.LUT(_check_frames(result).reshape(z.shape), _shot_std_table(gain), dst=std)
    cv2.multiply(z, std, dst=z, scale=1.0 / (SHOT_Z_ONE * SHOT_STD_ONE))  # rounds to nearest
    return add_noise_i16(result, z, out=result)


@lru_cache(maxsize=64)
def _shot_std_table(gain: float) -> np.ndarray:
    std = np.sqrt(gain * np.arange(256, dtype=np.float64)) * SHOT_STD_ONE
    return np.floor(std + 0.5).astype(np.int16).reshape(1, 256)


# -- blur -------------------------------------------------------------------------------------
def _round_half_away(x: float) -> int:
    return int(math.copysign(math.floor(abs(x) + 0.5), x))


def motion_taps(length: int, angle_deg: float) -> list[tuple[int, int]]:
    """The (dy, dx) offsets of a motion kernel: `length` pixels along a line at `angle_deg`."""
    if isinstance(length, bool) or not isinstance(length, (int, np.integer)):
        raise ValueError(f"motion blur length must be an integer, got {length!r}")
    length = int(length)
    if length < 1 or length % 2 == 0:
        raise ValueError(f"motion blur length must be a positive odd number of pixels, got {length}")
    if length > MAX_MOTION_LENGTH:
        raise ValueError(f"motion blur length must be <= {MAX_MOTION_LENGTH}, got {length}")
    angle = _finite(angle_deg, "motion blur angle (degrees)", -360, 360)
    c, s = math.cos(math.radians(angle)), -math.sin(math.radians(angle))  # image y points down
    r = length // 2
    if abs(c) >= abs(s):
        return [(_round_half_away(i * s / c), i) for i in range(-r, r + 1)]
    return [(i, _round_half_away(i * c / s)) for i in range(-r, r + 1)]


def motion_kernel(length: int, angle_deg: float) -> np.ndarray:
    """The (length, length) float32 kernel `motion_blur` applies (for inspection and tests)."""
    taps = motion_taps(length, angle_deg)
    r = int(length) // 2
    kernel = np.zeros((2 * r + 1, 2 * r + 1), np.float32)
    for dy, dx in taps:
        kernel[r + dy, r + dx] += 1.0 / len(taps)
    return kernel


def motion_blur(frames: np.ndarray, length: int, angle_deg: float, *,
                out: Optional[np.ndarray] = None) -> np.ndarray:
    """Average of `length` shifted copies along a line (see the module docs).

    A sum of shifted views in a uint16 accumulator costs one add per tap instead of the
    length^2 multiply-adds of a dense filter2D kernel; results are rounded to nearest.
    """
    clip = _check_frames(frames)
    taps = motion_taps(length, angle_deg)
    result = _prepare_out(frames, out)
    if len(taps) == 1:
        return result
    res = _check_frames(result)
    t_count, h, w, _ = clip.shape
    r = len(taps) // 2
    # Padded frames stacked into one tall image: each tap is then one add over the whole block.
    # Rows between frames come out as junk in the accumulator and are skipped.
    ph = h + 2 * r
    padded8 = scratch_buffer("motion_pad8", (t_count, ph, w + 2 * r, 3), np.uint8)
    padded = scratch_buffer("motion_pad16", padded8.shape, np.uint16)
    for t in range(t_count):
        cv2.copyMakeBorder(res[t], r, r, r, r, cv2.BORDER_REFLECT_101, dst=padded8[t])
    np.copyto(padded, padded8)
    tall = padded.reshape(t_count * ph, -1)
    rows = t_count * ph - 2 * r
    acc = scratch_buffer("motion_acc", (rows, w * 3), np.uint16)
    views = [tall[r + dy: r + dy + rows, 3 * (r + dx): 3 * (r + dx + w)] for dy, dx in taps]
    cv2.add(views[0], views[1], dst=acc)
    for view in views[2:]:
        cv2.add(acc, view, dst=acc)
    scale = 1.0 / len(taps)
    for t in range(t_count):
        cv2.convertScaleAbs(acc[t * ph: t * ph + h], dst=res[t].reshape(h, -1), alpha=scale)
    return result


def defocus_blur(frames: np.ndarray, sigma: float, *, out: Optional[np.ndarray] = None) -> np.ndarray:
    """Gaussian defocus of std `sigma` pixels (kernel +-3 sigma, reflecting borders).

    Two 1-D passes with a float32 kernel (`sepFilter2D`), rounded to nearest: a quarter faster
    than `GaussianBlur`'s bit-exact 8-bit path, and closer to the true gaussian.
    """
    clip = _check_frames(frames)
    sigma = _finite(sigma, "defocus blur sigma (pixels)", 0, 1000)
    result = _prepare_out(frames, out)
    if sigma == 0:
        return result
    res = _check_frames(result)
    kernel = _gaussian_kernel(sigma)
    for t in range(clip.shape[0]):
        cv2.sepFilter2D(res[t], -1, kernel, kernel, dst=res[t], borderType=cv2.BORDER_REFLECT_101)
    return result


@lru_cache(maxsize=64)
def _gaussian_kernel(sigma: float) -> np.ndarray:
    ksize = 2 * math.ceil(3 * sigma) + 1
    return cv2.getGaussianKernel(ksize, sigma, cv2.CV_64F).astype(np.float32)


# -- occlusion --------------------------------------------------------------------------------
def _check_box(box: Sequence[int], h: int, w: int) -> tuple[int, int, int, int]:
    if len(box) != 4:
        raise ValueError(f"occlusion box must be (x, y, width, height), got {box!r}")
    x, y, bw, bh = (int(v) for v in box)
    if bw < 1 or bh < 1 or x < 0 or y < 0 or x + bw > w or y + bh > h:
        raise ValueError(
            f"occlusion box (x={x}, y={y}, width={bw}, height={bh}) must have positive size and "
            f"lie inside the {w}x{h} frame"
        )
    return x, y, bw, bh


def _check_colour(colour: Sequence[int]) -> tuple[int, int, int]:
    if len(colour) != 3 or any(not 0 <= int(c) <= 255 for c in colour):
        raise ValueError(f"occlusion colour must be three values in 0..255, got {colour!r}")
    return tuple(int(c) for c in colour)


def fill_rectangles(frames: np.ndarray, boxes: Sequence[Sequence[int]], colours: Sequence[Sequence[int]], *,
                    out: Optional[np.ndarray] = None) -> np.ndarray:
    """Paint each (x, y, width, height) box with its solid RGB colour on every frame."""
    clip = _check_frames(frames)
    if len(boxes) != len(colours):
        raise ValueError(f"occlusion: {len(boxes)} boxes but {len(colours)} colours")
    checked = [(_check_box(b, *clip.shape[1:3]), _check_colour(c)) for b, c in zip(boxes, colours)]
    result = _prepare_out(frames, out)
    res = _check_frames(result)
    for (x, y, bw, bh), colour in checked:
        res[:, y:y + bh, x:x + bw] = colour
    return result


def smooth_texture(grid: np.ndarray, height: int, width: int) -> np.ndarray:
    """A (height, width, 3) uint8 texture: the small uint8 colour `grid` bilinearly upsampled."""
    grid = np.asarray(grid)
    if grid.dtype != np.uint8 or grid.ndim != 3 or grid.shape[-1] != 3:
        raise ValueError(f"texture grid: expected uint8 (h, w, 3), got {grid.dtype} {grid.shape}")
    if height < 1 or width < 1:
        raise ValueError(f"texture size must be positive, got {width}x{height}")
    return cv2.resize(grid, (int(width), int(height)), interpolation=cv2.INTER_LINEAR)


def blend_overlay(frames: np.ndarray, box: Sequence[int], texture: np.ndarray, alpha: float, *,
                  out: Optional[np.ndarray] = None) -> np.ndarray:
    """Alpha-blend `texture` over `box` on every frame: (1 - alpha) frame + alpha texture.

    Fixed point in 1/256 steps on the patch only, rounded to nearest.
    """
    clip = _check_frames(frames)
    x, y, bw, bh = _check_box(box, *clip.shape[1:3])
    alpha = _finite(alpha, "overlay alpha", 0, 1)
    texture = np.asarray(texture)
    if texture.dtype != np.uint8 or texture.shape != (bh, bw, 3):
        raise ValueError(f"overlay texture: expected uint8 {(bh, bw, 3)}, got {texture.dtype} {texture.shape}")
    result = _prepare_out(frames, out)
    res = _check_frames(result)
    a = int(round(alpha * 256))
    tex_term = texture.astype(np.uint16) * np.uint16(a) + np.uint16(128)
    region = res[:, y:y + bh, x:x + bw]
    mixed = region.astype(np.uint16)
    mixed *= np.uint16(256 - a)
    mixed += tex_term
    mixed >>= 8
    region[...] = mixed
    return result
