"""A git-less repository store: immutable commits (path -> blob) per repo, branches as refs.

Layout under the root, per repo `<type>s/<org>/<name>/`:
  refs.json            {"branches": {"main": "<sha>", ...}, "tags": {"v1": "<sha>"}, "private": bool}
  commits/<sha>.json   {"id", "parents", "title", "message", "date", "files": {path: entry}}
  blobs/<git sha1>     content of regular files (content-addressed)
  lfs/<sha256>         content of LFS objects (content-addressed, per repo like the Hub)
An entry is {"size", "oid" (git blob id), "lfs": null | {"oid": sha256, "size", "pointerSize"}}.
Commits are written whole before the branch ref moves, under a lock, so a reader sees either the
old or the new tree, never a mix: the property the worker's "one commit" publishing relies on.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

SHA1_RE = re.compile(r"^[0-9a-f]{40}$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
REPO_TYPES = ("model", "dataset", "space")

# What the Hub puts in a new repo: the LFS patterns decide the upload mode of matching files.
DEFAULT_GITATTRIBUTES = b"""*.7z filter=lfs diff=lfs merge=lfs -text
*.arrow filter=lfs diff=lfs merge=lfs -text
*.bin filter=lfs diff=lfs merge=lfs -text
*.gz filter=lfs diff=lfs merge=lfs -text
*.jpg filter=lfs diff=lfs merge=lfs -text
*.mp4 filter=lfs diff=lfs merge=lfs -text
*.npy filter=lfs diff=lfs merge=lfs -text
*.parquet filter=lfs diff=lfs merge=lfs -text
*.png filter=lfs diff=lfs merge=lfs -text
*.safetensors filter=lfs diff=lfs merge=lfs -text
*.tar filter=lfs diff=lfs merge=lfs -text
*.zip filter=lfs diff=lfs merge=lfs -text
"""


class StoreError(Exception):
    """A request the Hub would refuse; `code` is the HTTP status, `error_code` the X-Error-Code."""

    def __init__(self, status: int, message: str, error_code: Optional[str] = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_code = error_code


_BAD_REF_CHARS = re.compile(r"[\x00-\x20~^:?*\[\\\x7f]")


def valid_branch_name(name: str) -> bool:
    """git's ref-name rules (check-ref-format) plus the Hub's: no `refs/` names (pull requests live there)."""
    return bool(name) and not (
        name.startswith(("refs/", "/", ".", "-")) or name.endswith(("/", ".", ".lock")) or ".." in name
        or "//" in name or "@{" in name or name == "@" or _BAD_REF_CHARS.search(name))


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(oid: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {size}\n".encode()


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


@dataclass
class Op:
    """One commit operation, already decoded from the NDJSON payload."""

    kind: str  # "file" | "lfsFile" | "deletedFile" | "deletedFolder"
    path: str
    content: Optional[bytes] = None
    oid: Optional[str] = None


class HubStore:
    def __init__(self, root: Path, lfs_threshold: int = 10 * 1024 * 1024):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.lfs_threshold = lfs_threshold
        self._lock = threading.RLock()

    # -- repos -------------------------------------------------------------------------------
    def repo_dir(self, repo_type: str, repo_id: str) -> Path:
        return self.root / f"{repo_type}s" / repo_id

    def exists(self, repo_type: str, repo_id: str) -> bool:
        return (self.repo_dir(repo_type, repo_id) / "refs.json").is_file()

    def _refs(self, repo_type: str, repo_id: str) -> dict:
        path = self.repo_dir(repo_type, repo_id) / "refs.json"
        if not path.is_file():
            raise StoreError(404, f"Repository {repo_id} not found", "RepoNotFound")
        return json.loads(path.read_text())

    def is_private(self, repo_type: str, repo_id: str) -> bool:
        return bool(self._refs(repo_type, repo_id).get("private"))

    def create(self, repo_type: str, repo_id: str, private: bool = False) -> str:
        with self._lock:
            if self.exists(repo_type, repo_id):
                raise StoreError(409, f"You already created this {repo_type} repo")
            d = self.repo_dir(repo_type, repo_id)
            for sub in ("commits", "blobs", "lfs"):
                (d / sub).mkdir(parents=True, exist_ok=True)
            _atomic_write(d / "refs.json", json.dumps({"branches": {}, "tags": {}, "private": private}).encode())
            ops = [Op("file", ".gitattributes", content=DEFAULT_GITATTRIBUTES)]
            return self._commit(repo_type, repo_id, "main", ops, "initial commit", "", create_branch=True)

    def delete(self, repo_type: str, repo_id: str) -> None:
        with self._lock:
            self._refs(repo_type, repo_id)
            shutil.rmtree(self.repo_dir(repo_type, repo_id))

    # -- revisions ---------------------------------------------------------------------------
    def branches(self, repo_type: str, repo_id: str) -> dict[str, str]:
        return dict(self._refs(repo_type, repo_id)["branches"])

    def tags(self, repo_type: str, repo_id: str) -> dict[str, str]:
        return dict(self._refs(repo_type, repo_id).get("tags", {}))

    def resolve(self, repo_type: str, repo_id: str, revision: str) -> str:
        """Branch, tag or full commit id -> commit id (the Hub's order: a branch wins over a tag
        of the same name); a missing revision is a RevisionNotFound."""
        branches = self.branches(repo_type, repo_id)
        if revision in branches:
            return branches[revision]
        tags = self.tags(repo_type, repo_id)
        if revision in tags:
            return tags[revision]
        if SHA1_RE.match(revision) and (self.repo_dir(repo_type, repo_id) / "commits" / f"{revision}.json").is_file():
            return revision
        raise StoreError(404, f"Invalid rev id: {revision}", "RevisionNotFound")

    def history(self, repo_type: str, repo_id: str, revision: str) -> list[dict]:
        """The commits reachable from `revision`, newest first (first parents: there are no merges)."""
        sha, out = self.resolve(repo_type, repo_id, revision), []
        while sha:
            info = self.commit_info(repo_type, repo_id, sha)
            out.append(info)
            sha = info["parents"][0] if info["parents"] else None
        return out

    def commit_info(self, repo_type: str, repo_id: str, sha: str) -> dict:
        return json.loads((self.repo_dir(repo_type, repo_id) / "commits" / f"{sha}.json").read_text())

    def files(self, repo_type: str, repo_id: str, revision: str) -> tuple[str, dict[str, dict]]:
        sha = self.resolve(repo_type, repo_id, revision)
        return sha, self.commit_info(repo_type, repo_id, sha)["files"]

    def create_branch(self, repo_type: str, repo_id: str, branch: str, starting_point: Optional[str],
                      empty: bool = False) -> str:
        """A new branch at `starting_point` (branch, tag or sha; default main), or `empty`: at a new
        commit with no parent and no files. An invalid name is a 400, an existing branch a 409, an
        unknown starting point a RevisionNotFound, as on the Hub."""
        if not valid_branch_name(branch):
            raise StoreError(400, f"Invalid reference for a branch: {branch}")
        with self._lock:
            refs = self._refs(repo_type, repo_id)
            if branch in refs["branches"]:
                raise StoreError(409, f"Reference already exists: refs/heads/{branch}")
            if empty:
                if starting_point:
                    raise StoreError(400, "an empty branch takes no starting point")
                return self._commit(repo_type, repo_id, branch, [], f"create empty branch {branch}", "",
                                    create_branch=True)
            sha = self.resolve(repo_type, repo_id, starting_point or "main")
            refs["branches"][branch] = sha
            _atomic_write(self.repo_dir(repo_type, repo_id) / "refs.json", json.dumps(refs).encode())
            return sha

    def delete_branch(self, repo_type: str, repo_id: str, branch: str) -> None:
        with self._lock:
            refs = self._refs(repo_type, repo_id)
            if branch == "main":
                raise StoreError(403, "You cannot delete the default branch")
            if branch not in refs["branches"]:
                raise StoreError(404, f"Invalid rev id: {branch}", "RevisionNotFound")
            del refs["branches"][branch]
            _atomic_write(self.repo_dir(repo_type, repo_id) / "refs.json", json.dumps(refs).encode())

    def create_tag(self, repo_type: str, repo_id: str, tag: str, revision: str) -> str:
        """Tag `revision` (branch, tag or sha); an existing tag is a 409, as on the Hub: moving
        one is delete + create."""
        with self._lock:
            refs = self._refs(repo_type, repo_id)
            tags = refs.setdefault("tags", {})
            if tag in tags:
                raise StoreError(409, f"Tag {tag} already exists")
            sha = self.resolve(repo_type, repo_id, revision)
            tags[tag] = sha
            _atomic_write(self.repo_dir(repo_type, repo_id) / "refs.json", json.dumps(refs).encode())
            return sha

    def delete_tag(self, repo_type: str, repo_id: str, tag: str) -> None:
        with self._lock:
            refs = self._refs(repo_type, repo_id)
            if tag not in refs.get("tags", {}):
                raise StoreError(404, f"Invalid rev id: {tag}", "RevisionNotFound")
            del refs["tags"][tag]
            _atomic_write(self.repo_dir(repo_type, repo_id) / "refs.json", json.dumps(refs).encode())

    # -- content -----------------------------------------------------------------------------
    def read_entry(self, repo_type: str, repo_id: str, entry: dict) -> bytes:
        d = self.repo_dir(repo_type, repo_id)
        if entry["lfs"]:
            return (d / "lfs" / entry["lfs"]["oid"]).read_bytes()
        return (d / "blobs" / entry["oid"]).read_bytes()

    def entry_path(self, repo_type: str, repo_id: str, entry: dict) -> Path:
        d = self.repo_dir(repo_type, repo_id)
        return d / "lfs" / entry["lfs"]["oid"] if entry["lfs"] else d / "blobs" / entry["oid"]

    def snapshot(self, repo_type: str, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        """Every file of a revision with its bytes: what tests compare against."""
        _, files = self.files(repo_type, repo_id, revision)
        return {p: self.read_entry(repo_type, repo_id, e) for p, e in files.items()}

    def lfs_patterns(self, repo_type: str, repo_id: str, revision: str) -> list[str]:
        _, files = self.files(repo_type, repo_id, revision)
        entry = files.get(".gitattributes")
        if entry is None:
            return []
        text = self.read_entry(repo_type, repo_id, entry).decode(errors="replace")
        return [line.split()[0] for line in text.splitlines() if "filter=lfs" in line and line.split()]

    def upload_mode(self, repo_type: str, repo_id: str, revision: str, path: str, size: int) -> str:
        if size >= self.lfs_threshold:
            return "lfs"
        name = path.rsplit("/", 1)[-1]
        for pat in self.lfs_patterns(repo_type, repo_id, revision):
            if fnmatch.fnmatch(path, pat) or ("/" not in pat and fnmatch.fnmatch(name, pat)):
                return "lfs" if size > 0 else "regular"
        return "regular"

    def has_lfs(self, repo_type: str, repo_id: str, oid: str) -> Optional[int]:
        p = self.repo_dir(repo_type, repo_id) / "lfs" / oid
        return p.stat().st_size if p.is_file() else None

    def put_lfs(self, repo_type: str, repo_id: str, oid: str, size: int, chunks: Iterable[bytes]) -> None:
        """Store an LFS object, refusing bytes whose sha256 or size differ from what was announced."""
        d = self.repo_dir(repo_type, repo_id) / "lfs"
        d.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=d, prefix=".upload-")
        h, n = hashlib.sha256(), 0
        try:
            with os.fdopen(fd, "wb") as f:
                for chunk in chunks:
                    h.update(chunk)
                    n += len(chunk)
                    f.write(chunk)
            if n != size or h.hexdigest() != oid:
                raise StoreError(400, f"uploaded object does not match: size {n} (expected {size}), sha256 {h.hexdigest()}")
            os.replace(tmp, d / oid)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    # -- commits -----------------------------------------------------------------------------
    def commit(self, repo_type: str, repo_id: str, branch: str, ops: list[Op], title: str, message: str = "",
               parent: Optional[str] = None, author: Optional[str] = None) -> str:
        return self._commit(repo_type, repo_id, branch, ops, title, message, parent=parent, author=author)

    def _commit(self, repo_type, repo_id, branch, ops, title, message, parent=None, create_branch=False,
                author=None) -> str:
        d = self.repo_dir(repo_type, repo_id)
        with self._lock:
            refs = self._refs(repo_type, repo_id)
            head = refs["branches"].get(branch)
            if head is None and not create_branch:
                if SHA1_RE.match(branch):
                    raise StoreError(400, "Cannot commit to a commit id: use a branch name")
                raise StoreError(404, f"Invalid rev id: {branch}", "RevisionNotFound")
            if parent is not None and head is not None and not head.startswith(parent):
                raise StoreError(412, f"A commit has happened since {parent}. Please refresh and try again.")
            files: dict[str, dict] = dict(self.commit_info(repo_type, repo_id, head)["files"]) if head else {}
            new_blobs: dict[str, bytes] = {}
            for op in ops:  # validate everything before anything is written
                if not op.path or op.path.startswith("/") or ".." in op.path.split("/"):
                    raise StoreError(400, f"invalid path {op.path!r}")
                if op.kind == "file":
                    if len(op.content) >= self.lfs_threshold:
                        raise StoreError(400, f"{op.path}: files of {self.lfs_threshold} bytes or more must use LFS")
                    oid = git_blob_id(op.content)
                    new_blobs[oid] = op.content
                    files[op.path] = {"size": len(op.content), "oid": oid, "lfs": None}
                elif op.kind == "lfsFile":
                    size = self.has_lfs(repo_type, repo_id, op.oid or "")
                    if size is None:
                        raise StoreError(422, f"{op.path}: LFS object {op.oid} was never uploaded")
                    pointer = lfs_pointer(op.oid, size)
                    files[op.path] = {"size": size, "oid": git_blob_id(pointer),
                                      "lfs": {"oid": op.oid, "size": size, "pointerSize": len(pointer)}}
                elif op.kind == "deletedFile":
                    if op.path not in files:
                        raise StoreError(404, f"A file with this name doesn't exist: {op.path}", "EntryNotFound")
                    del files[op.path]
                elif op.kind == "deletedFolder":
                    prefix = op.path.rstrip("/") + "/"
                    gone = [p for p in files if p.startswith(prefix)]
                    if not gone:
                        raise StoreError(404, f"A folder with this name doesn't exist: {op.path}", "EntryNotFound")
                    for p in gone:
                        del files[p]
                else:
                    raise StoreError(400, f"unknown operation {op.kind!r}")
            for oid, content in new_blobs.items():
                if not (d / "blobs" / oid).exists():
                    _atomic_write(d / "blobs" / oid, content)
            record = {"parents": [head] if head else [], "title": title, "message": message, "author": author,
                      "date": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()), "nonce": time.time_ns(),
                      "files": dict(sorted(files.items()))}
            sha = hashlib.sha1(json.dumps(record, sort_keys=True).encode()).hexdigest()
            record["id"] = sha
            _atomic_write(d / "commits" / f"{sha}.json", json.dumps(record).encode())
            refs["branches"][branch] = sha  # the only step that makes the commit visible
            _atomic_write(d / "refs.json", json.dumps(refs).encode())
            return sha
