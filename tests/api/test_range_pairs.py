"""Range bounds are written once, in RANGE_PAIRS: the fields, their descriptions and the odd rule
derive from them, and a field declared under the wrong pair cannot be imported."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from roboaug.api.models import RANGE_PAIRS, AugmentationJobCreateRequest
from roboaug.api.models.spec import BRIGHTNESS, CONTRAST, ODD_FIELDS, check_range_fields


@pytest.mark.parametrize("pair", RANGE_PAIRS, ids=lambda p: p.min_field)
def test_both_fields_carry_the_pairs_bounds(pair):
    schema = AugmentationJobCreateRequest.model_json_schema()["properties"]
    for name in (pair.min_field, pair.max_field):
        prop = schema[name]
        assert (prop["minimum"], prop["maximum"]) == (pair.lo, pair.hi), name
        assert prop["type"] == ("integer" if pair.integer else "number"), name
        assert "{" not in prop["description"], f"{name}: unfilled placeholder in {prop['description']!r}"


def test_descriptions_state_the_bounds_from_the_pair():
    props = AugmentationJobCreateRequest.model_json_schema()["properties"]
    assert props["augment_brightness_min"]["description"].endswith("(-100..100).")
    assert props["augment_color_temp_max"]["description"].endswith("(1000..40000).")
    assert "(-100 = flat grey .. 100 = double)" in props["augment_contrast_min"]["description"]
    assert props["cosmos_control_weight"]["description"] == "Weight of the control signal (0..2)."


def test_odd_fields_are_the_odd_pairs():
    assert ODD_FIELDS == tuple(f for p in RANGE_PAIRS if p.odd for f in (p.min_field, p.max_field))
    assert ODD_FIELDS == ("blur_motion_kernel_min", "blur_motion_kernel_max")


def test_a_field_declared_under_another_pairs_name_is_refused():
    class Swapped(BaseModel):
        augment_brightness_min: CONTRAST.field("min", 0, "x")
        augment_brightness_max: BRIGHTNESS.field("max", 0, "x")

    with pytest.raises(TypeError, match="augment_brightness_min is declared as augment_contrast_min"):
        check_range_fields(Swapped)


def test_a_pair_without_its_fields_is_refused():
    class Partial(BaseModel):
        augment_brightness_min: BRIGHTNESS.field("min", 0, "x")

    with pytest.raises(TypeError, match="augment_brightness_max"):
        check_range_fields(Partial)
