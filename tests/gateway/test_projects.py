"""POST under an AugmentationProject: effective spec, per-field sources, 403/422 naming field and policy."""

from __future__ import annotations

import json
import uuid

from tests.gateway.gateway_helpers import BOUND_KEY, PROJECT, minimal_body, post_job
from roboaug.api.gateway.service import ANNOTATION_SPEC_SOURCES
from roboaug.api.models import cr_name

TEAM_B = {
    "allowed_sources": ["team-b", "lerobot/pusht"],
    "allowed_outputs": ["team-b"],
    "hub_token_secret": {"name": "team-b-hf-token", "key": "token"},
    "defaults": {"augment_copies": 2, "output_visibility": "public"},
    "limits": {"max_copies": 4},
}


def as_project_b(client):
    client.headers["x-api-key"] = BOUND_KEY  # bound to PROJECT only
    return client


def test_bound_key_cannot_write_into_another_org(client, store):
    store.put_project(PROJECT, TEAM_B)
    r = post_job(as_project_b(client), minimal_body(dataset_id="team-b/src", output_dataset_id="acme/leak"))
    assert r.status_code == 403, r.text
    detail = r.json()["detail"]
    assert "output_dataset_id" in detail and "acme/leak" in detail and "allowed_outputs" in detail
    assert store.jobs == {}


def test_bound_key_cannot_read_a_source_outside_the_patterns(client, store):
    store.put_project(PROJECT, TEAM_B)
    r = post_job(as_project_b(client), minimal_body(dataset_id="acme/private", output_dataset_id="team-b/out"))
    assert r.status_code == 403, r.text
    assert "dataset_id" in r.json()["detail"] and "allowed_sources" in r.json()["detail"]
    assert store.jobs == {}


def test_default_output_name_outside_the_project_is_refused(client, store):
    store.put_project(PROJECT, TEAM_B)
    r = post_job(as_project_b(client), minimal_body(dataset_id="lerobot/pusht"))  # -> lerobot/pusht-augmented-*
    assert r.status_code == 403, r.text
    assert "default output name" in r.json()["detail"]


def test_file_urls_refused_unless_the_project_allows_their_root(client, store):
    store.put_project(PROJECT, TEAM_B)
    body = minimal_body(dataset_id="file:///etc/secrets", output_dataset_id="team-b/out")
    r = post_job(as_project_b(client), body)
    assert r.status_code == 403 and "file_access.allowed" in r.json()["detail"], r.text
    store.put_project(PROJECT, TEAM_B | {"file_access": {"allowed": True, "roots": ["/data/team-b"]}})
    r = post_job(client, body)
    assert r.status_code == 403 and "file_access.roots" in r.json()["detail"], r.text
    r = post_job(client, minimal_body(dataset_id="file:///data/team-b/src", output_dataset_id="team-b/out"))
    assert r.status_code == 201, r.text


def test_limit_is_422_naming_field_and_policy(client, store):
    store.put_project(PROJECT, TEAM_B)
    r = post_job(as_project_b(client), minimal_body(dataset_id="team-b/src", augment_copies=5))
    assert r.status_code == 422, r.text
    [item] = r.json()["detail"]
    assert item["loc"] == ["body", "augment_copies"] and item["type"] == "project_policy.limits.max_copies"
    assert "limits.max_copies" in item["msg"] and "5" in item["msg"]
    assert store.jobs == {}


def test_effective_spec_and_sources_are_written_into_the_cr(client, store):
    store.put_project(PROJECT, TEAM_B)
    r = post_job(as_project_b(client), minimal_body(dataset_id="team-b/src", augment_seed=7))
    assert r.status_code == 201, r.text
    cr = store.jobs[cr_name(uuid.UUID(r.json()["job_id"]))]
    spec = cr["spec"]
    assert spec["augment_copies"] == 2 and spec["output_visibility"] == "public"  # project defaults
    assert spec["augment_seed"] == 7 and spec["augment_mode"] == "stacked"
    assert spec["hub_token_secret"] == {"name": "team-b-hf-token", "key": "token"}  # the project's, by reference
    sources = json.loads(cr["metadata"]["annotations"][ANNOTATION_SPEC_SOURCES])
    assert sources["augment_copies"] == sources["output_visibility"] == "project"
    assert sources["augment_seed"] == sources["dataset_id"] == "request"
    assert sources["augment_mode"] == "default"


def test_request_value_overrides_the_project_default(client, store):
    store.put_project(PROJECT, TEAM_B)
    r = post_job(client, minimal_body(dataset_id="team-b/src", augment_copies=4, output_visibility="private"))
    assert r.status_code == 201, r.text
    cr = store.jobs[cr_name(uuid.UUID(r.json()["job_id"]))]
    assert cr["spec"]["augment_copies"] == 4 and cr["spec"]["output_visibility"] == "private"
    sources = json.loads(cr["metadata"]["annotations"][ANNOTATION_SPEC_SOURCES])
    assert sources["augment_copies"] == sources["output_visibility"] == "request"


def test_project_default_clashing_with_the_request_is_422(client, store):
    store.put_project(PROJECT, TEAM_B | {"defaults": {"augment_brightness_min": 10}})
    r = post_job(client, minimal_body(dataset_id="team-b/src", augment_brightness_max=5))
    assert r.status_code == 422, r.text
    [item] = r.json()["detail"]
    assert item["loc"] == ["body", "augment_brightness_max"] and "project's defaults" in item["msg"]


def test_without_a_project_resource_the_builtin_defaults_apply(client, store):
    r = post_job(client, minimal_body(output_dataset_id="anyone/out"))
    assert r.status_code == 201, r.text
    cr = store.jobs[cr_name(uuid.UUID(r.json()["job_id"]))]
    assert cr["spec"]["hub_token_secret"] == {"name": "hf-token", "key": "token"}  # the gateway's setting
    sources = json.loads(cr["metadata"]["annotations"][ANNOTATION_SPEC_SOURCES])
    assert {k for k, v in sources.items() if v != "default"} == {"project_id", "dataset_id", "output_dataset_id"}


def test_unreadable_project_fails_closed(client, store):
    store.put_project(PROJECT, TEAM_B)
    store.projects[PROJECT]["spec"]["allowed_outputs"] = []  # what a schema drift would leave
    r = post_job(client, minimal_body(dataset_id="team-b/src", output_dataset_id="acme/leak"))
    assert r.status_code == 500 and store.jobs == {}


# -- a project_id with no AugmentationProject: ROBOAUG_GATEWAY_JOBS_WITHOUT_PROJECT ----------------
DEFAULT = "5d1e6c1a-3f7b-4c2e-9a0d-2b8e4f6a7c90"
SANDBOX = {"allowed_sources": ["lerobot"], "allowed_outputs": ["sandbox"],
           "hub_token_secret": {"name": "sandbox-hf-token", "key": "token"},
           "defaults": {"augment_copies": 2}, "limits": {"max_copies": 3}}


def gateway(settings, store, **unbound):
    from fastapi.testclient import TestClient

    from roboaug.api.gateway import create_app
    from roboaug.api.gateway.auth import KeyRing

    s = settings.model_copy(update=unbound)
    s.unbound()
    client = TestClient(create_app(s, store, KeyRing(s.api_keys_file, 0)), raise_server_exceptions=False)
    client.headers["x-api-key"] = BOUND_KEY
    return client


def test_refuse_answers_403_naming_project_id_and_the_setting(settings, store):
    client = gateway(settings, store, jobs_without_project="refuse")
    r = post_job(client, minimal_body(output_dataset_id="anyone/out"))
    assert r.status_code == 403, r.text
    detail = r.json()["detail"]
    assert f"no AugmentationProject {PROJECT} exists in namespace roboaug-test" in detail
    assert "jobs_without_project.action: refuse" in detail and store.jobs == {}
    # the project exists: its policy, as ever
    store.put_project(PROJECT, TEAM_B)
    assert post_job(client, minimal_body(dataset_id="team-b/src")).status_code == 201


def test_default_applies_the_default_projects_policy_defaults_and_token(settings, store):
    client = gateway(settings, store, jobs_without_project="default", default_project=uuid.UUID(DEFAULT))
    store.put_project(DEFAULT, SANDBOX)
    r = post_job(client, minimal_body(output_dataset_id="acme/leak"))
    assert r.status_code == 403 and "allowed_outputs" in r.json()["detail"], r.text
    r = post_job(client, minimal_body(augment_copies=4, output_dataset_id="sandbox/out"))
    assert r.status_code == 422 and "limits.max_copies" in r.text
    r = post_job(client, minimal_body(output_dataset_id="sandbox/out"))
    assert r.status_code == 201, r.text
    cr = store.jobs[cr_name(uuid.UUID(r.json()["job_id"]))]
    assert cr["spec"]["project_id"] == PROJECT and cr["spec"]["augment_copies"] == 2
    assert cr["spec"]["hub_token_secret"] == {"name": "sandbox-hf-token", "key": "token"}
    assert cr["metadata"]["labels"]["roboaug.dev/default-project"] == DEFAULT
    sources = json.loads(cr["metadata"]["annotations"][ANNOTATION_SPEC_SOURCES])
    assert sources["augment_copies"] == "project"


def test_default_fails_closed_while_the_default_project_is_missing(settings, store):
    client = gateway(settings, store, jobs_without_project="default", default_project=uuid.UUID(DEFAULT))
    r = post_job(client, minimal_body(output_dataset_id="sandbox/out"))
    assert r.status_code == 503, r.text
    assert f"default project {DEFAULT}" in r.json()["detail"] and store.jobs == {}


def test_allow_keeps_the_builtin_defaults_and_no_label(settings, store):
    client = gateway(settings, store, jobs_without_project="allow")
    r = post_job(client, minimal_body(output_dataset_id="anyone/out"))
    assert r.status_code == 201, r.text
    cr = store.jobs[cr_name(uuid.UUID(r.json()["job_id"]))]
    assert "roboaug.dev/default-project" not in cr["metadata"]["labels"]


def test_default_without_a_project_uuid_is_refused_at_start(settings):
    import pytest
    from pydantic import ValidationError

    from roboaug.api.gateway.settings import Settings

    with pytest.raises(ValidationError, match="ROBOAUG_GATEWAY_JOBS_WITHOUT_PROJECT.*action `default` needs"):
        Settings(namespace="x", store="memory", jobs_without_project="default")
    with pytest.raises(ValidationError, match="only used with action `default`"):
        Settings(namespace="x", store="memory", jobs_without_project="refuse", default_project=DEFAULT)


def test_shards_above_the_projects_max_shards_is_422_naming_field_and_policy(client, store):
    store.put_project(PROJECT, TEAM_B | {"limits": {"max_shards": 4}})
    r = post_job(as_project_b(client), minimal_body(dataset_id="team-b/src", output_dataset_id="team-b/out", shards=5))
    assert r.status_code == 422, r.text
    [item] = r.json()["detail"]
    assert item["loc"] == ["body", "shards"] and item["type"] == "project_policy.limits.max_shards"
    assert "5 shards" in item["msg"] and "limits.max_shards (4)" in item["msg"]
    assert store.jobs == {}
    r = post_job(client, minimal_body(dataset_id="team-b/src", output_dataset_id="team-b/out", shards=4))
    assert r.status_code == 201, r.text
