"""The local Hub test server itself, driven by the real huggingface_hub client where it can be:
the behaviours test_hub.py relies on (auth, pagination, atomic commits, LFS checks)."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import httpx
import pytest


from roboaug.devstack.hubserver import OTHER_TOKEN, READ_TOKEN, WRITE_TOKEN  # noqa: E402
from roboaug.devstack.hubserver.server import INVALID_TOKEN  # noqa: E402
from roboaug.devstack.hubserver.fixtures import TREE_PAGE_SIZE, local_hub, local_hub_session  # noqa: E402,F401

from huggingface_hub import CommitOperationAdd, HfApi  # noqa: E402
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError  # noqa: E402


@pytest.fixture
def api(local_hub):
    return HfApi(endpoint=local_hub.endpoint, token=WRITE_TOKEN)


def test_whoami_knows_the_token_table(local_hub, api):
    assert api.whoami()["auth"]["accessToken"]["role"] == "write"
    assert HfApi(endpoint=local_hub.endpoint, token=READ_TOKEN).whoami()["auth"]["accessToken"]["role"] == "read"
    with pytest.raises(HfHubHTTPError) as err:
        HfApi(endpoint=local_hub.endpoint, token="hf_unknown_token_123456").whoami()
    assert err.value.response.status_code == 401


def test_request_log_names_the_token_user(local_hub, api):
    api.whoami()
    HfApi(endpoint=local_hub.endpoint, token=OTHER_TOKEN).whoami()
    httpx.get(f"{local_hub.endpoint}/api/whoami-v2", headers={"Authorization": "Bearer hf_unknown_token_123456"})
    httpx.get(f"{local_hub.endpoint}/api/whoami-v2")
    users = [r.user for r in local_hub.requests("GET", r"^/api/whoami-v2$")]
    assert users == ["roboaug-test", "someone-else", INVALID_TOKEN, None]


def test_tree_listing_paginates_and_paths_info(local_hub, api):
    files = {f"data/chunk-000/file-{i:03d}.parquet": bytes([i]) * 10 for i in range(TREE_PAGE_SIZE * 2 + 1)}
    files["meta/info.json"] = b"{}"
    local_hub.seed("roboaug-test/tree", files)
    listed = sorted(api.list_repo_files("roboaug-test/tree", repo_type="dataset"))
    assert listed == sorted([*files, ".gitattributes"])
    tree_calls = local_hub.requests("GET", r"/tree/")
    assert len(tree_calls) > 1 and any("cursor=" in r.query for r in tree_calls)  # followed Link: rel="next"
    top = {e.path for e in api.list_repo_tree("roboaug-test/tree", repo_type="dataset")}
    assert top == {".gitattributes", "data", "meta"}
    infos = api.get_paths_info("roboaug-test/tree", ["meta/info.json", "data", "nope"], repo_type="dataset")
    assert {i.path for i in infos} == {"meta/info.json", "data"}


def test_commit_referencing_a_missing_lfs_object_changes_nothing(local_hub):
    head = local_hub.seed("roboaug-test/atomic", {"a.txt": b"a"})
    body = (b'{"key": "header", "value": {"summary": "bad"}}\n'
            b'{"key": "file", "value": {"path": "b.txt", "content": "Yg==", "encoding": "base64"}}\n'
            b'{"key": "lfsFile", "value": {"path": "c.bin", "algo": "sha256", "oid": "' + b"0" * 64 + b'"}}\n')
    r = httpx.post(f"{local_hub.endpoint}/api/datasets/roboaug-test/atomic/commit/main", content=body,
                   headers={"Authorization": f"Bearer {WRITE_TOKEN}", "Content-Type": "application/x-ndjson"})
    assert r.status_code == 422
    assert local_hub.store.branches("dataset", "roboaug-test/atomic") == {"main": head}
    assert set(local_hub.store.snapshot("dataset", "roboaug-test/atomic")) == {".gitattributes", "a.txt"}


def test_lfs_upload_with_wrong_bytes_is_refused(local_hub, api):
    api.create_repo("roboaug-test/lfs", repo_type="dataset")
    data = b"x" * 1000
    oid = hashlib.sha256(data).hexdigest()
    r = httpx.post(f"{local_hub.endpoint}/datasets/roboaug-test/lfs.git/info/lfs/objects/batch",
                   json={"operation": "upload", "transfers": ["basic"], "objects": [{"oid": oid, "size": 1000}]},
                   headers={"Authorization": f"Bearer {WRITE_TOKEN}"})
    href = r.json()["objects"][0]["actions"]["upload"]["href"]
    assert httpx.put(href, content=b"y" * 1000).status_code == 400
    assert local_hub.store.has_lfs("dataset", "roboaug-test/lfs", oid) is None
    assert httpx.put(href.replace("sig=", "sig=0"), content=data).status_code == 403
    assert httpx.put(href, content=data).status_code == 200
    assert local_hub.store.has_lfs("dataset", "roboaug-test/lfs", oid) == 1000


def test_read_only_token_and_private_repos(local_hub, api):
    reader = HfApi(endpoint=local_hub.endpoint, token=READ_TOKEN)
    with pytest.raises(HfHubHTTPError) as err:
        reader.create_repo("roboaug-test/ro", repo_type="dataset")
    assert err.value.response.status_code == 403
    api.create_repo("roboaug-test/private", repo_type="dataset", private=True)
    assert reader.repo_info("roboaug-test/private", repo_type="dataset").private is True
    with pytest.raises(RepositoryNotFoundError):
        HfApi(endpoint=local_hub.endpoint, token=False).repo_info("roboaug-test/private", repo_type="dataset")


def test_branches_and_commits_through_the_client(local_hub, api):
    api.create_repo("roboaug-test/branches", repo_type="dataset")
    api.create_branch("roboaug-test/branches", branch="staging", repo_type="dataset")
    info = api.create_commit("roboaug-test/branches", repo_type="dataset", revision="staging",
                             operations=[CommitOperationAdd("x.txt", b"staged")], commit_message="on staging")
    store = local_hub.store
    assert store.branches("dataset", "roboaug-test/branches")["staging"] == info.oid
    assert "x.txt" not in store.snapshot("dataset", "roboaug-test/branches", "main")
    assert store.snapshot("dataset", "roboaug-test/branches", "staging")["x.txt"] == b"staged"


def test_private_repo_is_invisible_to_other_users(local_hub, api):
    """As on the Hub: anonymous gets 401, another user's token 404, both like a missing repo."""
    api.create_repo("roboaug-test/secret", repo_type="dataset", private=True)
    other = HfApi(endpoint=local_hub.endpoint, token=OTHER_TOKEN)
    for client, status in ((HfApi(endpoint=local_hub.endpoint, token=False), 401), (other, 404)):
        with pytest.raises(RepositoryNotFoundError) as err:
            client.repo_info("roboaug-test/secret", repo_type="dataset")
        assert err.value.response.status_code == status
        with pytest.raises(RepositoryNotFoundError):
            client.list_repo_refs("roboaug-test/secret", repo_type="dataset")
    with pytest.raises(HfHubHTTPError) as err:  # nor may it write into someone else's namespace
        other.create_repo("roboaug-test/not-mine", repo_type="dataset")
    assert err.value.response.status_code == 403
    other.create_repo("someone-else/mine", repo_type="dataset", private=True)
    assert other.repo_info("someone-else/mine", repo_type="dataset").private is True
    api.create_repo("roboaug-test/open", repo_type="dataset")
    assert other.repo_info("roboaug-test/open", repo_type="dataset").private is False


def test_refs_and_tags_through_the_client(local_hub, api):
    repo = "roboaug-test/tags"
    first = local_hub.seed(repo, {"a.txt": b"1"}, title="one")
    api.create_tag(repo, tag="v3.0", repo_type="dataset")  # at main
    second = local_hub.seed(repo, {"a.txt": b"2"}, title="two")
    refs = api.list_repo_refs(repo, repo_type="dataset", include_pull_requests=True)
    assert [(b.name, b.ref, b.target_commit) for b in refs.branches] == [("main", "refs/heads/main", second)]
    assert [(t.name, t.ref, t.target_commit) for t in refs.tags] == [("v3.0", "refs/tags/v3.0", first)]
    assert refs.pull_requests == []
    assert api.repo_info(repo, repo_type="dataset", revision="v3.0").sha == first  # a tag is a revision
    with pytest.raises(HfHubHTTPError) as err:
        api.create_tag(repo, tag="v3.0", repo_type="dataset")
    assert err.value.response.status_code == 409  # moving a tag is delete + create, as on the Hub
    api.delete_tag(repo, tag="v3.0", repo_type="dataset")
    api.create_tag(repo, tag="v3.0", revision=second, repo_type="dataset")
    assert [t.target_commit for t in api.list_repo_refs(repo, repo_type="dataset").tags] == [second]
    with pytest.raises(RevisionNotFoundError):
        api.delete_tag(repo, tag="nope", repo_type="dataset")
    with pytest.raises(HfHubHTTPError) as err:
        HfApi(endpoint=local_hub.endpoint, token=READ_TOKEN).delete_tag(repo, tag="v3.0", repo_type="dataset")
    assert err.value.response.status_code == 403
