"""The worker's Hugging Face Hub access: pin a source to a commit, download it, publish a folder.

Sources are read at one commit: `resolve` turns the requested revision (default `main`, a branch,
a tag or a sha) into the commit sha, and the download asks for exactly that sha, so a branch
moving mid-download cannot mix two trees, and provenance can name what was read.

Publishing is ONE commit on `main` (`_commit_main`: `HfApi.create_commit` with every file of the
dataset, plus deletions of files an earlier dataset left in the repo). The Hub applies a commit
atomically and only after every LFS object it references was uploaded, so readers of `main` see
the previous tree or the complete new one, never a part. `upload_folder` is avoided on purpose:
with hf_xet installed it splits large folders over several commits. A failed upload into a repo
this call created deletes that repo again (best effort), so no empty dataset repo is left behind.

Sharded jobs (issue 16) publish through the same commit: `open_staging` makes the job's branch
`roboaug-staging-<job_id>` (holding only `.gitattributes` and what shards stage), each shard
`commit_shard`s its files there (its manifest `.roboaug/shards/<i>.files.json` lets a retry
replace exactly its own files), the finalize pod `read_staging`s the shards' results and
`publish`es: the one commit on main copies the shards' files from the branch server-side
(`CommitOperationCopy`: an LFS file is referenced by its sha256, nothing is uploaded again), adds
the merged metadata, prunes and tags as `upload` does; then the branch is deleted. `main` does
not change before that commit. `drop_staging` removes the branch of a failed or cancelled job.

Ownership: the worker creates a missing output repo with the requested visibility, and writes
into an existing one only when it holds nothing (at most `.gitattributes`: e.g. left by an
attempt that failed) or holds a dataset this service made (`provenance.is_roboaug_provenance` on
its `meta/augmentation.json`); anything else is refused as INVALID_SPEC naming the repo, never
overwritten. An existing repo keeps its visibility. After the commit, `tag` (LeRobot's
`codebase_version`: lerobot resolves its default revision through the repo's tags) is created on
it, or moved there by delete + create as lerobot's own push does.

Transfer protocol: huggingface_hub 2.x uploads LFS content through Xet whenever hf_xet is
installed and never falls back by itself. `upload` therefore asks the endpoint for a Xet write
token first and, where the endpoint offers no Xet (404), uploads through the classic LFS batch
API for that one call. HF_HUB_DISABLE_XET=1 skips the question. Downloads need no such care: the
client only uses Xet for files the server marks as Xet-stored.

HF_ENDPOINT is read at call time (huggingface_hub reads it once, at import) so a test can point
the worker at a local Hub. The token is passed explicitly: `None` means anonymous, never a token
found on disk. It never appears in logs or messages: every failure becomes a `WorkerError` whose
text is written here from the repo id, the HTTP status and the scrubbed server message.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import re
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional, TypeVar

from roboaug.api.models import DatasetRef

from .errors import ExitCode, WorkerError
from .provenance import PROVENANCE_PATH, is_roboaug_provenance

REPO_TYPE = "dataset"
_SKIP_DIRS = (".cache", ".git")  # snapshot metadata and VCS folders are not part of a dataset
_XET_SWITCH = threading.Lock()
_TOKEN_LIKE = re.compile(r"\bhf_[A-Za-z0-9_]{6,}")


def token_from_env() -> Optional[str]:
    """The Hub token from HF_TOKEN (a Secret mounted as env); None when unset or blank."""
    value = os.environ.get("HF_TOKEN", "").strip()
    return value or None


def xet_available() -> bool:
    """Whether huggingface_hub will transfer through Xet: hf_xet is installed and
    HF_HUB_DISABLE_XET is not set. The same two checks as huggingface_hub's own (private)
    `utils._runtime.is_xet_available`; the flag is read from `constants` at call time, where
    `_transfer_protocol` switches it."""
    from huggingface_hub import constants

    if constants.HF_HUB_DISABLE_XET:
        return False
    try:
        importlib.metadata.version("hf_xet")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def _endpoint() -> Optional[str]:
    value = os.environ.get("HF_ENDPOINT", "").strip().rstrip("/")
    return value or None


def _auth(token: Optional[str]):
    # False, not None: None would make huggingface_hub pick up a token saved on disk
    return token if token else False


# -- download ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Resolved:
    """A Hub dataset pinned: the commit a revision named when asked, and the repo's visibility."""

    repo_id: str
    sha: str
    private: bool


def resolve(ref: DatasetRef, token: Optional[str]) -> Resolved:
    """The commit sha `ref.revision` (default `main`) names now, and whether the repo is private."""
    if ref.scheme != "hf" or not ref.repo_id:
        raise WorkerError(ExitCode.INVALID_SPEC, f"dataset_id: cannot resolve {ref!r} on the Hub (scheme must be hf)")
    from huggingface_hub import HfApi

    what = f"dataset {ref.repo_id}" + (f"@{ref.revision}" if ref.revision else "")
    try:
        info = HfApi(endpoint=_endpoint(), token=_auth(token)).repo_info(
            ref.repo_id, repo_type=REPO_TYPE, revision=ref.revision or "main")
    except Exception as exc:
        _reraise(exc, what, token)
    return Resolved(ref.repo_id, info.sha, bool(info.private))


def download(ref: DatasetRef, dest: Path, token: Optional[str], *, only: Optional[list[str]] = None,
             fresh: bool = True) -> Path:
    """A complete local copy of the dataset `ref` names.

    `file://` datasets are used in place (checked, not copied). Hub datasets are downloaded into
    `dest` (emptied first, so nothing stale can pass for part of the snapshot; removed again on
    failure) at `ref.revision` or `main`, and `dest` is returned. `only`: just the files matching these patterns
    (fnmatch, `*` crosses `/`), for a preview that needs a few episodes' files. `fresh=False`: `dest`
    already holds part of this same pinned commit (SourceParts); it is added to, not emptied.
    """
    if ref.scheme == "file":
        root = Path(ref.path or "")
        if not ref.path or not root.is_dir():
            raise WorkerError(ExitCode.DATASET_NOT_FOUND, f"dataset file://{ref.path} not found (no such directory)")
        return root
    if ref.scheme != "hf" or not ref.repo_id:
        raise WorkerError(ExitCode.INVALID_SPEC, f"dataset_id: cannot download {ref!r} (scheme must be hf or file)")

    from huggingface_hub import snapshot_download

    dest = Path(dest)
    what = f"dataset {ref.repo_id}" + (f"@{ref.revision}" if ref.revision else "")
    if fresh:
        shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True, exist_ok=True)
    try:
        path = snapshot_download(
            ref.repo_id,
            repo_type=REPO_TYPE,
            revision=ref.revision,
            local_dir=dest,
            allow_patterns=only,
            token=_auth(token),
            endpoint=_endpoint(),
        )
    except Exception as exc:
        shutil.rmtree(dest, ignore_errors=True)
        _reraise(exc, what, token)
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    return Path(path)


def file_sizes(ref: DatasetRef, token: Optional[str]) -> dict[str, int]:
    """Path -> size in bytes of every file of the Hub dataset `ref` (pinned: `ref.revision` a sha),
    from the tree listing: what the LeRobot layout weighs units by before any data file is here."""
    from huggingface_hub import HfApi
    from huggingface_hub.hf_api import RepoFile

    what = f"the file list of dataset {ref.repo_id}" + (f"@{ref.revision}" if ref.revision else "")
    try:
        tree = HfApi(endpoint=_endpoint(), token=_auth(token)).list_repo_tree(
            ref.repo_id, repo_type=REPO_TYPE, revision=ref.revision, recursive=True)
        return {f.path: int(f.size) for f in tree if isinstance(f, RepoFile)}
    except Exception as exc:
        _reraise(exc, what, token)


def exact_pattern(path: str) -> str:
    """An `only=` pattern that matches `path` alone (fnmatch's wildcards in a name taken literally)."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in path)


@dataclass
class SourceParts:
    """A Hub LeRobot source fetched in parts into `root`: meta/ first, then what the pod's work reads
    (stages.LeRobotUnits): a pod that only plans, or runs one shard, skips the other files' bytes."""

    ref: DatasetRef  # pinned to a commit sha
    root: Path
    token: Optional[str]
    sizes: dict[str, int]  # file_sizes of that commit

    def fetch(self, paths) -> None:
        """These files (repo-relative), those not here yet."""
        missing = sorted({p for p in paths if not (self.root / p).is_file()})
        if missing:
            download(self.ref, self.root, self.token, only=[exact_pattern(p) for p in missing], fresh=False)

    def fetch_all(self) -> None:
        download(self.ref, self.root, self.token, fresh=False)


def read_file(ref: DatasetRef, filename: str, token: Optional[str]) -> Optional[bytes]:
    """One file of the Hub dataset `ref` (pinned: `ref.revision` a sha), or None when it has no such
    file: what the worker reads before deciding to download the rest (e.g. meta/info.json)."""
    from huggingface_hub import errors as E
    from huggingface_hub import hf_hub_download

    what = f"{filename} of dataset {ref.repo_id}" + (f"@{ref.revision}" if ref.revision else "")
    with tempfile.TemporaryDirectory(prefix="roboaug-read-") as tmp:
        try:
            path = hf_hub_download(ref.repo_id, filename, repo_type=REPO_TYPE, revision=ref.revision,
                                   local_dir=tmp, token=_auth(token), endpoint=_endpoint())
        except E.RemoteEntryNotFoundError:
            return None
        except Exception as exc:
            _reraise(exc, what, token)
        return Path(path).read_bytes()


# -- upload ------------------------------------------------------------------------------------
def _local_files(folder: Path) -> list[str]:
    out = []
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder)
        if p.is_file() and not (rel.parts and rel.parts[0] in _SKIP_DIRS):
            out.append(rel.as_posix())
    return out


def _check_ours(api, repo_id: str, head: str, remote: list[str], token: Optional[str]) -> None:
    """Refuse (INVALID_SPEC) to write into a repo holding a dataset this service did not make."""
    if not set(remote) - {".gitattributes"}:
        return  # empty: nothing of anyone's to overwrite
    doc = None
    if PROVENANCE_PATH in remote:
        from huggingface_hub import hf_hub_download

        with tempfile.TemporaryDirectory() as tmp:
            path = hf_hub_download(repo_id, PROVENANCE_PATH, repo_type=REPO_TYPE, revision=head, local_dir=tmp,
                                   token=_auth(token), endpoint=api.endpoint)
            doc = Path(path).read_bytes()
    if doc is None or not is_roboaug_provenance(doc):
        raise WorkerError(ExitCode.INVALID_SPEC, (
            f"output_dataset_id {repo_id}: the repo exists and holds a dataset roboaug did not make "
            f"(no roboaug {PROVENANCE_PATH}); refusing to overwrite it: name a new repo"))


def _move_tag(api, repo_id: str, tag: str, sha: str) -> None:
    """`tag` on commit `sha`, created or moved (the Hub has no tag update: delete + create)."""
    current = {t.name: t.target_commit for t in api.list_repo_refs(repo_id, repo_type=REPO_TYPE).tags}
    if current.get(tag) == sha:
        return
    if tag in current:
        api.delete_tag(repo_id, tag=tag, repo_type=REPO_TYPE)
    api.create_tag(repo_id, tag=tag, revision=sha, repo_type=REPO_TYPE)


def upload(folder: Path, repo_id: str, token: Optional[str], message: str, *, private: bool = True,
           tag: Optional[str] = None) -> str:
    """Publish every file under `folder` to dataset repo `repo_id` in one commit on main; its sha.

    Creates the repo when missing (`private` decides its visibility) and refuses an existing one
    that is neither empty nor a roboaug output (see the module's docstring). Files the repo holds
    that `folder` lacks are deleted in the same commit (`.gitattributes` kept), so `main` holds
    exactly this dataset afterwards; `tag`, when given, ends up on that commit.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise WorkerError(ExitCode.INTERNAL, f"nothing to upload: {folder} is not a folder")
    files = _local_files(folder)
    if not files:
        raise WorkerError(ExitCode.INTERNAL, f"nothing to upload: {folder} is empty")
    api = _api(token)
    created = False
    try:
        created = _ensure_repo(api, repo_id, private)
        return _commit_main(api, repo_id, token, message, adds={rel: folder / rel for rel in files},
                            tag=tag, checked=created)
    except Exception as exc:
        if created:
            with contextlib.suppress(Exception):
                api.delete_repo(repo_id, repo_type=REPO_TYPE)
        _reraise(exc, f"dataset {repo_id}", token)


def _api(token: Optional[str]):
    from huggingface_hub import HfApi

    return HfApi(endpoint=_endpoint(), token=_auth(token))


def _ensure_repo(api, repo_id: str, private: bool) -> bool:
    """Create dataset repo `repo_id` unless it exists; whether this call created it."""
    from huggingface_hub.errors import HfHubHTTPError

    try:
        api.create_repo(repo_id, repo_type=REPO_TYPE, exist_ok=False, private=private)
        return True
    except HfHubHTTPError as exc:
        if exc.response is None or exc.response.status_code != 409:  # 409: it exists already
            raise
        return False


def _commit_main(api, repo_id: str, token: Optional[str], message: str, *, adds: dict[str, Path],
                 copies: Iterable[str] = (), src_revision: Optional[str] = None, tag: Optional[str] = None,
                 checked: bool = False) -> str:
    """THE one commit on main that publishes a dataset, for `upload` and `publish` alike: `adds`
    uploaded from local files, `copies` copied server-side from `src_revision` (the Hub copies an
    LFS file by its sha256: nothing is uploaded again), every other file main holds deleted
    (`.gitattributes` kept), against the head read here (`parent_commit`: a commit that landed
    meanwhile makes this one fail rather than be overwritten); then `tag` on it. `checked`: the
    repo was just created, so the ownership check has nothing to look at."""
    from huggingface_hub import CommitOperationAdd, CommitOperationCopy, CommitOperationDelete

    copies = sorted(set(copies))
    overlap = set(copies) & set(adds)
    if overlap:
        raise WorkerError(ExitCode.INTERNAL, f"publish: {sorted(overlap)[0]} is both copied and added")
    head = api.repo_info(repo_id, repo_type=REPO_TYPE, revision="main").sha
    remote = api.list_repo_files(repo_id, repo_type=REPO_TYPE, revision=head)
    if not checked:
        _check_ours(api, repo_id, head, remote, token)
    keep = set(adds) | set(copies) | {".gitattributes"}
    ops = [CommitOperationAdd(path_in_repo=rel, path_or_fileobj=str(adds[rel])) for rel in sorted(adds)]
    ops += [CommitOperationCopy(src_path_in_repo=p, path_in_repo=p, src_revision=src_revision) for p in copies]
    ops += [CommitOperationDelete(path_in_repo=p) for p in sorted(remote) if p not in keep]
    with _transfer_protocol(api, repo_id, token):
        info = api.create_commit(repo_id, operations=ops, commit_message=message, repo_type=REPO_TYPE,
                                 revision="main", parent_commit=head)
    if tag:
        _move_tag(api, repo_id, tag, info.oid)
    return info.oid


# -- staging: shards commit to a branch, one commit publishes to main ---------------------------
STAGING_PREFIX = "roboaug-staging-"
STAGING_DIR = ".roboaug"  # the branch's bookkeeping and shard results; never copied to main
_STAGING_META = f"{STAGING_DIR}/staging.json"
_BRANCH_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")


def staging_branch(job_id: str) -> str:
    """The staging branch of job `job_id`: `roboaug-staging-<job_id>` (the issue 16 contract)."""
    name = f"{STAGING_PREFIX}{job_id}"
    if not _BRANCH_SAFE.match(name) or ".." in name or name.endswith((".", ".lock")):
        raise WorkerError(ExitCode.INTERNAL, f"job id {job_id!r} does not make a valid branch name")
    return name


def shard_manifest_path(shard_index: int) -> str:
    """Where a shard's list of its own files lives on the staging branch."""
    return f"{STAGING_DIR}/shards/{int(shard_index)}.files.json"


def open_staging(repo_id: str, job_id: str, token: Optional[str], *, private: bool = True) -> str:
    """Create (idempotently) the staging branch of job `job_id` in output repo `repo_id`; its name.

    The repo is created when missing (`private`: its visibility) and refused (INVALID_SPEC) when
    it holds a dataset roboaug did not make, before any shard works. The branch starts at main's
    head and its first commit (the one that opens it: `.roboaug/staging.json` added) deletes every
    file but `.gitattributes` (which decides what goes through LFS), so it holds only what the
    shards stage; LFS objects main already references are not uploaded again (the Hub's LFS store
    is per repo). Whether this call created the repo is recorded on the branch, so that
    `drop_staging` can remove a repo left empty.

    Every shard of a job calls this, usually at once: a branch that is open already (a retried
    pod, or another shard first) is kept as it is, and the opening commit is made against the
    branch head read just before (`parent_commit`), so of two shards racing to open it one
    commits and the other is refused (409/412) and, retried by `_retry_conflicts` like a shard
    commit, finds it open; a late opening commit can never delete what a shard staged meanwhile.
    """
    branch = staging_branch(job_id)
    what = f"dataset {repo_id} (staging branch {branch})"
    api = _api(token)
    try:
        created = _ensure_repo(api, repo_id, private)
        head = api.repo_info(repo_id, repo_type=REPO_TYPE, revision="main").sha
        if not created:
            _check_ours(api, repo_id, head, api.list_repo_files(repo_id, repo_type=REPO_TYPE, revision=head), token)
    except Exception as exc:
        _reraise(exc, what, token)
    meta = {"job_id": job_id, "created_repo": created}
    _retry_conflicts(what, token, lambda: _open_staging_once(api, repo_id, branch, head, meta, token))
    return branch


def _open_staging_once(api, repo_id: str, branch: str, main_head: str, meta: dict, token: Optional[str]) -> None:
    """One try at opening `branch`, from a fresh read of its head; a commit that loses a race for
    the branch raises the Hub's 409/412 for `_retry_conflicts`."""
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    if branch not in {b.name for b in api.list_repo_refs(repo_id, repo_type=REPO_TYPE).branches}:
        # exist_ok: another shard may create it between the listing and this call; same branch
        api.create_branch(repo_id, branch=branch, revision=main_head, repo_type=REPO_TYPE, exist_ok=True)
    head = api.repo_info(repo_id, repo_type=REPO_TYPE, revision=branch).sha
    have = _read_json(api, repo_id, head, _STAGING_META, token)
    if have is not None and (have.get("created_repo") or not meta["created_repo"]):
        return  # open already: kept as it is
    body = json.dumps({**(have or {}), **meta}, sort_keys=True).encode()
    ops = [CommitOperationAdd(_STAGING_META, body)]
    if have is None:
        # the branch keeps only main's .gitattributes: what it holds is what the shards staged
        remote = api.list_repo_files(repo_id, repo_type=REPO_TYPE, revision=head)
        ops += [CommitOperationDelete(p) for p in sorted(remote) if p not in (".gitattributes", _STAGING_META)]
        message = f"roboaug: open staging for job {meta['job_id']}"
    else:
        # another shard opened it first, not knowing that this one had just created the repo:
        # without the mark, drop_staging would leave the empty repo behind
        message = f"roboaug: staging for job {meta['job_id']}: the repo was created for it"
    api.create_commit(repo_id, operations=ops, commit_message=message, repo_type=REPO_TYPE, revision=branch,
                      parent_commit=head)


COMMIT_CONFLICTS = frozenset({409, 412})
"""What the Hub answers a commit that lost a race for its branch (another commit moved it): many
shards opening (`open_staging`) or committing to one staging branch at once meet it on the real Hub."""
COMMIT_ATTEMPTS = 6
COMMIT_BACKOFF_S = 0.5
"""The first wait after a conflict; each next one doubles (at most COMMIT_BACKOFF_MAX_S), each
drawn at random up to that bound (full jitter) so the shards that collided do not collide again."""
COMMIT_BACKOFF_MAX_S = 8.0


def _conflict(exc: BaseException) -> Optional[int]:
    """The HTTP status when `exc` (or a cause) is the Hub refusing a commit that lost a race."""
    from huggingface_hub.errors import HfHubHTTPError

    for e in _chain(exc):
        if isinstance(e, HfHubHTTPError) and e.response is not None and e.response.status_code in COMMIT_CONFLICTS:
            return e.response.status_code
    return None


def commit_shard(repo_id: str, branch: str, shard_index: int, files: dict[str, Path], token: Optional[str]) -> str:
    """One commit on `branch` with shard `shard_index`'s files (path in repo -> local file); its sha.

    The shard's manifest (`shard_manifest_path`) lists what it committed; files an earlier attempt
    of the same shard committed and this one lacks are deleted in the same commit, so a retried
    shard replaces exactly its own files and never touches another shard's. Unchanged files are
    not uploaded again (the client skips what the branch already holds).

    A commit the Hub refuses with 409 or 412 (COMMIT_CONFLICTS: the branch moved under it) is
    made again from a fresh read of the branch, up to COMMIT_ATTEMPTS times with jittered
    exponential backoff (`_retry_conflicts`, as `open_staging`); then NETWORK (retryable: the pod
    is retried). Files uploaded by a refused attempt are not uploaded again (the Hub already
    holds them).
    """
    manifest = shard_manifest_path(shard_index)
    bad = [p for p in files if p == manifest or p == _STAGING_META or not p or p.startswith("/")]
    if bad:
        raise WorkerError(ExitCode.INTERNAL, f"shard {shard_index}: {bad[0]!r} is not a path a shard may commit")
    api = _api(token)
    what = f"dataset {repo_id} (staging branch {branch}, shard {shard_index})"
    return _retry_conflicts(
        what, token, lambda: _commit_shard_once(api, repo_id, branch, shard_index, files, manifest, token))


_T = TypeVar("_T")


def _retry_conflicts(what: str, token: Optional[str], attempt: Callable[[], _T]) -> _T:
    """`attempt()`, made again while the Hub refuses its commit with 409/412 (COMMIT_CONFLICTS),
    up to COMMIT_ATTEMPTS times with jittered exponential backoff; then NETWORK naming `what`
    and the status (retryable: the pod is retried). `attempt` reads the branch afresh each time,
    which is what makes trying again right. Any other failure is mapped at once (`map_error`)."""
    import random
    import time

    for n in range(1, COMMIT_ATTEMPTS + 1):
        try:
            return attempt()
        except Exception as exc:
            status = _conflict(exc)
            if status is None:
                _reraise(exc, what, token)
            if n == COMMIT_ATTEMPTS:
                raise WorkerError(ExitCode.NETWORK, f"{what}: the Hub refused {COMMIT_ATTEMPTS} commits in a row "
                                  f"({status}: the branch kept moving under them)") from exc
            time.sleep(random.uniform(0, min(COMMIT_BACKOFF_MAX_S, COMMIT_BACKOFF_S * 2 ** (n - 1))))
    raise AssertionError("unreachable")


def _commit_shard_once(api, repo_id: str, branch: str, shard_index: int, files: dict[str, Path], manifest: str,
                       token: Optional[str]) -> str:
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    before = _read_json(api, repo_id, branch, manifest, token) or {"files": []}
    present = set(api.list_repo_files(repo_id, repo_type=REPO_TYPE, revision=branch))
    now = sorted(files)
    body = json.dumps({"shard": int(shard_index), "files": now}, sort_keys=True).encode()
    ops = [CommitOperationAdd(path_in_repo=p, path_or_fileobj=str(files[p])) for p in now]
    ops.append(CommitOperationAdd(path_in_repo=manifest, path_or_fileobj=body))
    ops += [CommitOperationDelete(path_in_repo=p) for p in sorted(set(before["files"]) - set(now)) if p in present]
    with _transfer_protocol(api, repo_id, token):
        info = api.create_commit(repo_id, operations=ops, repo_type=REPO_TYPE, revision=branch,
                                 commit_message=f"roboaug: shard {shard_index}")
    return info.oid


def read_staging(repo_id: str, branch: str, path_in_repo: str, token: Optional[str], *,
                 dest: Optional[Path] = None) -> Path:
    """Download one file of the staging branch; its local path (under `dest`, default a new
    temporary folder the caller owns). A missing file is DATASET_NOT_FOUND naming it."""
    from huggingface_hub import hf_hub_download

    local = Path(dest) if dest is not None else Path(tempfile.mkdtemp(prefix="roboaug-staging-"))
    try:
        return Path(hf_hub_download(repo_id, path_in_repo, repo_type=REPO_TYPE, revision=branch, local_dir=local,
                                    token=_auth(token), endpoint=_endpoint()))
    except Exception as exc:
        _reraise(exc, f"{path_in_repo} of dataset {repo_id} (staging branch {branch})", token)


def staged_files(repo_id: str, branch: str, token: Optional[str]) -> list[str]:
    """Every file on the staging branch except its bookkeeping (`.roboaug/`) and `.gitattributes`."""
    try:
        files = _api(token).list_repo_files(repo_id, repo_type=REPO_TYPE, revision=branch)
    except Exception as exc:
        _reraise(exc, f"dataset {repo_id} (staging branch {branch})", token)
    return sorted(p for p in files if p != ".gitattributes" and not p.startswith(STAGING_DIR + "/"))


def publish(repo_id: str, branch: str, copy_paths: list[str], add_files: dict[str, Path], message: str,
            token: Optional[str], *, tag: Optional[str] = None) -> str:
    """Publish the job's dataset in ONE commit on main; its sha. Then delete the staging branch.

    `copy_paths` are copied server-side from `branch` (no upload: the Hub references the LFS
    objects the shards uploaded), `add_files` (path in repo -> local file: the merged metadata)
    uploaded, everything else main holds deleted and `tag` moved there, exactly as `upload` does.
    Nothing changes on main before that commit. Run again after a failure it converges: copies
    and additions main already holds are skipped by the client, so a retry after the commit
    landed makes no second commit and only finishes the tag and the branch deletion.
    """
    bad = [p for p in copy_paths if p.startswith(STAGING_DIR + "/")]
    if bad:
        raise WorkerError(ExitCode.INTERNAL, f"publish: {bad[0]} is staging bookkeeping, never copied to main")
    api = _api(token)
    what = f"dataset {repo_id} (publishing staging branch {branch})"
    try:
        if branch not in {b.name for b in api.list_repo_refs(repo_id, repo_type=REPO_TYPE).branches}:
            raise WorkerError(ExitCode.INTERNAL, f"{what}: the staging branch does not exist (dropped or published already)")
        sha = _commit_main(api, repo_id, token, message, adds={p: Path(v) for p, v in add_files.items()},
                           copies=copy_paths, src_revision=branch, tag=tag)
        api.delete_branch(repo_id, branch=branch, repo_type=REPO_TYPE)
        return sha
    except Exception as exc:
        _reraise(exc, what, token)


def drop_staging(repo_id: str, branch: str, token: Optional[str]) -> None:
    """Remove the staging branch of a failed or cancelled job (idempotent: a missing branch or repo
    is fine). A repo that `open_staging` created and whose main still holds nothing is deleted too,
    as `upload` deletes a repo it created when its commit fails."""
    from huggingface_hub import errors as E

    api = _api(token)
    try:
        try:
            meta = _read_json(api, repo_id, branch, _STAGING_META, token) or {}
        except (E.RepositoryNotFoundError, E.RevisionNotFoundError):
            return
        with contextlib.suppress(E.RevisionNotFoundError):
            api.delete_branch(repo_id, branch=branch, repo_type=REPO_TYPE)
        if meta.get("created_repo"):
            main = set(api.list_repo_files(repo_id, repo_type=REPO_TYPE, revision="main"))
            branches = {b.name for b in api.list_repo_refs(repo_id, repo_type=REPO_TYPE).branches}
            if main <= {".gitattributes"} and branches == {"main"}:
                api.delete_repo(repo_id, repo_type=REPO_TYPE, missing_ok=True)
    except Exception as exc:
        _reraise(exc, f"dataset {repo_id} (dropping staging branch {branch})", token)


def _read_json(api, repo_id: str, revision: str, path: str, token: Optional[str]) -> Optional[dict]:
    """A small JSON file of `revision`, or None when it has none."""
    from huggingface_hub import errors as E
    from huggingface_hub import hf_hub_download

    with tempfile.TemporaryDirectory(prefix="roboaug-read-") as tmp:
        try:
            local = hf_hub_download(repo_id, path, repo_type=REPO_TYPE, revision=revision, local_dir=tmp,
                                    token=_auth(token), endpoint=api.endpoint)
        except E.RemoteEntryNotFoundError:
            return None
        return json.loads(Path(local).read_bytes())


def xet_offered(api, repo_id: str, token: Optional[str]) -> bool:
    """Whether the endpoint hands out Xet write tokens for this repo (the Hub does; a Hub without
    Xet answers 404). Other failures raise, to be mapped like any Hub error."""
    from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

    url = f"{api.endpoint}/api/{REPO_TYPE}s/{repo_id}/xet-write-token/main"
    response = get_session().get(url, headers=build_hf_headers(token=_auth(token)))
    if response.status_code in (404, 405, 501):
        return False
    hf_raise_for_status(response)
    return True


@contextlib.contextmanager
def _transfer_protocol(api, repo_id: str, token: Optional[str]) -> Iterator[str]:
    """Yield "xet" or "lfs": the protocol create_commit will use inside this block."""
    from huggingface_hub import constants

    if not xet_available():
        yield "lfs"
        return
    if xet_offered(api, repo_id, token):
        yield "xet"
        return
    # huggingface_hub consults this flag on every upload; the lock keeps two uploads in one
    # process from restoring each other's value
    with _XET_SWITCH:
        saved = constants.HF_HUB_DISABLE_XET
        constants.HF_HUB_DISABLE_XET = True
        try:
            yield "lfs"
        finally:
            constants.HF_HUB_DISABLE_XET = saved


# -- errors ------------------------------------------------------------------------------------
def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _scrub(text: str, token: Optional[str]) -> str:
    if token:
        text = text.replace(token, "***")
    text = _TOKEN_LIKE.sub("hf_***", text)
    return " ".join(text.split())[:200]


def _classify(exc: BaseException) -> Optional[tuple[ExitCode, str]]:
    import httpx2
    from huggingface_hub import errors as E

    if isinstance(exc, E.GatedRepoError):
        return ExitCode.AUTH, "gated repository: the token has not been granted access"
    if isinstance(exc, E.RepositoryNotFoundError):
        return ExitCode.DATASET_NOT_FOUND, "not found on the Hub (or private and not visible to the token)"
    if isinstance(exc, E.RevisionNotFoundError):
        return ExitCode.DATASET_NOT_FOUND, "revision not found on the Hub"
    if isinstance(exc, E.RemoteEntryNotFoundError):
        return ExitCode.DATASET_NOT_FOUND, "a file of the dataset is missing on the Hub"
    if isinstance(exc, E.DisabledRepoError):
        return ExitCode.DATASET_NOT_FOUND, "repository disabled on the Hub"
    if isinstance(exc, E.HFValidationError):
        return ExitCode.INVALID_SPEC, "not a valid Hub repo id or revision"
    if isinstance(exc, E.HfHubHTTPError) and exc.response is not None:
        status = exc.response.status_code
        if status == 401:
            return ExitCode.AUTH, "the Hub rejected the token (401): missing, invalid or expired"
        if status == 403:
            return ExitCode.AUTH, "the token lacks the needed permission (403), e.g. write access"
        if status == 404:
            return ExitCode.DATASET_NOT_FOUND, "not found on the Hub (404)"
        if status in (408, 429) or status >= 500:
            return ExitCode.NETWORK, f"the Hub answered {status}"
        return ExitCode.INTERNAL, f"the Hub refused the request ({status})"
    if isinstance(exc, E.OfflineModeIsEnabled):
        return ExitCode.NETWORK, "HF_HUB_OFFLINE is set, so the Hub cannot be reached"
    if isinstance(exc, (httpx2.TransportError, ConnectionError, TimeoutError)):
        return ExitCode.NETWORK, f"cannot reach the Hub ({type(exc).__name__})"
    if isinstance(exc, E.FileMetadataError):
        return ExitCode.NETWORK, "the endpoint did not answer like the Hub (proxy or firewall?)"
    return None


def _reraise(exc: Exception, what: str, token: Optional[str]):
    mapped = map_error(exc, what, token)
    if mapped is exc:
        raise exc
    raise mapped from exc


def map_error(exc: BaseException, what: str, token: Optional[str] = None) -> BaseException:
    """The WorkerError for a failure of a Hub call about `what`, or `exc` itself when unknown.

    Looks through the exception's causes: huggingface_hub wraps HTTP errors (a failed snapshot
    becomes LocalEntryNotFoundError "from" the real error, a failed LFS upload a RuntimeError).
    """
    from huggingface_hub import errors as E

    if isinstance(exc, WorkerError):
        return exc
    unreachable = False
    for e in _chain(exc):
        if isinstance(e, WorkerError):
            return e
        if isinstance(e, E.LocalEntryNotFoundError):  # "could not reach the Hub": the cause says why
            unreachable = True
            continue
        found = _classify(e)
        if found is not None:
            code, reason = found
            detail = getattr(e, "server_message", None)
            if detail:
                reason = f"{reason}: {_scrub(str(detail), token)}"
            return WorkerError(code, f"{what}: {reason}")
    if unreachable:
        return WorkerError(ExitCode.NETWORK, f"{what}: the Hub could not be reached")
    return exc
