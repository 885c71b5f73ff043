"""The worker's Hub path (roboaug.worker.hub) with the real huggingface_hub client against the
local Hub test server (devstack/hubserver): one-commit upload checked byte for byte in the server's
store and through download(), revision pinning, and the exit-code mapping of failures.

The Xet variants run in a subprocess (roboaug.devstack.hubserver.driver) because huggingface_hub reads
HF_HUB_DISABLE_XET once, at import.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest


from roboaug.devstack.hubserver import READ_TOKEN, WRITE_TOKEN  # noqa: E402
from roboaug.devstack.hubserver.fixtures import LFS_THRESHOLD, hub_env, local_hub, local_hub_session  # noqa: E402,F401

from roboaug.api.models import DatasetRef  # noqa: E402
from roboaug.worker import hub  # noqa: E402
from roboaug.worker.errors import ExitCode, WorkerError  # noqa: E402

BAD_TOKEN = "hf_thisTokenIsNotKnownToTheHub0123456789"
ROBOAUG_MARK = b'{"generator": "roboaug"}\n'


def _bytes(seed: int, n: int) -> bytes:
    return random.Random(seed).randbytes(n)


def make_folder(root: Path, seed: int = 0) -> dict[str, bytes]:
    """Small text files, an empty file, a small binary the LFS patterns catch (*.parquet) and a
    binary above the LFS size threshold that no pattern names (*.dat); and roboaug's provenance
    mark, so that uploading again into the same repo is allowed."""
    files = {
        "README.md": b"---\nlicense: apache-2.0\ntags: [roboaug]\n---\n# augmented\n",
        "meta/augmentation.json": ROBOAUG_MARK,
        "meta/info.json": json.dumps({"codebase_version": "v3.0", "seed": seed}).encode(),
        "meta/tasks.jsonl": b'{"task_index": 0, "task": "pick"}\n',
        "meta/empty.txt": b"",
        "data/chunk-000/file-000.parquet": _bytes(seed + 1, 3000),
        "blobs/large.dat": _bytes(seed + 2, LFS_THRESHOLD * 3 + 17),
    }
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return files


def read_tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.relative_to(root).parts[0] != ".cache"}


def run_driver(local_hub, tmp_path: Path, *args: str, token: str | None = WRITE_TOKEN, **env: str):
    e = hub_env(local_hub, str(tmp_path / "hf_home_sub"), **env)
    if token:
        e["HF_TOKEN"] = token
    return subprocess.run([sys.executable, "-m", "roboaug.devstack.hubserver.driver", *args], env=e, capture_output=True,
                          text=True, timeout=180)


XET_VARIANTS = [pytest.param({}, id="default-env"), pytest.param({"HF_HUB_DISABLE_XET": "1"}, id="HF_HUB_DISABLE_XET=1")]


# -- upload + download, both transfer settings ----------------------------------------------------
@pytest.mark.parametrize("env", XET_VARIANTS)
def test_upload_is_one_commit_byte_for_byte_then_downloads(local_hub, tmp_path, env):
    repo = f"roboaug-test/upload-{'noxet' if env else 'default'}"
    src = tmp_path / "out"
    files = make_folder(src, seed=len(env))

    up = run_driver(local_hub, tmp_path, "upload", str(src), repo, "roboaug: augment (seed 1)", **env)
    assert up.returncode == 0, up.stderr
    out = json.loads(up.stdout.strip().splitlines()[-1])
    # the subprocess's huggingface_hub really read the variable
    assert out["xet_available"] is (not env)
    sha = out["result"]

    store = local_hub.store
    assert store.branches("dataset", repo) == {"main": sha}
    commit = store.commit_info("dataset", repo, sha)
    (parent,) = commit["parents"]
    assert list(store.commit_info("dataset", repo, parent)["files"]) == [".gitattributes"]  # repo creation
    assert store.commit_info("dataset", repo, parent)["parents"] == []  # so exactly one dataset commit
    assert commit["title"] == "roboaug: augment (seed 1)"
    snap = store.snapshot("dataset", repo, "main")
    assert {k: v for k, v in snap.items() if k != ".gitattributes"} == files  # byte for byte
    entries = commit["files"]
    assert entries["blobs/large.dat"]["lfs"]["oid"] == hashlib.sha256(files["blobs/large.dat"]).hexdigest()
    assert entries["data/chunk-000/file-000.parquet"]["lfs"] is not None  # by .gitattributes pattern
    assert entries["meta/info.json"]["lfs"] is None and entries["meta/empty.txt"]["lfs"] is None

    log = local_hub.requests()
    commits = [r for r in log if r.method == "POST" and r.path.endswith("/commit/main")]
    assert [r.status for r in commits] == [200]
    assert [r.status for r in log if r.path.endswith("/lfs/objects/batch")] == [200]
    puts = sorted(r.path.rsplit("/", 1)[-1] for r in log if r.method == "PUT")
    assert puts == sorted(hashlib.sha256(files[p]).hexdigest() for p in ("blobs/large.dat", "data/chunk-000/file-000.parquet"))
    xet_probes = [r.status for r in log if "xet-write-token" in r.path]
    assert xet_probes == ([] if env else [404])  # default env: asked for Xet, told no, used LFS

    local_hub.reset()
    dest = tmp_path / "dl"
    down = run_driver(local_hub, tmp_path, "download", f"hf://{repo}", str(dest), **env)
    assert down.returncode == 0, down.stderr
    assert Path(json.loads(down.stdout.strip().splitlines()[-1])["result"]) == dest.resolve()
    got = read_tree(dest)
    assert {k: v for k, v in got.items() if k != ".gitattributes"} == files
    log = local_hub.requests()
    assert any(r.path.startswith("/_cdn/") and r.method == "GET" for r in log)  # LFS bytes via the redirect
    assert not any("/xet-" in r.path for r in log)


def test_second_upload_replaces_dataset_in_one_commit(local_hub, tmp_path):
    repo = "roboaug-test/replace"
    first = make_folder(tmp_path / "a", seed=1)
    sha1 = hub.upload(tmp_path / "a", repo, WRITE_TOKEN, "first")
    second_dir = tmp_path / "b"
    second = make_folder(second_dir, seed=2)
    (second_dir / "meta/tasks.jsonl").unlink()
    del second["meta/tasks.jsonl"]
    sha2 = hub.upload(second_dir, repo, WRITE_TOKEN, "second")
    assert sha1 != sha2 and first != second
    store = local_hub.store
    assert store.commit_info("dataset", repo, sha2)["parents"] == [sha1]
    snap = store.snapshot("dataset", repo)
    assert {k: v for k, v in snap.items() if k != ".gitattributes"} == second  # stale file gone too
    assert "meta/tasks.jsonl" in store.snapshot("dataset", repo, sha1)  # history intact


def test_unchanged_reupload_makes_no_commit(local_hub, tmp_path):
    repo = "roboaug-test/same"
    make_folder(tmp_path / "a", seed=5)
    sha1 = hub.upload(tmp_path / "a", repo, WRITE_TOKEN, "first")
    sha2 = hub.upload(tmp_path / "a", repo, WRITE_TOKEN, "again")
    assert sha1 == sha2 == local_hub.store.branches("dataset", repo)["main"]


# -- revisions ------------------------------------------------------------------------------------
def test_revision_pinning(local_hub, tmp_path):
    repo = "roboaug-test/pinned"
    v1 = {"meta/info.json": b'{"v": 1}', "data/x.bin": _bytes(11, 1000)}
    v2 = {"meta/info.json": b'{"v": 2}', "data/x.bin": _bytes(12, 1000), "meta/new.txt": b"new"}
    sha1 = local_hub.seed(repo, v1, title="v1")
    local_hub.store.create_branch("dataset", repo, "v1.0", sha1)
    local_hub.store.create_branch("dataset", repo, "release/v1", sha1)  # a slash: one quoted URL segment
    sha2 = local_hub.seed(repo, v2, title="v2")
    assert sha1 != sha2

    def fetch(dataset_id: str, name: str) -> dict[str, bytes]:
        got = read_tree(hub.download(DatasetRef.parse(dataset_id), tmp_path / name, None))
        got.pop(".gitattributes")
        return got

    assert fetch(f"hf://{repo}@v1.0", "branch") == v1
    assert fetch(f"hf://{repo}@{sha1}", "sha") == v1
    assert fetch(f"hf://{repo}@release/v1", "slashed") == v1
    assert fetch(f"{repo}@{sha1}", "sha-no-scheme") == v1
    assert fetch(f"hf://{repo}", "main") == {**v1, **v2}  # seed commits add on top of v1
    assert fetch(f"hf://{repo}@main", "main2") == {**v1, **v2}


def test_file_scheme_is_used_in_place(tmp_path):
    (tmp_path / "ds" / "meta").mkdir(parents=True)
    assert hub.download(DatasetRef.parse(f"file://{tmp_path}/ds"), tmp_path / "unused", None) == tmp_path / "ds"
    assert not (tmp_path / "unused").exists()
    with pytest.raises(WorkerError) as err:
        hub.download(DatasetRef.parse(f"file://{tmp_path}/missing"), tmp_path / "unused", None)
    assert err.value.code == ExitCode.DATASET_NOT_FOUND


# -- failures -> exit codes ---------------------------------------------------------------------------
def _download_error(dataset_id: str, dest: Path, token=None) -> WorkerError:
    with pytest.raises(WorkerError) as err:
        hub.download(DatasetRef.parse(dataset_id), dest, token)
    assert not dest.exists()  # nothing half-downloaded is left
    return err.value


def test_not_found_is_permanent(local_hub, tmp_path):
    local_hub.seed("roboaug-test/exists", {"a.txt": b"a"})
    e = _download_error("hf://roboaug-test/does-not-exist", tmp_path / "d1", WRITE_TOKEN)
    assert e.code == ExitCode.DATASET_NOT_FOUND == 10 and not e.retryable
    assert "roboaug-test/does-not-exist" in e.message
    e = _download_error("hf://roboaug-test/exists@no-such-branch", tmp_path / "d2")
    assert e.code == ExitCode.DATASET_NOT_FOUND and "no-such-branch" in e.message
    e = _download_error("hf://roboaug-test/does-not-exist", tmp_path / "d3")  # anonymous: the Hub says 401
    assert e.code == ExitCode.DATASET_NOT_FOUND


def test_bad_token_is_auth_without_leaking_it(local_hub, tmp_path):
    local_hub.seed("roboaug-test/public", {"a.txt": b"a"})
    e = _download_error("hf://roboaug-test/public", tmp_path / "d", BAD_TOKEN)
    assert e.code == ExitCode.AUTH == 14 and not e.retryable
    assert BAD_TOKEN not in e.line() and BAD_TOKEN[3:] not in e.line()

    make_folder(tmp_path / "out")
    with pytest.raises(WorkerError) as err:
        hub.upload(tmp_path / "out", "roboaug-test/never", BAD_TOKEN, "x")
    assert err.value.code == ExitCode.AUTH and BAD_TOKEN not in err.value.line()
    with pytest.raises(WorkerError) as err:  # a read-only token cannot create or write
        hub.upload(tmp_path / "out", "roboaug-test/never", READ_TOKEN, "x")
    assert err.value.code == ExitCode.AUTH and READ_TOKEN not in err.value.line()
    with pytest.raises(WorkerError) as err:  # no token at all
        hub.upload(tmp_path / "out", "roboaug-test/never", None, "x")
    assert err.value.code == ExitCode.AUTH
    assert not local_hub.store.exists("dataset", "roboaug-test/never")


def test_bad_token_exit_code_and_output_of_the_process(local_hub, tmp_path):
    local_hub.seed("roboaug-test/public2", {"a.txt": b"a"})
    p = run_driver(local_hub, tmp_path, "download", "hf://roboaug-test/public2", str(tmp_path / "d"), token=BAD_TOKEN)
    assert p.returncode == 14
    assert p.stderr.strip().splitlines()[-1].startswith("roboaug-worker: error[14 auth]: dataset roboaug-test/public2")
    assert BAD_TOKEN not in p.stderr + p.stdout
    p = run_driver(local_hub, tmp_path, "download", "hf://roboaug-test/nope", str(tmp_path / "d"))
    assert p.returncode == 10, p.stderr


def test_server_errors_are_retryable(local_hub, tmp_path):
    local_hub.seed("roboaug-test/flaky", {"a.txt": b"a"})
    local_hub.fail(r"^/api/datasets/roboaug-test/flaky/revision/", status=503, times=1)
    e = _download_error("hf://roboaug-test/flaky", tmp_path / "d1", WRITE_TOKEN)
    assert e.code == ExitCode.NETWORK == 75 and e.retryable
    assert "roboaug-test/flaky" in e.message and "503" in e.message

    local_hub.fail(r"^/api/repos/create$", status=429, times=1)
    make_folder(tmp_path / "out")
    with pytest.raises(WorkerError) as err:
        hub.upload(tmp_path / "out", "roboaug-test/rate", WRITE_TOKEN, "x")
    assert err.value.code == ExitCode.NETWORK and "429" in err.value.message


def test_failed_commit_leaves_nothing_visible(local_hub, tmp_path):
    make_folder(tmp_path / "out", seed=3)
    # new repo: the commit fails after the LFS uploads -> no repo left behind
    local_hub.fail(r"/commit/main$", status=500, times=1)
    with pytest.raises(WorkerError) as err:
        hub.upload(tmp_path / "out", "roboaug-test/new-broken", WRITE_TOKEN, "x")
    assert err.value.code == ExitCode.NETWORK
    assert any(r.method == "PUT" for r in local_hub.requests())  # it failed late, after uploading data
    assert not local_hub.store.exists("dataset", "roboaug-test/new-broken")

    # existing repo: main keeps pointing at the previous complete dataset
    old = local_hub.seed("roboaug-test/kept", {"meta/info.json": b'{"old": true}', "meta/augmentation.json": ROBOAUG_MARK})
    local_hub.fail(r"/commit/main$", status=503, times=1)
    with pytest.raises(WorkerError) as err:
        hub.upload(tmp_path / "out", "roboaug-test/kept", WRITE_TOKEN, "x")
    assert err.value.code == ExitCode.NETWORK
    assert local_hub.store.branches("dataset", "roboaug-test/kept") == {"main": old}
    assert local_hub.store.snapshot("dataset", "roboaug-test/kept")["meta/info.json"] == b'{"old": true}'


def test_transient_preupload_error_is_retried_by_the_client(local_hub, tmp_path):
    files = make_folder(tmp_path / "out", seed=4)
    local_hub.fail(r"/preupload/main$", status=503, times=1)
    sha = hub.upload(tmp_path / "out", "roboaug-test/retried", WRITE_TOKEN, "x")
    assert [r.status for r in local_hub.requests("POST", r"/preupload/main$")] == [503, 200]
    snap = local_hub.store.snapshot("dataset", "roboaug-test/retried", sha)
    assert {k: v for k, v in snap.items() if k != ".gitattributes"} == files


def test_unreachable_hub_is_retryable(local_hub, tmp_path, monkeypatch):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    e = _download_error("hf://roboaug-test/anything", tmp_path / "d")
    assert e.code == ExitCode.NETWORK
    make_folder(tmp_path / "out")
    with pytest.raises(WorkerError) as err:
        hub.upload(tmp_path / "out", "roboaug-test/anything", WRITE_TOKEN, "x")
    assert err.value.code == ExitCode.NETWORK and WRITE_TOKEN not in err.value.line()


def test_xet_available_needs_hf_xet_installed_and_not_disabled(monkeypatch):
    """The two conditions huggingface_hub itself uses to pick Xet (read at call time)."""
    import importlib.metadata

    from huggingface_hub import constants

    real_version = importlib.metadata.version
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", False)
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "1.0.0" if name == "hf_xet" else real_version(name))
    assert hub.xet_available() is True
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    assert hub.xet_available() is False

    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", False)
    monkeypatch.setattr(importlib.metadata, "version", missing)
    assert hub.xet_available() is False


def test_token_from_env(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "  hf_abc  ")
    assert hub.token_from_env() == "hf_abc"
    monkeypatch.setenv("HF_TOKEN", "")
    assert hub.token_from_env() is None
    monkeypatch.delenv("HF_TOKEN")
    assert hub.token_from_env() is None


# -- a worker-sized dataset ---------------------------------------------------------------------------
def test_lerobot_layout_round_trips(local_hub, tmp_path):
    from roboaug.devstack import synthetic as fixtures

    from roboaug.worker import lerobot_dataset

    src = fixtures.make_lerobot(tmp_path / "src", "v3.0", lengths=(5, 4, 6), episodes_per_file=2,
                                cameras={"observation.images.top": "av1", "observation.images.wrist": "h264"})
    files = read_tree(src)
    assert any(k.startswith("videos/") for k in files) and any(k.startswith("data/chunk-000/") for k in files)
    sha = hub.upload(src, "roboaug-test/lerobot-v30", WRITE_TOKEN, "round trip")
    dest = hub.download(DatasetRef.parse(f"hf://roboaug-test/lerobot-v30@{sha}"), tmp_path / "dl", READ_TOKEN)  # private
    got = read_tree(dest)
    got.pop(".gitattributes")
    assert got == files
    ds = lerobot_dataset.load(dest)  # the worker's own loader accepts the downloaded copy
    assert len(ds.episodes) == 3


# -- visibility, ownership, the version tag, pinning a source ------------------------------------------
def test_output_is_private_unless_asked_public(local_hub, tmp_path):
    from huggingface_hub import HfApi

    make_folder(tmp_path / "out")
    hub.upload(tmp_path / "out", "roboaug-test/vis-default", WRITE_TOKEN, "x")
    hub.upload(tmp_path / "out", "roboaug-test/vis-public", WRITE_TOKEN, "x", private=False)
    store = local_hub.store
    assert store.is_private("dataset", "roboaug-test/vis-default") is True
    assert store.is_private("dataset", "roboaug-test/vis-public") is False
    anonymous = HfApi(endpoint=local_hub.endpoint, token=False)
    assert anonymous.repo_info("roboaug-test/vis-public", repo_type="dataset").private is False
    e = _download_error("hf://roboaug-test/vis-default", tmp_path / "d")
    assert e.code == ExitCode.DATASET_NOT_FOUND  # to anyone else it does not exist


def test_refuses_to_overwrite_a_repo_roboaug_did_not_make(local_hub, tmp_path):
    make_folder(tmp_path / "out")
    foreign = {
        "roboaug-test/someones": {"meta/info.json": b'{"theirs": true}'},
        "roboaug-test/lookalike": {"meta/augmentation.json": b'{"generator": "someone-else"}'},
    }
    for repo, files in foreign.items():
        before = local_hub.seed(repo, files)
        with pytest.raises(WorkerError) as err:
            hub.upload(tmp_path / "out", repo, WRITE_TOKEN, "x")
        assert err.value.code == ExitCode.INVALID_SPEC and not err.value.retryable
        assert repo in err.value.message and "refusing to overwrite" in err.value.message
        assert local_hub.store.branches("dataset", repo) == {"main": before}  # untouched, still there
    # an empty repo (left by a failed attempt, or made by the user for us) is written into
    local_hub.store.create("dataset", "roboaug-test/empty")
    sha = hub.upload(tmp_path / "out", "roboaug-test/empty", WRITE_TOKEN, "x")
    assert local_hub.store.branches("dataset", "roboaug-test/empty")["main"] == sha


def test_version_tag_is_created_then_moved_with_the_output(local_hub, tmp_path):
    repo = "roboaug-test/tagged"
    make_folder(tmp_path / "a", seed=1)
    make_folder(tmp_path / "b", seed=2)
    sha1 = hub.upload(tmp_path / "a", repo, WRITE_TOKEN, "first", tag="v3.0")
    assert local_hub.store.tags("dataset", repo) == {"v3.0": sha1}
    sha2 = hub.upload(tmp_path / "b", repo, WRITE_TOKEN, "second", tag="v3.0")
    assert sha2 != sha1 and local_hub.store.tags("dataset", repo) == {"v3.0": sha2}
    local_hub.reset()
    assert hub.upload(tmp_path / "b", repo, WRITE_TOKEN, "again", tag="v3.0") == sha2  # idempotent
    assert local_hub.store.tags("dataset", repo) == {"v3.0": sha2}
    assert not local_hub.requests("DELETE", r"/tag/")  # nothing to move


def test_resolve_pins_a_revision_to_its_commit(local_hub, tmp_path):
    repo = "roboaug-test/resolve"
    sha1 = local_hub.seed(repo, {"a.txt": b"1"})
    local_hub.store.create_tag("dataset", repo, "v1", sha1)
    sha2 = local_hub.seed(repo, {"a.txt": b"2"})
    assert hub.resolve(DatasetRef.parse(repo), None) == hub.Resolved(repo, sha2, False)
    assert hub.resolve(DatasetRef.parse(f"hf://{repo}@v1"), None).sha == sha1
    assert hub.resolve(DatasetRef.parse(f"hf://{repo}@{sha1}"), None).sha == sha1
    with pytest.raises(WorkerError) as err:
        hub.resolve(DatasetRef.parse(f"hf://{repo}@nope"), None)
    assert err.value.code == ExitCode.DATASET_NOT_FOUND and "nope" in err.value.message
    local_hub.store.create("dataset", "roboaug-test/resolve-private", private=True)
    assert hub.resolve(DatasetRef.parse("roboaug-test/resolve-private"), READ_TOKEN).private is True
