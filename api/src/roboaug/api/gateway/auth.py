"""API keys: loaded from a mounted file, held only as SHA-256 digests, compared in constant time.

The keys file (`ROBOAUG_GATEWAY_API_KEYS_FILE`, typically a Secret mounted read-only) has one of
two formats.

Plain lines: one key per line, blank lines and `#` comments ignored. A line is either the key itself
or `sha256:<64 hex digits>` (the digest of the key, so the file need not hold plaintext).
A line may add, after whitespace, a comma-separated list of project UUIDs the key is bound to::

    # ci robot, every project
    sha256:4c1f0e...e9
    # a partner key, one project only
    s3cr3t-partner-key 2489e9ad-2ee2-8e00-8ec9-32d5f69181c0

YAML: a document whose first line is `keys:`::

    keys:
      - name: ci            # optional; shown in logs, never the key
        sha256: 4c1f0e...e9 # or `key: <plaintext>`
      - name: partner
        key: s3cr3t-partner-key
        projects: [2489e9ad-2ee2-8e00-8ec9-32d5f69181c0]

`echo -n "$KEY" | sha256sum` gives the digest. A key without projects may act on every project.
A key bound to projects gets 403 when it POSTs or lists for another project and 404 when it reads
or cancels another project's job (so it cannot probe which job ids exist).

API keys are random high-entropy tokens, so a single SHA-256 suffices (slow password hashes guard
low-entropy secrets). Every check hashes the presented key and compares it with *every* stored
digest via `hmac.compare_digest`, so timing reveals neither which key matched nor how far.
The file is re-read when its mtime, size or inode changes (a Secret update swaps a symlink), so
keys rotate without a restart. It fails closed: a file that vanishes or stops parsing leaves *no*
key valid (a key removed on purpose must not live on because the new file has a typo) and makes
the gateway unready (`KeyRing.problem`), with one error line per change naming the file and the
entry, never a key, until a valid file returns. A file that does not parse at startup stops the
gateway there.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import yaml

log = logging.getLogger(__name__)

_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")


class KeysFileError(ValueError):
    """The keys file cannot be used; the message names the line or entry, never a key."""


@dataclass(frozen=True)
class Principal:
    """Who called: the key's name and the projects it may act on (None = all)."""

    name: str
    projects: Optional[frozenset[uuid.UUID]] = None

    def allows(self, project_id: uuid.UUID | str) -> bool:
        if self.projects is None:
            return True
        try:
            return uuid.UUID(str(project_id)) in self.projects
        except ValueError:
            return False


@dataclass(frozen=True)
class _Entry:
    digest: bytes
    principal: Principal


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def _projects(values, where: str) -> Optional[frozenset[uuid.UUID]]:
    if values is None:
        return None
    if isinstance(values, str):
        values = [v for v in values.split(",") if v.strip()]
    if not isinstance(values, list) or not values:
        raise KeysFileError(f"{where}: projects must be a non-empty list of project UUIDs")
    try:
        return frozenset(uuid.UUID(str(v).strip()) for v in values)
    except ValueError:
        raise KeysFileError(f"{where}: projects must be UUIDs") from None


def _digest_of(value: str, where: str) -> bytes:
    if not _HEX64.match(value):
        raise KeysFileError(f"{where}: sha256 must be 64 hex digits")
    return bytes.fromhex(value)


def parse_keys(text: str) -> list[_Entry]:
    """Parse either format (see the module docstring); raises KeysFileError naming the entry."""
    first = next((ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")), "")
    if first.startswith("keys:"):
        return _parse_yaml(text)
    return _parse_lines(text)


def _parse_lines(text: str) -> list[_Entry]:
    entries = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"line {number}"
        parts = line.split(None, 1)
        token = parts[0]
        projects = _projects(parts[1], where) if len(parts) > 1 else None
        if token.startswith("sha256:"):
            entries.append(_Entry(_digest_of(token[len("sha256:"):], where), Principal(f"key@{where}", projects)))
        else:
            entries.append(_Entry(digest(token), Principal(f"key@{where}", projects)))
    return entries


def _parse_yaml(text: str) -> list[_Entry]:
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        # The YAML error text may quote the line (a plaintext key): report the position only.
        mark = getattr(e, "problem_mark", None)
        raise KeysFileError(f"keys file is not valid YAML (line {mark.line + 1 if mark else '?'})") from None
    items = doc.get("keys") if isinstance(doc, dict) else None
    if not isinstance(items, list):
        raise KeysFileError("keys: must be a list of entries")
    entries = []
    for index, item in enumerate(items):
        where = f"keys[{index}]"
        if not isinstance(item, dict):
            raise KeysFileError(f"{where}: must be a mapping with `key` or `sha256`")
        unknown = set(item) - {"name", "key", "sha256", "projects"}
        if unknown:
            raise KeysFileError(f"{where}: unknown field(s) {', '.join(sorted(map(str, unknown)))}")
        if ("key" in item) == ("sha256" in item):
            raise KeysFileError(f"{where}: give exactly one of `key` or `sha256`")
        name = str(item.get("name") or where)
        if "key" in item:
            if not isinstance(item["key"], str) or not item["key"]:
                raise KeysFileError(f"{where}: key must be a non-empty string")
            value = digest(item["key"])
        else:
            value = _digest_of(str(item["sha256"]), where)
        entries.append(_Entry(value, Principal(name, _projects(item.get("projects"), where))))
    return entries


class KeyRing:
    """The current keys, re-read from `path` when the file changes (checked every `reload_seconds`)."""

    def __init__(self, path: Optional[Path], reload_seconds: float = 2.0):
        self.path = Path(path) if path else None
        self.reload_seconds = reload_seconds
        self._entries: list[_Entry] = []
        self._stamp: Optional[tuple] = None
        self._problem: Optional[str] = None
        self._checked = 0.0
        self._lock = threading.Lock()
        if self.path is None:
            log.warning("no API keys file configured: every /v1 request will be refused with 401")
        else:
            self._reload(initial=True)

    def _file_stamp(self) -> Optional[tuple]:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def _fail_closed(self, problem: str) -> None:
        # Logged once per change of the file (the stamp gates re-reads), not once per request.
        self._entries, self._problem = [], problem
        log.error("API keys file %s %s: every API key is refused and the gateway is not ready until "
                  "a valid file returns", self.path, problem)

    def _reload(self, initial: bool = False) -> None:
        stamp = self._file_stamp()
        if stamp == self._stamp and not initial:
            return
        self._stamp = stamp  # a broken file is not re-parsed until it changes
        if stamp is None:
            self._fail_closed("does not exist" if initial else "vanished")
            return
        try:
            entries = parse_keys(Path(self.path).read_text(encoding="utf-8"))
        except (KeysFileError, OSError, UnicodeDecodeError) as e:
            if initial:
                raise KeysFileError(f"{self.path}: {e}") from None
            reason = str(e) if isinstance(e, KeysFileError) else type(e).__name__
            self._fail_closed(f"is unusable ({reason})")
            return
        self._entries, self._problem = entries, None
        log.info("loaded %d API key(s) from %s", len(entries), self.path)

    @property
    def problem(self) -> Optional[str]:
        """Why no key is valid although a keys file is configured (missing, unparsable); None when fine."""
        self._maybe_reload()
        return self._problem

    def _maybe_reload(self) -> None:
        if self.path is None:
            return
        now = time.monotonic()
        if now - self._checked < self.reload_seconds:
            return
        with self._lock:
            if now - self._checked < self.reload_seconds:
                return
            self._checked = now
            self._reload()

    def __len__(self) -> int:
        return len(self._entries)

    def authenticate(self, presented: Optional[str]) -> Optional[Principal]:
        """The Principal of a valid key, else None."""
        self._maybe_reload()
        if not presented:
            return None
        candidate = digest(presented)
        found: Optional[Principal] = None
        for entry in self._entries:  # no early exit: every digest is compared
            if hmac.compare_digest(entry.digest, candidate) and found is None:
                found = entry.principal
        return found
