"""422 for every kind of rule, with a message that names the field and the rule."""

from __future__ import annotations

import pytest

from tests.gateway.gateway_helpers import PROJECT, minimal_body, post_job
from roboaug.api.models import RANGE_PAIRS


def errors_of(r) -> list[dict]:
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert isinstance(detail, list) and detail
    for item in detail:
        assert set(item) == {"loc", "msg", "type"}  # no `input` echo of the request
    return detail


def only_error(r, field: str) -> str:
    detail = errors_of(r)
    mine = [e for e in detail if e["loc"][-1] == field or field in e["msg"]]
    assert mine, f"no error about {field}: {detail}"
    assert field in mine[0]["msg"], mine[0]
    return mine[0]["msg"]


@pytest.mark.parametrize("pair", RANGE_PAIRS, ids=lambda p: p.min_field)
def test_bounds_below_and_above(client, store, pair):
    step = 1 if isinstance(pair.lo, int) and pair.lo == int(pair.lo) else 0.001
    msg = only_error(post_job(client, minimal_body(**{pair.min_field: pair.lo - step})), pair.min_field)
    assert "greater than or equal" in msg
    msg = only_error(post_job(client, minimal_body(**{pair.max_field: pair.hi + step + 2})), pair.max_field)
    assert "less than or equal" in msg
    assert store.jobs == {}


def _inverted(pair) -> tuple[float, float]:
    """A (min, max) inside the bounds with min > max (odd values for the motion kernel)."""
    if pair.min_field.startswith("blur_motion_kernel"):
        return 15, 5
    if pair.min_field.startswith("occlusion_num_patches"):
        return 5, 2
    span = pair.hi - pair.lo
    return pair.lo + 0.75 * span, pair.lo + 0.25 * span


@pytest.mark.parametrize("pair", RANGE_PAIRS, ids=lambda p: p.min_field)
def test_min_greater_than_max(client, store, pair):
    low, high = _inverted(pair)
    r = post_job(client, minimal_body(**{pair.min_field: low, pair.max_field: high}))
    msg = only_error(r, pair.max_field)
    assert pair.min_field in msg and "<=" in msg
    assert store.jobs == {}


@pytest.mark.parametrize("field", ["blur_motion_kernel_min", "blur_motion_kernel_max"])
def test_even_motion_kernel(client, field):
    body = minimal_body(blur_motion_kernel_min=5, blur_motion_kernel_max=15) | {field: 8}
    msg = only_error(post_job(client, body), field)
    assert "odd" in msg


@pytest.mark.parametrize("value, words", [
    ("lighting, sparkle", ["'sparkle'", "unknown", "allowed"]),
    ("noise,Noise", ["'noise'", "duplicate"]),
    ("lighting,,blur", ["empty"]),
    ("", ["empty"]),
])
def test_transforms_parsing(client, value, words):
    msg = only_error(post_job(client, minimal_body(augment_transforms=value)), "augment_transforms")
    for w in words:
        assert w in msg, msg


def test_copies_per_transform_key_not_chosen_in_independent_mode(client, store):
    body = minimal_body(augment_mode="independent", augment_transforms="lighting,noise",
                        augment_copies_per_transform={"noise": 2, "blur": 1})
    msg = only_error(post_job(client, body), "augment_copies_per_transform")
    assert "'blur'" in msg and "lighting" in msg
    assert store.jobs == {}


def test_copies_per_transform_accepted_when_keys_are_chosen(client):
    body = minimal_body(augment_mode="independent", augment_transforms="lighting,noise",
                        augment_copies_per_transform={"noise": 2})
    r = post_job(client, body)
    assert r.status_code == 201
    assert "ignored" not in r.json()["message"]


@pytest.mark.parametrize("augment_mode", ["independent", "stacked"])
def test_copies_per_transform_other_than_one_is_refused_in_inplace_mode(client, store, augment_mode):
    body = minimal_body(augment_mode=augment_mode, augment_dataset_mode="inplace",
                        augment_transforms="lighting,noise,blur",
                        augment_copies_per_transform={"noise": 1, "blur": 2})
    msg = only_error(post_job(client, body), "augment_copies_per_transform")
    assert "inplace" in msg and "blur=2" in msg and "noise" not in msg.split("got")[-1]
    assert store.jobs == {}


def test_copies_per_transform_of_one_is_accepted_in_inplace_mode(client):
    body = minimal_body(augment_mode="independent", augment_dataset_mode="inplace",
                        augment_transforms="lighting,noise", augment_copies_per_transform={"noise": 1})
    assert post_job(client, body).status_code == 201


def test_copies_per_transform_value_bounds(client):
    body = minimal_body(augment_mode="independent", augment_transforms="noise",
                        augment_copies_per_transform={"noise": 0})
    detail = errors_of(post_job(client, body))
    assert detail[0]["loc"][-2:] == ["augment_copies_per_transform", "noise"]
    assert "augment_copies_per_transform.noise" in detail[0]["msg"]


def test_unknown_field(client):
    msg = only_error(post_job(client, minimal_body(augment_sparkle=3)), "augment_sparkle")
    assert "Extra inputs are not permitted" in msg


@pytest.mark.parametrize("field, value, words", [
    ("augment_mode", "sideways", ["stacked", "independent"]),
    ("augmentation_type", "magic", ["deterministic", "generative"]),
    ("noise_type", "pink", ["gaussian"]),
    ("augment_copies", 0, ["greater than or equal to 1"]),
    ("augment_copies", 51, ["less than or equal to 50"]),
    ("augment_copies", "three", ["integer"]),
    ("project_id", "not-a-uuid", ["UUID"]),
    ("dataset_id", "just-a-name", ["org/name"]),
    ("cosmos_model_variant", "Edge Distilled", ["pattern"]),
])
def test_field_rules(client, field, value, words):
    msg = only_error(post_job(client, minimal_body(**{field: value})), field)
    for w in words:
        assert w in msg, msg


def test_missing_required_fields(client):
    detail = errors_of(post_job(client, {"dataset_id": "lerobot/pusht"}))
    assert detail[0]["loc"] == ["body", "project_id"]
    assert detail[0]["msg"] == "project_id: Field required"


def test_malformed_json(client):
    r = client.post("/v1/augmentation", content=b'{"project_id": ', headers={"Content-Type": "application/json"})
    detail = errors_of(r)
    assert detail[0]["type"] == "json_invalid"


def test_invalid_job_id_in_path(client):
    for path in ("/v1/augmentation/not-a-uuid", "/v1/augmentation/123/cancel"):
        r = client.get(path) if not path.endswith("cancel") else client.post(path)
        msg = only_error(r, "job_id")
        assert "UUID" in msg


@pytest.mark.parametrize("query, field", [
    ("limit=0", "limit"), ("limit=101", "limit"), ("status=sleeping", "status"), ("project_id=xyz", "project_id"),
])
def test_list_query_rules(client, query, field):
    only_error(client.get(f"/v1/augmentation?{query}"), field)


def test_idempotency_key_header_rules(client, store):
    r = post_job(client, minimal_body(), **{"Idempotency-Key": "x" * 256})
    only_error(r, "Idempotency-Key")
    assert store.jobs == {}


def test_auth_is_checked_before_validation(client):
    # An anonymous caller learns nothing about the schema.
    r = client.post("/v1/augmentation", json={"project_id": PROJECT}, headers={"x-api-key": ""})
    assert r.status_code == 401
