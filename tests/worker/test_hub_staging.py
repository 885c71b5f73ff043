"""The worker's Hub staging (roboaug.worker.hub: open_staging, commit_shard, read_staging,
staged_files, publish, drop_staging) with the real huggingface_hub client against the local Hub:
shards commit to a branch no reader of main sees, a retried shard replaces only its own files,
publish is one commit on main that copies the shards' files server-side, and a dropped job leaves
no branch behind."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from roboaug.devstack.hubserver import WRITE_TOKEN
from roboaug.devstack.hubserver.fixtures import local_hub, local_hub_session  # noqa: F401

from huggingface_hub import HfApi

from roboaug.worker import hub
from roboaug.worker.errors import ExitCode, WorkerError

ROBOAUG_MARK = b'{"generator": "roboaug"}\n'


@pytest.fixture
def repo(local_hub, request):
    name = f"roboaug-test/{request.node.name.replace('_', '-')}"
    if local_hub.store.exists("dataset", name):
        local_hub.store.delete("dataset", name)
    return name


@pytest.fixture
def api(local_hub):
    return HfApi(endpoint=local_hub.endpoint, token=WRITE_TOKEN)


def _write(root: Path, files: dict[str, bytes]) -> dict[str, Path]:
    out = {}
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        out[rel] = p
    return out


def _shard_files(root: Path, index: int, seed: int = 0, names=("file-000",)) -> dict[str, bytes]:
    rng = random.Random(index * 1000 + seed)
    files = {f"data/chunk-000/{n}-s{index}.parquet": rng.randbytes(3000) for n in names}
    files[f".roboaug/shards/{index}.json"] = json.dumps({"shard": index, "seed": seed}).encode()
    return files


def _main(local_hub, repo):
    return local_hub.store.branches("dataset", repo)["main"], local_hub.store.snapshot("dataset", repo, "main")


def test_two_shards_stage_invisibly_then_publish_in_one_commit(local_hub, api, repo, tmp_path):
    # main holds an earlier roboaug dataset: a stale file to prune, a file to keep identical
    local_hub.seed(repo, {"meta/augmentation.json": ROBOAUG_MARK, "data/old.parquet": b"PAR1old",
                          "README.md": b"# old\n"})
    before = _main(local_hub, repo)
    commits_before = len(api.list_repo_commits(repo, repo_type="dataset"))
    branch = hub.open_staging(repo, "job-a", WRITE_TOKEN)
    assert branch == "roboaug-staging-job-a" == hub.staging_branch("job-a")
    assert hub.open_staging(repo, "job-a", WRITE_TOKEN) == branch  # a retried pod: same branch, kept
    staged = {}
    for i in (0, 1):
        files = _shard_files(tmp_path, i)
        staged.update(files)
        hub.commit_shard(repo, branch, i, _write(tmp_path / f"s{i}", files), WRITE_TOKEN)
        assert _main(local_hub, repo) == before  # nothing on main between shard commits
        assert api.list_repo_files(repo, repo_type="dataset") == sorted(before[1])  # as a reader sees it
    data = sorted(p for p in staged if p.startswith("data/"))
    assert hub.staged_files(repo, branch, WRITE_TOKEN) == data
    got = hub.read_staging(repo, branch, ".roboaug/shards/1.json", WRITE_TOKEN, dest=tmp_path / "read")
    assert got.read_bytes() == staged[".roboaug/shards/1.json"]

    meta = _write(tmp_path / "meta", {"meta/info.json": b'{"total_episodes": 2}',
                                      "meta/augmentation.json": ROBOAUG_MARK, "README.md": b"# new\n"})
    local_hub.reset()
    sha = hub.publish(repo, branch, data, meta, "roboaug: publish", WRITE_TOKEN, tag="v3.0")
    # one commit on main, holding exactly the new dataset
    assert local_hub.requests("POST", r"/commit/main$") and len(local_hub.requests("POST", r"/commit/")) == 1
    assert len(api.list_repo_commits(repo, repo_type="dataset")) == commits_before + 1
    head, snap = _main(local_hub, repo)
    assert head == sha
    assert set(snap) == {".gitattributes", *data, *meta}
    assert all(snap[p] == staged[p] for p in data)
    assert snap["README.md"] == b"# new\n"
    # the shards' bytes were copied by reference: no LFS object uploaded by publish
    assert local_hub.requests("PUT", r"^/_lfs/") == []
    assert local_hub.requests("POST", r"/info/lfs/objects/batch$") == []
    assert local_hub.store.tags("dataset", repo) == {"v3.0": sha}
    assert set(local_hub.store.branches("dataset", repo)) == {"main"}  # the branch is gone


def test_a_retried_shard_replaces_only_its_own_files(local_hub, repo, tmp_path):
    branch = hub.open_staging(repo, "job-r", WRITE_TOKEN)
    first = _shard_files(tmp_path, 0, names=("file-000", "file-001"))
    hub.commit_shard(repo, branch, 0, _write(tmp_path / "a0", first), WRITE_TOKEN)
    other = _shard_files(tmp_path, 1)
    hub.commit_shard(repo, branch, 1, _write(tmp_path / "a1", other), WRITE_TOKEN)
    # shard 0 again, producing different bytes and one file fewer
    again = _shard_files(tmp_path, 0, seed=7, names=("file-000",))
    hub.commit_shard(repo, branch, 0, _write(tmp_path / "b0", again), WRITE_TOKEN)
    snap = local_hub.store.snapshot("dataset", repo, branch)
    assert "data/chunk-000/file-001-s0.parquet" not in snap  # its stale file went in the same commit
    for rel, data in {**again, **other}.items():
        assert snap[rel] == data
    assert json.loads(snap[hub.shard_manifest_path(0)])["files"] == sorted(again)
    assert json.loads(snap[hub.shard_manifest_path(1)])["files"] == sorted(other)
    # an identical retry uploads nothing
    local_hub.reset()
    hub.commit_shard(repo, branch, 1, _write(tmp_path / "c1", other), WRITE_TOKEN)
    assert local_hub.requests("PUT", r"^/_lfs/") == []
    with pytest.raises(WorkerError) as err:
        hub.commit_shard(repo, branch, 2, {hub.shard_manifest_path(2): tmp_path / "x"}, WRITE_TOKEN)
    assert "shard 2" in err.value.message


def test_drop_staging_leaves_no_branch_and_no_repo_it_created(local_hub, repo, tmp_path):
    branch = hub.open_staging(repo, "job-d", WRITE_TOKEN)
    hub.commit_shard(repo, branch, 0, _write(tmp_path, _shard_files(tmp_path, 0)), WRITE_TOKEN)
    hub.drop_staging(repo, branch, WRITE_TOKEN)
    assert not local_hub.store.exists("dataset", repo)  # created by open_staging, main never written
    hub.drop_staging(repo, branch, WRITE_TOKEN)  # idempotent

    # an existing dataset: only the branch goes, main untouched
    local_hub.seed(repo, {"meta/augmentation.json": ROBOAUG_MARK})
    before = _main(local_hub, repo)
    branch = hub.open_staging(repo, "job-d", WRITE_TOKEN)
    hub.commit_shard(repo, branch, 0, _write(tmp_path, _shard_files(tmp_path, 0)), WRITE_TOKEN)
    hub.drop_staging(repo, branch, WRITE_TOKEN)
    assert set(local_hub.store.branches("dataset", repo)) == {"main"}
    assert _main(local_hub, repo) == before
    with pytest.raises(WorkerError) as err:  # nothing left to publish
        hub.publish(repo, branch, [], {}, "x", WRITE_TOKEN)
    assert "does not exist" in err.value.message


def test_publish_retried_after_a_late_failure_converges(local_hub, repo, tmp_path):
    branch = hub.open_staging(repo, "job-p", WRITE_TOKEN)
    files = _shard_files(tmp_path, 0)
    hub.commit_shard(repo, branch, 0, _write(tmp_path / "s", files), WRITE_TOKEN)
    data = [p for p in files if p.startswith("data/")]
    meta = _write(tmp_path / "m", {"meta/augmentation.json": ROBOAUG_MARK})
    local_hub.fail(rf"/branch/{branch}$", status=503, times=1, method="DELETE")
    with pytest.raises(WorkerError) as err:
        hub.publish(repo, branch, data, meta, "publish", WRITE_TOKEN, tag="v3.0")
    assert err.value.code == ExitCode.NETWORK and err.value.retryable
    sha = local_hub.store.branches("dataset", repo)["main"]
    assert hub.publish(repo, branch, data, meta, "publish", WRITE_TOKEN, tag="v3.0") == sha  # no second commit
    assert local_hub.store.branches("dataset", repo) == {"main": sha}
    assert local_hub.store.tags("dataset", repo) == {"v3.0": sha}


def test_staging_errors_map_to_exit_codes(local_hub, repo, tmp_path):
    local_hub.seed(repo, {"data/theirs.parquet": b"PAR1"})  # not roboaug's
    with pytest.raises(WorkerError) as err:
        hub.open_staging(repo, "job-e", WRITE_TOKEN)
    assert err.value.code == ExitCode.INVALID_SPEC and repo in err.value.message
    assert set(local_hub.store.branches("dataset", repo)) == {"main"}

    other = repo + "-ok"
    if local_hub.store.exists("dataset", other):
        local_hub.store.delete("dataset", other)
    branch = hub.open_staging(other, "job-e", WRITE_TOKEN)
    local_hub.fail(rf"/commit/{branch}$", status=503, times=1)
    with pytest.raises(WorkerError) as err:
        hub.commit_shard(other, branch, 0, _write(tmp_path, _shard_files(tmp_path, 0)), WRITE_TOKEN)
    assert err.value.code == ExitCode.NETWORK and "shard 0" in err.value.message
    with pytest.raises(WorkerError) as err:
        hub.read_staging(other, branch, ".roboaug/shards/9.json", WRITE_TOKEN)
    assert err.value.code == ExitCode.DATASET_NOT_FOUND and ".roboaug/shards/9.json" in err.value.message
    with pytest.raises(WorkerError) as err:
        hub.publish(other, branch, [".roboaug/shards/0.json"], {}, "x", WRITE_TOKEN)
    assert "never copied to main" in err.value.message
    with pytest.raises(WorkerError):
        hub.staging_branch("a/../b")
