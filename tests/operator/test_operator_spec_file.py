"""The spec reaches the worker as a file from a ConfigMap the operator creates before the Job
(issue 14 item 7): planned with the Job, owned by the CR, and after a restart used only when it
holds the spec decided now."""

from __future__ import annotations

import json

from roboaug.api.contract import SPEC_KEY
from roboaug.api.models import AugmentationJobSpec
from roboaug.operator.config import parse_config
from roboaug.operator.decision import Observed
from roboaug.operator.jobs import spec_config_map
from roboaug.operator.kube import ApiError, Kube
from roboaug.operator.reconcile import decide

from tests.operator._operator_factories import CR_UID, JOB_ID, at, cr

CFG = parse_config({})


def test_a_new_job_plans_its_spec_config_map_before_the_job_and_mounts_it():
    plan = decide(Observed(cr=cr(), now=at(1)), CFG)
    [config_map] = [o for o in plan.create_first if o["kind"] == "ConfigMap"]
    spec = json.loads(config_map["data"][SPEC_KEY])
    assert spec["dataset_id"] == "lerobot/pusht" and spec["output_dataset_id"].startswith("lerobot/pusht-augmented-")
    assert config_map["metadata"]["ownerReferences"][0]["uid"] == CR_UID
    pod = plan.create_job["spec"]["template"]["spec"]
    assert config_map["metadata"]["name"] in [v["configMap"]["name"] for v in pod["volumes"] if "configMap" in v]


def test_a_large_allowed_spec_travels_whole():
    # 16 prompts of 2000 characters: ~32 KiB, in the file whole (as an env var this size was fine;
    # the bounds keep every allowed spec far under a ConfigMap's 1 MiB)
    c = cr()
    c["spec"]["cosmos_prompts"] = [f"{i}" * 2000 for i in range(10)] + ["\u00e9" * 2000] * 6
    config_map = spec_config_map(c, AugmentationJobSpec.model_validate(c["spec"]), JOB_ID)
    assert json.loads(config_map["data"][SPEC_KEY])["cosmos_prompts"] == c["spec"]["cosmos_prompts"]


class _Api:
    """Kube.request answered from a table of objects, like the apiserver."""

    def __init__(self, existing):
        self.existing = existing

    def __call__(self, method, path, body=None, query=None, content_type=None, resource="?", **_):
        if method == "POST":
            key = f"{path}/{body['metadata']['name']}"
            if key in self.existing:
                raise ApiError(409, "Conflict", {"message": "already exists"})
            self.existing[key] = body
            return body
        return self.existing[path]


def _kube(existing):
    k = Kube.__new__(Kube)
    k.request = _Api(existing)
    return k


def test_after_a_restart_a_spec_config_map_is_used_only_if_it_holds_this_spec():
    spec = AugmentationJobSpec.model_validate(cr()["spec"])
    ours = spec_config_map(cr(), spec, JOB_ID)
    path = f"/api/v1/namespaces/ns1/configmaps/{ours['metadata']['name']}"
    existing: dict = {}
    assert _kube(existing).ensure_owned("ns1", ours) is None and path in existing  # created
    assert _kube({path: ours}).ensure_owned("ns1", ours) is None  # ours, from before a restart
    # the same owner copied onto another spec (anyone who may create ConfigMaps could): refused
    other = json.loads(ours["data"][SPEC_KEY])
    other["output_dataset_id"] = "someone/else"
    tampered = dict(ours, data={SPEC_KEY: json.dumps(other)})
    assert "other contents" in _kube({path: tampered}).ensure_owned("ns1", ours)
