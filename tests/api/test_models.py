"""The request/spec model: every default, every bound, every cross-field rule."""

import json
import re
import uuid
from pathlib import Path

import pytest
from pydantic import ValidationError

from roboaug.api.models import (
    RANGE_PAIRS,
    AugmentationJobCreateRequest,
    AugmentationJobSpec,
    DatasetRef,
    default_output_dataset_id,
    parse_transforms,
)
from roboaug.api.models.spec import ODD_FIELDS

SEED_000 = Path(__file__).resolve().parents[2].parent / "shared" / "seeds" / "000_e70a4a65b8331aef.txt"
PROJECT = "2489E9AD-2EE2-8E00-8EC9-32D5F69181C0"


def seed_body() -> dict:
    text = SEED_000.read_text() if SEED_000.exists() else None
    if text is None:
        pytest.skip(f"seed 000 not found at {SEED_000} (the shared/ folder beside the checkout)")
    return json.loads(re.search(r"body: '(\{.*?\})'", text).group(1))


def make(**fields) -> AugmentationJobCreateRequest:
    return AugmentationJobCreateRequest.model_validate({"project_id": PROJECT, "dataset_id": "lerobot/pusht", **fields})


def error_of(**fields) -> tuple[tuple, str]:
    with pytest.raises(ValidationError) as info:
        make(**fields)
    err = info.value.errors()[0]
    return err["loc"], err["msg"]


# The defaults SPEC.md reads off seed 000's example (placeholders excepted).
DEFAULTS = {
    "augmentation_type": "deterministic", "name": None, "augment_transforms": "lighting",
    "augment_mode": "stacked", "augment_copies": 3, "augment_copies_per_transform": None,
    "augment_dataset_mode": "copy", "augment_brightness_min": -15, "augment_brightness_max": 15,
    "augment_contrast_min": -10, "augment_contrast_max": 10, "augment_color_temp_min": 4000,
    "augment_color_temp_max": 6500, "noise_type": "mixed", "noise_gaussian_sigma_min": 3,
    "noise_gaussian_sigma_max": 15, "noise_shot_scale_min": 0.3, "noise_shot_scale_max": 1,
    "blur_type": "mixed", "blur_motion_kernel_min": 5, "blur_motion_kernel_max": 15,
    "blur_defocus_sigma_min": 0.5, "blur_defocus_sigma_max": 2.5, "occlusion_type": "mixed",
    "occlusion_num_patches_min": 1, "occlusion_num_patches_max": 3, "occlusion_patch_width_min": 0.05,
    "occlusion_patch_width_max": 0.2, "occlusion_patch_height_min": 0.05, "occlusion_patch_height_max": 0.2,
    "cosmos_prompt": "A robot arm performing a task in a different environment.", "cosmos_prompts": [],
    "cosmos_control_type": "edge", "cosmos_control_weight": 1, "cosmos_guidance": 3, "cosmos_num_steps": 4,
    "cosmos_seed": 42, "cosmos_model_variant": "edge/distilled", "cosmos_disable_guardrails": False,
    "cosmos_camera_name": None, "augment_seed": 42, "output_dataset_id": None, "pending_timeout_seconds": None,
    "output_visibility": "private", "notify_url": None, "on_bad_sample": "fail", "shards": None,
    "max_parallelism": None,
}


def test_every_default():
    dumped = make().model_dump(mode="json")
    assert set(dumped) == {"project_id", "dataset_id", *DEFAULTS}
    for field, value in DEFAULTS.items():
        assert dumped[field] == value, field


@pytest.mark.parametrize("field, bad, rule", [
    ("shards", 0, "greater than or equal to 1"), ("shards", 10001, "less than or equal to 10000"),
    ("max_parallelism", 0, "greater than or equal to 1"), ("max_parallelism", 1001, "less than or equal to 1000"),
])
def test_sharding_fields_are_bounded(field, bad, rule):
    loc, msg = error_of(**{field: bad})
    assert loc == (field,) and rule in msg
    assert getattr(make(**{field: 1}), field) == 1


def test_seed_000_body_is_accepted_as_it_stands():
    body = seed_body()
    req = AugmentationJobCreateRequest.model_validate(body)
    assert req.project_id == uuid.UUID(PROJECT)
    # Every field of seed 000 exists in the model.
    assert set(body) <= set(AugmentationJobCreateRequest.model_fields)
    # stacked mode: the placeholder key is ignored and the create message says so
    assert req.ignored_fields_message() == "augment_copies_per_transform is ignored in stacked mode"
    assert req.copies_plan() == [("lighting",)] * 3


def test_required_fields():
    with pytest.raises(ValidationError) as info:
        AugmentationJobCreateRequest.model_validate({})
    missing = {e["loc"][0] for e in info.value.errors() if e["type"] == "missing"}
    assert missing == {"project_id", "dataset_id"}


def test_unknown_field_is_named():
    loc, msg = error_of(augment_copise=3)
    assert loc == ("augment_copise",) and "Extra inputs" in msg


@pytest.mark.parametrize("value", ["lerobot/pusht", "hf://lerobot/pusht", "hf://lerobot/pusht@v2.1",
                                   "org-1/name_2.x@refs/pr/3", "file:///data/sets/pusht"])
def test_dataset_id_forms(value):
    assert make(dataset_id=value).dataset_id == value


@pytest.mark.parametrize("value", ["pusht", "a/b/c", "http://x/y", "file://relative", "/abs/path", "org/ name"])
def test_dataset_id_rejected_with_message(value):
    loc, msg = error_of(dataset_id=value)
    assert loc == ("dataset_id",) and "dataset_id" in msg


def test_dataset_ref_and_naming_rule():
    assert DatasetRef.parse("hf://lerobot/pusht@v2") == DatasetRef("hf", "lerobot/pusht", "v2")
    assert DatasetRef.parse("file:///d/x") == DatasetRef("file", path="/d/x")
    jid = uuid.UUID(PROJECT)
    assert default_output_dataset_id("lerobot/pusht", jid) == "lerobot/pusht-augmented-2489e9ad"
    assert default_output_dataset_id("file:///d/x/", jid) == "file:///d/x-augmented-2489e9ad"
    long_name = "o/" + "n" * 96
    assert len(default_output_dataset_id(long_name, jid).split("/")[1]) <= 96


@pytest.mark.parametrize("raw, parsed", [
    ("lighting", ["lighting"]), (" Lighting , NOISE,blur ", ["lighting", "noise", "blur"]),
    ("occlusion,lighting,noise,blur", ["occlusion", "lighting", "noise", "blur"]),
])
def test_transforms_parsing(raw, parsed):
    assert parse_transforms(raw) == parsed
    assert make(augment_transforms=raw).transforms == parsed


@pytest.mark.parametrize("raw, needle", [
    ("lighting,Lighting", "duplicate transform(s) 'lighting'"),
    ("lighting,fog,rain", "unknown transform(s) 'fog', 'rain'"),
    ("lighting,", "empty name"),
    ("", "empty name"),
])
def test_transforms_rejected(raw, needle):
    loc, msg = error_of(augment_transforms=raw)
    assert loc == ("augment_transforms",) and needle in msg


@pytest.mark.parametrize("pair", RANGE_PAIRS, ids=lambda p: p.min_field)
def test_range_pair_bounds_and_order(pair):
    odd = pair.min_field in ODD_FIELDS
    step = 2 if odd else (pair.hi - pair.lo) / 4
    mid = 51 if odd else (pair.lo + pair.hi) / 2
    if AugmentationJobCreateRequest.model_fields[pair.min_field].annotation is int and not odd:
        step, mid = max(1, int(step)), int(mid)
    # bounds are inclusive
    make(**{pair.min_field: pair.lo, pair.max_field: pair.hi})
    # below the lower bound / above the upper bound, each refused naming the field
    for field, value, other in ((pair.min_field, pair.lo - step, pair.max_field),
                                (pair.max_field, pair.hi + step, pair.min_field)):
        loc, msg = error_of(**{field: value, other: mid})
        assert loc == (field,) and ("greater than or equal" in msg or "less than or equal" in msg), (field, msg)
    # min > max is refused on the max field, naming both
    loc, msg = error_of(**{pair.min_field: mid + step, pair.max_field: mid})
    assert loc == (pair.max_field,) and pair.min_field in msg and "must be <=" in msg
    # min == max is fine
    make(**{pair.min_field: mid, pair.max_field: mid})


@pytest.mark.parametrize("field", ODD_FIELDS)
def test_motion_kernel_must_be_odd(field):
    loc, msg = error_of(**{field: 8 if field.endswith("min") else 14})
    assert loc == (field,) and "must be odd" in msg


@pytest.mark.parametrize("field, value", [
    ("augment_copies", 0), ("augment_copies", 51), ("cosmos_num_steps", 0), ("cosmos_seed", -1),
    ("augment_seed", 2**32), ("cosmos_guidance", 21), ("cosmos_control_weight", -0.1),
    ("pending_timeout_seconds", 10),
])
def test_scalar_bounds(field, value):
    loc, _ = error_of(**{field: value})
    assert loc == (field,)


@pytest.mark.parametrize("field, value", [
    ("augmentation_type", "diffusion"), ("augment_mode", "both"), ("augment_dataset_mode", "replace"),
    ("noise_type", "poisson"), ("blur_type", "radial"), ("occlusion_type", "circle"),
    ("cosmos_control_type", "normal"), ("cosmos_model_variant", "Edge Distilled"),
])
def test_enums(field, value):
    loc, _ = error_of(**{field: value})
    assert loc == (field,)


def test_copies_per_transform_independent_mode():
    req = make(augment_transforms="noise,lighting,blur", augment_mode="independent", augment_copies=2,
               augment_copies_per_transform={"noise": 1, "blur": 4})
    # plan follows the documented application order, one transform per copy
    assert req.copies_plan() == [("lighting",)] * 2 + [("blur",)] * 4 + [("noise",)]
    assert req.ignored_fields_message() is None
    loc, msg = error_of(augment_transforms="noise", augment_mode="independent",
                        augment_copies_per_transform={"occlusion": 2})
    assert loc == ("augment_copies_per_transform",) and "'occlusion'" in msg
    loc, _ = error_of(augment_mode="independent", augment_copies_per_transform={"lighting": 0})
    assert loc[0] == "augment_copies_per_transform"


def test_stacked_ignores_copies_per_transform_keys():
    req = make(augment_transforms="blur,lighting", augment_copies=2, augment_copies_per_transform={"anything": 9})
    assert req.copies_plan() == [("lighting", "blur")] * 2


def test_inplace_plan_is_one_version_per_episode():
    assert make(augment_dataset_mode="inplace", augment_transforms="noise,lighting").copies_plan() == [("lighting", "noise")]
    assert make(augment_dataset_mode="inplace", augment_mode="independent",
                augment_transforms="noise,lighting").copies_plan() == [("lighting",), ("noise",)]


def test_spec_extends_request_with_cluster_fields():
    spec = AugmentationJobSpec.model_validate({"project_id": PROJECT, "dataset_id": "a/b",
                                               "hub_token_secret": {"name": "hf-token"}})
    assert spec.cancel_requested is False and spec.job_id is None
    assert spec.hub_token_secret.key == "token"
    # The REST request cannot set cluster-side fields.
    loc, _ = error_of(cancel_requested=True)
    assert loc == ("cancel_requested",)


def test_status_response_projection():
    # The gateway's own path from a stored CR status to the REST answer (status_from_cr).
    from roboaug.api.gateway.service import status_from_cr

    status = {
        "job_id": PROJECT, "current_phase": "augmenting", "status": "running", "attempt": 1,
        "phases": [{"name": "queued", "status": "completed", "events": [
            {"status": "created", "timestamp": "2026-01-01T00:00:00Z"}]}],
        "progress": {"phase": "augmenting", "frames_done": 5, "frames_total": 10, "updated_at": "2026-01-01T00:00:01Z",
                     "attempt": 1},
    }
    resp = status_from_cr({"metadata": {"name": "aug-x"}, "spec": {}, "status": status}).model_dump(mode="json")
    assert set(resp) == {"job_id", "current_phase", "status", "instance_type", "region", "phases", "error",
                         "augmented_dataset_id", "created_at", "source_revision", "augmented_dataset_revision",
                         "effective_spec", "spec_sources", "progress"}
    # the worker's report, made into progress (no phase times in it: no ETA)
    assert resp["progress"] == {"phase": "augmenting", "frames_done": 5, "frames_total": 10, "episodes_done": 0,
                                "episodes_total": 0, "percent": 50.0, "eta_seconds": None}
    # a report of an earlier attempt says nothing about the one running now
    stale = {**status, "progress": {**status["progress"], "attempt": 0}}
    assert status_from_cr({"metadata": {"name": "aug-x"}, "spec": {}, "status": stale}).progress is None
    assert resp["phases"][0]["events"][0]["retry_attempt"] == 0
    assert resp["instance_type"] is None
