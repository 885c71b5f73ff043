"""Both doors judge a spec alike: the REST gateway (the pydantic model) and the apiserver (the CRD
that `roboaug.api.crd` generates from it, through a server-side dry-run create).

- dataset ids: one table, with huggingface_hub's own `validate_repo_id` as the oracle for the
  Hub ids (issue 14 item 5);
- size: the largest spec the bounds allow stays under MAX_SPEC_JSON_BYTES and is accepted; a
  ~200 KiB one (past Linux's 128 KiB for one environment string) is refused (item 7).
"""

from __future__ import annotations

import json
import re
import uuid

import pytest
from huggingface_hub.utils import HFValidationError, validate_repo_id
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from roboaug.api.contract import SPEC_ANNOTATION_MAX_BYTES
from roboaug.api.models import GROUP, KIND, PLURAL, TRANSFORMS, VERSION, AugmentationJobSpec
from roboaug.api.models.spec import (
    HF_REVISION,
    MAX_COPIES_KEY_CHARS,
    MAX_PROMPT_CHARS,
    MAX_PROMPTS,
    MAX_SPEC_JSON_BYTES,
)

PROJECT = "2489e9ad-2ee2-8e00-8ec9-32d5f69181c0"

# (field, value). The expected outcome of a Hub id comes from the Hub's client (hub_ok).
ID_CASES = [
    ("dataset_id", "lerobot/pusht"),
    ("dataset_id", "hf://lerobot/pusht@v2.1"),
    ("dataset_id", "org-1/name_2.x@refs/pr/3"),
    ("dataset_id", "_org/_name_"),
    ("dataset_id", "a.-b/c-.d"),
    ("dataset_id", "0/0"),
    ("dataset_id", "lerobot/pusht\n"),          # Python's `$` matched before the newline
    ("dataset_id", "hf://lerobot/pusht@main\n"),
    ("dataset_id", "a..b/c"),
    ("dataset_id", "a/b..c"),
    ("dataset_id", "a--b/c"),
    ("dataset_id", "a/b--c"),
    ("dataset_id", "-a/b"),
    ("dataset_id", "a/b-"),
    ("dataset_id", ".a/b"),
    ("dataset_id", "a/b."),
    ("dataset_id", "a-/b"),
    ("dataset_id", "a/" + "b" * 96),
    ("dataset_id", "a/" + "b" * 97),
    ("dataset_id", "a" * 97 + "/b"),
    ("dataset_id", "hf://a/" + "b" * 97 + "@main"),
    ("dataset_id", "a/b.git"),
    ("dataset_id", "hf://a/b.git@main"),
    ("dataset_id", "a/b.gitx"),
    ("dataset_id", "a/caf\u00e9"),
    ("dataset_id", "a/b/c"),
    ("dataset_id", "file:///data/sets/pusht"),
    ("dataset_id", "file://relative"),
    ("output_dataset_id", "team-b/out"),
    ("output_dataset_id", "team-b/out\n"),
    ("output_dataset_id", "team-b/o..ut"),
    ("output_dataset_id", "team-b/out-"),
    ("output_dataset_id", "team-b/" + "o" * 97),
    ("output_dataset_id", "team-b/out.git"),
    ("output_dataset_id", "hf://team-b/out"),     # the output is an id, not a URL
    ("output_dataset_id", "file:///scratch/out"),
]


def hub_ok(field: str, value: str) -> bool:
    """What the Hub's rules say: huggingface_hub's validate_repo_id on the `org/name` part."""
    if value.startswith("file://"):
        return value.startswith("file:///")
    if field == "dataset_id":
        value, at, revision = value.removeprefix("hf://").partition("@")
        if at and not re.fullmatch(HF_REVISION, revision):  # the revision's rule is ours
            return False
    elif value.startswith("hf://"):
        return False
    if value.count("/") != 1:
        return False
    try:
        validate_repo_id(value)
    except HFValidationError:
        return False
    return True


def spec_of(**fields) -> dict:
    return {"project_id": PROJECT, "dataset_id": "lerobot/pusht", **fields}


def pydantic_ok(spec: dict) -> tuple[bool, str]:
    try:
        AugmentationJobSpec.model_validate(spec)
    except ValidationError as e:
        return False, str(e)
    return True, ""


def test_the_table_has_both_outcomes_for_both_fields():
    for field in ("dataset_id", "output_dataset_id"):
        outcomes = {hub_ok(f, v) for f, v in ID_CASES if f == field}
        assert outcomes == {True, False}, field


@pytest.mark.parametrize("field,value", ID_CASES, ids=[repr(v)[:40] for _, v in ID_CASES])
def test_the_gateway_door_follows_the_hubs_rules(field, value):
    ok, message = pydantic_ok(spec_of(**{field: value}))
    assert ok == hub_ok(field, value), message
    if not ok:
        assert field in message


def largest_spec() -> dict:
    """Every bounded string, list and map of the spec at its bound (ASCII)."""
    keys = [f"{i}".rjust(MAX_COPIES_KEY_CHARS, "k") for i in range(len(TRANSFORMS))]
    names = ", ".join(TRANSFORMS)
    return {
        "project_id": PROJECT,
        "dataset_id": "file:///" + "d" * (1024 - len("file:///")),
        "output_dataset_id": "file:///" + "o" * (1024 - len("file:///")),
        "name": "n" * 253,
        "augment_transforms": names + " " * (64 - len(names)),
        "augment_copies_per_transform": {k: 50 for k in keys},
        "cosmos_prompt": "p" * 4000,
        "cosmos_prompts": ["q" * MAX_PROMPT_CHARS] * MAX_PROMPTS,
        "cosmos_model_variant": "v" * 50 + "/" + "w" * 49,
        "cosmos_camera_name": "c" * 253,
        "augment_seed": 2**32 - 1,
        "cosmos_seed": 2**32 - 1,
        "job_id": str(uuid.uuid4()),
        "hub_token_secret": {"name": "s" * 253, "key": "k" * 253},
        "notify_url": "https://example.com/" + "p" * (2048 - len("https://example.com/")),
        "notify_secret": {"name": "w" * 253, "key": "k" * 253},
    }


def _bounded(schema: dict) -> dict:
    """name -> the bound of each string (maxLength), list (maxItems) and map (maxProperties);
    "object" for a nested object."""
    out = {}
    for name, prop in schema["properties"].items():
        prop = next((p for p in prop.get("anyOf", [prop]) if p.get("type") != "null"), prop)
        for key in ("maxLength", "maxItems", "maxProperties"):
            if key in prop:
                out[name] = prop[key]
        if "$ref" in prop and "properties" in schema["$defs"][prop["$ref"].split("/")[-1]]:
            out[name] = "object"
    return out


def test_the_largest_spec_maxes_every_bounded_field_and_stays_under_the_limit():
    spec = largest_spec()
    schema = AugmentationJobSpec.model_json_schema()
    for name, bound in _bounded(schema).items():
        if bound == "object":
            assert name in spec, name
            continue
        assert name in spec and len(spec[name]) == bound, (name, bound)
    model = AugmentationJobSpec.model_validate(spec)
    # as the worker gets it (operator jobs.worker_spec_json: UTF-8 JSON, compact)
    size = len(json.dumps(model.model_dump(mode="json"), separators=(",", ":"), ensure_ascii=False).encode())
    assert size <= MAX_SPEC_JSON_BYTES, size
    # it rides in the worker pod's annotation (contract.spec_volume) with room to spare
    assert size * 2 < SPEC_ANNOTATION_MAX_BYTES


def huge_spec() -> dict:
    """~200 KiB: past the 128 KiB Linux allows one environment string."""
    return spec_of(cosmos_prompts=["x" * 3200] * 64)


def test_a_200_kib_spec_is_refused_by_the_model():
    assert len(json.dumps(huge_spec())) > 200 * 1024
    ok, message = pydantic_ok(huge_spec())
    assert not ok and "cosmos_prompts" in message
    ok, message = pydantic_ok(spec_of(cosmos_prompts=["x"] * (MAX_PROMPTS + 1)))
    assert not ok and "cosmos_prompts" in message
    ok, message = pydantic_ok(spec_of(cosmos_prompts=["x" * (MAX_PROMPT_CHARS + 1)]))
    assert not ok and "cosmos_prompts" in message


def test_copies_per_transform_keys_are_bounded():
    many = {f"k{i}": 1 for i in range(len(TRANSFORMS) + 1)}
    assert not pydantic_ok(spec_of(augment_copies_per_transform=many))[0]
    assert not pydantic_ok(spec_of(augment_copies_per_transform={"k" * (MAX_COPIES_KEY_CHARS + 1): 1}))[0]
    # independent mode: a key must be a chosen transform
    ok, message = pydantic_ok(spec_of(augment_mode="independent", augment_transforms="noise",
                                      augment_copies_per_transform={"lighting": 2}))
    assert not ok and "augment_copies_per_transform" in message


# -- the apiserver's door -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def door(cluster, crd):
    from kubernetes import client

    ns = f"t-spec-doors-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", ns)
    with cluster.api_client() as api:
        yield client.CustomObjectsApi(api), ns
    cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def dry_run(door, spec: dict) -> tuple[bool, str]:
    custom, ns = door
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND,
            "metadata": {"name": f"j-{uuid.uuid4().hex[:10]}"}, "spec": spec}
    try:
        custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body, dry_run="All")
    except ApiException as e:
        assert e.status == 422, e.body
        return False, json.loads(e.body)["message"]
    return True, ""


def test_the_apiserver_door_judges_the_id_table_as_the_gateway(door):
    wrong = []
    for field, value in ID_CASES:
        ok, message = dry_run(door, spec_of(**{field: value}))
        if ok != hub_ok(field, value) or (not ok and f"spec.{field}" not in message):
            wrong.append((field, value, ok, message))
    assert not wrong, wrong


def test_the_apiserver_accepts_the_largest_spec_and_refuses_a_200_kib_one(door):
    ok, message = dry_run(door, largest_spec())
    assert ok, message
    ok, message = dry_run(door, huge_spec())
    assert not ok and "spec.cosmos_prompts" in message, message
    ok, message = dry_run(door, spec_of(augment_copies_per_transform={"k" * (MAX_COPIES_KEY_CHARS + 1): 1}))
    assert not ok and "spec.augment_copies_per_transform" in message, message
