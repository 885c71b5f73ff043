"""The workers' shared identity (operator/access.py) under the worker policy
(roboaug.api.admission.build_worker_policy), through a real kube-apiserver: a worker pod's token
writes the status of its own AugmentationJob and of no other."""

from __future__ import annotations

import re
import time
import uuid

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from roboaug.api import admission
from roboaug.api.contract import MAX_CR_NAME_LENGTH, WORKER_SERVICE_ACCOUNT
from roboaug.api.models import GROUP, KIND, PLURAL, VERSION
from roboaug.operator.access import worker_identity
from roboaug.operator.jobs import cleanup_name, finalize_name, job_name

# Tests that use the `cluster` fixture are marked `cluster` by tests/conftest.py.


def test_the_pod_pattern_takes_a_crs_pods_and_no_other():
    """The policy's pattern, as Python's re (CEL's matches is RE2: the same here)."""
    expr = admission.build_worker_policy()["spec"]["validations"][0]["expression"]
    # p.matches('<head>' + object.metadata.name.replace('.', '\\.') + '<tail>'): head and tail as
    # the policy writes them; the name escaped the way its replace() does
    head, tail = re.search(r"p\.matches\('(.*?)' \+ object\.metadata\.name\.replace\('\.', '\\\\\.'\) "
                           r"\+ '(.*?)'\)\)$", expr).groups()

    def pattern(name: str) -> str:
        return head + name.replace(".", "\\.") + tail

    assert re.match(pattern("a"), "a-worker-0-x7k2p")
    assert re.match(pattern("a"), "a-finalize-0-x7k2p") and re.match(pattern("a"), "a-cleanup-0-x7k2p")
    assert re.match(pattern("a"), "a-worker-9999-x7k2p")  # a shard
    assert not re.match(pattern("a"), "a-worker-1-worker-0-x7k2p")  # the pod of CR `a-worker-1`
    assert not re.match(pattern("a.b"), "aXb-worker-0-x7k2p")  # a dot is a dot
    assert not re.match(pattern("a"), "ab-worker-0-x7k2p")
    # the longest name keeps its pods' names whole: the job controller cuts at 58 + 5 random
    longest = "n" * MAX_CR_NAME_LENGTH
    for name in (job_name(longest), finalize_name(longest), cleanup_name(longest)):
        assert name.startswith(longest + "-") and len(f"{name}-9999-") <= 58


def _create_pod(k8s, ns: str, name: str) -> dict:
    body = {"metadata": {"name": name},
            "spec": {"serviceAccountName": WORKER_SERVICE_ACCOUNT, "restartPolicy": "Never",
                     # no node has it: the pod stays Pending, which a bound token does not mind
                     "nodeSelector": {"roboaug.dev/test-nowhere": "true"},
                     "containers": [{"name": "w", "image": "example.invalid/none"}]}}
    return k8s.api.sanitize_for_serialization(k8s.core.create_namespaced_pod(ns, body))


def _token_client(k8s, ns: str, pod: dict | None) -> client.ApiClient:
    spec = {"audiences": [], "expirationSeconds": 600}
    if pod is not None:
        spec["boundObjectRef"] = {"apiVersion": "v1", "kind": "Pod", "name": pod["metadata"]["name"],
                                  "uid": pod["metadata"]["uid"]}
    tok = k8s.core.create_namespaced_service_account_token(WORKER_SERVICE_ACCOUNT, ns, {"spec": spec})
    admin = k8s.api.configuration
    cfg = client.Configuration(host=admin.host, api_key={"authorization": tok.status.token},
                               api_key_prefix={"authorization": "Bearer"})
    cfg.ssl_ca_cert = admin.ssl_ca_cert
    api = client.ApiClient(cfg)
    who = client.AuthenticationV1Api(api).create_self_subject_review(
        {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}).status.user_info
    assert who.username == f"system:serviceaccount:{ns}:{WORKER_SERVICE_ACCOUNT}"
    return api


def _patch_progress(api: client.ApiClient, ns: str, name: str) -> None:
    client.CustomObjectsApi(api).patch_namespaced_custom_object_status(
        GROUP, VERSION, ns, PLURAL, name, {"status": {"progress": {"phase": "augmenting", "updated_at": "2026-12-02T00:00:00Z"}}},
        _content_type="application/merge-patch+json")


def test_a_worker_writes_its_own_jobs_status_only(cluster, crd, k8s, namespace):
    cluster.kubectl("apply", "-f", str(admission.WORKER_MANIFEST_PATH))
    for obj in worker_identity(namespace):  # as the operator makes them
        k8s.api.call_api(*k8s.api.param_serialize(
            "POST", f"/api/v1/namespaces/{namespace}/serviceaccounts" if obj["kind"] == "ServiceAccount"
            else f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/{obj['kind'].lower()}s",
            header_params={"Content-Type": "application/json"}, body=obj, auth_settings=["BearerToken"])
        ).read()
    for name in ("job-a", "job-b", "job-a-worker-1"):
        k8s.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "metadata": {"name": name},
            "spec": {"project_id": str(uuid.uuid4()), "dataset_id": "lerobot/pusht"}})
    pod_a = _create_pod(k8s, namespace, "job-a-worker-0-x7k2p")
    pod_a_shard = _create_pod(k8s, namespace, "job-a-finalize-0-q9z8w")
    pod_tricky = _create_pod(k8s, namespace, "job-a-worker-1-worker-0-m3n4b")  # CR job-a-worker-1's

    def refused(api, name: str) -> str:
        with pytest.raises(ApiException) as e:
            _patch_progress(api, namespace, name)
        assert e.value.status == 403, e.value.body
        return e.value.body

    with _token_client(k8s, namespace, None) as api:  # a token bound to no pod
        # the apiserver applies a policy a moment after it is created
        deadline = time.monotonic() + 10
        while True:
            try:
                _patch_progress(api, namespace, "job-a")
            except ApiException as e:
                assert e.status == 403, e.body
                assert "a token bound to no pod does not run job-a" in e.body
                break
            assert time.monotonic() < deadline, "the worker policy was never applied: " + cluster.kubectl(
                "get", "validatingadmissionpolicies,validatingadmissionpolicybindings", "-o", "yaml").stdout
            time.sleep(0.2)
    with _token_client(k8s, namespace, pod_a) as api_a:
        assert "a worker may write the status of its own AugmentationJob only: pod job-a-worker-0-x7k2p " \
               "does not run job-b" in refused(api_a, "job-b")
        _patch_progress(api_a, namespace, "job-a")  # its own: admitted
        assert "does not run job-a-worker-1" in refused(api_a, "job-a-worker-1")
    with _token_client(k8s, namespace, pod_a_shard) as api:
        _patch_progress(api, namespace, "job-a")  # the finalize pod of the same job
        refused(api, "job-b")
    with _token_client(k8s, namespace, pod_tricky) as api:
        _patch_progress(api, namespace, "job-a-worker-1")
        refused(api, "job-a")  # its name starts with job-a-worker-: still not job-a's pod
    got = k8s.custom.get_namespaced_custom_object_status(GROUP, VERSION, namespace, PLURAL, "job-b")
    assert "progress" not in (got.get("status") or {})


def test_a_cr_name_too_long_for_its_pods_is_refused(cluster, crd, k8s, namespace):
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND,
            "spec": {"project_id": str(uuid.uuid4()), "dataset_id": "lerobot/pusht"}}
    k8s.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, dict(
        body, metadata={"name": "n" * MAX_CR_NAME_LENGTH}))
    with pytest.raises(ApiException) as e:
        k8s.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, dict(
            body, metadata={"name": "n" * (MAX_CR_NAME_LENGTH + 1)}))
    assert e.value.status == 422
    assert f"metadata.name: at most {MAX_CR_NAME_LENGTH} characters" in e.value.body
