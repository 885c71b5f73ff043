"""The local Hub: a FastAPI app over a HubStore, served by uvicorn on 127.0.0.1 in a thread.

Routes are matched on the raw request path, segment by segment, because the client quotes a
revision with `safe=""` (`refs%2Fpr%2F1` is one segment) while file paths keep their slashes.

Endpoints (what huggingface_hub 2.x calls; `{t}` is `models|datasets|spaces`, `{p}` the URL
prefix `datasets/`, `spaces/` or nothing for models):
  GET  /api/whoami-v2
  POST /api/repos/create            DELETE /api/repos/delete          POST /api/validate-yaml
  GET  /api/{t}/{repo}              GET  /api/{t}/{repo}/revision/{rev}   ("private": visibility)
  GET  /api/{t}/{repo}/refs         (branches and tags; pullRequests: [] with include_prs)
  POST /api/{t}/{repo}/tag/{rev}    DELETE /api/{t}/{repo}/tag/{tag}   (409 on an existing tag)
  GET  /api/{t}/{repo}/tree/{rev}[/{path}]?recursive=&expand=&cursor=   (Link: rel="next")
  POST /api/{t}/{repo}/paths-info/{rev}
  POST /api/{t}/{repo}/preupload/{rev}
  POST /api/{t}/{repo}/commit/{rev}  (NDJSON: header, file, lfsFile, deletedFile, deletedFolder)
  POST|DELETE /api/{t}/{repo}/branch/{branch}   (POST {"startingPoint": rev} or {"emptyBranch": true};
                                   400 invalid name, 409 existing branch, 404 unknown revision/branch)
  GET  /api/{t}/{repo}/commits/{rev}   (history, newest first; Link: rel="next")
  GET  /api/{t}/{repo}/xet-{read,write}-token/{rev}   -> 404: Xet is not offered
  POST /{p}{repo}.git/info/lfs/objects/batch          (basic transfer)
  POST /{p}{repo}.git/info/lfs/objects/verify
  PUT  /_lfs/{type}/{repo}/{oid}?size=&sig=           (the signed upload URL of the batch answer)
  HEAD|GET /{p}{repo}/resolve/{rev}/{path}            (LFS files: 302 to the "CDN" below)
  HEAD|GET /_cdn/{type}/{repo}/{oid}?sig=             (served on http://localhost:<port>, another
                                                       origin, so the client drops its token there)

Test knobs: `fail()` answers the next matching requests with an error status (`commit_race()`:
412 to the next commits on a branch, as the Hub answers a commit that lost a race); `hold()` keeps
the next matching requests waiting until released (a client stopped mid-step, e.g. mid-upload).
The request log (`requests()`) records each request's method, path, status and the name of its
token's user (`user`), so a test can tell which credentials reached which repo.

Who sees what, as on the Hub: every token belongs to a user with namespaces (`orgs`; "*" = all,
the test users' default). A public repo is readable by anyone. A private repo answers 401 to an
anonymous request and 404 "Repository not found" to a token whose user is not in its namespace,
exactly what a missing repo answers, so neither learns that it exists. Writing (create, commit,
branches, tags, delete) needs a write token in the repo's namespace (403 otherwise).
Revisions are branches, tags or full commit ids (a branch wins over a tag of the same name);
reads, listings, downloads and commits take any of them (commits: branches only).
Server-side copies (`CommitOperationCopy`): the client itself reads the source with paths-info
and sends an LFS file as an `lfsFile` line naming its sha256 (no size, no upload: the store
refuses one whose object the repo does not hold) and a regular file as its content, downloaded
from the source revision; so a copy within a repo uploads no LFS bytes, as on the Hub.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional
from urllib.parse import parse_qs, unquote, urlencode

import uvicorn
import yaml
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.requests import ClientDisconnect

from .store import SHA256_RE, HubStore, Op, StoreError

WRITE_TOKEN = "hf_localhub_write_0123456789abcdef"
READ_TOKEN = "hf_localhub_read_0123456789abcdef"
OTHER_TOKEN = "hf_localhub_other_0123456789abcdef"
"""A write token of another user, `someone-else`: sees public repos only, writes only its own namespace."""
ALL_NAMESPACES = "*"
INVALID_TOKEN = "<invalid token>"
TYPE_OF_PLURAL = {"models": "model", "datasets": "dataset", "spaces": "space"}
PREFIX_OF_TYPE = {"model": "", "dataset": "datasets/", "space": "spaces/"}


@dataclass
class Fault:
    """The next `times` requests matching method and path regex answer `status`."""

    method: Optional[str]
    pattern: re.Pattern
    status: int
    times: int
    hits: int = 0
    message: Optional[str] = None  # the Hub's words to answer with (default: "injected fault <status>")


@dataclass
class Hold:
    """The next `times` requests matching method and path regex wait, unanswered, until `release()`
    (or `timeout` seconds): a test learns that a client is at that step (`arrived`, `paths`) and
    can act on it meanwhile, e.g. kill the worker in the middle of its upload."""

    method: Optional[str]
    pattern: re.Pattern
    times: int
    timeout: float
    hits: int = 0
    paths: list[str] = field(default_factory=list)  # the held requests' paths, in arrival order
    arrived: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)

    def release(self) -> None:
        self.released.set()


@dataclass
class Logged:
    method: str
    path: str
    status: int
    query: str = ""
    at: float = field(default_factory=time.monotonic)  # when the answer was ready
    user: Optional[str] = None  # the name of the token's user (None: anonymous, INVALID_TOKEN: unknown)


class HubError(Exception):
    def __init__(self, status: int, message: str, error_code: Optional[str] = None, headers: Optional[dict] = None):
        super().__init__(message)
        self.status, self.message, self.error_code, self.headers = status, message, error_code, headers


def _error(status: int, message: str, error_code: Optional[str] = None, headers: Optional[dict] = None) -> Response:
    h = {"X-Error-Message": message}
    if error_code:
        h["X-Error-Code"] = error_code
    h.update(headers or {})
    return JSONResponse({"error": message}, status_code=status, headers=h)


class LocalHub:
    """The server plus the knobs tests use: tokens, fault injection, request log, store access."""

    def __init__(self, root: Path, lfs_threshold: int = 10 * 1024 * 1024, tree_page_size: int = 1000):
        self.store = HubStore(root, lfs_threshold=lfs_threshold)
        self.tokens: dict[str, dict] = {
            WRITE_TOKEN: {"name": "roboaug-test", "role": "write", "orgs": ALL_NAMESPACES},
            READ_TOKEN: {"name": "roboaug-reader", "role": "read", "orgs": ALL_NAMESPACES},
            OTHER_TOKEN: {"name": "someone-else", "role": "write", "orgs": ()},
        }
        self.tree_page_size = tree_page_size
        self.faults: list[Fault] = []
        self.holds: list[Hold] = []
        self.log: list[Logged] = []
        self._secret = secrets.token_bytes(16)
        self._lock = threading.Lock()
        self.port: Optional[int] = None
        self._server: Optional[uvicorn.Server] = None
        self._thread: Optional[threading.Thread] = None
        self.app = self._build_app()

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def cdn(self) -> str:
        return f"http://localhost:{self.port}"

    def start(self) -> "LocalHub":
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))  # a free port chosen by the kernel, no race with other tests
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.app, log_level="warning", access_log=False, lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("local Hub server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)

    def reset(self) -> None:
        with self._lock:
            self.faults.clear()
            self.log.clear()
            holds, self.holds = self.holds, []
        for h in holds:
            h.release()

    # -- test knobs --------------------------------------------------------------------------
    def fail(self, path_regex: str, status: int = 503, times: int = 1, method: Optional[str] = None,
             message: Optional[str] = None) -> Fault:
        """Answer `status` to the next `times` requests whose decoded path matches `path_regex`,
        with `message` as the Hub's words when given (`commit_race` uses the real Hub's)."""
        f = Fault(method.upper() if method else None, re.compile(path_regex), status, times, message=message)
        with self._lock:
            self.faults.append(f)
        return f

    def commit_race(self, repo_id: str, branch: str, times: int = 1, repo_type: str = "dataset") -> Fault:
        """The next `times` commits to `branch` of `repo_id` lose a race with another writer: 412
        with the Hub's parent-commit mismatch words, as the Hub answers a commit whose branch
        moved under it (many shards committing to one staging branch). This server serialises
        commits, so without this knob it never answers that."""
        words = (f"A commit has happened since {self.store.resolve(repo_type, repo_id, branch)}. "
                 "Please refresh and try again.")
        prefix = {"dataset": "datasets", "model": "models", "space": "spaces"}[repo_type]
        return self.fail(rf"^/api/{prefix}/{re.escape(repo_id)}/commit/{re.escape(branch)}$", status=412,
                         times=times, method="POST", message=words)

    def hold(self, path_regex: str, times: int = 1, method: Optional[str] = None, timeout: float = 120.0) -> Hold:
        """Hold the next `times` requests whose decoded path matches `path_regex` until released."""
        h = Hold(method.upper() if method else None, re.compile(path_regex), times, timeout)
        with self._lock:
            self.holds.append(h)
        return h

    def requests(self, method: Optional[str] = None, path_regex: Optional[str] = None) -> list[Logged]:
        with self._lock:
            out = list(self.log)
        return [r for r in out if (method is None or r.method == method)
                and (path_regex is None or re.search(path_regex, r.path))]

    def seed(self, repo_id: str, files: dict[str, bytes], repo_type: str = "dataset", branch: str = "main",
             title: str = "seed") -> str:
        """Commit `files` straight into the store (creating the repo), LFS for large/patterned files."""
        if not self.store.exists(repo_type, repo_id):
            self.store.create(repo_type, repo_id)
        ops = []
        for path, data in files.items():
            if self.store.upload_mode(repo_type, repo_id, branch, path, len(data)) == "lfs":
                oid = hashlib.sha256(data).hexdigest()
                self.store.put_lfs(repo_type, repo_id, oid, len(data), [data])
                ops.append(Op("lfsFile", path, oid=oid))
            else:
                ops.append(Op("file", path, content=data))
        return self.store.commit(repo_type, repo_id, branch, ops, title)

    # -- helpers -----------------------------------------------------------------------------
    def _sign(self, *parts: str) -> str:
        return hmac.new(self._secret, "/".join(parts).encode(), hashlib.sha256).hexdigest()

    def _user(self, request: Request) -> Optional[dict]:
        """None for anonymous; HubError 401 for a token the Hub does not know (as huggingface.co does)."""
        auth = request.headers.get("authorization")
        if not auth:
            return None
        scheme, _, token = auth.partition(" ")
        user = self.tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        if user is None:
            raise HubError(401, "Invalid credentials in Authorization header")
        return user

    def _who(self, request: Request) -> Optional[str]:
        """Whose token a request carried, for the request log (tests check which credentials reached which repo)."""
        try:
            user = self._user(request)
        except HubError:
            return INVALID_TOKEN
        return user["name"] if user else None

    @staticmethod
    def _member(user: Optional[dict], namespace: str) -> bool:
        if user is None:
            return False
        return user["orgs"] == ALL_NAMESPACES or namespace == user["name"] or namespace in user["orgs"]

    def _need_write(self, request: Request, namespace: Optional[str] = None) -> dict:
        user = self._user(request)
        if user is None:
            raise HubError(401, "You must be authenticated to do this")
        if user["role"] != "write":
            raise HubError(403, "You don't have the rights to write to this repository (read-only token)")
        if namespace is not None and not self._member(user, namespace):
            raise HubError(403, f"You don't have the rights to write in the namespace {namespace}")
        return user

    def _need_read(self, request: Request, repo_type: str, repo_id: str) -> None:
        user = self._user(request)
        hidden = (not self.store.exists(repo_type, repo_id)
                  or (self.store.is_private(repo_type, repo_id) and not self._member(user, repo_id.split("/")[0])))
        if hidden:  # a private repo of others reads exactly like a missing one
            raise HubError(404 if user else 401, f"Repository not found: {repo_id}", "RepoNotFound")

    def _held(self, method: str, path: str) -> Optional[Hold]:
        with self._lock:
            for h in self.holds:
                if h.hits < h.times and (h.method is None or h.method == method) and h.pattern.search(path):
                    h.hits += 1
                    h.paths.append(path)
                    return h
        return None

    def _injected(self, method: str, path: str) -> Optional[Fault]:
        with self._lock:
            for f in self.faults:
                if f.hits < f.times and (f.method is None or f.method == method) and f.pattern.search(path):
                    f.hits += 1
                    return f
        return None

    # -- the app -----------------------------------------------------------------------------
    def _build_app(self) -> FastAPI:
        app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

        @app.api_route("/{full:path}", methods=["GET", "HEAD", "POST", "PUT", "DELETE"])
        async def dispatch(request: Request):
            raw = request.scope.get("raw_path") or request.url.path.encode()
            raw = raw.decode("latin-1").split("?", 1)[0]
            segs = [unquote(s) for s in raw.strip("/").split("/")] if raw.strip("/") else []
            path = "/" + "/".join(segs)
            method = request.method
            hold = self._held(method, path)
            if hold is not None:
                hold.arrived.set()
                deadline = time.monotonic() + hold.timeout
                while not hold.released.is_set() and time.monotonic() < deadline:
                    await asyncio.sleep(0.02)  # the other clients are served meanwhile
            fault = self._injected(method, path)
            if fault is not None:
                resp = _error(fault.status, fault.message or f"injected fault {fault.status}",
                              headers={"Retry-After": "0"} if fault.status == 429 else None)
            else:
                try:
                    resp = await self._route(request, method, segs)
                except HubError as e:
                    resp = _error(e.status, e.message, e.error_code, e.headers)
                except StoreError as e:
                    resp = _error(e.status, e.message, e.error_code)
                except ClientDisconnect:  # e.g. its process was killed while the request was held
                    resp = Response(status_code=499)
            with self._lock:
                self.log.append(Logged(method, path, resp.status_code, request.url.query, user=self._who(request)))
            return resp

        return app

    async def _route(self, request: Request, method: str, s: list[str]) -> Response:
        n = len(s)
        if n >= 1 and s[0] == "api":
            if s[1:] == ["whoami-v2"] and method == "GET":
                return self._whoami(request)
            if s[1:] == ["repos", "create"] and method == "POST":
                return self._create_repo(request, await request.json())
            if s[1:] == ["repos", "delete"] and method == "DELETE":
                return self._delete_repo(request, await request.json())
            if s[1:] == ["validate-yaml"] and method == "POST":
                return self._validate_yaml(await request.json())
            if n >= 4 and s[1] in TYPE_OF_PLURAL:
                rtype, repo = TYPE_OF_PLURAL[s[1]], f"{s[2]}/{s[3]}"
                rest = s[4:]
                if not rest and method == "GET":
                    return self._repo_info(request, rtype, repo, "main")
                if len(rest) == 2 and rest[0] == "revision" and method == "GET":
                    return self._repo_info(request, rtype, repo, rest[1])
                if len(rest) >= 2 and rest[0] == "tree" and method == "GET":
                    return self._tree(request, rtype, repo, rest[1], "/".join(rest[2:]))
                if len(rest) == 2 and rest[0] == "paths-info" and method == "POST":
                    return self._paths_info(request, rtype, repo, rest[1], await request.body())
                if len(rest) == 2 and rest[0] == "preupload" and method == "POST":
                    return self._preupload(request, rtype, repo, rest[1], await request.json())
                if len(rest) == 2 and rest[0] == "commit" and method == "POST":
                    return self._commit(request, rtype, repo, rest[1], await request.body())
                if rest == ["refs"] and method == "GET":
                    return self._refs(request, rtype, repo)
                if len(rest) == 2 and rest[0] == "commits" and method == "GET":
                    return self._commits(request, rtype, repo, rest[1])
                if len(rest) == 2 and rest[0] == "tag" and method in ("POST", "DELETE"):
                    body = await request.body()
                    return self._tag(request, rtype, repo, rest[1], method, json.loads(body) if body else {})
                if len(rest) == 2 and rest[0] == "branch" and method in ("POST", "DELETE"):
                    body = await request.body()
                    return self._branch(request, rtype, repo, rest[1], method, json.loads(body) if body else {})
                if len(rest) >= 1 and rest[0] in ("xet-read-token", "xet-write-token"):
                    self._need_read(request, rtype, repo)
                    raise HubError(404, "Xet storage is not enabled on this server")
            raise HubError(404, f"unknown API route {'/'.join(s)}")
        if n >= 1 and s[0] == "_lfs" and method == "PUT":
            return await self._lfs_put(request, s[1:])
        if n >= 1 and s[0] == "_cdn" and method in ("GET", "HEAD"):
            return self._cdn_get(request, s[1:], method)
        # /{prefix}{org}/{name}.git/info/lfs/objects/{batch|verify} and /{prefix}{org}/{name}/resolve/...
        rtype = "model"
        if s and s[0] in TYPE_OF_PLURAL and s[0] != "models":
            rtype, s = TYPE_OF_PLURAL[s[0]], s[1:]
        if len(s) == 6 and s[1].endswith(".git") and s[2:5] == ["info", "lfs", "objects"] and method == "POST":
            repo = f"{s[0]}/{s[1][:-4]}"
            if s[5] == "batch":
                return self._lfs_batch(request, rtype, repo, await request.json())
            if s[5] == "verify":
                return self._lfs_verify(request, rtype, repo, await request.json())
        if len(s) >= 5 and s[2] == "resolve" and method in ("GET", "HEAD"):
            return self._resolve(request, rtype, f"{s[0]}/{s[1]}", s[3], "/".join(s[4:]), method)
        raise HubError(404, f"no route for {method} /{'/'.join(s)}")

    # -- API handlers ------------------------------------------------------------------------
    def _whoami(self, request: Request) -> Response:
        user = self._user(request)
        if user is None:
            raise HubError(401, "Invalid credentials in Authorization header")
        return JSONResponse({"type": "user", "name": user["name"], "orgs": [],
                             "auth": {"type": "access_token",
                                      "accessToken": {"displayName": user["role"], "role": user["role"]}}})

    def _create_repo(self, request: Request, body: dict) -> Response:
        rtype = body.get("type") or "model"
        name, org = body.get("name"), body.get("organization")
        if rtype not in PREFIX_OF_TYPE or not name or not org:
            raise HubError(400, "create needs name, organization and a valid type")
        self._need_write(request, org)
        repo = f"{org}/{name}"
        private = body.get("private") or body.get("visibility") in ("private", "protected")
        try:
            self.store.create(rtype, repo, private=bool(private))
        except StoreError as e:
            if e.status == 409:
                return JSONResponse({"error": e.message, "url": f"{self.endpoint}/{PREFIX_OF_TYPE[rtype]}{repo}"},
                                    status_code=409, headers={"X-Error-Message": e.message})
            raise
        return JSONResponse({"url": f"{self.endpoint}/{PREFIX_OF_TYPE[rtype]}{repo}", "name": repo, "id": repo})

    def _delete_repo(self, request: Request, body: dict) -> Response:
        rtype = body.get("type") or "model"
        repo = f"{body.get('organization')}/{body.get('name')}"
        self._need_read(request, rtype, repo)
        self._need_write(request, body.get("organization"))
        self.store.delete(rtype, repo)
        return JSONResponse({})

    def _validate_yaml(self, body: dict) -> Response:
        content = body.get("content") or ""
        if content.startswith("---"):
            parts = content.split("\n---", 1)
            try:
                yaml.safe_load(parts[0][3:])
            except yaml.YAMLError as e:
                return JSONResponse({"errors": [{"message": f"invalid YAML: {e}"}], "warnings": []}, status_code=400)
        return JSONResponse({"errors": [], "warnings": []})

    def _repo_info(self, request: Request, rtype: str, repo: str, rev: str) -> Response:
        self._need_read(request, rtype, repo)
        sha, files = self.store.files(rtype, repo, rev)
        commit = self.store.commit_info(rtype, repo, sha)
        return JSONResponse({
            "_id": hashlib.sha1(repo.encode()).hexdigest()[:24], "id": repo, "author": repo.split("/")[0],
            "sha": sha, "lastModified": commit["date"], "createdAt": commit["date"],
            "private": self.store.is_private(rtype, repo), "gated": False, "disabled": False,
            "downloads": 0, "likes": 0, "tags": [], "cardData": {},
            "siblings": [{"rfilename": p} for p in sorted(files)],
            "usedStorage": sum(e["size"] for e in files.values()),
        })

    @staticmethod
    def _file_item(path: str, e: dict) -> dict:
        item = {"type": "file", "oid": e["oid"], "size": e["size"], "path": path}
        if e["lfs"]:
            item["lfs"] = dict(e["lfs"])
        return item

    def _listing(self, files: dict[str, dict], base: str, recursive: bool) -> list[dict]:
        prefix = base.rstrip("/") + "/" if base else ""
        items: dict[str, dict] = {}
        for path, e in sorted(files.items()):
            if not path.startswith(prefix):
                continue
            rel = path[len(prefix):].split("/")
            for depth in range(1, len(rel)):  # the folders on the way
                d = prefix + "/".join(rel[:depth])
                if recursive or depth == 1:
                    items.setdefault(d, {"type": "directory", "path": d, "size": 0,
                                         "oid": hashlib.sha1(d.encode()).hexdigest()})
            if recursive or len(rel) == 1:
                items[path] = self._file_item(path, e)
        return [items[k] for k in sorted(items)]

    def _tree(self, request: Request, rtype: str, repo: str, rev: str, path: str) -> Response:
        self._need_read(request, rtype, repo)
        _, files = self.store.files(rtype, repo, rev)
        recursive = request.query_params.get("recursive", "false").lower() in ("1", "true")
        if path and path not in files and not any(p.startswith(path.rstrip("/") + "/") for p in files):
            raise HubError(404, f"{path} does not exist on {rev}", "EntryNotFound")
        if path in files:
            raise HubError(400, f"{path} is a file, not a folder")
        items = self._listing(files, path, recursive)
        expand = request.query_params.get("expand", "false").lower() in ("1", "true")
        page = 50 if expand else self.tree_page_size
        start = int(request.query_params.get("cursor", "0") or 0)
        chunk = items[start:start + page]
        headers = {}
        if start + page < len(items):
            q = {k: v for k, v in request.query_params.items() if k != "cursor"}
            q["cursor"] = str(start + page)
            headers["Link"] = f'<{self.endpoint}{request.url.path}?{urlencode(q)}>; rel="next"'
        return JSONResponse(chunk, headers=headers)

    def _paths_info(self, request: Request, rtype: str, repo: str, rev: str, body: bytes) -> Response:
        self._need_read(request, rtype, repo)
        _, files = self.store.files(rtype, repo, rev)
        ctype = request.headers.get("content-type", "")
        paths = json.loads(body).get("paths", []) if "json" in ctype else parse_qs(body.decode()).get("paths", [])
        out = []
        for p in paths:
            p = p.strip("/")
            if p in files:
                out.append(self._file_item(p, files[p]))
            elif any(f.startswith(p + "/") for f in files):
                out.append({"type": "directory", "path": p, "size": 0, "oid": hashlib.sha1(p.encode()).hexdigest()})
        return JSONResponse(out)

    def _preupload(self, request: Request, rtype: str, repo: str, rev: str, body: dict) -> Response:
        self._need_read(request, rtype, repo)
        self._need_write(request, repo.split("/")[0])
        if request.query_params.get("create_pr"):
            raise HubError(400, "pull requests are not supported by the local Hub")
        sha, files = self.store.files(rtype, repo, rev)
        out = []
        for f in body.get("files", []):
            path, size = f["path"], int(f["size"])
            mode = self.store.upload_mode(rtype, repo, rev, path, size)
            item = {"path": path, "uploadMode": mode, "shouldIgnore": False}
            if path in files:  # lets the client skip unchanged files: sha256 for LFS, git blob id otherwise
                e = files[path]
                item["oid"] = e["lfs"]["oid"] if e["lfs"] else e["oid"]
            out.append(item)
        return JSONResponse({"files": out, "commitOid": sha})

    def _commit(self, request: Request, rtype: str, repo: str, rev: str, body: bytes) -> Response:
        self._need_read(request, rtype, repo)
        user = self._need_write(request, repo.split("/")[0])
        if request.query_params.get("create_pr"):
            raise HubError(400, "pull requests are not supported by the local Hub")
        header, ops = None, []
        for line in body.decode().splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            key, value = item.get("key"), item.get("value") or {}
            if key == "header":
                header = value
            elif key == "file":
                if value.get("encoding") != "base64":
                    raise HubError(400, "file content must be base64")
                ops.append(Op("file", value["path"], content=base64.b64decode(value["content"])))
            elif key == "lfsFile":
                if value.get("algo", "sha256") != "sha256" or not SHA256_RE.match(value.get("oid", "")):
                    raise HubError(400, f"bad lfsFile line for {value.get('path')}")
                ops.append(Op("lfsFile", value["path"], oid=value["oid"]))
            elif key in ("deletedFile", "deletedFolder"):
                ops.append(Op(key, value["path"]))
            else:
                raise HubError(400, f"unknown commit line key {key!r}")
        if header is None or not header.get("summary"):
            raise HubError(400, "the commit needs a header line with a summary")
        sha = self.store.commit(rtype, repo, rev, ops, header["summary"], header.get("description", ""),
                                parent=header.get("parentCommit"), author=user["name"])
        return JSONResponse({"success": True, "commitOid": sha, "hookOutput": "", "pullRequestUrl": None,
                             "commitUrl": f"{self.endpoint}/{PREFIX_OF_TYPE[rtype]}{repo}/commit/{sha}"})

    def _branch(self, request: Request, rtype: str, repo: str, branch: str, method: str, body: dict) -> Response:
        self._need_read(request, rtype, repo)
        self._need_write(request, repo.split("/")[0])
        if method == "DELETE":
            self.store.delete_branch(rtype, repo, branch)
        else:
            self.store.create_branch(rtype, repo, branch, body.get("startingPoint"), empty=bool(body.get("emptyBranch")))
        return JSONResponse({})

    def _commits(self, request: Request, rtype: str, repo: str, rev: str) -> Response:
        """The history of a revision, newest first, paginated like the tree listing (Link: rel="next")."""
        self._need_read(request, rtype, repo)
        items = [{"id": c["id"], "title": c["title"], "message": c["message"], "date": c["date"],
                  "authors": [{"user": c["author"]}] if c.get("author") else []}
                 for c in self.store.history(rtype, repo, rev)]
        start = int(request.query_params.get("p", "0") or 0)
        page = self.tree_page_size
        headers = {}
        if (start + 1) * page < len(items):
            q = {k: v for k, v in request.query_params.items() if k != "p"}
            q["p"] = str(start + 1)
            headers["Link"] = f'<{self.endpoint}{request.url.path}?{urlencode(q)}>; rel="next"'
        return JSONResponse(items[start * page:(start + 1) * page], headers=headers)

    def _refs(self, request: Request, rtype: str, repo: str) -> Response:
        self._need_read(request, rtype, repo)
        def ref(kind: str, name: str, sha: str) -> dict:
            return {"name": name, "ref": f"refs/{kind}/{name}", "targetCommit": sha}
        out = {"branches": [ref("heads", b, sha) for b, sha in sorted(self.store.branches(rtype, repo).items())],
               "tags": [ref("tags", t, sha) for t, sha in sorted(self.store.tags(rtype, repo).items())],
               "converts": []}
        if request.query_params.get("include_prs"):
            out["pullRequests"] = []
        return JSONResponse(out)

    def _tag(self, request: Request, rtype: str, repo: str, name: str, method: str, body: dict) -> Response:
        """POST .../tag/{revision} {"tag": name} creates; DELETE .../tag/{name} deletes."""
        self._need_read(request, rtype, repo)
        self._need_write(request, repo.split("/")[0])
        if method == "DELETE":
            self.store.delete_tag(rtype, repo, name)
        else:
            if not body.get("tag"):
                raise HubError(400, "the body needs a tag name")
            self.store.create_tag(rtype, repo, body["tag"], name)
        return JSONResponse({})

    # -- LFS ---------------------------------------------------------------------------------
    def _lfs_batch(self, request: Request, rtype: str, repo: str, body: dict) -> Response:
        self._need_read(request, rtype, repo)
        if body.get("operation") != "upload":
            raise HubError(422, "only the upload operation is implemented")
        self._need_write(request, repo.split("/")[0])
        if "basic" not in (body.get("transfers") or ["basic"]):
            raise HubError(422, "only the basic transfer is offered")
        objects = []
        for obj in body.get("objects", []):
            oid, size = obj.get("oid", ""), obj.get("size")
            if not SHA256_RE.match(oid) or not isinstance(size, int) or size < 0:
                objects.append({"oid": str(oid), "size": size if isinstance(size, int) else 0,
                                "error": {"code": 422, "message": "oid must be a sha256 and size an integer"}})
                continue
            out = {"oid": oid, "size": size, "authenticated": True}
            if self.store.has_lfs(rtype, repo, oid) != size:
                sig = self._sign(rtype, repo, oid, str(size))
                out["actions"] = {
                    "upload": {"href": f"{self.endpoint}/_lfs/{rtype}/{repo}/{oid}?{urlencode({'size': size, 'sig': sig})}",
                               "header": {}, "expires_in": 3600},
                    "verify": {"href": f"{self.endpoint}/{PREFIX_OF_TYPE[rtype]}{repo}.git/info/lfs/objects/verify",
                               "header": {}},
                }
            objects.append(out)
        return JSONResponse({"transfer": "basic", "objects": objects},
                            headers={"Content-Type": "application/vnd.git-lfs+json"})

    def _lfs_verify(self, request: Request, rtype: str, repo: str, body: dict) -> Response:
        self._need_read(request, rtype, repo)
        self._need_write(request, repo.split("/")[0])
        if self.store.has_lfs(rtype, repo, body.get("oid", "")) != body.get("size"):
            raise HubError(404, f"object {body.get('oid')} is not stored")
        return JSONResponse({"success": True})

    async def _lfs_put(self, request: Request, s: list[str]) -> Response:
        if len(s) != 4:
            raise HubError(404, "bad upload URL")
        rtype, repo, oid = s[0], f"{s[1]}/{s[2]}", s[3]
        size = request.query_params.get("size", "")
        if not hmac.compare_digest(request.query_params.get("sig", ""), self._sign(rtype, repo, oid, size)):
            raise HubError(403, "bad upload signature")
        chunks = [c async for c in request.stream()]
        self.store.put_lfs(rtype, repo, oid, int(size), chunks)
        return Response(status_code=200)

    # -- downloads ---------------------------------------------------------------------------
    def _resolve(self, request: Request, rtype: str, repo: str, rev: str, path: str, method: str) -> Response:
        self._need_read(request, rtype, repo)
        sha, files = self.store.files(rtype, repo, rev)
        e = files.get(path)
        if e is None:
            # the commit header lets the client cache "this file does not exist at this commit"
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound", {"X-Repo-Commit": sha})
        base = {"X-Repo-Commit": sha, "Accept-Ranges": "bytes"}
        if e["lfs"]:
            oid = e["lfs"]["oid"]
            loc = f"{self.cdn}/_cdn/{rtype}/{repo}/{oid}?{urlencode({'sig': self._sign('cdn', rtype, repo, oid)})}"
            return Response(status_code=302, headers={
                **base, "Location": loc, "ETag": f'"{e["oid"]}"', "X-Linked-Etag": f'"{oid}"',
                "X-Linked-Size": str(e["size"]), "Content-Length": "0"})
        return self._content(request, self.store.entry_path(rtype, repo, e), {**base, "ETag": f'"{e["oid"]}"'}, method)

    def _cdn_get(self, request: Request, s: list[str], method: str) -> Response:
        if len(s) != 4:
            raise HubError(404, "bad CDN URL")
        rtype, repo, oid = s[0], f"{s[1]}/{s[2]}", s[3]
        if not hmac.compare_digest(request.query_params.get("sig", ""), self._sign("cdn", rtype, repo, oid)):
            raise HubError(403, "bad CDN signature")
        p = self.store.repo_dir(rtype, repo) / "lfs" / oid
        if not p.is_file():
            raise HubError(404, "no such object")
        return self._content(request, p, {"ETag": f'"{oid}"', "Accept-Ranges": "bytes"}, method)

    @staticmethod
    def _content(request: Request, path: Path, headers: dict, method: str) -> Response:
        size = path.stat().st_size
        start, status = 0, 200
        rng = request.headers.get("range", "")
        m = re.fullmatch(r"bytes=(\d+)-", rng.strip())
        if m and int(m.group(1)) < size:
            start, status = int(m.group(1)), 206
            headers = {**headers, "Content-Range": f"bytes {start}-{size - 1}/{size}"}
        headers = {**headers, "Content-Length": str(size - start), "Content-Type": "application/octet-stream"}
        if method == "HEAD":
            return Response(status_code=status, headers=headers)
        with open(path, "rb") as f:
            f.seek(start)
            data = f.read()
        return Response(content=data, status_code=status, headers=headers)

