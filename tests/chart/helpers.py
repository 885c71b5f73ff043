"""Helpers for the chart, manifests and image tests: where things are, rendering the chart."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "roboaug"
MANIFESTS = REPO / "manifests"
CLUSTER_SCOPED = ("CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding",
                  "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")
BUILD_HINT = "run `python -m roboaug.devstack build` (or put {tool} on PATH)"


def find_tool(name: str) -> str | None:
    """The devstack-built tool, else one on PATH (kubectl: /usr/bin/kubectl), else None."""
    try:
        from roboaug.devstack import build

        candidate = build.bin_dir() / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    except ImportError:
        pass
    return shutil.which(name)


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


def deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out
