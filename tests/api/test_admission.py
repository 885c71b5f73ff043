"""The apiserver's door (roboaug.api.admission) against roboaug.api.policy, through a real kube-apiserver.

One table of (project, job) cases: for each, policy.check on the job's effective spec says what the
gateway and the operator refuse, and a server-side dry-run create says what the apiserver refuses.
They must agree on allowed/refused, on the HTTP status (403 forbidden, 422 limit) and on the
message, word for word.
"""

from __future__ import annotations

import json
import re
import uuid

import pytest
import yaml
from kubernetes.client.exceptions import ApiException

from roboaug.api import admission, policy
from roboaug.api.models import GROUP, KIND, PLURAL, VERSION, AugmentationJobCreateRequest
from roboaug.api.models.project import PROJECT_KIND, PROJECT_PLURAL, AugmentationProjectSpec

# Tests that use the `cluster` fixture are marked `cluster` by tests/conftest.py.

JOB_ID = "8bfd8abc-1111-4222-8333-444455556666"
PROJECTS = {
    "team-b": {"allowed_sources": ["team-b", "lerobot/pusht"],
               "allowed_outputs": ["team-b/*-augmented-*", "team-b/out"]},
    "globs": {"allowed_sources": ["*"], "allowed_outputs": ["team-?/robot-*.v2", "Acme"],
              "limits": {"max_copies": 4}, "defaults": {"augment_copies": 5}},
    "files": {"allowed_sources": ["team-c"], "allowed_outputs": ["team-c"],
              "file_access": {"allowed": True, "roots": ["/data/team-c", "/scratch"]}},
    "root": {"allowed_sources": ["x"], "allowed_outputs": ["x"], "file_access": {"allowed": True, "roots": ["/"]}},
    "independent": {"allowed_sources": ["*"], "allowed_outputs": ["*"], "limits": {"max_copies": 4},
                    "defaults": {"augment_mode": "independent", "augment_transforms": "lighting,noise",
                                 "augment_copies_per_transform": {"lighting": 2, "noise": 3}}},
    "shards": {"allowed_sources": ["*"], "allowed_outputs": ["*"], "limits": {"max_shards": 4},
               "defaults": {"shards": 6}},
}
PROJECT_IDS = {name: str(uuid.uuid5(uuid.NAMESPACE_URL, f"roboaug-admission-{name}")) for name in PROJECTS}

CASES = [
    # (project, job fields)
    ("team-b", {"dataset_id": "team-b/src", "output_dataset_id": "team-b/out"}),
    ("team-b", {"dataset_id": "Team-B/src"}),                                   # default output, case-insensitive
    ("team-b", {"dataset_id": "hf://lerobot/pusht@main", "output_dataset_id": "team-b/out"}),
    ("team-b", {"dataset_id": "team-b/src", "output_dataset_id": "acme/leak"}),
    ("team-b", {"dataset_id": "acme/private", "output_dataset_id": "team-b/out"}),
    ("team-b", {"dataset_id": "hf://acme/private@v1", "output_dataset_id": "team-b/out"}),
    ("team-b", {"dataset_id": "lerobot/pusht"}),                                 # default output in lerobot/
    ("team-b", {"dataset_id": "team-bad/src", "output_dataset_id": "team-b/out"}),  # an org is not a prefix
    ("team-b", {"dataset_id": "file:///etc/secrets", "output_dataset_id": "team-b/out"}),
    ("team-b", {"dataset_id": "team-b/src", "output_dataset_id": "file:///tmp/out"}),
    ("globs", {"dataset_id": "any/thing", "output_dataset_id": "team-a/robot-1.v2", "augment_copies": 4}),
    ("globs", {"dataset_id": "any/thing", "output_dataset_id": "team-ab/robot-1.v2", "augment_copies": 1}),
    ("globs", {"dataset_id": "any/thing", "output_dataset_id": "team-a/robot-1xv2", "augment_copies": 1}),
    ("globs", {"dataset_id": "any/thing", "output_dataset_id": "acme/anything", "augment_copies": 1}),
    ("globs", {"dataset_id": "any/thing", "output_dataset_id": "ACME/x"}),     # project default: 5 copies > 4
    ("globs", {"dataset_id": "any/thing", "output_dataset_id": "acme/x", "augment_copies": 5}),
    ("globs", {"dataset_id": "any/thing", "output_dataset_id": "acme/x", "augment_dataset_mode": "inplace"}),
    ("files", {"dataset_id": "file:///data/team-c/src", "output_dataset_id": "file:///scratch/out"}),
    ("files", {"dataset_id": "file:///data/team-c"}),                          # the root itself; default output beside it
    ("files", {"dataset_id": "file:///data/team-c/src/"}),
    ("files", {"dataset_id": "file:///data/team-cx/src", "output_dataset_id": "team-c/out"}),
    ("files", {"dataset_id": "file:///data/team-c/../team-a/src", "output_dataset_id": "team-c/out"}),
    ("files", {"dataset_id": "file:///data/team-c/./src", "output_dataset_id": "team-c/out"}),
    ("files", {"dataset_id": "team-c/src", "output_dataset_id": "file:///home/out"}),
    ("root", {"dataset_id": "file:///anywhere/at/all", "output_dataset_id": "x/out"}),
    ("independent", {"dataset_id": "a/b"}),                                    # 2 + 3 copies from the defaults
    ("independent", {"dataset_id": "a/b", "augment_copies_per_transform": {"lighting": 1, "noise": 3}}),
    ("independent", {"dataset_id": "a/b", "augment_mode": "stacked"}),           # 3 built-in copies
    ("independent", {"dataset_id": "a/b", "augment_transforms": "noise", "augment_copies_per_transform": {"noise": 4}}),
    ("shards", {"dataset_id": "a/b", "shards": 4}),
    ("shards", {"dataset_id": "a/b", "shards": 5}),
    ("shards", {"dataset_id": "a/b"}),                                        # project default: 6 shards > 4
    ("globs", {"dataset_id": "any/thing", "output_dataset_id": "acme/x", "augment_copies": 1, "shards": 10000}),  # no limit
]


@pytest.fixture(scope="module")
def admitted_namespace(cluster, crd):
    """The policy and its binding installed (as the chart has them) and a namespace with
    every project of the table; removed afterwards."""
    from kubernetes import client

    manifest = admission.render_manifest()
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=manifest)
    ns = f"t-admission-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", ns)
    with cluster.api_client() as api:
        custom = client.CustomObjectsApi(api)
        for name, spec in PROJECTS.items():
            custom.create_namespaced_custom_object(GROUP, VERSION, ns, PROJECT_PLURAL, {
                "apiVersion": f"{GROUP}/{VERSION}", "kind": PROJECT_KIND,
                "metadata": {"name": PROJECT_IDS[name]}, "spec": spec})

        def refused_once_active():
            # The apiserver picks policies and bindings up asynchronously: wait until one
            # known-bad job is refused.
            status, _ = _dry_run(custom, ns, "team-b", {"dataset_id": "acme/x", "output_dataset_id": "team-b/out"},
                                 job_id=JOB_ID)
            return status == 403

        cluster.wait_for(refused_once_active, timeout=60, what="the admission policy to take effect")
        yield custom, ns
    cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)
    cluster.kubectl("delete", "-f", "-", "--ignore-not-found", input=manifest, check=False)


def _body(project: str, fields: dict, job_id: str | None, name: str | None = None) -> dict:
    spec = {"project_id": PROJECT_IDS[project], **fields}
    if job_id:
        spec["job_id"] = job_id
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND,
            "metadata": {"name": name or f"j-{uuid.uuid4().hex[:10]}"}, "spec": spec}


def _dry_run(custom, ns: str, project: str, fields: dict, job_id: str | None) -> tuple[int, str]:
    return _dry_run_body(custom, ns, _body(project, fields, job_id))


def _dry_run_body(custom, ns: str, body: dict) -> tuple[int, str]:
    try:
        custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body, dry_run="All")
    except ApiException as e:
        return e.status, json.loads(e.body)["message"]
    return 201, ""


def _expected(project: str, fields: dict, job_id: str) -> tuple[int, str]:
    """What the gateway and the operator say: policy.check on the effective spec."""
    spec = AugmentationProjectSpec.model_validate(PROJECTS[project])
    request = AugmentationJobCreateRequest.model_validate({"project_id": PROJECT_IDS[project], **fields})
    effective, _ = policy.effective_spec(request, spec)
    found = policy.check(effective, spec, uuid.UUID(job_id))
    return (found[0].http_status, found[0].message) if found else (201, "")


@pytest.mark.parametrize("project,fields", CASES, ids=[f"{p}-{i}" for i, (p, _) in enumerate(CASES)])
def test_apiserver_refuses_exactly_what_the_policy_refuses(admitted_namespace, project, fields):
    custom, ns = admitted_namespace
    want_status, want_message = _expected(project, fields, JOB_ID)
    status, message = _dry_run(custom, ns, project, fields, JOB_ID)
    assert status == want_status, (message, want_message)
    if want_message:
        # "ValidatingAdmissionPolicy '<policy>' with binding '<binding>' denied request: <message>"
        assert message.endswith("denied request: " + want_message), (message, want_message)


def test_table_covers_every_rule_both_ways():
    # The table above must allow some jobs and hit each of the policy's rules at least once.
    outcomes = [_expected(p, f, JOB_ID) for p, f in CASES]
    assert any(status == 201 for status, _ in outcomes)
    rules = {"file_access.allowed", "file_access.roots", "allowed_sources", "allowed_outputs", "limits.max_copies",
             "limits.max_shards"}
    for rule in rules:
        assert any(rule in message for _, message in outcomes), rule
    assert any("default output name" in m for _, m in outcomes)


def test_default_output_name_uses_the_objects_uid_without_a_job_id(admitted_namespace):
    custom, ns = admitted_namespace
    status, message = _dry_run(custom, ns, "team-b", {"dataset_id": "lerobot/pusht"}, job_id=None)
    assert status == 403
    # The operator's job id for a CR without spec.job_id is its uid: the name's 8 hex come from it.
    assert re.search(r"denied request: output_dataset_id: lerobot/pusht-augmented-[0-9a-f]{8} \(the default output "
                     r"name", message), message


def test_kubectl_apply_is_refused_with_the_policys_message(cluster, admitted_namespace):
    _, ns = admitted_namespace
    manifest = yaml.safe_dump(_body("team-b", {"dataset_id": "team-b/src", "output_dataset_id": "acme/leak"},
                                    JOB_ID, name="leak"))
    p = cluster.kubectl("apply", "-n", ns, "-f", "-", input=manifest, check=False)
    assert p.returncode != 0
    _, want = _expected("team-b", {"dataset_id": "team-b/src", "output_dataset_id": "acme/leak"}, JOB_ID)
    assert want in p.stderr, p.stderr
    assert cluster.kubectl("get", "augmentationjobs", "-n", ns, "-o", "name").stdout.strip() == ""


def test_a_policy_tightened_later_does_not_block_a_cancel(cluster, admitted_namespace):
    # Only CREATE is judged (the CRD keeps the spec immutable but for cancel_requested), so a
    # job admitted under a looser policy can still be cancelled and labelled.
    custom, ns = admitted_namespace
    pid = str(uuid.uuid4())
    project = {"apiVersion": f"{GROUP}/{VERSION}", "kind": PROJECT_KIND, "metadata": {"name": pid},
               "spec": {"allowed_sources": ["*"], "allowed_outputs": ["*"]}}
    custom.create_namespaced_custom_object(GROUP, VERSION, ns, PROJECT_PLURAL, project)
    job = {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "metadata": {"name": "later"},
           "spec": {"project_id": pid, "dataset_id": "acme/src", "output_dataset_id": "acme/out", "job_id": JOB_ID}}
    custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, job)
    custom.patch_namespaced_custom_object(GROUP, VERSION, ns, PROJECT_PLURAL, pid,
                                          {"spec": {"allowed_outputs": ["team-z"]}})

    def tightened():
        # The apiserver sees the project change asynchronously: wait until a new job is refused.
        status, message = _dry_run_body(custom, ns, {**job, "metadata": {"name": "probe"}})
        return status == 403 and "allowed_outputs (team-z)" in message

    cluster.wait_for(tightened, timeout=60, what="the tightened project to take effect")
    custom.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "later",
                                          {"metadata": {"labels": {"touched": "yes"}}})
    custom.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "later", {"spec": {"cancel_requested": True}})
    assert custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "later")["spec"]["cancel_requested"] is True


def test_generated_policy_files_are_current():
    stale = [p for p, text in admission.outputs().items() if not p.exists() or p.read_text() != text]
    assert not stale, f"run `python -m roboaug.api.admission`: stale {stale}"
