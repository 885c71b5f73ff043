"""Transforms: each kernel's documented effect, the sampling rules, determinism and refusals."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from pydantic import ValidationError

from roboaug.api.models import APPLY_ORDER, AugmentationJobSpec
from roboaug.worker.transforms import apply_clip, functional as F, sample_copy_params

REPO = Path(__file__).resolve().parents[2]
PROJECT = "00000000-0000-0000-0000-0000000000aa"
ALL = ("lighting", "noise", "blur", "occlusion")


def make_spec(**fields) -> AugmentationJobSpec:
    return AugmentationJobSpec(project_id=PROJECT, dataset_id="org/data", **fields)


def grey(level=128, shape=(64, 64, 3)) -> np.ndarray:
    return np.full(shape, level, np.uint8)


def scene(h=96, w=128, seed=0) -> np.ndarray:
    """A frame with edges and texture in both directions (so blur has something to remove)."""
    rng = np.random.default_rng(seed)
    frame = F.smooth_texture(rng.integers(40, 216, (4, 4, 3), dtype=np.uint8), h, w)
    grain = rng.integers(-30, 31, (h, w, 3))
    frame = np.clip(frame.astype(int) + grain, 0, 255).astype(np.uint8)
    cv2.rectangle(frame, (w // 4, h // 4), (w // 2, h // 2), (250, 20, 20), -1)
    cv2.circle(frame, (3 * w // 4, 2 * h // 3), h // 6, (10, 240, 30), -1)
    return frame


def clip_of(frame: np.ndarray, frames: int) -> np.ndarray:
    return np.repeat(frame[None], frames, axis=0)


def params_for(spec, transforms=ALL, *, seed=1, episode=0, copy=0, camera=0, w=128, h=96):
    return sample_copy_params(spec, tuple(transforms), seed=seed, episode=episode, copy=copy,
                              camera=camera, width=w, height=h)


def laplacian_var(frame: np.ndarray) -> float:
    return float(cv2.Laplacian(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var())


def random_bytes(shape, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, shape, dtype=np.uint8), rng.integers(0, 256, shape, dtype=np.uint8)


# -- lighting ---------------------------------------------------------------------------------
@pytest.mark.parametrize("brightness", [-40, -15, -5, 5, 15, 40])
def test_brightness_shifts_mean_by_percent_of_full_scale(brightness):
    out = F.adjust_lighting(grey(), brightness, 0)
    assert abs(out.mean() - (128 + 2.55 * brightness)) <= 1.0


@pytest.mark.parametrize("contrast", [-100, -60, -20, 20, 50])
def test_contrast_scales_std_about_mid_grey(contrast):
    ramp = np.tile(np.linspace(88, 167, 64).round().astype(np.uint8)[None, :, None], (64, 1, 3))
    out = F.adjust_lighting(ramp, 0, contrast)
    expected = ramp.std() * (1 + contrast / 100)
    assert abs(out.std() - expected) <= 0.02 * ramp.std() + 0.3
    assert abs(out.mean() - ramp.mean()) <= 1.0


def test_neutral_temperature_and_zero_shifts_are_identity():
    assert np.array_equal(F.lighting_lut(0, 0, 6500), np.tile(np.arange(256, dtype=np.uint8), (3, 1)))
    frame = scene()
    assert np.array_equal(F.adjust_lighting(frame, 0, 0, 6500), frame)


@pytest.mark.parametrize("brightness, contrast, kelvin", [
    (0, 0, 6500), (15, -10, 4000), (-15, 10, 6500), (40, 50, 2500), (-100, -100, 9000), (7, 3, 3333),
])
def test_affine_pass_matches_the_table_within_one_level(brightness, contrast, kelvin):
    """The pipeline's affine pass (float32, round half to even) and the float64 table (round half
    up) agree on every input level of every channel, except by one level at rounding ties."""
    levels = np.tile(np.arange(256, dtype=np.uint8)[:, None], (1, 3))[None]  # (1, 256, 3)
    fast = F.adjust_lighting(levels, brightness, contrast, kelvin)[0].T.astype(int)
    table = F.lighting_lut(brightness, contrast, kelvin).astype(int)
    scale, offset = F.lighting_affine(brightness, contrast, kelvin)
    y = scale[:, None] * np.arange(256)[None, :] + offset[:, None]
    near_tie = np.abs(y - np.floor(y) - 0.5) < 1e-3
    assert np.abs(fast - table).max() <= 1
    assert not ((fast != table) & ~near_tie).any()


@pytest.mark.parametrize("scale, offset", [((1, 1), (0, 0, 0)), ((1, 1, float("inf")), (0, 0, 0)),
                                           ((1, 1, 1), (0, float("nan"), 0))])
def test_affine_kernel_refuses_bad_coefficients(scale, offset):
    with pytest.raises(ValueError, match="scale, offset"):
        F.apply_affine(grey(), scale, offset)


@pytest.mark.parametrize("kelvin", [1500, 3000, 4500, 6000])
def test_low_temperature_warms(kelvin):
    out = F.adjust_lighting(grey(), 0, 0, kelvin).reshape(-1, 3).mean(axis=0)
    assert out[0] > 128 + 1 and out[2] < 128 - 1, out
    assert abs(out @ [0.299, 0.587, 0.114] - 128) <= 1.5  # luma of grey kept


@pytest.mark.parametrize("kelvin", [7500, 10000, 20000, 40000])
def test_high_temperature_cools(kelvin):
    out = F.adjust_lighting(grey(), 0, 0, kelvin).reshape(-1, 3).mean(axis=0)
    assert out[0] < 128 - 1 and out[2] > 128 + 1, out


def test_warmth_is_monotonic_in_kelvin():
    ratios = [F.temperature_gains(k)[0] / F.temperature_gains(k)[2] for k in (2000, 3000, 4000, 5000, 6500, 9000, 15000)]
    assert all(a > b for a, b in zip(ratios, ratios[1:]))


@pytest.mark.parametrize("kwargs, field", [
    (dict(brightness=101, contrast=0), "brightness"),
    (dict(brightness=0, contrast=-101), "contrast"),
    (dict(brightness=0, contrast=0, kelvin=999), "kelvin"),
    (dict(brightness=float("nan"), contrast=0), "brightness"),
])
def test_lighting_kernel_refuses_out_of_range(kwargs, field):
    with pytest.raises(ValueError, match=field):
        F.adjust_lighting(grey(), **kwargs)


# -- noise ------------------------------------------------------------------------------------
@pytest.mark.parametrize("sigma", [1, 3, 8, 15])
def test_gaussian_noise_std_is_sigma(sigma):
    frame = grey(shape=(256, 256, 3))
    out = F.gaussian_noise(frame, sigma, *random_bytes(frame.shape)).astype(float)
    assert abs(out.mean() - 128) <= 0.1 + 0.01 * sigma
    assert abs(out.std() - sigma) <= 0.03 * sigma + 0.05


def test_sampled_gaussian_noise_std_within_sigma_range():
    spec = make_spec(noise_type="gaussian", noise_gaussian_sigma_min=4, noise_gaussian_sigma_max=9)
    for copy in range(6):
        params = params_for(spec, ("noise",), copy=copy)
        assert 4 <= params.noise.sigma <= 9
        out = apply_clip(clip_of(grey(shape=(96, 128, 3)), 4), params, np.arange(4)).astype(float)
        assert 4 * 0.97 <= out.std() <= 9 * 1.03
        assert abs(out.std() - params.noise.sigma) <= 0.05 * params.noise.sigma


def test_shot_noise_variance_grows_with_level():
    gain = 0.5
    variances = {}
    for level in (0, 20, 80, 200):
        frame = grey(level, (256, 256, 3))
        out = F.shot_noise(frame, gain, *random_bytes(frame.shape, seed=level)).astype(float)
        variances[level] = out.var()
        if level:
            assert abs(out.var() - gain * level) <= 0.08 * gain * level + 0.1, (level, out.var())
            assert abs(out.mean() - level) <= 0.2
    assert variances[0] == 0  # no light, no photon noise
    assert variances[20] < variances[80] < variances[200]


def test_read_noise_total_std_and_row_banding():
    sigma = 8.0
    frame = grey(shape=(256, 256, 3))
    u1, u2 = random_bytes(frame.shape)
    r1, r2 = random_bytes(frame.shape[:1], seed=5)
    out = F.read_noise(frame, sigma, u1, u2, r1, r2, row_fraction=0.5).astype(float)
    assert abs(out.std() - sigma) <= 0.05 * sigma
    row_means = out.mean(axis=(1, 2))
    # per-row offsets have std sigma/2; pure per-pixel noise would leave row means at ~sigma/28
    assert abs(row_means.std() - sigma * 0.5) <= 0.2 * sigma * 0.5
    plain = F.gaussian_noise(frame, sigma, u1, u2).astype(float)
    assert plain.mean(axis=(1, 2)).std() < 0.1 * sigma


def test_noise_differs_between_frames_and_is_fresh_per_frame():
    spec = make_spec(noise_type="gaussian")
    out = apply_clip(clip_of(grey(shape=(96, 128, 3)), 3), params_for(spec, ("noise",)), np.arange(3))
    assert not np.array_equal(out[0], out[1]) and not np.array_equal(out[1], out[2])
    corr = np.corrcoef(out[0].ravel().astype(float), out[1].ravel().astype(float))[0, 1]
    assert abs(corr) < 0.05


def test_noise_kernels_refuse_bad_inputs():
    frame = grey()
    u1, u2 = random_bytes(frame.shape)
    with pytest.raises(ValueError, match="sigma"):
        F.gaussian_noise(frame, -1, u1, u2)
    with pytest.raises(ValueError, match="gain"):
        F.shot_noise(frame, -0.5, u1, u2)
    with pytest.raises(ValueError, match="u1"):
        F.gaussian_noise(frame, 3, u1[:10], u2)
    with pytest.raises(ValueError, match="uint8"):
        F.gaussian_noise(frame.astype(np.float32), 3, u1, u2)


# -- blur -------------------------------------------------------------------------------------
@pytest.mark.parametrize("blur", [("motion", 9, 30.0), ("motion", 15, 120.0), ("defocus", 1.5), ("defocus", 3.0)])
def test_blur_lowers_high_frequency_energy(blur):
    frame = scene()
    out = F.motion_blur(frame, blur[1], blur[2]) if blur[0] == "motion" else F.defocus_blur(frame, blur[1])
    assert laplacian_var(out) < 0.5 * laplacian_var(frame)


def gradient_energy(frame: np.ndarray) -> tuple[float, float]:
    g = frame.astype(float).mean(axis=2)
    return float((np.diff(g, axis=1) ** 2).mean()), float((np.diff(g, axis=0) ** 2).mean())


@pytest.mark.parametrize("angle, along", [(0.0, "x"), (180.0, "x"), (90.0, "y"), (-90.0, "y")])
def test_motion_blur_is_directional(angle, along):
    frame = np.random.default_rng(3).integers(0, 256, (96, 96, 3), dtype=np.uint8)
    gx0, gy0 = gradient_energy(frame)
    gx, gy = gradient_energy(F.motion_blur(frame, 11, angle))
    kept_x, kept_y = gx / gx0, gy / gy0
    # on white noise any averaging lowers both; the blur's own direction loses ~10x more
    if along == "x":
        assert kept_x < 0.02 and kept_x < 0.2 * kept_y
    else:
        assert kept_y < 0.02 and kept_y < 0.2 * kept_x


@pytest.mark.parametrize("length, angle", [(3, 0), (7, 30), (9, 45), (15, 100), (21, 170), (5, -60)])
def test_motion_blur_matches_its_kernel_through_filter2d(length, angle):
    frame = scene(64, 80)
    kernel = F.motion_kernel(length, angle)
    assert np.count_nonzero(kernel) == length and abs(kernel.sum() - 1) < 1e-5
    reference = cv2.filter2D(frame.astype(np.float32), -1, kernel, borderType=cv2.BORDER_REFLECT_101)
    ours = F.motion_blur(frame, length, angle).astype(np.float32)
    assert np.abs(ours - reference).max() <= 0.51


def test_motion_taps_span_length_along_dominant_axis():
    for angle in (0, 20, 44, 46, 80, 135):
        taps = F.motion_taps(11, angle)
        dys, dxs = zip(*taps)
        assert len(set(taps)) == 11
        assert max(max(dys) - min(dys), max(dxs) - min(dxs)) == 10


@pytest.mark.parametrize("length", [4, 0, -3, 2.5, 301])
def test_motion_blur_refuses_bad_length(length):
    with pytest.raises(ValueError, match="length"):
        F.motion_blur(grey(), length, 0)


def test_defocus_zero_is_identity_and_negative_refused():
    frame = scene()
    assert np.array_equal(F.defocus_blur(frame, 0), frame)
    with pytest.raises(ValueError, match="sigma"):
        F.defocus_blur(frame, -1)


def test_in_place_equals_out_of_place():
    frame = scene()
    for fn in (lambda f, **k: F.motion_blur(f, 9, 33, **k), lambda f, **k: F.defocus_blur(f, 2.0, **k),
               lambda f, **k: F.adjust_lighting(f, 10, 10, 4000, **k)):
        buf = frame.copy()
        assert np.array_equal(fn(buf, out=buf), fn(frame))
    assert np.array_equal(frame, scene())  # inputs untouched


# -- occlusion --------------------------------------------------------------------------------
OCC = dict(occlusion_num_patches_min=2, occlusion_num_patches_max=4, occlusion_patch_width_min=0.1,
           occlusion_patch_width_max=0.25, occlusion_patch_height_min=0.05, occlusion_patch_height_max=0.3)


def test_occlusion_patches_within_requested_bounds():
    spec = make_spec(occlusion_type="rectangle", **OCC)
    w, h = 128, 96
    counts = set()
    for copy in range(30):
        occ = params_for(spec, ("occlusion",), copy=copy, w=w, h=h).occlusion
        counts.add(len(occ.patches))
        assert 2 <= len(occ.patches) <= 4
        for p in occ.patches:
            assert 0.1 * w - 0.5 <= p.width <= 0.25 * w + 0.5
            assert 0.05 * h - 0.5 <= p.height <= 0.3 * h + 0.5
            assert 0 <= p.x and p.x + p.width <= w and 0 <= p.y and p.y + p.height <= h
    assert counts == {2, 3, 4}


def test_rectangles_paint_exactly_their_boxes():
    spec = make_spec(occlusion_type="rectangle", **OCC)
    params = params_for(spec, ("occlusion",), copy=3)
    frame = scene()
    out = apply_clip(clip_of(frame, 2), params, np.arange(2))
    mask = np.zeros(frame.shape[:2], bool)
    for p in params.occlusion.patches:
        mask[p.y:p.y + p.height, p.x:p.x + p.width] = True
    changed = (out[0] != frame).any(axis=2)
    assert not changed[~mask].any()
    assert mask.sum() <= sum(p.width * p.height for p in params.occlusion.patches)
    last = params.occlusion.patches[-1]
    assert (out[:, last.y:last.y + last.height, last.x:last.x + last.width] == last.colour).all()
    assert np.array_equal(out[0], out[1])  # held for all frames


def test_overlay_is_semi_transparent_and_textured():
    spec = make_spec(occlusion_type="overlay", **OCC)
    params = params_for(spec, ("occlusion",), copy=1)
    assert params.occlusion.kind == "overlay"
    frame = grey(128, (96, 128, 3))
    out = apply_clip(clip_of(frame, 1), params, np.arange(1))[0].astype(int)
    p = params.occlusion.patches[0]
    assert 0.35 <= p.alpha <= 0.75
    texture = p.texture().astype(int)
    region = out[p.y:p.y + p.height, p.x:p.x + p.width]
    if len(params.occlusion.patches) == 1:
        assert np.abs(region - ((1 - p.alpha) * 128 + p.alpha * texture)).max() <= 1
    assert texture.std() > 5  # a texture, not a flat fill


def test_mixed_types_pick_each_sub_type_per_copy():
    spec = make_spec()  # defaults: noise, blur and occlusion all "mixed"
    kinds = {"noise": set(), "blur": set(), "occlusion": set()}
    for copy in range(40):
        params = params_for(spec, copy=copy)
        for name in kinds:
            kinds[name].add(getattr(params, name).kind)
    assert kinds == {"noise": {"gaussian", "shot", "read"}, "blur": {"motion", "defocus"},
                     "occlusion": {"rectangle", "overlay"}}


def test_occlusion_kernels_refuse_boxes_outside_the_frame():
    with pytest.raises(ValueError, match="inside"):
        F.fill_rectangles(grey(), [(60, 0, 10, 10)], [(0, 0, 0)])
    with pytest.raises(ValueError, match="alpha"):
        F.blend_overlay(grey(), (0, 0, 4, 4), grey(shape=(4, 4, 3)), 1.5)


# -- sampling, determinism, provenance --------------------------------------------------------
def test_sampled_values_stay_within_spec_bounds():
    spec = make_spec(augment_brightness_min=-20, augment_brightness_max=5, augment_contrast_min=3,
                     augment_contrast_max=9, augment_color_temp_min=3000, augment_color_temp_max=9000,
                     blur_type="motion", blur_motion_kernel_min=7, blur_motion_kernel_max=13,
                     noise_type="shot", noise_shot_scale_min=0.2, noise_shot_scale_max=0.4)
    lengths = set()
    for copy in range(60):
        p = params_for(spec, copy=copy)
        assert -20 <= p.lighting.brightness <= 5 and 3 <= p.lighting.contrast <= 9
        assert 3000 <= p.lighting.temperature_k <= 9000
        assert 0.2 <= p.noise.gain <= 0.4 and 0 <= p.blur.angle_deg < 180
        lengths.add(p.blur.length)
    assert lengths == {7, 9, 11, 13}


def test_transforms_follow_apply_order_and_provenance_is_json():
    spec = make_spec(augment_transforms="noise,occlusion,lighting,blur")
    params = params_for(spec, ("noise", "blur", "occlusion", "lighting"))
    assert params.transforms == APPLY_ORDER
    data = json.loads(json.dumps(params.to_dict()))
    assert data["transforms"] == list(APPLY_ORDER) and data["seed"] == 1
    assert set(data) >= {"lighting", "occlusion", "blur", "noise", "episode", "copy", "camera"}
    lighting_only = params_for(spec, ("lighting",)).to_dict()
    assert "noise" not in lighting_only and "lighting" in lighting_only


def test_same_seed_same_bytes_different_seed_different_pixels():
    spec = make_spec(augment_transforms="lighting,noise,blur,occlusion")
    clip = clip_of(scene(), 5)
    a = apply_clip(clip, params_for(spec, seed=11), np.arange(5))
    b = apply_clip(clip, params_for(spec, seed=11), np.arange(5))
    c = apply_clip(clip, params_for(spec, seed=12), np.arange(5))
    assert a.tobytes() == b.tobytes()
    assert (a != c).mean() > 0.3
    assert params_for(spec, seed=11) == params_for(spec, seed=11)
    assert params_for(spec, seed=11, episode=1) != params_for(spec, seed=11, episode=2)


@pytest.mark.parametrize("noise_type", ["gaussian", "shot", "read"])
@pytest.mark.parametrize("size", [(96, 128), (37, 53)])
def test_chunked_equals_whole(noise_type, size):
    h, w = size
    spec = make_spec(noise_type=noise_type)
    params = params_for(spec, seed=5, episode=2, copy=1, w=w, h=h)
    rng = np.random.default_rng(9)
    clip = np.stack([scene(h, w, seed=int(s)) for s in rng.integers(0, 100, 12)])
    indices = np.arange(100, 112)
    whole = apply_clip(clip, params, indices)
    parts = [apply_clip(clip[a:b], params, indices[a:b]) for a, b in ((0, 1), (1, 5), (5, 11), (11, 12))]
    assert np.concatenate(parts).tobytes() == whole.tobytes()
    # frames given out of order (or one at a time) still get their own noise
    order = np.array([3, 0, 7, 1])
    assert apply_clip(clip[order], params, indices[order]).tobytes() == whole[order].tobytes()


def test_lighting_identical_across_cameras_of_a_copy():
    spec = make_spec(augment_transforms="lighting,noise,blur,occlusion")
    cams = [params_for(spec, seed=3, copy=2, camera=c) for c in range(3)]
    assert cams[0].lighting == cams[1].lighting == cams[2].lighting
    assert len({repr((p.blur, p.occlusion, p.noise)) for p in cams}) > 1  # per-camera lens/sensor
    clip = clip_of(scene(), 2)
    lit = [apply_clip(clip, params_for(spec, ("lighting",), seed=3, copy=2, camera=c), np.arange(2)) for c in range(3)]
    assert lit[0].tobytes() == lit[1].tobytes() == lit[2].tobytes()
    other_copy = params_for(spec, seed=3, copy=3, camera=0)
    assert other_copy.lighting != cams[0].lighting


def test_apply_clip_leaves_input_untouched_and_checks_shapes():
    spec = make_spec(augment_transforms="lighting,noise")
    params = params_for(spec)
    clip = clip_of(scene(), 3)
    before = clip.copy()
    apply_clip(clip, params, np.arange(3))
    assert np.array_equal(clip, before)
    with pytest.raises(ValueError, match="sampled for 128x96"):
        apply_clip(clip[:, :50], params, np.arange(3))
    with pytest.raises(ValueError, match="frame_indices"):
        apply_clip(clip, params, np.arange(2))
    with pytest.raises(ValueError, match="frame_indices"):
        apply_clip(clip, params, np.array([0, -1, 2]))
    with pytest.raises(ValueError, match="uint8"):
        apply_clip(clip.astype(np.float32), params, np.arange(3))
    assert apply_clip(clip[:0], params, np.arange(0)).shape == (0, 96, 128, 3)


def test_sampling_refuses_bad_arguments():
    spec = make_spec()
    with pytest.raises(ValueError, match="unknown"):
        params_for(spec, ("lighting", "sepia"))
    with pytest.raises(ValueError, match="episode"):
        sample_copy_params(spec, ("lighting",), seed=1, episode=-1, copy=0, camera=0, width=8, height=8)
    with pytest.raises(ValueError, match="width"):
        sample_copy_params(spec, ("lighting",), seed=1, episode=0, copy=0, camera=0, width=0, height=8)


@pytest.mark.parametrize("field, value", [
    ("augment_brightness_max", 101), ("augment_contrast_min", -150), ("augment_color_temp_min", 500),
    ("augment_color_temp_max", 50000), ("noise_gaussian_sigma_max", 101), ("noise_shot_scale_min", -1),
    ("blur_motion_kernel_max", 14), ("blur_motion_kernel_min", 1), ("blur_defocus_sigma_max", 26),
    ("occlusion_num_patches_max", 21), ("occlusion_patch_width_max", 1.5), ("occlusion_patch_height_min", 0),
])
def test_model_refuses_out_of_bounds_naming_the_field(field, value):
    with pytest.raises(ValidationError) as info:
        make_spec(**{field: value})
    assert any(field in err["loc"] for err in info.value.errors())


def test_model_refuses_min_above_max_naming_the_field():
    with pytest.raises(ValidationError) as info:
        make_spec(noise_gaussian_sigma_min=10, noise_gaussian_sigma_max=5)
    assert any("noise_gaussian_sigma_max" in err["loc"] for err in info.value.errors())


# -- the benchmark script cannot rot ----------------------------------------------------------
def test_bench_kernels_quick_runs():
    pytest.importorskip("albumentations", reason="the benchmark compares against albumentations (extra 'bench')")
    result = subprocess.run([sys.executable, str(REPO / "bench" / "bench_kernels.py"), "--quick"],
                            capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]
    for text in ("96x96", "640x480", "ratio", "2 proc fps", "min kernel/albumentations ratio"):
        assert text in result.stdout


def test_clip_kernels_equal_frame_by_frame():
    clip = np.stack([scene(40, 56, seed=s) for s in range(5)])
    for fn in (lambda c: F.motion_blur(c, 13, 65), lambda c: F.defocus_blur(c, 1.7),
               lambda c: F.adjust_lighting(c, -7, 12, 3500)):
        assert fn(clip).tobytes() == np.stack([fn(f) for f in clip]).tobytes()
