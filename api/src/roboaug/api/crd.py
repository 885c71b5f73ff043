"""Generates the AugmentationJob CRD from the pydantic models.

`python -m roboaug.api.crd` rewrites manifests/crd/ and the chart's CRD template; a test fails
when the committed files differ from what this writes, so the CRD can never drift from the models.

Pydantic emits JSON Schema (draft 2020-12); the apiserver wants a *structural* OpenAPI v3 schema:
no $ref, `nullable` instead of `anyOf [X, null]`, no titles, and free-form objects marked with
`x-kubernetes-preserve-unknown-fields`. Cross-field rules pydantic checks in Python are expressed as
CEL `x-kubernetes-validations` so `kubectl apply` of a bad CR is refused by the apiserver itself.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path
from typing import Any

import yaml

from .contract import MAX_CR_NAME_LENGTH
from .models import (
    GROUP,
    KIND,
    PLURAL,
    RANGE_PAIRS,
    SHORT_NAMES,
    SINGULAR,
    TRANSFORMS,
    VERSION,
    AugmentationJobCreateRequest,
    AugmentationJobSpec,
    AugmentationJobStatus,
)
from .models.project import (
    PROJECT_KIND,
    PROJECT_PLURAL,
    PROJECT_SHORT_NAMES,
    PROJECT_SINGULAR,
    UUID_NAME_PATTERN,
    AugmentationProjectSpec,
)
from .models.spec import DATASET_ID_RULES, ODD_FIELDS, OUTPUT_ID_RULES, IdRule

CRD_NAME = f"{PLURAL}.{GROUP}"
# api/src/roboaug/api/crd.py -> the repository root (the generator runs from a checkout)
REPO_ROOT = Path(__file__).resolve().parents[4]
MANIFEST_PATH = REPO_ROOT / "manifests" / "crd" / f"{GROUP}_{PLURAL}.yaml"
CHART_TEMPLATE_PATH = REPO_ROOT / "charts" / "roboaug" / "templates" / "crd.yaml"
PROJECT_CRD_NAME = f"{PROJECT_PLURAL}.{GROUP}"
PROJECT_MANIFEST_PATH = REPO_ROOT / "manifests" / "crd" / f"{GROUP}_{PROJECT_PLURAL}.yaml"
PROJECT_CHART_TEMPLATE_PATH = REPO_ROOT / "charts" / "roboaug" / "templates" / "crd-project.yaml"

_DROP_KEYS = {"title"}


def _structural(node: Any, defs: dict[str, Any]) -> Any:
    """Rewrite one pydantic JSON-Schema node into the apiserver's structural dialect."""
    if isinstance(node, list):
        return [_structural(n, defs) for n in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    if "$ref" in node:
        target = copy.deepcopy(defs[node.pop("$ref").split("/")[-1]])
        target.update({k: v for k, v in node.items() if k != "$ref"})
        node = target
    any_of = node.pop("anyOf", None)
    if any_of is not None:
        non_null = [s for s in any_of if s.get("type") != "null"]
        if len(non_null) != 1:
            raise ValueError(f"cannot express anyOf {any_of} structurally")
        merged = _structural(non_null[0], defs)
        merged.update({k: v for k, v in node.items()})
        if len(non_null) < len(any_of):
            merged["nullable"] = True
        node = merged
    if node.get("default", 0) is None:
        node.pop("default")
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP_KEYS:
            continue
        if key == "properties":
            out[key] = {name: _structural(v, defs) for name, v in value.items()}
        elif key in ("items",):
            out[key] = _structural(value, defs)
        elif key == "additionalProperties":
            if value is False:
                continue  # forbidden in structural schemas; the apiserver prunes or rejects unknown fields itself
            if value is True or value == {}:
                out["x-kubernetes-preserve-unknown-fields"] = True
            else:
                out[key] = _structural(value, defs)
        else:
            out[key] = value
    if out.get("type") == "object" and "properties" not in out and "additionalProperties" not in out:
        out["x-kubernetes-preserve-unknown-fields"] = True
    keys = out.pop("propertyNames", None)
    if keys is not None:  # bounds on a map's keys: not structural, so CEL
        if set(keys) - {"type", "minLength", "maxLength"}:
            raise ValueError(f"cannot express propertyNames {keys} structurally")
        lo, hi = keys.get("minLength", 0), keys["maxLength"]
        out.setdefault("x-kubernetes-validations", []).append(_cel(
            f"self.all(k, size(k) >= {lo} && size(k) <= {hi})",
            f"every key must be {lo} to {hi} characters long"))
    if "enum" in out and "type" not in out:
        out["type"] = "string"
    return out


def _model_schema(model) -> dict[str, Any]:
    raw = model.model_json_schema(mode="validation")
    defs = raw.pop("$defs", {})
    return _structural(raw, defs)


def _cel(rule: str, message: str, field_path: str | None = None) -> dict[str, str]:
    entry = {"rule": rule, "message": message}
    if field_path:
        entry["fieldPath"] = field_path
    return entry


def _transform_list(expr: str) -> str:
    return f"{expr}.lowerAscii().split(',').map(t, t.trim())"


def _drop_request_defaults(props: dict[str, Any]) -> None:
    """No schema `default:` for request fields: the apiserver would fill them in before anyone
    saw the CR, and a project's defaults could never reach a field a kubectl or GitOps CR leaves
    out. The operator fills them (request, else project, else built-in: `policy.effective_spec`)
    and records the result in status.effective_spec; the description still names the built-in."""
    for name in AugmentationJobCreateRequest.model_fields:
        if "default" not in props[name]:
            continue
        value = props[name].pop("default")
        props[name]["description"] += (f" Unset: the project's default, else {json.dumps(value)}.")


def _id_rules(field: str, rules: tuple[IdRule, ...]) -> list[dict[str, str]]:
    """A dataset id's rules (`models.spec`, the Hub's), as CEL: RE2 reads the same regexes."""
    return [
        _cel(f"{'' if r.must else '!'}self.matches({json.dumps(r.anchored)})", f"{field}: {r.message}")
        for r in rules
    ]


MUTABLE_SPEC_FIELDS = ("cancel_requested",)
"""The only spec field that may change after creation (false -> true: its own rule)."""


def _immutable(props: dict[str, Any]) -> list[dict[str, str]]:
    """The spec is fixed at creation, but for MUTABLE_SPEC_FIELDS: one transition rule per field
    (its message names it). A rule on the field itself would not do: a transition rule is
    skipped when the old or the new value is absent, so removing a field and adding it back,
    or adding one the CR lacked, would pass. Here, on the spec, `has()` sees both."""
    rules = []
    for name in props:
        if name in MUTABLE_SPEC_FIELDS:
            continue
        rules.append(_cel(
            f"has(self.{name}) == has(oldSelf.{name}) && (!has(self.{name}) || self.{name} == oldSelf.{name})",
            f"{name} cannot be changed, added or removed after creation (the spec is immutable; "
            "only cancel_requested may be set to true)",
            f".{name}",
        ))
    return rules


def spec_schema() -> dict[str, Any]:
    schema = _model_schema(AugmentationJobSpec)
    props = schema["properties"]
    _drop_request_defaults(props)
    names = ", ".join(f"'{t}'" for t in TRANSFORMS)
    props["augment_transforms"]["x-kubernetes-validations"] = [
        _cel(
            f"{_transform_list('self')}.all(t, t in [{names}])",
            f"augment_transforms: every name must be one of {', '.join(TRANSFORMS)}",
        ),
        _cel(
            f"{_transform_list('self')}.all(t, {_transform_list('self')}.filter(u, u == t).size() == 1)",
            "augment_transforms: a transform is listed twice",
        ),
    ]
    for name, rules in (("dataset_id", DATASET_ID_RULES), ("output_dataset_id", OUTPUT_ID_RULES)):
        props[name].pop("pattern")  # the same rules, as CEL, each with its own message
        props[name]["x-kubernetes-validations"] = _id_rules(name, rules)
    for name in ODD_FIELDS:
        props[name]["x-kubernetes-validations"] = [
            _cel("self % 2 == 1", f"{name} must be odd (a motion kernel has a centre pixel)")
        ]
    props["cancel_requested"]["x-kubernetes-validations"] = [
        _cel("self || !oldSelf", "cancel_requested cannot be undone once set")
    ]

    def present(*fields: str) -> str:
        # A rule compares only fields the CR holds: one left out gets the project's default
        # (or the built-in) later, in the operator, which validates the whole effective spec.
        # A field with a schema default (cancel_requested) is always there and needs no guard.
        return "".join(f"!has(self.{f}) || " for f in fields if "default" not in props[f])

    rules = [
        _cel(
            f"{present(p.min_field, p.max_field)}self.{p.min_field} <= self.{p.max_field}",
            f"{p.min_field} must be <= {p.max_field}",
            f".{p.max_field}",
        )
        for p in RANGE_PAIRS
    ]
    rules.append(
        _cel(
            f"{present('augment_copies_per_transform', 'augment_mode', 'augment_transforms')}"
            "self.augment_mode != 'independent' "
            f"|| self.augment_copies_per_transform.all(k, k in {_transform_list('self.augment_transforms')})",
            "augment_copies_per_transform: in independent mode every key must be a transform chosen in augment_transforms",
            ".augment_copies_per_transform",
        )
    )
    rules.append(
        _cel(
            f"{present('augment_copies_per_transform', 'augment_dataset_mode')}"
            "self.augment_dataset_mode != 'inplace' "
            "|| self.augment_copies_per_transform.all(k, self.augment_copies_per_transform[k] == 1)",
            "augment_copies_per_transform: in inplace mode each episode is replaced by exactly one "
            "augmented version, so every count must be 1",
            ".augment_copies_per_transform",
        )
    )
    schema["x-kubernetes-validations"] = rules + _immutable(props)
    schema["description"] = (
        "What to augment and how: the REST request's fields, unchanged, plus job_id, "
        "cancel_requested, hub_token_secret. Units are in each field's description. A field left "
        "out takes the project's default, else the built-in one; status.effective_spec shows the result."
    )
    return schema


def status_schema() -> dict[str, Any]:
    schema = _model_schema(AugmentationJobStatus)
    schema["description"] = (
        "Phase history and outcome, written by the operator; `progress` is written by the worker."
    )
    return schema


def _crd(name: str, kind: str, plural: str, singular: str, short_names: list[str],
         printer_columns: list[dict], description: str, properties: dict[str, Any],
         subresources: dict[str, Any] | None = None, validations: list[dict] | None = None) -> dict[str, Any]:
    """A namespaced CRD of group roboaug.dev with one served, stored version."""
    version: dict[str, Any] = {"name": VERSION, "served": True, "storage": True}
    if subresources is not None:
        version["subresources"] = subresources
    root: dict[str, Any] = {
        "description": description,
        "type": "object",
        "required": ["spec"],
        "properties": {"apiVersion": {"type": "string"}, "kind": {"type": "string"},
                       "metadata": {"type": "object"}, **properties},
    }
    if validations:
        root["x-kubernetes-validations"] = validations
    version["additionalPrinterColumns"] = printer_columns
    version["schema"] = {"openAPIV3Schema": root}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": name},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {"kind": kind, "listKind": f"{kind}List", "plural": plural, "singular": singular,
                      "shortNames": list(short_names), "categories": ["roboaug"]},
            "versions": [version],
        },
    }


def build_crd() -> dict[str, Any]:
    return _crd(
        CRD_NAME, KIND, PLURAL, SINGULAR, SHORT_NAMES,
        [
            {"name": "Status", "type": "string", "jsonPath": ".status.status"},
            {"name": "Phase", "type": "string", "jsonPath": ".status.current_phase"},
            {"name": "Progress%", "type": "integer", "jsonPath": ".status.progress_percent",
             "description": "Percent of the frames augmented"},
            {"name": "Attempt", "type": "integer", "jsonPath": ".status.attempt"},
            {"name": "Started", "type": "date", "jsonPath": ".status.started_at",
             "description": "When the worker started"},
            # JSONPath only: the operator writes the duration once the job has ended
            {"name": "Duration", "type": "string", "jsonPath": ".status.duration",
             "description": "Worker start (else creation) to the end"},
            {"name": "Instance", "type": "string", "jsonPath": ".status.instance_type"},
            {"name": "Output", "type": "string", "jsonPath": ".status.augmented_dataset_id"},
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
            {"name": "Job-ID", "type": "string", "jsonPath": ".status.job_id", "priority": 1},
            {"name": "Dataset", "type": "string", "jsonPath": ".spec.dataset_id", "priority": 1},
        ],
        "An AugmentationJob asks for a robot-learning dataset to be augmented "
        "(lighting, noise, blur, occlusion) and published as a new dataset.",
        {"spec": spec_schema(), "status": status_schema()},
        subresources={"status": {}},
        # On create only (no oldSelf yet): a CR named longer before this rule existed must still
        # take status writes, which validate the whole object.
        validations=[
            {**_cel(f"oldSelf.hasValue() || size(self.metadata.name) <= {MAX_CR_NAME_LENGTH}",
                    f"metadata.name: at most {MAX_CR_NAME_LENGTH} characters (its worker Jobs and their "
                    "pods are named after it, and a pod name must keep it whole)"),
             "optionalOldSelf": True}
        ],
    )


def project_spec_schema() -> dict[str, Any]:
    schema = _model_schema(AugmentationProjectSpec)
    schema["description"] = (
        "The policy of one project's jobs: Hub token Secret, allowed sources and outputs, file:// "
        "access, request defaults, limits, TTL. Read by the gateway and the operator (roboaug.api.policy)."
    )
    return schema


def build_project_crd() -> dict[str, Any]:
    """AugmentationProject: namespaced, beside the jobs and Secrets it governs (docs/architecture.md)."""
    return _crd(
        PROJECT_CRD_NAME, PROJECT_KIND, PROJECT_PLURAL, PROJECT_SINGULAR, PROJECT_SHORT_NAMES,
        [
            {"name": "Display-Name", "type": "string", "jsonPath": ".spec.display_name"},
            {"name": "Token-Secret", "type": "string", "jsonPath": ".spec.hub_token_secret.name"},
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        ],
        "An AugmentationProject holds the policy of the jobs whose spec.project_id "
        "is its name (the project UUID, lowercase).",
        {"spec": project_spec_schema()},
        # The gateway and the operator find a job's project by name: GET, no list.
        validations=[
            _cel(f"self.metadata.name.matches('{UUID_NAME_PATTERN}')",
                 "metadata.name must be the project's UUID in lowercase (the jobs' "
                 "spec.project_id)")
        ],
    )


_HEADER = "# Generated by `python -m roboaug.api.crd` from api/models/. Do not edit by hand.\n"


def render_manifest(crd: dict[str, Any] | None = None) -> str:
    return _HEADER + yaml.safe_dump(crd or build_crd(), sort_keys=False, width=100)


def render_chart_template(crd: dict[str, Any] | None = None) -> str:
    crd = crd or build_crd()
    name = crd["metadata"]["name"]
    body = yaml.safe_dump(crd, sort_keys=False, width=100)
    # The chart installs and upgrades the CRD itself (crds/ is never upgraded by Helm), and can
    # keep it on uninstall so deleting the release does not delete every user's jobs.
    meta = f"metadata:\n  name: {name}\n"
    templated_meta = (
        "metadata:\n"
        f"  name: {name}\n"
        "  labels:\n"
        "    {{- include \"roboaug.labels\" . | nindent 4 }}\n"
        "  {{- if .Values.crds.keep }}\n"
        "  annotations:\n"
        "    helm.sh/resource-policy: keep\n"
        "  {{- end }}\n"
    )
    assert meta in body
    body = body.replace(meta, templated_meta, 1)
    return _HEADER + "{{- if .Values.crds.install }}\n" + body + "{{- end }}\n"


def outputs() -> dict[Path, str]:
    project = build_project_crd()
    return {MANIFEST_PATH: render_manifest(), CHART_TEMPLATE_PATH: render_chart_template(),
            PROJECT_MANIFEST_PATH: render_manifest(project),
            PROJECT_CHART_TEMPLATE_PATH: render_chart_template(project)}


def generate(outputs: dict[Path, str], argv: list[str] | None, description: str) -> int:
    """Write (or with --check, compare) generated files; shared by this module and admission.py."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--check", action="store_true", help="exit 1 if a committed file differs")
    args = parser.parse_args(argv)
    stale = []
    for path, text in outputs.items():
        if (path.read_text() if path.exists() else None) == text:
            continue
        stale.append(path)
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    for path in stale:
        print(("stale: " if args.check else "wrote: ") + str(path.relative_to(REPO_ROOT)))
    return 1 if (args.check and stale) else 0


def main(argv: list[str] | None = None) -> int:
    return generate(outputs(), argv, __doc__.splitlines()[0])


if __name__ == "__main__":
    sys.exit(main())
