"""Kueue in the chart: `pools.<name>.kueueQueue` reaches the operator's configuration, and only a
chart with a pool naming a LocalQueue gives the operator its one Kueue right (list Workloads)."""
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


def test_without_a_queue_the_operator_gets_no_kueue_right(render):
    docs = render()
    assert all(p.kueue_queue is None for p in _config(docs).pools.values())
    assert _kueue_rules(docs) == []


@pytest.mark.parametrize("bad", ["Team_A", "-a", "a" * 64])
def test_a_queue_name_that_is_no_dns_label_is_refused_naming_the_field(bad):
    found = [".".join(map(str, e.instance_path))
             for e in SCHEMA.iter_errors(deep_merge(VALUES, {"pools": {"cpu": {"kueueQueue": bad}}}))]
    assert "pools.cpu.kueueQueue" in found, found
