"""Projects in the chart: projects.items rendered as AugmentationProjects, jobsWithoutProject wired
to the operator's config and the gateway's environment from one value, the people's RBAC, the
two-teams example, and the plain sample/example manifests read by the model."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.chart.helpers import CHART, REPO, deep_merge, helm_template, parse_docs

EXAMPLE = REPO / "examples" / "two-teams"
TEAM_A, TEAM_B = "3f9c1e2a-7b4d-4e8f-9a6b-1c2d3e4f5a6b", "8a7b6c5d-4e3f-4a1b-8c9d-0e1f2a3b4c5d"
NS = "roboaug"


def _config(docs):
    from roboaug.operator.config import parse_config

    return parse_config(yaml.safe_load(docs.get("ConfigMap", "roboaug-operator")["data"]["config.yaml"]))


def _gateway_settings(docs):
    from roboaug.api.gateway.settings import Settings

    c = docs.get("Deployment", "roboaug-gateway")["spec"]["template"]["spec"]["containers"][0]
    values = {e["name"][len("ROBOAUG_GATEWAY_"):].lower(): e["value"] for e in c["env"] if "value" in e}
    return Settings(**values, namespace=NS)


def test_chart_refuses_jobs_without_a_project_by_default_at_both_doors(render):
    docs = render()
    assert docs.of("AugmentationProject") == []
    assert _config(docs).jobs_without_project.action.value == "refuse"
    assert _gateway_settings(docs).unbound() == _config(docs).jobs_without_project


def test_default_project_reaches_operator_and_gateway_alike(render):
    docs = render({"projects": {"jobsWithoutProject": {"action": "default", "defaultProject": TEAM_A.upper()}}})
    unbound = _config(docs).jobs_without_project
    assert unbound.action.value == "default" and unbound.default_name == TEAM_A
    assert _gateway_settings(docs).unbound() == unbound
    docs = render({"projects": {"jobsWithoutProject": {"action": "allow", "defaultProject": ""}}})
    assert _config(docs).jobs_without_project.action.value == "allow"
    assert _gateway_settings(docs).unbound() == _config(docs).jobs_without_project


@pytest.mark.parametrize("values, message", [
    ({"action": "default", "defaultProject": ""}, "defaultProject"),
    ({"action": "refuse", "defaultProject": TEAM_A}, "defaultProject"),
    ({"action": "deny", "defaultProject": ""}, "action"),
])
def test_inconsistent_jobs_without_project_fails_the_install(helm_bin, tmp_path, values, message):
    proc = helm_template(helm_bin, {"projects": {"jobsWithoutProject": values}}, tmp_path=tmp_path, check=False)
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr


def test_items_render_as_augmentation_projects_the_model_accepts(render):
    from roboaug.api.models.project import AugmentationProjectSpec

    item = {"id": TEAM_A.upper(), "displayName": "A", "hubTokenSecret": {"name": "a-hf", "key": "token"},
            "allowedSources": ["team-a", "lerobot/pusht"], "allowedOutputs": ["team-a/robot-*"],
            "fileAccess": {"allowed": True, "roots": ["/data/a"]},
            "defaults": {"augment_copies": 2, "output_visibility": "private"},
            "limits": {"maxCopies": 4, "maxFramesPerJob": 5000000000, "maxSpecBytes": 4096, "maxRunningJobs": 3,
                       "maxParallelism": 8, "maxShards": 12},
            "ttlSecondsAfterFinished": 0}
    docs = render({"projects": {"items": [item, {"id": TEAM_B, "namespace": "team-b",
                                                  "allowedSources": ["*"], "allowedOutputs": ["team-b"]}]}})
    a = docs.get("AugmentationProject", TEAM_A)
    assert a["apiVersion"] == "roboaug.dev/v1alpha1" and a["metadata"]["namespace"] == NS
    spec = AugmentationProjectSpec.model_validate(a["spec"])
    assert spec.hub_token_secret.name == "a-hf" and spec.allowed_outputs == ["team-a/robot-*"]
    assert spec.file_access.roots == ["/data/a"] and spec.defaults.augment_copies == 2
    assert (spec.limits.max_copies, spec.limits.max_frames_per_job, spec.limits.max_spec_bytes,
            spec.limits.max_running_jobs, spec.limits.max_parallelism, spec.limits.max_shards
            ) == (4, 5000000000, 4096, 3, 8, 12)
    assert spec.ttl_seconds_after_finished == 0  # zero is a value, not "unset"
    b = docs.get("AugmentationProject", TEAM_B)
    assert b["metadata"]["namespace"] == "team-b" and b["spec"] == {"allowed_sources": ["*"], "allowed_outputs": ["team-b"]}


def test_a_project_declared_twice_fails(helm_bin, tmp_path):
    item = {"id": TEAM_A, "allowedSources": ["*"], "allowedOutputs": ["*"]}
    proc = helm_template(helm_bin, {"projects": {"items": [item, {**item, "id": TEAM_A.upper()}]}},
                         tmp_path=tmp_path, check=False)
    assert proc.returncode != 0 and "declared twice" in proc.stderr, proc.stderr


def test_schema_defaults_keys_are_the_models_defaultable_fields():
    from roboaug.api.models.project import ProjectDefaults

    schema = json.loads((CHART / "values.schema.json").read_text())
    item = schema["properties"]["projects"]["properties"]["items"]["items"]
    assert item["properties"]["defaults"]["propertyNames"]["enum"] == sorted(ProjectDefaults.model_fields)


def test_people_rbac_on_projects(render):
    from tests.chart.test_helm import rules_of

    docs = render()
    admin, viewer = docs.get("ClusterRole", "roboaug-project-admin"), docs.get("ClusterRole", "roboaug-project-viewer")
    assert rules_of(admin) == {("roboaug.dev", "augmentationprojects"):
                               {"get", "list", "watch", "create", "update", "patch", "delete"}}
    assert rules_of(viewer) == {("roboaug.dev", "augmentationprojects"): {"get", "list", "watch"}}
    assert admin["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-admin"] == "true"
    assert viewer["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    # never into `edit`: job submitters must not loosen their own policy
    for role in (admin, viewer):
        assert "rbac.authorization.k8s.io/aggregate-to-edit" not in role["metadata"]["labels"]
    docs = render({"projects": {"rbac": {"aggregateToAdmin": False, "aggregateToView": False}}})
    for name in ("roboaug-project-admin", "roboaug-project-viewer"):
        labels = docs.get("ClusterRole", name)["metadata"]["labels"]
        assert not any(k.startswith("rbac.authorization.k8s.io/aggregate") for k in labels)


def test_two_teams_example_renders_two_projects_each_with_its_own_secret(helm_bin):
    from roboaug.api import policy
    from roboaug.api.models import AugmentationJobCreateRequest
    from roboaug.api.models.project import AugmentationProjectSpec

    proc = subprocess.run([helm_bin, "template", "roboaug", str(CHART), "--namespace", NS,
                           "-f", str(EXAMPLE / "values.yaml")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    docs = parse_docs(proc.stdout)
    projects = {d["metadata"]["name"]: d for d in docs.of("AugmentationProject")}
    assert set(projects) == {TEAM_A, TEAM_B}
    secrets = {pid: p["spec"]["hub_token_secret"]["name"] for pid, p in projects.items()}
    assert secrets == {TEAM_A: "team-a-hf-token", TEAM_B: "team-b-hf-token"}
    assert docs.of("Secret") == []  # by reference only
    assert _config(docs).jobs_without_project.action.value == "refuse"
    for pid, org, other in ((TEAM_A, "team-a", "team-b"), (TEAM_B, "team-b", "team-a")):
        spec = AugmentationProjectSpec.model_validate(projects[pid]["spec"])
        assert spec.allowed_sources == [org] and spec.allowed_outputs == [org]
        ok = AugmentationJobCreateRequest(project_id=pid, dataset_id=f"{org}/src", output_dataset_id=f"{org}/out")
        assert policy.check(ok, spec) == []
        leak = AugmentationJobCreateRequest(project_id=pid, dataset_id=f"{org}/src", output_dataset_id=f"{other}/out")
        assert [v.field for v in policy.check(leak, spec)] == ["output_dataset_id"]
    # the plain-manifest twin holds the same specs
    plain = {d["metadata"]["name"]: d["spec"] for d in yaml.safe_load_all((EXAMPLE / "projects.yaml").read_text())}
    assert plain == {pid: p["spec"] for pid, p in projects.items()}


def test_sample_project_lets_the_sample_job_run_and_nothing_else():
    from roboaug.api import policy
    from roboaug.api.models import AugmentationJobCreateRequest
    from roboaug.api.models.project import AugmentationProjectSpec

    samples = REPO / "manifests" / "samples"
    project = yaml.safe_load((samples / "project.yaml").read_text())
    job = yaml.safe_load((samples / "job.yaml").read_text())
    assert project["metadata"]["name"] == job["spec"]["project_id"]
    spec = AugmentationProjectSpec.model_validate(project["spec"])
    assert policy.check(AugmentationJobCreateRequest(**job["spec"]), spec) == []
    leak = AugmentationJobCreateRequest(**job["spec"], output_dataset_id="acme/leak")
    assert [v.field for v in policy.check(leak, spec)] == ["output_dataset_id"]
