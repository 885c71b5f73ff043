"""Fixtures for the chart, manifests and image tests: find helm, render the chart.

helm and kubectl come from the devstack build (`python -m roboaug_devstack build`) or PATH;
tests that need one skip with that command in the reason when it is missing.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "roboaug"
MANIFESTS = REPO / "manifests"
BUILD_HINT = "run `python -m roboaug_devstack build` (or put {tool} on PATH)"


def find_tool(name: str) -> str | None:
    """The devstack-built tool, else one on PATH (kubectl: /usr/bin/kubectl), else None."""
    try:
        from roboaug_devstack import build

        candidate = build.bin_dir() / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    except ImportError:
        pass
    return shutil.which(name)


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


class Rendered(list):
    """`helm template` output as a list of dicts, with lookups by kind/name."""

    def of(self, kind: str) -> list[dict]:
        return [d for d in self if d.get("kind") == kind]

    def get(self, kind: str, name: str | None = None, namespace: str | None = None) -> dict:
        found = [d for d in self.of(kind)
                 if (name is None or d["metadata"]["name"] == name)
                 and (namespace is None or d["metadata"].get("namespace") == namespace)]
        assert len(found) == 1, f"expected one {kind} {name or ''} in {namespace or 'any ns'}, got {len(found)}"
        return found[0]


def helm_template(helm: str, values: dict | None = None, *extra: str, release: str = "roboaug",
                  namespace: str = "roboaug", tmp_path: Path | None = None,
                  check: bool = True) -> subprocess.CompletedProcess:
    args = [helm, "template", release, str(CHART), "--namespace", namespace]
    if values:
        assert tmp_path is not None, "values need a tmp_path to be written to"
        f = tmp_path / f"values-{len(list(tmp_path.iterdir()))}.yaml"
        f.write_text(yaml.safe_dump(values))
        args += ["-f", str(f)]
    args += list(extra)
    proc = subprocess.run(args, capture_output=True, text=True, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"helm template failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def parse_docs(text: str) -> Rendered:
    return Rendered(d for d in yaml.safe_load_all(text) if d)


@pytest.fixture
def render(helm_bin, tmp_path):
    """render(values=None, *extra_args, release=..., namespace=...) -> Rendered."""

    def _render(values: dict | None = None, *extra: str, **kw) -> Rendered:
        proc = helm_template(helm_bin, values, *extra, tmp_path=tmp_path, **kw)
        return parse_docs(proc.stdout)

    return _render


def deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out
