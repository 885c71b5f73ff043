"""Kueue in the chart: `pools.<name>.kueueQueue` reaches the operator's configuration and a project item's
`kueueQueue` its AugmentationProject; only a chart where one names a LocalQueue (or `projects.kueueQueues`) gives
the operator its one Kueue right (list Workloads)."""
from __future__ import annotations

import json

import jsonschema_rs
import pytest
import yaml

from roboaug.operator.config import parse_config

from tests.chart.helpers import CHART, deep_merge

SCHEMA = jsonschema_rs.validator_for(json.loads((CHART / "values.schema.json").read_text()))
VALUES = yaml.safe_load((CHART / "values.yaml").read_text())


def _config(docs):
    return parse_config(yaml.safe_load(docs.get("ConfigMap", "roboaug-operator")["data"]["config.yaml"]))


def _kueue_rules(docs):
    return [r for role in docs.of("ClusterRole") + docs.of("Role") for r in role.get("rules", [])
            if "kueue.x-k8s.io" in r.get("apiGroups", [])]


def test_a_pool_naming_a_local_queue_reaches_the_operator_with_the_workload_read(render):
    docs = render({"pools": {"cpu": {"kueueQueue": "team-a"}}})
    cfg = _config(docs)
    assert cfg.pools["cpu"].kueue_queue == "team-a" and cfg.pools["gpu"].kueue_queue is None
    assert _kueue_rules(docs) == [{"apiGroups": ["kueue.x-k8s.io"], "resources": ["workloads"], "verbs": ["list"]}]


def test_a_pools_frames_per_shard_reaches_the_operator(render):
    cfg = _config(render({"pools": {"cpu": {"framesPerShard": 2000}}}))
    assert cfg.pools["cpu"].frames_per_shard == 2000 and cfg.pools["gpu"].frames_per_shard is None
    bad = [e.instance_path for e in SCHEMA.iter_errors(deep_merge(VALUES, {"pools": {"cpu": {"framesPerShard": 0}}}))]
    assert bad, "framesPerShard 0 accepted"


def test_without_a_queue_the_operator_gets_no_kueue_right(render):
    docs = render()
    assert all(p.kueue_queue is None for p in _config(docs).pools.values())
    assert _kueue_rules(docs) == []


@pytest.mark.parametrize("bad", ["Team_A", "-a", "a" * 64])
def test_a_queue_name_that_is_no_dns_label_is_refused_naming_the_field(bad):
    found = [".".join(map(str, e.instance_path))
             for e in SCHEMA.iter_errors(deep_merge(VALUES, {"pools": {"cpu": {"kueueQueue": bad}}}))]
    assert "pools.cpu.kueueQueue" in found, found


PROJECT = {"id": "3f9c1e2a-7b4d-4e8f-9a6b-1c2d3e4f5a6b", "allowedSources": ["*"], "allowedOutputs": ["*"]}


def test_a_project_naming_a_local_queue_reaches_its_cr_with_the_workload_read(render):
    from roboaug.api.models.project import AugmentationProjectSpec

    docs = render({"projects": {"items": [{**PROJECT, "kueueQueue": "team-a"}]}})
    spec = AugmentationProjectSpec.model_validate(docs.of("AugmentationProject")[0]["spec"])
    assert spec.kueue_queue == "team-a"
    assert all(p.kueue_queue is None for p in _config(docs).pools.values())
    assert _kueue_rules(docs) == [{"apiGroups": ["kueue.x-k8s.io"], "resources": ["workloads"], "verbs": ["list"]}]
    # a project item without a queue grants nothing; projects made elsewhere may be let name one
    assert _kueue_rules(render({"projects": {"items": [PROJECT]}})) == []
    assert len(_kueue_rules(render({"projects": {"kueueQueues": True}}))) == 1


def test_a_project_queue_name_that_is_no_dns_label_is_refused_naming_the_field():
    found = [".".join(map(str, e.instance_path))
             for e in SCHEMA.iter_errors(deep_merge(VALUES, {"projects": {"items": [{**PROJECT, "kueueQueue": "Team_A"}]}}))]
    assert "projects.items.0.kueueQueue" in found, found
