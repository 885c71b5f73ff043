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


def test_a_shard_commit_that_loses_a_race_for_the_branch_is_made_again(local_hub, repo, tmp_path, monkeypatch):
    # The real Hub answers 412 (or 409) to a commit whose branch moved under it, which many shards
    # committing to one staging branch at once meet; the local Hub serialises commits, so the
    # knob `commit_race` makes it answer that once, in the Hub's words.
    monkeypatch.setattr(hub, "COMMIT_BACKOFF_S", 0.001)
    branch = hub.open_staging(repo, "job-race", WRITE_TOKEN)
    before = len(local_hub.store.history("dataset", repo, branch))
    local_hub.reset()
    local_hub.commit_race(repo, branch)
    files = _shard_files(tmp_path, 0)
    hub.commit_shard(repo, branch, 0, _write(tmp_path / "s0", files), WRITE_TOKEN)
    commits = local_hub.requests("POST", rf"/commit/{branch}$")
    assert [r.status for r in commits] == [412, 200]
    # made again from a fresh read of the branch (its manifest looked up once per attempt)
    assert len(local_hub.requests("GET", r"/paths-info/|/tree/|/resolve/")) >= 2
    snap = local_hub.store.snapshot("dataset", repo, branch)
    assert all(snap[rel] == data for rel, data in files.items())
    assert len(local_hub.store.history("dataset", repo, branch)) == before + 1  # one commit, not two
    # a 409 the same way
    local_hub.reset()
    local_hub.fail(rf"/commit/{branch}$", status=409, times=1, method="POST")
    hub.commit_shard(repo, branch, 1, _write(tmp_path / "s1", _shard_files(tmp_path, 1)), WRITE_TOKEN)
    assert [r.status for r in local_hub.requests("POST", rf"/commit/{branch}$")] == [409, 200]


def test_a_shard_commit_refused_every_time_gives_up_retryable(local_hub, repo, tmp_path, monkeypatch):
    monkeypatch.setattr(hub, "COMMIT_BACKOFF_S", 0.001)
    branch = hub.open_staging(repo, "job-race-all", WRITE_TOKEN)
    local_hub.reset()
    local_hub.commit_race(repo, branch, times=hub.COMMIT_ATTEMPTS)
    with pytest.raises(WorkerError) as err:
        hub.commit_shard(repo, branch, 0, _write(tmp_path, _shard_files(tmp_path, 0)), WRITE_TOKEN)
    assert err.value.code == ExitCode.NETWORK  # retryable: the pod is retried
    assert f"refused {hub.COMMIT_ATTEMPTS} commits in a row (412" in err.value.message and "shard 0" in err.value.message
    assert len(local_hub.requests("POST", rf"/commit/{branch}$")) == hub.COMMIT_ATTEMPTS
    # any other refusal is not retried here (a 403 is the token's, not a race)
    local_hub.reset()
    local_hub.fail(rf"/commit/{branch}$", status=403, times=1, method="POST")
    with pytest.raises(WorkerError) as err:
        hub.commit_shard(repo, branch, 0, _write(tmp_path, _shard_files(tmp_path, 0)), WRITE_TOKEN)
    assert err.value.code == ExitCode.AUTH and len(local_hub.requests("POST", rf"/commit/{branch}$")) == 1


def _opening_commits(local_hub, repo, branch):
    return [c for c in local_hub.store.history("dataset", repo, branch)
            if c["title"].startswith("roboaug: open staging")]


def test_opening_the_staging_branch_that_loses_a_race_is_made_again(local_hub, api, repo, monkeypatch):
    # Every shard opens the staging branch, usually all at once: another shard created the branch
    # and has not made its opening commit yet, and this shard's opening commit loses the race
    # for the branch (the knob: 412 in the Hub's words)
    monkeypatch.setattr(hub, "COMMIT_BACKOFF_S", 0.001)
    local_hub.seed(repo, {"meta/augmentation.json": ROBOAUG_MARK, "data/old.parquet": b"PAR1old"})
    branch = hub.staging_branch("job-open-race")
    api.create_branch(repo, branch=branch, repo_type="dataset")
    local_hub.reset()
    local_hub.commit_race(repo, branch)
    assert hub.open_staging(repo, "job-open-race", WRITE_TOKEN) == branch
    assert [r.status for r in local_hub.requests("POST", rf"/commit/{branch}$")] == [412, 200]
    # made again from a fresh read of the branch head: one opening commit, the branch emptied
    assert len(local_hub.requests("GET", rf"/revision/{branch}$")) == 2
    assert len(_opening_commits(local_hub, repo, branch)) == 1
    snap = local_hub.store.snapshot("dataset", repo, branch)
    assert set(snap) - {".gitattributes"} == {".roboaug/staging.json"}
    assert json.loads(snap[".roboaug/staging.json"]) == {"job_id": "job-open-race", "created_repo": False}
    # opening an open branch again (a retried pod, a later shard) commits nothing
    local_hub.reset()
    assert hub.open_staging(repo, "job-open-race", WRITE_TOKEN) == branch
    assert local_hub.requests("POST", r"/commit/") == []

    # a 409 the same way, on a repo this call creates
    other = repo + "-new"
    if local_hub.store.exists("dataset", other):
        local_hub.store.delete("dataset", other)
    local_hub.reset()
    local_hub.fail(rf"/commit/{branch}$", status=409, times=1, method="POST")
    assert hub.open_staging(other, "job-open-race", WRITE_TOKEN) == branch
    assert [r.status for r in local_hub.requests("POST", rf"/commit/{branch}$")] == [409, 200]
    meta = json.loads(local_hub.store.snapshot("dataset", other, branch)[".roboaug/staging.json"])
    assert meta == {"job_id": "job-open-race", "created_repo": True}


def test_opening_refused_every_time_gives_up_retryable_naming_repo_and_branch(local_hub, api, repo, monkeypatch):
    monkeypatch.setattr(hub, "COMMIT_BACKOFF_S", 0.001)
    local_hub.seed(repo, {"meta/augmentation.json": ROBOAUG_MARK})
    branch = hub.staging_branch("job-open-race-all")
    api.create_branch(repo, branch=branch, repo_type="dataset")
    local_hub.reset()
    local_hub.commit_race(repo, branch, times=hub.COMMIT_ATTEMPTS)
    with pytest.raises(WorkerError) as err:
        hub.open_staging(repo, "job-open-race-all", WRITE_TOKEN)
    assert err.value.code == ExitCode.NETWORK and err.value.retryable  # the pod is retried
    assert err.value.message.startswith(f"dataset {repo} (staging branch {branch}): ")
    assert f"refused {hub.COMMIT_ATTEMPTS} commits in a row (412" in err.value.message
    assert len(local_hub.requests("POST", rf"/commit/{branch}$")) == hub.COMMIT_ATTEMPTS
    assert _opening_commits(local_hub, repo, branch) == []
    # the retried pod, once the race is over, opens it
    assert hub.open_staging(repo, "job-open-race-all", WRITE_TOKEN) == branch
    assert len(_opening_commits(local_hub, repo, branch)) == 1
    # any other refusal is not retried here
    local_hub.reset()
    local_hub.fail(rf"/commit/{hub.staging_branch('job-403')}$", status=403, times=1, method="POST")
    with pytest.raises(WorkerError) as err:
        hub.open_staging(repo, "job-403", WRITE_TOKEN)
    assert err.value.code == ExitCode.AUTH and len(local_hub.requests("POST", r"/commit/")) == 1


def test_a_late_opening_commit_never_deletes_what_a_shard_staged(local_hub, repo, tmp_path, monkeypatch):
    # Shards A and B open the branch at once. A's opening commit is slow to arrive (held); B opens
    # the branch and stages a file at a path main holds too. A's commit, made against the head it
    # read before, must not land: it would delete B's file. Refused (412), A finds the branch open.
    import threading

    monkeypatch.setattr(hub, "COMMIT_BACKOFF_S", 0.001)
    files = _shard_files(tmp_path, 0)
    shared = next(p for p in files if p.startswith("data/"))
    local_hub.seed(repo, {"meta/augmentation.json": ROBOAUG_MARK, shared: b"PAR1 main's own"})
    branch = hub.staging_branch("job-two-openers")
    local_hub.reset()
    held = local_hub.hold(rf"/commit/{branch}$", method="POST")
    out = {}

    def shard_a():
        try:
            out["a"] = hub.open_staging(repo, "job-two-openers", WRITE_TOKEN)
        except BaseException as exc:  # noqa: BLE001 - asserted below
            out["a"] = exc

    a = threading.Thread(target=shard_a)
    a.start()
    try:
        assert held.arrived.wait(30), "shard A never made its opening commit"
        assert hub.open_staging(repo, "job-two-openers", WRITE_TOKEN) == branch  # shard B
        hub.commit_shard(repo, branch, 0, _write(tmp_path / "b", files), WRITE_TOKEN)
    finally:
        held.release()
        a.join(60)
    assert out.get("a") == branch
    assert [r.status for r in local_hub.requests("POST", rf"/commit/{branch}$")] == [200, 200, 412]
    snap = local_hub.store.snapshot("dataset", repo, branch)
    assert all(snap[rel] == data for rel, data in files.items())
    assert len(_opening_commits(local_hub, repo, branch)) == 1


def test_the_shard_that_created_the_repo_marks_it_when_another_opened_first(local_hub, repo, tmp_path):
    # Shard A creates the repo; shard B, finding it there, opens the branch first and records
    # created_repo false. A adds the mark, so a failed job's drop_staging removes the empty repo.
    import threading

    branch = hub.staging_branch("job-created")
    local_hub.reset()
    held = local_hub.hold(r"/refs$", method="GET")  # A, after creating the repo
    out = {}

    def shard_a():
        try:
            out["a"] = hub.open_staging(repo, "job-created", WRITE_TOKEN)
        except BaseException as exc:  # noqa: BLE001 - asserted below
            out["a"] = exc

    a = threading.Thread(target=shard_a)
    a.start()
    try:
        assert held.arrived.wait(30), "shard A never looked for the branch"
        assert hub.open_staging(repo, "job-created", WRITE_TOKEN) == branch  # shard B
        meta = json.loads(local_hub.store.snapshot("dataset", repo, branch)[".roboaug/staging.json"])
        assert meta["created_repo"] is False
    finally:
        held.release()
        a.join(60)
    assert out.get("a") == branch
    meta = json.loads(local_hub.store.snapshot("dataset", repo, branch)[".roboaug/staging.json"])
    assert meta == {"job_id": "job-created", "created_repo": True}
    assert len(_opening_commits(local_hub, repo, branch)) == 1
    hub.drop_staging(repo, branch, WRITE_TOKEN)
    assert not local_hub.store.exists("dataset", repo)
