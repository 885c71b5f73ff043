"""Fixtures the operator's cluster tests share (helpers live in _cluster_helpers)."""
from __future__ import annotations

import pytest

from tests.operator._cluster_helpers import OperatorProcess, base_config


@pytest.fixture
def operator(cluster, crd, namespace, k8s, tmp_path):
    """Factory: operator(**config overrides) starts one operator for this test's namespace; each
    is stopped at the end and its log's tail printed."""
    k8s.core.create_namespaced_service_account(namespace, {"metadata": {"name": "roboaug-worker"}})
    started: list[OperatorProcess] = []

    def start(**over) -> OperatorProcess:
        op = OperatorProcess(cluster, base_config(namespace, **over), tmp_path).start()
        started.append(op)
        return op

    yield start
    for op in started:
        op.stop()
        print(f"--- operator log ({op.log}) ---\n{op.tail(60)}")
