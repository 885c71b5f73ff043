"""The gateway's real path: KubernetesStore against a real kube-apiserver with the generated CRD.

Uses the `cluster`, `namespace` and `crd` fixtures of tests/conftest.py (they skip, with the
reason, when no control plane can be had).
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from fastapi.testclient import TestClient

from tests.gateway.gateway_helpers import ADMIN_KEY, minimal_body, post_job, seed_body_text
from roboaug.api.gateway import create_app, service
from roboaug.api.gateway.auth import KeyRing
from roboaug.api.gateway.settings import Settings
from roboaug.api.gateway.store import Invalid, KubernetesStore, Unavailable
from roboaug.api.models import GROUP, LABEL_JOB_ID, LABEL_PROJECT_ID, PLURAL, VERSION, AugmentationJobCreateRequest, cr_name

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def kstore(cluster, namespace, crd):
    api = cluster.api_client()
    store = KubernetesStore(namespace, api, timeout=20)
    yield store
    store.close()


def make_client(kstore, keys_file) -> TestClient:
    settings = Settings(namespace=kstore.namespace, api_keys_file=keys_file, hub_token_secret_name="hf-token")
    app = create_app(settings, kstore, KeyRing(keys_file, 0))
    client = TestClient(app, raise_server_exceptions=False)
    client.headers["x-api-key"] = ADMIN_KEY
    return client


@pytest.fixture
def kclient(kstore, keys_file):
    with make_client(kstore, keys_file) as c:
        yield c


def get_cr(k8s, namespace, name):
    return k8s.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)


def test_post_creates_a_cr_the_apiserver_and_kubectl_see(cluster, kclient, k8s, namespace):
    r = kclient.post("/v1/augmentation", content=seed_body_text(), headers={"Content-Type": "application/json"})
    assert r.status_code == 201, r.text
    job_id = r.json()["job_id"]
    cr = get_cr(k8s, namespace, cr_name(job_id))
    assert cr["metadata"]["labels"][LABEL_JOB_ID] == job_id
    assert cr["metadata"]["labels"][LABEL_PROJECT_ID] == "2489e9ad-2ee2-8e00-8ec9-32d5f69181c0"
    assert cr["spec"]["job_id"] == job_id and cr["spec"]["augment_copies_per_transform"] == {"additionalProperty": 1}
    assert cr["spec"]["hub_token_secret"] == {"name": "hf-token", "key": "token"}
    out = cluster.kubectl("get", "augmentationjobs", "-n", namespace, "-l", f"{LABEL_JOB_ID}={job_id}", "-o", "json")
    items = json.loads(out.stdout)["items"]
    assert [i["metadata"]["name"] for i in items] == [cr_name(job_id)]
    # GET before the operator wrote a status: queued, created_at from the CR's metadata
    body = kclient.get(f"/v1/augmentation/{job_id}").json()
    assert body["status"] == "queued" and body["current_phase"] == "queued" and body["phases"] == []
    assert body["created_at"].replace("Z", "+00:00") == cr["metadata"]["creationTimestamp"].replace("Z", "+00:00")


def test_get_reflects_a_status_patched_into_the_status_subresource(kclient, k8s, namespace):
    job_id = post_job(kclient).json()["job_id"]
    status = {
        "job_id": job_id, "current_phase": "augmenting", "status": "running", "instance_type": "c7i.4xlarge",
        "region": "local", "error": None, "augmented_dataset_id": None, "created_at": "2025-03-01T10:00:00Z",
        "phases": [{"name": "queued", "status": "completed", "started_at": "2025-03-01T10:00:00Z",
                    "completed_at": "2025-03-01T10:00:01Z",
                    "events": [{"status": "created", "message": "accepted", "error": None,
                                "timestamp": "2025-03-01T10:00:00Z", "retry_attempt": 0,
                                "data": {"node": "local-0"}}]},
                   {"name": "augmenting", "status": "in_progress", "started_at": "2025-03-01T10:00:05Z",
                    "completed_at": None, "events": []}],
        "attempt": 0, "job_name": "aug-job-0",
    }
    k8s.custom.patch_namespaced_custom_object_status(GROUP, VERSION, namespace, PLURAL, cr_name(job_id),
                                                      {"status": status})
    body = kclient.get(f"/v1/augmentation/{job_id}").json()
    expected = {k: v for k, v in status.items() if k not in {"attempt", "job_name"}}
    # fields the operator has not written yet: revisions unknown, the effective spec and its
    # sources from the CR's spec and the gateway's annotation
    derived = {k: body.pop(k) for k in ("source_revision", "augmented_dataset_revision", "effective_spec", "spec_sources",
                                        "progress")}
    assert derived["progress"] is None  # no worker report in this status yet
    assert body == expected
    assert derived["source_revision"] is None and derived["augmented_dataset_revision"] is None
    assert derived["effective_spec"]["dataset_id"] == "lerobot/pusht"
    assert derived["spec_sources"]["dataset_id"] == "request" and derived["spec_sources"]["augment_copies"] == "default"


def test_apiserver_itself_refuses_an_invalid_cr(cluster, k8s, namespace):
    from kubernetes.client.exceptions import ApiException

    req = AugmentationJobCreateRequest.model_validate(minimal_body())
    bad = service.build_cr(req, uuid.uuid4())
    bad["spec"]["augment_brightness_min"], bad["spec"]["augment_brightness_max"] = 20, 10
    with pytest.raises(ApiException) as info:
        k8s.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, bad)
    assert info.value.status == 422
    assert "augment_brightness_min must be <= augment_brightness_max" in json.loads(info.value.body)["message"]
    # the same through kubectl
    bad["metadata"]["name"] = "kubectl-bad"
    bad["spec"]["augment_transforms"] = "lighting,sparkle"
    out = cluster.kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(bad), check=False)
    assert out.returncode != 0
    assert "augment_transforms" in out.stderr
    # inplace takes one version per episode: a per-transform count other than 1 is refused too
    bad["metadata"]["name"] = "kubectl-inplace"
    bad["spec"].update(augment_transforms="lighting,noise", augment_mode="independent",
                       augment_dataset_mode="inplace", augment_copies_per_transform={"noise": 2})
    out = cluster.kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(bad), check=False)
    assert out.returncode != 0
    assert "augment_copies_per_transform: in inplace mode" in out.stderr
    assert k8s.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"] == []


def test_store_translates_an_apiserver_refusal_to_invalid(kstore):
    req = AugmentationJobCreateRequest.model_validate(minimal_body())
    bad = service.build_cr(req, uuid.uuid4())
    bad["spec"]["blur_motion_kernel_min"] = 6
    with pytest.raises(Invalid) as info:
        kstore.create_job(bad)
    assert "blur_motion_kernel_min" in str(info.value)


def test_idempotency_lives_on_the_cr_itself(kstore, keys_file, k8s, namespace):
    with make_client(kstore, keys_file) as c1:
        first = post_job(c1, minimal_body(), **{"Idempotency-Key": "cluster-key"})
    assert first.status_code == 201
    job_id = first.json()["job_id"]
    ann = get_cr(k8s, namespace, cr_name(job_id))["metadata"]["annotations"]
    assert ann[service.ANNOTATION_IDEMPOTENCY_KEY] == service.idempotency_record_id(
        uuid.UUID(minimal_body()["project_id"]), "cluster-key")
    assert ann[service.ANNOTATION_REQUEST_DIGEST] == service.fingerprint(
        AugmentationJobCreateRequest.model_validate(minimal_body()))
    assert "cluster-key" not in json.dumps(ann)  # only a digest of the key is kept
    expires = datetime.fromisoformat(ann[service.ANNOTATION_IDEMPOTENCY_EXPIRES].replace("Z", "+00:00"))
    assert expires - datetime.now(timezone.utc) > timedelta(hours=23, minutes=59)
    # a new gateway (new process state, new API client) on the same cluster replays it
    fresh = KubernetesStore(namespace, kstore.api_client, timeout=20)
    with make_client(fresh, keys_file) as c2:
        again = post_job(c2, minimal_body(), **{"Idempotency-Key": "cluster-key"})
        other = post_job(c2, minimal_body(augment_copies=7), **{"Idempotency-Key": "cluster-key"})
    assert again.status_code == 201 and again.json()["job_id"] == job_id
    assert again.headers["Idempotent-Replayed"] == "true"
    assert other.status_code == 422
    assert len(k8s.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"]) == 1
    # nothing but the CR: no ConfigMap (the gateway may not touch any)
    assert [cm.metadata.name for cm in k8s.core.list_namespaced_config_map(namespace).items
            if cm.metadata.name != "kube-root-ca.crt"] == []
    # the key lives as long as its CR: deleted (project TTL, kubectl), the key makes a new job
    k8s.custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, cr_name(job_id))
    with make_client(fresh, keys_file) as c3:
        after = post_job(c3, minimal_body(augment_copies=7), **{"Idempotency-Key": "cluster-key"})
    assert after.status_code == 201 and after.headers["Idempotent-Replayed"] == "false"


def test_list_pages_and_filters_on_the_real_apiserver(kclient, k8s, namespace):
    ids = sorted(post_job(kclient).json()["job_id"] for _ in range(5))
    k8s.custom.patch_namespaced_custom_object_status(GROUP, VERSION, namespace, PLURAL, cr_name(ids[1]),
                                                      {"status": {"status": "failed", "current_phase": "failed"}})
    seen, cursor, pages = [], None, 0
    while True:
        r = kclient.get("/v1/augmentation?limit=2" + (f"&cursor={cursor}" if cursor else ""))
        assert r.status_code == 200, r.text
        seen += [i["job_id"] for i in r.json()["items"]]
        cursor, pages = r.json()["next_cursor"], pages + 1
        if not cursor:
            break
    assert seen == ids and pages == 3
    failed = kclient.get("/v1/augmentation?status=failed&limit=1").json()
    assert [i["job_id"] for i in failed["items"]] == [ids[1]]
    queued = kclient.get("/v1/augmentation?status=queued&limit=3").json()
    assert [i["job_id"] for i in queued["items"]] == [ids[0], ids[2], ids[3]]
    rest = kclient.get(f"/v1/augmentation?status=queued&limit=3&cursor={queued['next_cursor']}").json()
    assert [i["job_id"] for i in rest["items"]] == [ids[4]] and rest["next_cursor"] is None


def test_cancel_patches_the_cr(kclient, k8s, namespace):
    job_id = post_job(kclient).json()["job_id"]
    r = kclient.post(f"/v1/augmentation/{job_id}/cancel")
    assert r.status_code == 200 and r.json()["job_id"] == job_id
    cr = get_cr(k8s, namespace, cr_name(job_id))
    assert cr["spec"]["cancel_requested"] is True
    assert kclient.post(f"/v1/augmentation/{job_id}/cancel").status_code == 200
    assert kclient.get(f"/v1/augmentation/{uuid.uuid4()}").status_code == 404


def test_get_finds_a_kubectl_applied_cr_by_its_job_id_label(cluster, kclient, namespace):
    job_id = str(uuid.uuid4())
    req = AugmentationJobCreateRequest.model_validate(minimal_body())
    cr = service.build_cr(req, uuid.UUID(job_id))
    cr["metadata"]["name"] = "my-own-name"
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(cr))
    assert kclient.get(f"/v1/augmentation/{job_id}").json()["job_id"] == job_id


def test_readyz_checks_the_apiserver(kclient, kstore, keys_file):
    assert kclient.get("/readyz").json() == {"status": "ready"}
    from kubernetes import client

    cfg = client.Configuration(host="https://127.0.0.1:1")  # nothing listens there
    dead = KubernetesStore(kstore.namespace, client.ApiClient(cfg), timeout=2)
    with pytest.raises(Unavailable):
        dead.ready()
    with make_client(dead, keys_file) as c:
        assert c.get("/readyz").status_code == 503
        assert post_job(c).status_code == 503
