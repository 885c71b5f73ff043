"""Fixtures for the chart, manifests and image tests: find helm, render the chart.

helm and kubectl come from the devstack build (`python -m roboaug.devstack build`) or PATH;
tests that need one skip with that command in the reason when it is missing.
"""
from __future__ import annotations

import pytest

from tests.chart.helpers import BUILD_HINT, Rendered, find_tool, helm_template, parse_docs


@pytest.fixture(scope="session")
def helm_bin() -> str:
    helm = find_tool("helm")
    if not helm:
        pytest.skip("helm is not available: " + BUILD_HINT.format(tool="helm"))
    return helm


@pytest.fixture(scope="session")
def kubectl_bin() -> str:
    kubectl = find_tool("kubectl")
    if not kubectl:
        pytest.skip("kubectl is not available: " + BUILD_HINT.format(tool="kubectl"))
    return kubectl


@pytest.fixture
def render(helm_bin, tmp_path):
    """render(values=None, *extra_args, release=..., namespace=...) -> Rendered."""

    def _render(values: dict | None = None, *extra: str, **kw) -> Rendered:
        proc = helm_template(helm_bin, values, *extra, tmp_path=tmp_path, **kw)
        return parse_docs(proc.stdout)

    return _render

