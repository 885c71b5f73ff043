"""manifests/ (for `kubectl apply -k manifests/`) is the chart rendered with its defaults: the
committed file must equal a fresh render, and the kustomization must build."""
from __future__ import annotations

import subprocess
import sys

import yaml

from tests.chart.helpers import CLUSTER_SCOPED, MANIFESTS, REPO, parse_docs

KUSTOMIZATION = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())


def test_kustomization_lists_existing_files():
    resources = KUSTOMIZATION["resources"]
    assert resources == ["crd/roboaug.dev_augmentationjobs.yaml", "crd/roboaug.dev_augmentationprojects.yaml",
                         "namespace.yaml", "roboaug.yaml"]
    for r in resources:
        assert (MANIFESTS / r).is_file(), r


def test_rendered_manifests_are_in_sync_with_the_chart(helm_bin):
    proc = subprocess.run([sys.executable, str(REPO / "hack" / "render_manifests.py"), "--check"],
                          capture_output=True, text=True, timeout=180, env=_env_with_helm(helm_bin))
    assert proc.returncode == 0, proc.stderr + "\n(regenerate: python hack/render_manifests.py)"


def _env_with_helm(helm_bin):
    import os

    env = dict(os.environ)
    env["PATH"] = f"{os.path.dirname(helm_bin)}{os.pathsep}{env.get('PATH', '')}"
    return env


def test_kustomize_build(kubectl_bin):
    proc = subprocess.run([kubectl_bin, "kustomize", str(MANIFESTS)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    docs = parse_docs(proc.stdout)
    kinds = {d["kind"] for d in docs}
    assert {"CustomResourceDefinition", "Namespace", "Deployment", "ServiceAccount", "Role",
            "ClusterRole", "ConfigMap", "Service"} <= kinds
    ns = docs.get("Namespace", "roboaug")
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    # Plain manifests are not owned by a Helm release.
    for d in docs:
        labels = d["metadata"].get("labels") or {}
        assert labels.get("app.kubernetes.io/managed-by") != "Helm", d["metadata"]["name"]
        if d["kind"] not in ("Namespace", *CLUSTER_SCOPED):
            assert d["metadata"]["namespace"] == "roboaug", d["metadata"]["name"]


def test_crd_in_manifests_equals_the_chart_template_body():
    # Both are generated from the models by `python -m roboaug.api.crd`; here we only check the
    # chart template wraps the same CRD (api/ tests own the drift check against the models).
    template = (REPO / "charts" / "roboaug" / "templates" / "crd.yaml").read_text()
    crd = yaml.safe_load((MANIFESTS / "crd" / "roboaug.dev_augmentationjobs.yaml").read_text())
    assert "{{- if .Values.crds.install }}" in template
    assert "helm.sh/resource-policy: keep" in template and ".Values.crds.keep" in template
    assert f"name: {crd['metadata']['name']}" in template
