"""values.schema.json against values.yaml, without helm: every value is described by the schema,
the defaults validate, and wrong types or weakened security settings are refused."""
from __future__ import annotations

import copy
import json
import re

import jsonschema_rs
import pytest
import yaml

from tests.chart.chart_cases import TOGGLES, with_namespace
from tests.chart.helpers import CHART, deep_merge

VALUES = yaml.safe_load((CHART / "values.yaml").read_text())
SCHEMA = json.loads((CHART / "values.schema.json").read_text())
VALIDATOR = jsonschema_rs.validator_for(SCHEMA)


def errors(values: dict) -> list[str]:
    return [f"{'.'.join(map(str, e.instance_path))}: {e.message}" for e in VALIDATOR.iter_errors(values)]


def test_defaults_validate():
    assert errors(VALUES) == []


@pytest.mark.parametrize("toggle", TOGGLES, ids=[t.id for t in TOGGLES])
def test_every_toggle_validates(toggle):
    assert errors(deep_merge(VALUES, with_namespace(toggle.values, "roboaug"))) == []


def _leaf_paths(value, prefix=()):
    if isinstance(value, dict) and value:
        for k, v in value.items():
            yield from _leaf_paths(v, prefix + (k,))
    else:
        yield prefix


def _schema_at(schema, path):
    for key in path:
        if "properties" in schema and key in schema["properties"]:
            schema = schema["properties"][key]
        elif isinstance(schema.get("additionalProperties"), dict):
            schema = schema["additionalProperties"]
        else:
            return None
    return schema


def test_schema_describes_every_value():
    # additionalProperties: false everywhere means an undescribed value would be refused anyway;
    # this names the ones the schema forgot instead of failing `helm install`.
    missing = [".".join(p) for p in _leaf_paths(VALUES) if _schema_at(SCHEMA, p) is None]
    assert missing == []


def test_every_value_is_commented():
    # values.yaml is the checklist: each key has a comment on its line, above it, or is one of a
    # group introduced by a comment (consecutive keys under one `# --` line).
    lines = (CHART / "values.yaml").read_text().splitlines()
    undocumented = []
    for i, line in enumerate(lines):
        m = re.match(r"^(\s*)([A-Za-z][\w.-]*):", line)
        if not m or line.lstrip().startswith("#"):
            continue
        indent = len(m.group(1))
        j = i - 1
        documented = "#" in line.split(":", 1)[1]
        # Walk up over sibling keys (same indent) and deeper lines to the nearest comment.
        while j >= 0 and not documented:
            prev = lines[j]
            stripped = prev.strip()
            if stripped.startswith("#"):
                documented = True
                break
            pm = re.match(r"^(\s*)\S", prev)
            if not stripped:
                break
            if pm and len(pm.group(1)) < indent:
                # The parent key: documented if the parent is (checked on its own line).
                documented = True
                break
            j -= 1
        if not documented and indent == 0:
            undocumented.append(m.group(2))
        elif not documented:
            undocumented.append(f"line {i + 1}: {m.group(2)}")
    assert undocumented == []


@pytest.mark.parametrize("patch, where", [
    ({"operator": {"replicas": "two"}}, "operator.replicas"),
    ({"jobs": {"backoffLimit": -1}}, "jobs.backoffLimit"),
    ({"jobs": {"pendingTimeoutSeconds": "10m"}}, "jobs.pendingTimeoutSeconds"),
    ({"logLevel": "verbose"}, "logLevel"),
    ({"pools": {"cpu": {"gpus": "one"}}}, "pools.cpu.gpus"),
    ({"pools": {"cpu": {"nodeSelektor": {"a": "b"}}}}, "pools.cpu"),
    ({"watchNamespaces": "default"}, "watchNamespaces"),
    ({"hubToken": {"secretName": "Not_A_Name"}}, "hubToken.secretName"),
    ({"jobs": {"env": {"HF_TOKEN": "hf_inline_secret"}}}, "jobs.env"),
    ({"gateway": {"idempotencyTtlSeconds": 60}}, "gateway.idempotencyTtlSeconds"),
    ({"image": {"digest": "latest"}}, "image.digest"),
    ({"crds": {"install": "yes"}}, "crds.install"),
    ({"gatewy": {"enabled": False}}, ""),
])
def test_wrong_values_are_refused_naming_the_field(patch, where):
    found = errors(deep_merge(VALUES, patch))
    assert found, f"{patch} was accepted"
    assert any(e.startswith(where) for e in found), found


@pytest.mark.parametrize("patch", [
    {"podSecurityContext": {"runAsNonRoot": False}},
    {"containerSecurityContext": {"readOnlyRootFilesystem": False}},
    {"containerSecurityContext": {"allowPrivilegeEscalation": True}},
    {"containerSecurityContext": {"privileged": True}},
    {"containerSecurityContext": {"capabilities": {"drop": ["NET_RAW"]}}},
    {"containerSecurityContext": {"capabilities": {"drop": ["ALL"], "add": ["SYS_ADMIN"]}}},
    {"containerSecurityContext": {"seccompProfile": {"type": "Unconfined"}}},
], ids=lambda p: json.dumps(p, separators=(",", ":")))
def test_security_contexts_cannot_be_weakened(patch):
    assert errors(deep_merge(copy.deepcopy(VALUES), patch))


def test_security_defaults():
    pod, ctr = VALUES["podSecurityContext"], VALUES["containerSecurityContext"]
    assert pod["runAsNonRoot"] is True and pod["seccompProfile"] == {"type": "RuntimeDefault"}
    assert ctr["readOnlyRootFilesystem"] is True and ctr["allowPrivilegeEscalation"] is False
    assert ctr["capabilities"]["drop"] == ["ALL"]


def test_default_pools_follow_the_architecture_doc():
    # docs/architecture.md: cpu -> c7i.4xlarge, gpu -> g6e.2xlarge with nvidia.com/gpu: 1.
    pools = VALUES["pools"]
    assert pools["cpu"]["instanceType"] == "c7i.4xlarge"
    assert pools["cpu"]["nodeSelector"] == {"roboaug.dev/pool": "cpu"}
    assert pools["cpu"]["gpus"] == 0
    assert pools["gpu"]["instanceType"] == "g6e.2xlarge"
    assert pools["gpu"]["nodeSelector"] == {"roboaug.dev/pool": "gpu"}
    assert pools["gpu"]["gpus"] == 1
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pools["gpu"]["tolerations"]
    assert VALUES["routing"] == {"deterministic": "cpu", "generative": "gpu"}


def test_reserved_worker_env_is_the_contracts():
    """jobs.env may not set what the operator sets: the schema's list is the worker contract's."""
    from roboaug.api.contract import RESERVED_ENV

    env = SCHEMA["properties"]["jobs"]["properties"]["env"]["propertyNames"]["not"]["enum"]
    assert sorted(env) == sorted(RESERVED_ENV)
    for name in sorted(RESERVED_ENV):
        assert errors(deep_merge(VALUES, {"jobs": {"env": {name: "x"}}})), f"jobs.env.{name} was accepted"


def test_documented_worker_knobs_are_declared():
    """The knobs values.yaml suggests for jobs.env are variables the worker reads, none reserved."""
    from roboaug.api.contract import RESERVED_ENV, VARIABLES

    named = set(re.findall(r"\bROBOAUG_[A-Z0-9_]+\b", (CHART / "values.yaml").read_text())) - {"ROBOAUG_OPERATOR_CONFIG"}
    assert named and named <= {v.name for v in VARIABLES} - RESERVED_ENV
