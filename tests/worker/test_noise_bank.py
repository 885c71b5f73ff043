"""Sensor noise drawn from per-copy banks at per-frame offsets: exactness, the documented joint
distribution across frames, keying by frame index, and apply_clip's reusable output buffer."""

from __future__ import annotations

import numpy as np
import pytest

from roboaug.api.models import AugmentationJobSpec
from roboaug.worker.transforms import apply_clip, functional as F, sample_copy_params
from roboaug.worker.transforms import noise as S

PROJECT = "00000000-0000-0000-0000-0000000000ab"


def params(noise_type="gaussian", transforms=("noise",), h=96, w=128, **fields):
    spec = AugmentationJobSpec(project_id=PROJECT, dataset_id="org/data", noise_type=noise_type, **fields)
    return sample_copy_params(spec, transforms, seed=3, episode=1, copy=0, camera=0, width=w, height=h)


def grey_clip(frames, h=96, w=128, level=128):
    return np.full((frames, h, w, 3), level, np.uint8)


def test_saturating_add_is_exact_at_both_ends():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (3, 17, 23, 3), dtype=np.uint8)
    frames[0, 0, :4] = (0, 255, 0)
    noise = rng.integers(-400, 400, frames.shape, dtype=np.int16)
    expected = np.clip(frames.astype(int) + noise, 0, 255).astype(np.uint8)
    assert np.array_equal(F.add_noise_i16(frames, noise.copy()), expected)
    with pytest.raises(ValueError, match="noise"):
        F.add_noise_i16(frames, noise.astype(np.int32))


def test_frame_offsets_depend_on_the_frame_index_alone():
    p = params()
    n = 96 * 128 * 3
    whole = S.frame_offsets(p, 0, 40, n)
    assert np.array_equal(S.frame_offsets(p, 17, 5, n), whole[17:22])
    m = S.bank_offsets(n)
    assert whole.min() >= 0 and whole.max() < m
    assert len({tuple(o) for o in whole}) == 40  # distinct frames, distinct offset pairs


def test_gaussian_noise_marginal_and_cross_frame_structure():
    sigma = 10.0
    p = params(noise_gaussian_sigma_min=sigma, noise_gaussian_sigma_max=sigma)
    clip = grey_clip(6)
    noise = apply_clip(clip, p, np.arange(6)).astype(np.int64) - 128  # no saturation at 128 +- 4.1 sigma
    flat = noise.reshape(6, -1)
    assert abs(flat.std() - sigma) <= 0.03 * sigma
    assert abs(flat.mean()) <= 0.1
    # same pixel, different frames: uncorrelated
    assert abs(np.corrcoef(flat[0], flat[1])[0, 1]) < 0.03


def test_frames_share_at_most_a_shifted_half_of_their_noise():
    """The documented link: g's A-half is f's A-half shifted by a_g - a_f; the B-half is not, so
    copying the shifted frame leaves the full noise variance as residual (best linear 3/4)."""
    sigma = 10.0
    p = params(noise_gaussian_sigma_min=sigma, noise_gaussian_sigma_max=sigma)
    n = 96 * 128 * 3
    offsets = S.frame_offsets(p, 0, 3000, n)
    # a pair of frames whose A offsets are close enough for the shifted halves to overlap widely
    order = np.argsort(offsets[:, 0])
    gaps = np.diff(offsets[order, 0]).astype(float)
    gaps[gaps == 0] = np.inf  # an exact repeat (probability 1/M a pair) shares the half unshifted
    k = int(np.argmin(gaps))
    f, g = int(order[k]), int(order[k + 1])
    d = int(offsets[g, 0] - offsets[f, 0])
    assert 0 < d < n // 2
    out = apply_clip(grey_clip(2), p, np.array([f, g])).astype(np.int64) - 128
    nf, ng = out[0].ravel(), out[1].ravel()
    shifted_f, part_g = nf[d:], ng[:n - d]  # g[p] and f[p + d] share A[a_g + p]
    assert 0.4 < np.corrcoef(part_g, shifted_f)[0, 1] < 0.6
    assert abs((part_g - shifted_f).var() - sigma ** 2) <= 0.1 * sigma ** 2
    assert abs((part_g - 0.5 * shifted_f).var() - 0.75 * sigma ** 2) <= 0.1 * sigma ** 2
    assert abs(np.corrcoef(ng, nf)[0, 1]) < 0.03  # unshifted: unrelated


def test_shot_noise_variance_is_gain_times_level_through_apply_clip():
    gain = 0.8
    p = params("shot", noise_shot_scale_min=gain, noise_shot_scale_max=gain)
    for level in (0, 30, 150):
        out = apply_clip(grey_clip(3, level=level), p, np.arange(3)).astype(float)
        if level == 0:
            assert out.max() == 0
        else:
            assert abs(out.var() - gain * level) <= 0.06 * gain * level
            assert abs(out.mean() - level) <= 0.15


def test_read_noise_through_apply_clip_has_row_banding():
    sigma = 8.0
    p = params("read", noise_gaussian_sigma_min=sigma, noise_gaussian_sigma_max=sigma, h=128, w=128)
    out = apply_clip(grey_clip(2, 128, 128), p, np.arange(2)).astype(float)
    assert abs(out.std() - sigma) <= 0.06 * sigma
    assert abs(out[0].mean(axis=(1, 2)).std() - 0.5 * sigma) <= 0.25 * 0.5 * sigma


def test_bank_cache_does_not_change_bytes():
    p = params("mixed", transforms=("lighting", "occlusion", "blur", "noise"))
    rng = np.random.default_rng(4)
    clip = rng.integers(0, 256, (5, 96, 128, 3), dtype=np.uint8)
    first = apply_clip(clip, p, np.arange(10, 15))
    apply_clip(clip, params("shot"), np.arange(5))  # other banks in between
    S._BANK_CACHE.clear()
    assert apply_clip(clip, p, np.arange(10, 15)).tobytes() == first.tobytes()


def test_apply_clip_writes_into_out_and_refuses_overlap():
    p = params("gaussian", transforms=("lighting", "blur", "noise"))
    rng = np.random.default_rng(5)
    clip = rng.integers(0, 256, (4, 96, 128, 3), dtype=np.uint8)
    buf = np.empty_like(clip)
    res = apply_clip(clip, p, np.arange(4), out=buf)
    assert res is buf and buf.tobytes() == apply_clip(clip, p, np.arange(4)).tobytes()
    with pytest.raises(ValueError, match="overlap"):
        apply_clip(clip, p, np.arange(4), out=clip)
    with pytest.raises(ValueError, match="out"):
        apply_clip(clip, p, np.arange(4), out=buf[:2])
