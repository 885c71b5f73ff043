"""The spec reaches the worker as a file (issue 14 item 7): its pods' own annotation, mounted by
the downward API (contract.spec_volume), so the Job is the one object a job start makes and no
object made by someone else can stand in for the spec."""

from __future__ import annotations

import json

from roboaug.api.contract import SPEC_ANNOTATION, SPEC_ANNOTATION_MAX_BYTES
from roboaug.operator.config import parse_config
from roboaug.operator.decision import Observed
from roboaug.operator.reconcile import decide

from tests.operator._operator_factories import at, cr

CFG = parse_config({})


def _spec_of(job: dict) -> dict:
    return json.loads(job["spec"]["template"]["metadata"]["annotations"][SPEC_ANNOTATION])


def test_a_new_job_carries_its_spec_in_its_pods_annotation_and_mounts_it():
    plan = decide(Observed(cr=cr(), now=at(1)), CFG)
    spec = _spec_of(plan.create_job)
    assert spec["dataset_id"] == "lerobot/pusht" and spec["output_dataset_id"].startswith("lerobot/pusht-augmented-")
    pod = plan.create_job["spec"]["template"]["spec"]
    [volume] = [v for v in pod["volumes"] if "downwardAPI" in v]
    assert volume["downwardAPI"]["items"][0]["fieldRef"]["fieldPath"] == f"metadata.annotations['{SPEC_ANNOTATION}']"


def test_a_large_allowed_spec_travels_whole():
    # 16 prompts of 2000 characters, 6 of them two bytes each: ~44 KiB, whole in the annotation
    c = cr()
    c["spec"]["cosmos_prompts"] = [f"{i}" * 2000 for i in range(10)] + ["\u00e9" * 2000] * 6
    plan = decide(Observed(cr=c, now=at(1)), CFG)
    assert _spec_of(plan.create_job)["cosmos_prompts"] == c["spec"]["cosmos_prompts"]


def test_a_spec_too_heavy_for_the_annotation_fails_the_job_naming_its_size():
    # the bounds count characters: prompts at their longest, each character a control one that
    # JSON writes as 6 bytes, pass them (~216 KB)
    c = cr()
    c["spec"]["cosmos_prompts"] = ["\x01" * 2000] * 16
    c["spec"]["cosmos_prompt"] = "\x01" * 4000
    plan = decide(Observed(cr=c, now=at(1)), CFG)
    assert plan.create_job is None and plan.finished == "failed"
    error = plan.new_status["error"]
    assert error.startswith("spec: ") and f"more than the {SPEC_ANNOTATION_MAX_BYTES}" in error
