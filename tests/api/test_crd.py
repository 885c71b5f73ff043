"""The CRD is generated from the models and the committed files must match the generator."""

import json

import yaml

from roboaug.api import crd
from roboaug.api.models import RANGE_PAIRS, AugmentationJobCreateRequest, AugmentationJobSpec


def test_committed_crd_files_match_the_generator():
    stale = [str(p) for p, text in crd.outputs().items() if not p.exists() or p.read_text() != text]
    assert not stale, f"regenerate with `python -m roboaug.api.crd`: {stale}"


def _walk(node, path=""):
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _walk(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, f"{path}/{i}")


def test_schema_is_structural():
    schema = crd.build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in _walk(schema):
        if isinstance(node, dict):
            assert not {"$ref", "anyOf", "oneOf", "allOf", "title", "$defs"} & set(node), path
            if node.get("type") == "object" and not path.endswith("/metadata"):
                assert "properties" in node or "additionalProperties" in node or node.get(
                    "x-kubernetes-preserve-unknown-fields"), path
            assert node.get("additionalProperties") is not False, path


def test_every_spec_field_is_in_the_crd_with_its_description_and_no_request_default():
    # A schema default would be filled in by the apiserver before the operator sees the CR, so a
    # project's default could never reach a field a kubectl CR leaves out: the built-in default
    # is only named in the description, and the operator applies it last.
    spec = crd.spec_schema()
    for name, field in AugmentationJobSpec.model_fields.items():
        prop = spec["properties"][name]
        assert prop.get("description"), name
        if name in AugmentationJobCreateRequest.model_fields:
            assert "default" not in prop, name
            if not field.is_required() and field.default is not None and field.default_factory is None:
                default = field.default.value if hasattr(field.default, "value") else field.default
                assert prop["description"].endswith(f"else {json.dumps(default)}."), name
    # cluster-only: an unset cancel_requested reads false, so removing it cannot undo a cancel
    assert spec["properties"]["cancel_requested"]["default"] is False


def test_cross_field_rules_compare_only_fields_the_cr_holds():
    rules = {r["rule"] for r in crd.spec_schema()["x-kubernetes-validations"]}
    for pair in RANGE_PAIRS:
        assert (f"!has(self.{pair.min_field}) || !has(self.{pair.max_field}) || "
                f"self.{pair.min_field} <= self.{pair.max_field}") in rules, pair
    for rule in rules:
        for field in AugmentationJobCreateRequest.model_fields:
            if f"self.{field} " in rule + " " or f"self.{field}." in rule:
                assert f"!has(self.{field})" in rule, (field, rule)


def test_cel_rules_cover_every_cross_field_rule():
    rules = [r["rule"] for r in crd.spec_schema()["x-kubernetes-validations"]]
    for pair in RANGE_PAIRS:
        assert any(f"self.{pair.min_field} <= self.{pair.max_field}" in r for r in rules), pair
    assert any("augment_copies_per_transform.all" in r for r in rules)


def test_chart_template_is_guarded_by_values():
    text = crd.render_chart_template()
    assert text.splitlines()[1] == "{{- if .Values.crds.install }}"
    assert "helm.sh/resource-policy: keep" in text
    # the manifest half is plain YAML
    doc = yaml.safe_load(crd.render_manifest())
    assert doc["metadata"]["name"] == "augmentationjobs.roboaug.dev"
    cols = [c["name"] for c in doc["spec"]["versions"][0]["additionalPrinterColumns"]]
    assert cols[:9] == ["Status", "Phase", "Progress%", "Attempt", "Started", "Duration", "Instance", "Output", "Age"]


# -- AugmentationProject ----------------------------------------------------------------------
def test_project_crd_is_structural_and_namespaced():
    doc = crd.build_project_crd()
    assert doc["metadata"]["name"] == "augmentationprojects.roboaug.dev"
    assert doc["spec"]["scope"] == "Namespaced"
    schema = doc["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in _walk(schema):
        if isinstance(node, dict):
            assert not {"$ref", "anyOf", "oneOf", "allOf", "title", "$defs"} & set(node), path
            assert node.get("additionalProperties") is not False, path
    assert any("self.metadata.name.matches(" in r["rule"] for r in schema["x-kubernetes-validations"])


def test_project_defaults_in_the_crd_carry_no_default_values():
    # A schema default would be filled in by the apiserver, and every field would then read as
    # "set by the project": the effective spec's sources would lie.
    from roboaug.api.models.project import NOT_DEFAULTABLE

    defaults = crd.project_spec_schema()["properties"]["defaults"]
    assert "default" not in defaults
    assert not [n for n, p in defaults["properties"].items() if "default" in p]
    expected = set(AugmentationJobSpec.model_fields) - set(NOT_DEFAULTABLE) - {"job_id", "cancel_requested",
                                                                                  "hub_token_secret", "notify_secret"}
    assert set(defaults["properties"]) == expected


def test_project_chart_template_is_guarded_by_values():
    text = crd.render_chart_template(crd.build_project_crd())
    assert text.splitlines()[1] == "{{- if .Values.crds.install }}"
    assert "name: augmentationprojects.roboaug.dev\n  labels:" in text
