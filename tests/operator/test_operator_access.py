"""The workers' identity of a namespace (access.py), and how the operator makes it, without a cluster."""
import asyncio

from roboaug.api.contract import WORKER_SERVICE_ACCOUNT
from roboaug.operator.access import worker_identity
from roboaug.operator.controller import IDENTITY_RECHECK_S
from roboaug.operator.kube import ApiError, Kube
from roboaug.operator.decision import Observed
from roboaug.operator.observe import summarize_cr
from roboaug.operator.reconcile import decide

from tests.operator._operator_factories import at, cr
from tests.operator.test_operator_controller import FakeKube, _controller, _cr
from tests.operator.test_operator_steps import CFG


def test_the_workers_identity_may_patch_job_status_in_its_namespace():
    sa, role, binding = worker_identity("ns1")
    assert [o["kind"] for o in (sa, role, binding)] == ["ServiceAccount", "Role", "RoleBinding"]
    for o in (sa, role, binding):
        assert (o["metadata"]["name"], o["metadata"]["namespace"]) == ("roboaug-worker", "ns1")
        assert "ownerReferences" not in o["metadata"]  # every job of the namespace uses them
    # patch only, status only; the worker policy (api/admission.py) narrows it to the pod's job
    assert role["rules"] == [{"apiGroups": ["roboaug.dev"], "resources": ["augmentationjobs/status"],
                              "verbs": ["patch"]}]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "roboaug-worker"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "roboaug-worker", "namespace": "ns1"}]


def test_a_new_job_runs_under_the_namespaces_worker_identity():
    plan = decide(Observed(cr=cr(), now=at(1)), CFG)
    assert plan.create_job["spec"]["template"]["spec"]["serviceAccountName"] == WORKER_SERVICE_ACCOUNT


class _RecordingKube(FakeKube):
    def patch_cr_status(self, ns, name, status, rv):
        self.__dict__.setdefault("statuses", []).append(status)
        return super().patch_cr_status(ns, name, status, rv)


def test_the_identity_is_made_once_per_namespace_before_the_first_job_and_a_clash_fails_the_job():
    kube = FakeKube()
    ctl = _controller(kube)
    bodies = {name: _cr(name) for name in ("aug-a", "aug-b")}
    ctl._cr = lambda key: summarize_cr(bodies[key[1]])
    asyncio.run(ctl.reconcile(("ns1", "aug-a")))
    # what grants nothing goes at once; the binding once its ServiceAccount and Role are as rendered
    assert sorted(kube.identity[:2]) == [("Role", "ns1"), ("ServiceAccount", "ns1")]
    assert kube.identity[2:] == [("RoleBinding", "ns1")]
    assert [c for c, _ in kube.calls if c.startswith("create")] == ["create aug-a-worker"]
    asyncio.run(ctl.reconcile(("ns1", "aug-b")))
    assert len(kube.identity) == 3  # not again for the namespace's next job
    assert [c for c, _ in kube.calls if c.startswith("create")] == ["create aug-a-worker", "create aug-b-worker"]

    kube = _RecordingKube()
    kube.same_clash = {"Role": "a Role named roboaug-worker already exists in namespace ns1 with other contents"}
    ctl = _controller(kube)
    body = _cr("aug-c")
    ctl._cr = lambda key: summarize_cr(body)
    asyncio.run(ctl.reconcile(("ns1", "aug-c")))
    # stops at the clash: nothing binds rules that are not ours, no Job runs
    assert sorted(k for k, _ in kube.identity) == ["Role", "ServiceAccount"]
    assert not [c for c in kube.calls if c[0].startswith("create")]
    assert kube.statuses[-1]["status"] == "failed"
    assert "a Role named roboaug-worker already exists" in kube.statuses[-1]["error"]


def test_the_identity_is_checked_again_after_a_while():
    kube = FakeKube()
    now = [at(0)]
    ctl = _controller(kube)
    ctl.clock = lambda: now[0]
    assert asyncio.run(ctl._ensure_identity("ns1")) is None and len(kube.identity) == 3
    now[0] = at(IDENTITY_RECHECK_S - 1)
    asyncio.run(ctl._ensure_identity("ns1"))
    asyncio.run(ctl._ensure_identity("ns2"))  # another namespace has its own
    assert len(kube.identity) == 6
    now[0] = at(IDENTITY_RECHECK_S + 1)
    asyncio.run(ctl._ensure_identity("ns1"))
    assert len(kube.identity) == 9


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


SA_PATH = "/api/v1/namespaces/ns1/serviceaccounts/roboaug-worker"
ROLE_PATH = "/apis/rbac.authorization.k8s.io/v1/namespaces/ns1/roles/roboaug-worker"
BINDING_PATH = "/apis/rbac.authorization.k8s.io/v1/namespaces/ns1/rolebindings/roboaug-worker"


def test_ensure_same_creates_accepts_an_equal_one_and_refuses_other_grants():
    sa, role, binding = worker_identity("ns1")
    existing: dict = {}
    assert _kube(existing).ensure_same("ns1", sa) is None and SA_PATH in existing  # created
    assert _kube({SA_PATH: {"metadata": {"name": "roboaug-worker"}}}).ensure_same("ns1", sa) is None  # made by anyone
    assert _kube({ROLE_PATH: role}).ensure_same("ns1", role) is None  # ours, from before a restart
    wider = dict(role, rules=[dict(role["rules"][0], verbs=["patch", "update", "delete"])])
    assert "other contents" in _kube({ROLE_PATH: wider}).ensure_same("ns1", role)
    elsewhere = dict(binding, subjects=[{"kind": "ServiceAccount", "name": "mallory", "namespace": "ns1"}])
    assert "other contents" in _kube({BINDING_PATH: elsewhere}).ensure_same("ns1", binding)
