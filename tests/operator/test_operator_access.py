"""Each worker's own identity (access.py), and how the operator creates it, without a cluster."""
import asyncio

import pytest

from roboaug.operator.access import worker_access
from roboaug.operator.kube import ApiError, Kube
from roboaug.operator.decision import Observed
from roboaug.operator.observe import summarize_cr
from roboaug.operator.reconcile import decide

from tests.operator._operator_factories import CR_UID, at, cr
from tests.operator.test_operator_controller import FakeKube, _controller, _cr
from tests.operator.test_operator_steps import CFG


def test_the_worker_may_patch_only_its_own_jobs_status():
    sa, role, binding = worker_access(cr(name="aug-demo"))
    assert [o["kind"] for o in (sa, role, binding)] == ["ServiceAccount", "Role", "RoleBinding"]
    for o in (sa, role, binding):
        assert (o["metadata"]["name"], o["metadata"]["namespace"]) == ("aug-demo-worker", "ns1")
        # owned by the CR: the garbage collector deletes them with it
        assert o["metadata"]["ownerReferences"] == [{
            "apiVersion": "roboaug.dev/v1alpha1", "kind": "AugmentationJob", "name": "aug-demo",
            "uid": CR_UID, "controller": True}]
    assert role["rules"] == [{"apiGroups": ["roboaug.dev"], "resources": ["augmentationjobs/status"],
                              "resourceNames": ["aug-demo"], "verbs": ["patch"]}]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "aug-demo-worker"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "aug-demo-worker", "namespace": "ns1"}]


def test_a_new_job_plans_its_workers_identity_and_runs_under_it():
    plan = decide(Observed(cr=cr(), now=at(1)), CFG)
    assert [o["kind"] for o in plan.create_first if o["kind"] != "ConfigMap"] == ["ServiceAccount", "Role", "RoleBinding"]
    assert plan.create_job["spec"]["template"]["spec"]["serviceAccountName"] == plan.create_first[0]["metadata"]["name"]


class _RecordingKube(FakeKube):
    def patch_cr_status(self, ns, name, status, rv):
        self.__dict__.setdefault("statuses", []).append(status)
        return super().patch_cr_status(ns, name, status, rv)


def test_the_controller_creates_the_identity_before_the_job_and_a_clash_fails_the_job():
    kube = FakeKube()
    ctl = _controller(kube)
    body = _cr("aug-a")
    ctl._cr = lambda key: summarize_cr(body)
    asyncio.run(ctl.reconcile(("ns1", "aug-a")))
    # what grants nothing goes at once; the binding once its ServiceAccount and Role are ours
    assert sorted(k for k, *_ in kube.owned[:3]) == ["ConfigMap", "Role", "ServiceAccount"]
    assert kube.owned[3:] == [("RoleBinding", "aug-a-worker", False)]
    assert not [o for o in kube.owned if o[2]]  # every object the Job needs comes before it
    assert [c for c, _ in kube.calls if c.startswith("create")] == ["create aug-a-worker"]

    kube = _RecordingKube()
    kube.owned_clash = {"Role": "a Role named aug-b-worker already exists and is not owned by this AugmentationJob"}
    ctl = _controller(kube)
    body = _cr("aug-b")
    ctl._cr = lambda key: summarize_cr(body)
    asyncio.run(ctl.reconcile(("ns1", "aug-b")))
    # stops at the clash: nothing binds rules that are not ours
    assert sorted(k for k, *_ in kube.owned) == ["ConfigMap", "Role", "ServiceAccount"]
    assert not [c for c in kube.calls if c[0].startswith("create")]  # no Job runs under another's identity
    assert kube.statuses[-1]["status"] == "failed"
    assert "a Role named aug-b-worker already exists" in kube.statuses[-1]["error"]


class _Api:
    """Answers Kube.request like the apiserver would, from a table of objects."""

    def __init__(self, existing):
        self.existing = existing  # path -> body

    def __call__(self, method, path, body=None, query=None, content_type=None, resource="?"):
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


SA_PATH = "/api/v1/namespaces/ns1/serviceaccounts/aug-demo-worker"
ROLE_PATH = "/apis/rbac.authorization.k8s.io/v1/namespaces/ns1/roles/aug-demo-worker"


def test_ensure_owned_creates_adopts_ours_refuses_anothers_and_waits_for_a_predecessors():
    sa = worker_access(cr())[0]
    assert _kube({}).ensure_owned("ns1", sa) is None  # created
    assert _kube({SA_PATH: sa}).ensure_owned("ns1", sa) is None  # ours, from before a restart
    role = worker_access(cr())[1]
    wider = dict(role, rules=[dict(role["rules"][0], resourceNames=[])])  # our owner, copied; other rules
    assert "other contents" in _kube({ROLE_PATH: wider}).ensure_owned("ns1", role)
    foreign = {"metadata": {"name": "aug-demo-worker"}}
    assert "not owned by this AugmentationJob" in _kube({SA_PATH: foreign}).ensure_owned("ns1", sa)
    other_cr = cr()
    other_cr["metadata"]["uid"] = "an-earlier-cr-of-the-same-name"
    with pytest.raises(ApiError, match="earlier AugmentationJob"):  # retried until the GC removes it
        _kube({SA_PATH: worker_access(other_cr)[0]}).ensure_owned("ns1", sa)
