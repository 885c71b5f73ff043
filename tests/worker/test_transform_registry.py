"""The transform registry: one module per transform, and everything that lists transforms
(sampling, apply order, provenance, the card) derives from it."""

from __future__ import annotations

import pickle
import typing
from enum import Enum

import pytest

from roboaug.api.models import APPLY_ORDER, RANGE_PAIRS, TRANSFORMS, AugmentationJobSpec
from roboaug.api.models.spec import COLOR_TEMP, GAUSSIAN_SIGMA, SHOT_SCALE, RangePair
from roboaug.worker import provenance
from roboaug.worker.transforms import REGISTRY, functional as F, sample_copy_params
from roboaug.worker.transforms.base import Range
from roboaug.worker.transforms.blur import Blur
from roboaug.worker.transforms.lighting import Lighting
from roboaug.worker.transforms.noise import Noise
from roboaug.worker.transforms.occlusion import Occlusion
from roboaug.worker.transforms.registry import in_apply_order

PROJECT = "00000000-0000-0000-0000-0000000000ac"


def make_spec(**fields) -> AugmentationJobSpec:
    return AugmentationJobSpec(project_id=PROJECT, dataset_id="org/data", **fields)


def test_registry_holds_every_api_transform_in_apply_order():
    assert tuple(t.name for t in REGISTRY) == APPLY_ORDER
    assert sorted(t.name for t in REGISTRY) == sorted(TRANSFORMS)


@pytest.mark.parametrize("transforms, match", [
    ((Lighting(), Occlusion(), Blur()), "does not match"),
    ((Lighting(), Occlusion(), Blur(), Noise(), Noise()), "does not match"),
])
def test_registry_refuses_a_missing_or_repeated_transform(transforms, match):
    with pytest.raises(RuntimeError, match=match):
        in_apply_order(transforms)


def test_registry_refuses_two_transforms_on_one_random_stream():
    class SecondLighting(Blur):
        purpose = Lighting.purpose

    with pytest.raises(RuntimeError, match="purpose"):
        in_apply_order((Lighting(), Occlusion(), SecondLighting(), Noise()))


def test_every_request_field_a_view_reads_exists_and_has_one_owner():
    fields = AugmentationJobSpec.model_fields
    owners: dict[str, str] = {}
    for t in REGISTRY:
        for name in t.view.fields():
            assert name in fields, f"{t.name}: view reads unknown request field {name}"
            assert name not in owners, f"{name} read by {owners[name]} and {t.name}"
            owners[name] = t.name
    pairs = [src for t in REGISTRY for src in t.view.sources() if isinstance(src, RangePair)]
    assert sorted(p.min_field for p in pairs) == sorted(p.min_field for p in RANGE_PAIRS)


def test_view_maps_the_request_fields_once():
    spec = make_spec(noise_type="read", noise_gaussian_sigma_min=2, noise_gaussian_sigma_max=7,
                     noise_shot_scale_min=0.1, noise_shot_scale_max=0.2)
    view = Noise.view.of(spec)
    assert view.kind == "read" and view.sigma == Range(2.0, 7.0) and view.gain == Range(0.1, 0.2)
    assert Noise.view.fields() == (
        "noise_type", GAUSSIAN_SIGMA.min_field, GAUSSIAN_SIGMA.max_field, SHOT_SCALE.min_field, SHOT_SCALE.max_field)


def _enum_of(field: str) -> type[Enum]:
    annotation = typing.get_type_hints(AugmentationJobSpec)[field]
    assert isinstance(annotation, type) and issubclass(annotation, Enum), field
    return annotation


@pytest.mark.parametrize("transform", [t for t in REGISTRY if t.kinds], ids=lambda t: t.name)
def test_kinds_are_the_request_types_in_their_order(transform):
    # `mixed` picks by index into the kinds: their order is part of the output bytes
    (field,) = [s for s in transform.view.sources() if isinstance(s, str)]
    values = [e.value for e in _enum_of(field)]
    assert list(transform.kinds) + ["mixed"] == values


def test_kelvin_range_is_the_requests_bound():
    assert F.KELVIN_RANGE == (float(COLOR_TEMP.lo), float(COLOR_TEMP.hi))


def test_copy_params_name_each_transforms_parameters_and_pickle():
    spec = make_spec()
    p = sample_copy_params(spec, ("noise", "lighting"), seed=1, episode=0, copy=0, camera=0, width=8, height=8)
    assert p.transforms == ("lighting", "noise")
    assert p.lighting is p.get("lighting") and p.noise.kind in Noise.kinds
    assert p.blur is None and p.occlusion is None
    with pytest.raises(AttributeError):
        p.sepia
    assert pickle.loads(pickle.dumps(p)) == p
    assert list(p.to_dict())[-2:] == ["lighting", "noise"]


def test_card_lists_the_chosen_transforms_in_apply_order_with_read_noise(tmp_path):
    spec = make_spec(augment_transforms="noise,lighting", noise_type="read")
    provenance.write_card(tmp_path, spec=spec, source="org/data", fmt="LeRobot v3.0", base_yaml={},
                          counts={"episodes": 1}, cameras=["cam"])
    card = (tmp_path / "README.md").read_text()
    section = card.split("## Parameter ranges\n\n", 1)[1].split("\n\n", 1)[0]
    ranges = section.splitlines()
    assert ranges == [
        "- lighting: brightness -15.0..15.0 %, contrast -10.0..10.0 %, colour temperature 4000.0..6500.0 K",
        "- noise (read): gaussian sigma 3.0..15.0 levels, shot gain 0.3..1.0, "
        "read sigma 3.0..15.0 levels (per-row banding of 0.5 sigma)",
    ]
    assert "occlusion (" not in card and "blur (" not in card
    assert ("Scene parameters (lighting) are drawn once per augmented copy and held for all its frames.\n"
            "The noise values are drawn anew for every frame.\n") in card
