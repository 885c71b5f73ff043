"""An AugmentationJob's spec is fixed at creation: only cancel_requested may change, false -> true
(issue 14 item 10). The CRD's transition rules (`crd._immutable`), through the real apiserver and
kubectl, the way users change objects: merge patches, `kubectl apply` of an edited file."""

from __future__ import annotations

import json
import uuid

import pytest
import yaml

from roboaug.api import crd as crd_mod
from roboaug.api.models import AugmentationJobSpec

PROJECT = "2489e9ad-2ee2-8e00-8ec9-32d5f69181c0"
JOB_ID = "8bfd8abc-1111-4222-8333-444455556666"


def test_every_spec_field_but_cancel_requested_has_its_rule():
    rules = {r.get("fieldPath"): r for r in crd_mod.spec_schema()["x-kubernetes-validations"]
             if "oldSelf" in r["rule"]}
    for name in AugmentationJobSpec.model_fields:
        if name in crd_mod.MUTABLE_SPEC_FIELDS:
            assert f".{name}" not in rules, name
            continue
        rule = rules[f".{name}"]["rule"]
        # has() on both sides: a rule on the field alone is skipped when either value is absent
        assert f"has(self.{name}) == has(oldSelf.{name})" in rule and f"self.{name} == oldSelf.{name}" in rule


@pytest.fixture
def job(cluster, crd, namespace):
    """Creates a job (spec as given) and returns a function that merge-patches it with kubectl:
    (ok, stderr)."""
    def create(name: str, **spec):
        body = {"apiVersion": "roboaug.dev/v1alpha1", "kind": "AugmentationJob", "metadata": {"name": name},
                "spec": {"project_id": PROJECT, "dataset_id": "lerobot/pusht", **spec}}
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(body))

        def patch(change: dict) -> tuple[bool, str]:
            p = cluster.kubectl("patch", "-n", namespace, "augmentationjob", name, "--type=merge",
                                "-p", json.dumps(change), check=False)
            return p.returncode == 0, p.stderr

        return body, patch

    return create


def _spec(cluster, namespace, name) -> dict:
    out = cluster.kubectl("get", "-n", namespace, "augmentationjob", name, "-o", "json").stdout
    return json.loads(out)["spec"]


def test_spec_changes_are_refused_naming_the_field(cluster, namespace, job):
    _, patch = job("fixed", job_id=JOB_ID, augment_copies=2)
    before = _spec(cluster, namespace, "fixed")
    for change, field in [
        ({"dataset_id": "lerobot/other"}, "dataset_id"),            # change a value
        ({"augment_copies": 3}, "augment_copies"),
        ({"job_id": None}, "job_id"),                               # remove
        ({"augment_brightness_min": -5}, "augment_brightness_min"),  # add a field the CR lacked
        ({"hub_token_secret": {"name": "other"}}, "hub_token_secret"),
        ({"output_dataset_id": "lerobot/pusht-mine"}, "output_dataset_id"),
    ]:
        ok, err = patch({"spec": change})
        assert not ok, change
        assert f"spec.{field}" in err and "cannot be changed, added or removed after creation" in err, err
    assert _spec(cluster, namespace, "fixed") == before
    # metadata is not the spec
    assert patch({"metadata": {"labels": {"team": "b"}}})[0]


def test_removing_then_adding_back_job_id_is_refused(cluster, namespace, job):
    # the old per-field rule (`self == oldSelf` on job_id) let both steps through
    _, patch = job("readd")
    ok, err = patch({"spec": {"job_id": JOB_ID}})  # a CR created without one cannot get one
    assert not ok and "spec.job_id" in err, err
    _, patch = job("remove", job_id=JOB_ID)
    ok, err = patch({"spec": {"job_id": None}})
    assert not ok and "spec.job_id" in err, err
    assert _spec(cluster, namespace, "remove")["job_id"] == JOB_ID


def test_kubectl_apply_of_an_edited_file_is_refused(cluster, namespace, job):
    body, _ = job("edited", job_id=JOB_ID)
    body["spec"]["augment_transforms"] = "noise"
    p = cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(body), check=False)
    assert p.returncode != 0 and "spec.augment_transforms" in p.stderr, p.stderr


def test_cancel_requested_may_be_set_once_and_nothing_else_with_it(cluster, namespace, job):
    _, patch = job("cancel", job_id=JOB_ID)
    ok, err = patch({"spec": {"cancel_requested": True, "augment_copies": 9}})
    assert not ok and "spec.augment_copies" in err, err
    ok, err = patch({"spec": {"cancel_requested": True}})
    assert ok, err
    assert _spec(cluster, namespace, "cancel")["cancel_requested"] is True
    ok, err = patch({"spec": {"cancel_requested": False}})
    assert not ok and "cancel_requested cannot be undone" in err, err


def test_a_request_id_is_fixed_too(cluster, namespace, job):
    # a random job id each time: nothing here depends on the one above
    _, patch = job("other", job_id=str(uuid.uuid4()))
    ok, err = patch({"spec": {"job_id": str(uuid.uuid4())}})
    assert not ok and "spec.job_id" in err, err
