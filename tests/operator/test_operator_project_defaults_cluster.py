"""Issue 13, the kubectl/GitOps door: a project's defaults reach the fields a CR leaves out.

The real apiserver (with the generated CRDs) and the operator as its own process: the apiserver
stores the CR as written (no schema default fills a field in), and the operator settles the
effective spec (request, else project, else built-in) into status and hands it to the worker Job.
"""
from __future__ import annotations

import json

import pytest

from roboaug.api.contract import SPEC_ANNOTATION

from tests.operator._cluster_helpers import (GROUP, PLURAL, PROJECT, VERSION, OperatorProcess, base_config,
                                             get_cr, jobs_of, wait_cr)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

DEFAULTS = {"augment_copies": 2, "augment_transforms": "noise", "augment_seed": 7}


def _apply(cluster, namespace, obj):
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(obj))


def test_a_kubectl_cr_runs_with_its_projects_defaults(cluster, crd, namespace, k8s, tmp_path):
    k8s.core.create_namespaced_service_account(namespace, {"metadata": {"name": "roboaug-worker"}})
    _apply(cluster, namespace, {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "AugmentationProject",
        "metadata": {"name": PROJECT.lower()},
        "spec": {"allowed_sources": ["*"], "allowed_outputs": ["*"], "defaults": DEFAULTS}})
    # augment_seed is the request's; augment_copies and augment_transforms are left to the project
    _apply(cluster, namespace, {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "AugmentationJob", "metadata": {"name": "team"},
        "spec": {"project_id": PROJECT, "dataset_id": "lerobot/pusht", "augment_seed": 11}})
    stored = get_cr(k8s, namespace, "team")["spec"]
    assert stored == {"project_id": PROJECT, "dataset_id": "lerobot/pusht", "augment_seed": 11,
                      "cancel_requested": False}, "the apiserver filled in a request field"

    op = OperatorProcess(cluster, base_config(namespace), tmp_path).start()
    try:
        cr = wait_cr(cluster, k8s, namespace, "team", lambda st: st.get("job_name"), "its worker Job", op=op)
        (job,) = jobs_of(k8s, namespace)
        mounted = job.spec.template.metadata.annotations[SPEC_ANNOTATION]  # the pods' spec file
    finally:
        op.stop()
        print(f"--- operator log ({op.log}) ---\n{op.tail(60)}")
    st = cr["status"]
    assert "augment_copies" not in cr["spec"] and "augment_transforms" not in cr["spec"]
    eff, sources = st["effective_spec"], st["spec_sources"]
    assert (eff["augment_copies"], eff["augment_transforms"], eff["augment_seed"]) == (2, "noise", 11)
    assert (sources["augment_copies"], sources["augment_transforms"]) == ("project", "project")
    assert (sources["augment_seed"], sources["dataset_id"]) == ("request", "request")
    assert eff["augment_mode"] == "stacked" and sources["augment_mode"] == "default"
    worker = json.loads(mounted)
    assert (worker["augment_copies"], worker["augment_transforms"], worker["augment_seed"]) == (2, "noise", 11)
    assert worker["augment_mode"] == "stacked" and worker["project_id"] == PROJECT
    same = set(worker) & set(eff) - {"output_dataset_id"}  # the worker gets the default output name filled in
    assert {k: worker[k] for k in same} == {k: eff[k] for k in same}
