"""The local Hub's branches, commits on branches, history and server-side copies, through the real
huggingface_hub client, answering as the Hub does (status codes and the error classes the client
builds from them)."""

from __future__ import annotations

import hashlib

import pytest

from roboaug.devstack.hubserver import WRITE_TOKEN
from roboaug.devstack.hubserver.fixtures import LFS_THRESHOLD, TREE_PAGE_SIZE, local_hub, local_hub_session  # noqa: F401
from roboaug.devstack.hubserver.store import valid_branch_name

from huggingface_hub import CommitOperationAdd, CommitOperationCopy, HfApi, hf_hub_download
from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, RevisionNotFoundError



@pytest.fixture
def api(local_hub, monkeypatch):
    # the local Hub offers no Xet: LFS content goes through the classic batch API (as hub.upload
    # arranges for the worker); huggingface_hub reads the flag on each upload
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    return HfApi(endpoint=local_hub.endpoint, token=WRITE_TOKEN)


@pytest.fixture
def REPO(local_hub, request):
    """A repo of this test's own (the session's store outlives each test)."""
    name = f"roboaug-test/{request.node.name.replace('_', '-')}"
    if local_hub.store.exists("dataset", name):
        local_hub.store.delete("dataset", name)
    return name


def _branches(api, repo) -> dict[str, str]:
    return {b.name: b.target_commit for b in api.list_repo_refs(repo, repo_type="dataset").branches}


def test_create_branch_from_a_revision_or_empty_and_refusals(local_hub, api, REPO):
    first = local_hub.seed(REPO, {"a.txt": b"1"}, title="one")
    second = local_hub.seed(REPO, {"a.txt": b"2"}, title="two")
    api.create_branch(REPO, branch="old", revision=first, repo_type="dataset")
    api.create_branch(REPO, branch="head", repo_type="dataset")  # default: main's head
    assert _branches(api, REPO) == {"main": second, "old": first, "head": second}
    assert api.repo_info(REPO, repo_type="dataset", revision="old").sha == first

    with pytest.raises(HfHubHTTPError) as err:
        api.create_branch(REPO, branch="old", repo_type="dataset")
    assert err.value.response.status_code == 409
    api.create_branch(REPO, branch="old", repo_type="dataset", exist_ok=True)  # the client swallows the 409
    assert _branches(api, REPO)["old"] == first

    with pytest.raises(RevisionNotFoundError) as err:
        api.create_branch(REPO, branch="new", revision="f" * 40, repo_type="dataset")
    assert err.value.response.status_code == 404
    for bad in ("refs/pr/1", "a..b", "x.lock", "with space", "-dash"):
        with pytest.raises(HfHubHTTPError) as err:
            api.create_branch(REPO, branch=bad, repo_type="dataset")
        assert err.value.response.status_code == 400, bad
    assert set(_branches(api, REPO)) == {"main", "old", "head"}

    # an empty branch: a root commit holding no file (the Hub's emptyBranch body field)
    r = api._build_hf_headers()
    from huggingface_hub.utils import get_session
    resp = get_session().post(f"{local_hub.endpoint}/api/datasets/{REPO}/branch/blank", headers=r,
                              json={"emptyBranch": True})
    assert resp.status_code == 200
    assert api.list_repo_files(REPO, repo_type="dataset", revision="blank") == []
    assert len(api.list_repo_commits(REPO, repo_type="dataset", revision="blank")) == 1


def test_valid_branch_name():
    assert valid_branch_name("roboaug-staging-job-1.2_x")
    assert valid_branch_name("feature/x")
    for bad in ("", "refs/heads/x", "a..b", "a b", "a~1", "a^", "a:b", "x.lock", "/x", "x/", ".x", "a@{1}", "@"):
        assert not valid_branch_name(bad), bad


def test_delete_branch_answers_as_the_hub(local_hub, api, REPO):
    local_hub.seed(REPO, {"a.txt": b"1"})
    api.create_branch(REPO, branch="tmp", repo_type="dataset")
    api.delete_branch(REPO, branch="tmp", repo_type="dataset")
    assert set(_branches(api, REPO)) == {"main"}
    with pytest.raises(RevisionNotFoundError) as err:
        api.delete_branch(REPO, branch="tmp", repo_type="dataset")
    assert err.value.response.status_code == 404
    with pytest.raises(HfHubHTTPError) as err:
        api.delete_branch(REPO, branch="main", repo_type="dataset")
    assert err.value.response.status_code == 403


def test_commits_on_a_branch_and_reads_at_branch_or_sha(local_hub, api, REPO, tmp_path):
    base = local_hub.seed(REPO, {"a.txt": b"main"}, title="base")
    api.create_branch(REPO, branch="work", repo_type="dataset")
    big = bytes(range(256)) * (LFS_THRESHOLD // 256 + 1)
    c1 = api.create_commit(REPO, repo_type="dataset", revision="work", commit_message="w1",
                           operations=[CommitOperationAdd("a.txt", b"work"), CommitOperationAdd("big.bin", big)]).oid
    c2 = api.create_commit(REPO, repo_type="dataset", revision="work", commit_message="w2",
                           operations=[CommitOperationAdd("b.txt", b"more")]).oid
    assert _branches(api, REPO) == {"main": base, "work": c2}
    # main untouched; the branch and each of its commits readable by name or sha
    assert api.list_repo_files(REPO, repo_type="dataset") == [".gitattributes", "a.txt"]
    assert api.list_repo_files(REPO, repo_type="dataset", revision=c1) == [".gitattributes", "a.txt", "big.bin"]
    tree = {f.path: f for f in api.list_repo_tree(REPO, repo_type="dataset", revision="work")}
    assert set(tree) == {".gitattributes", "a.txt", "b.txt", "big.bin"}
    assert tree["big.bin"].lfs.sha256 == hashlib.sha256(big).hexdigest()
    for rev, want in (("work", b"work"), (c1, b"work"), ("main", b"main"), (base, b"main")):
        path = hf_hub_download(REPO, "a.txt", repo_type="dataset", revision=rev, local_dir=tmp_path / rev,
                               token=WRITE_TOKEN, endpoint=local_hub.endpoint)
        assert open(path, "rb").read() == want, rev
    path = hf_hub_download(REPO, "big.bin", repo_type="dataset", revision="work", local_dir=tmp_path / "big",
                           token=WRITE_TOKEN, endpoint=local_hub.endpoint)
    assert open(path, "rb").read() == big
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(REPO, "b.txt", repo_type="dataset", revision=c1, local_dir=tmp_path / "none",
                        token=WRITE_TOKEN, endpoint=local_hub.endpoint)
    # history per revision, newest first, through the client's pagination (page size TREE_PAGE_SIZE)
    for i in range(TREE_PAGE_SIZE):
        api.create_commit(REPO, repo_type="dataset", revision="work", commit_message=f"n{i}",
                          operations=[CommitOperationAdd("n.txt", str(i).encode())])
    log = api.list_repo_commits(REPO, repo_type="dataset", revision="work")
    assert [c.title for c in log] == [f"n{i}" for i in reversed(range(TREE_PAGE_SIZE))] + ["w2", "w1", "base", "initial commit"]
    assert log[0].authors == ["roboaug-test"]
    assert [c.title for c in api.list_repo_commits(REPO, repo_type="dataset")] == ["base", "initial commit"]
    # nothing commits to a sha or to a missing branch
    with pytest.raises(HfHubHTTPError) as err:
        api.create_commit(REPO, repo_type="dataset", revision=c1, commit_message="x",
                          operations=[CommitOperationAdd("x.txt", b"x")])
    assert err.value.response.status_code == 400
    with pytest.raises(RevisionNotFoundError):
        api.create_commit(REPO, repo_type="dataset", revision="nope", commit_message="x",
                          operations=[CommitOperationAdd("x.txt", b"x")])


def test_copy_from_a_branch_uploads_no_lfs_bytes(local_hub, api, REPO):
    local_hub.seed(REPO, {"keep.txt": b"k"})
    api.create_branch(REPO, branch="staging", repo_type="dataset")
    big = bytes(range(256)) * (LFS_THRESHOLD // 256 + 3)
    small_lfs = b"PAR1" + bytes(500)  # *.parquet: LFS by pattern
    api.create_commit(REPO, repo_type="dataset", revision="staging", commit_message="stage", operations=[
        CommitOperationAdd("data/big.bin", big), CommitOperationAdd("data/x.parquet", small_lfs),
        CommitOperationAdd("meta/small.json", b'{"a": 1}')])
    uploads_before = len(local_hub.requests("PUT", r"^/_lfs/"))
    assert uploads_before == 2
    local_hub.reset()
    sha = api.create_commit(REPO, repo_type="dataset", revision="main", commit_message="publish", operations=[
        CommitOperationCopy(p, p, src_revision="staging") for p in ("data/big.bin", "data/x.parquet", "meta/small.json")]).oid
    assert local_hub.requests("PUT", r"^/_lfs/") == []  # nothing uploaded again
    assert local_hub.requests("POST", r"/info/lfs/objects/batch$") == []
    snap = local_hub.store.snapshot("dataset", REPO, sha)
    assert snap["data/big.bin"] == big and snap["data/x.parquet"] == small_lfs and snap["meta/small.json"] == b'{"a": 1}'
    assert snap["keep.txt"] == b"k"
    _, files = local_hub.store.files("dataset", REPO, sha)
    assert files["data/big.bin"]["lfs"]["oid"] == hashlib.sha256(big).hexdigest()  # by reference, still LFS
    # a copy of a file the source revision lacks fails in the client, main untouched
    with pytest.raises(EntryNotFoundError):
        api.create_commit(REPO, repo_type="dataset", revision="main", commit_message="bad",
                          operations=[CommitOperationCopy("nope.bin", "nope.bin", src_revision="staging")])
    assert _branches(api, REPO)["main"] == sha
