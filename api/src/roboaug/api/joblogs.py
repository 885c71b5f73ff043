"""The job-log contract, written once: what a worker log line is, and where the operator keeps
each attempt's tail once its pod has ended, so that the gateway can serve it.

Lines. Everything the worker writes (stdout and stderr) is one JSON object per line with at
least `ts` (RFC 3339 UTC, milliseconds), `level` (`debug`, `info`, `warning`, `error`) and `msg`,
plus optional structured fields (`event`, `phase`, `episode`, `attempt`, ...). `render` writes
one; `JsonLineFormatter` makes the `logging` module write them. A line that is not such an
object (a C library printing to stderr) is served wrapped by `normalize` as
`{"ts", "level": "info", "msg": <the raw line>, "raw": true}`; its `ts` is the one of the
line before it (the kubelet keeps no time per line unless asked), else the time of serving.

Secrets: `Redactor` masks the exact values it is given (the worker gives it its Hub token) and
anything shaped like a Hugging Face token, in every line the formatter writes.

Archive. When an attempt's pod ends, the operator stores the last `ARCHIVE_BYTES` of its log
(cut at a line boundary) in a ConfigMap named `archive_name(cr name, cr uid, attempt, part)`, key
`ARCHIVE_KEY`, owned by the AugmentationJob (it goes with it). The gateway reads it by name
(`get`, no `list`) once the pod is gone, and serves it only when the ConfigMap's controlling
owner is the job's CR (by uid). Imports nothing else of ours (layer rule 1).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import re
from typing import Any, Iterable, Optional

LEVELS = ("debug", "info", "warning", "error")
MEDIA_TYPE = "application/x-ndjson"

ARCHIVE_BYTES = 1024 * 1024
"""The most of one attempt's log kept after its pod is gone (a ConfigMap holds 1 MiB of data)."""
ARCHIVE_KEY = "log"
MAX_ARCHIVE_PARTS = 8
"""Archives kept per attempt, one per pod (parts 0..7): a ninth pod of one attempt is not kept."""
SHARD_LOG_SAMPLE = 2
"""Of a sharded job's shard pods that succeed, those of indexes 0..1 only have their logs kept
and served (`kept`): 10,000 shards ending well are 10,000 alike logs, and one archive each would
be 10,000 ConfigMaps and three API calls per shard for the operator."""
OWN_ARCHIVE_STAGES = ("finalize", "cleanup")
"""A sharded job's stages whose pods' archives have names of their own (`archive_name`'s
`stage`), so failed shard pods filling an attempt's parts never crowd out the finalize log."""
ANNOTATION_ATTEMPT = "roboaug.dev/log-attempt"
ANNOTATION_POD = "roboaug.dev/log-pod"
ANNOTATION_SOURCE = "roboaug.dev/log-source"
"""`pod` (read from the pod's log) or `termination-message` (the pod was gone before the
operator read it: only the kubelet's last 2 KiB / 80 lines of a failed container are left)."""
ANNOTATION_TRUNCATED = "roboaug.dev/log-truncated"
"""`true` when lines before the kept tail were dropped."""
_NAME_LIMIT = 253


def now_ts(now: Optional[dt.datetime] = None) -> str:
    """RFC 3339 UTC with milliseconds and a `Z`."""
    now = now or dt.datetime.now(dt.timezone.utc)
    return now.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


# -- secrets -------------------------------------------------------------------------------------
_TOKEN_SHAPES = re.compile(r"hf_[A-Za-z0-9]{8,}")


class Redactor:
    """Masks the given secret values (exactly) and Hugging Face token shapes as `***`."""

    def __init__(self, secrets: Iterable[Optional[str]] = ()):
        self.secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return _TOKEN_SHAPES.sub("***", text)


def _scrub(value: Any, redact: Redactor) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _scrub(v, redact) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scrub(v, redact) for v in value]
    return value


# -- writing -------------------------------------------------------------------------------------
def render(level: str, msg: str, *, ts: Optional[str] = None, redact: Optional[Redactor] = None,
           **fields: Any) -> str:
    """One line (no newline): `{"ts", "level", "msg", **fields}`; `fields` cannot replace those
    three. Values that JSON cannot hold are written as their `str`."""
    if level not in LEVELS:
        raise ValueError(f"level must be one of {', '.join(LEVELS)}, got {level!r}")
    redact = redact or Redactor()
    extra = {k: v for k, v in fields.items() if k not in ("ts", "level", "msg")}
    body = {"ts": ts or now_ts(), "level": level, "msg": redact(str(msg)), **_scrub(extra, redact)}
    return json.dumps(body, ensure_ascii=False, default=str)


def level_name(levelno: int) -> str:
    if levelno >= logging.ERROR:
        return "error"
    if levelno >= logging.WARNING:
        return "warning"
    return "info" if levelno >= logging.INFO else "debug"


class JsonLineFormatter(logging.Formatter):
    """`logging` records as contract lines: `logger` names the logger, an exception's traceback
    goes into `exc` (one line, not a stack across many), `extra={"fields": {...}}` adds fields."""

    def __init__(self, redact: Optional[Redactor] = None):
        super().__init__()
        self.redact = redact or Redactor()

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = {"logger": record.name}
        fields.update(getattr(record, "fields", None) or {})
        if record.exc_info:
            fields["exc"] = self.formatException(record.exc_info)
        ts = now_ts(dt.datetime.fromtimestamp(record.created, dt.timezone.utc))
        return render(level_name(record.levelno), record.getMessage(), ts=ts, redact=self.redact, **fields)


# -- reading -------------------------------------------------------------------------------------
def parse(line: str) -> Optional[dict]:
    """The line as a contract object, or None when it is not one."""
    text = line.strip()
    if not text.startswith("{"):
        return None
    try:
        obj = json.loads(text)
    except ValueError:
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("msg"), str) or not isinstance(obj.get("ts"), str):
        return None
    return obj


def normalize(line: str, fallback_ts: str) -> tuple[str, str]:
    """(the line to serve, the `ts` the next raw line falls back to). A contract line is served as
    written; any other non-empty line wrapped (`raw: true`); an empty line as ""."""
    text = line.rstrip("\r\n")
    obj = parse(text)
    if obj is not None:
        return text.strip(), obj["ts"]
    if not text.strip():
        return "", fallback_ts
    return json.dumps({"ts": fallback_ts, "level": "info", "msg": text, "raw": True}, ensure_ascii=False), fallback_ts


# -- the archive ---------------------------------------------------------------------------------
def kept(stage: Optional[str], index: Optional[int], failed: bool) -> bool:
    """Whether a pod's log is kept once it ends (operator) and served (gateway), by its stage
    (the pod's `roboaug.dev/stage` label, `contract.Stage`'s names; None: a one-pod job), its
    Indexed Job completion index
    and whether it failed. Every pod of a one-pod job, of a finalize or cleanup Job, and every
    failed shard pod; of the shard pods that did not fail, indexes below SHARD_LOG_SAMPLE."""
    if stage != "shard" or failed:
        return True
    return index is not None and index < SHARD_LOG_SAMPLE


def archive_name(cr_name: str, cr_uid: str, attempt: int, part: int = 0, stage: Optional[str] = None) -> str:
    """`<cr name>-logs-<8 hex of the CR's uid>-<attempt>`, then `.<part>` for the second and
    later pod of one attempt (a pod lost to a node disruption is replaced by one with the same
    attempt number). The uid: a CR created again under the same name never reads its
    predecessor's archive (still waiting for garbage collection). A CR name too long for that is
    cut and hashed (a ConfigMap name is at most 253 characters)."""
    if attempt < 0 or part < 0:
        raise ValueError(f"attempt and part must be >= 0, got {attempt} and {part}")
    own = f"{stage}-" if stage in OWN_ARCHIVE_STAGES else ""
    suffix = f"-logs-{cr_uid.replace('-', '')[:8]}-{own}{attempt}" + (f".{part}" if part else "")
    if len(cr_name) + len(suffix) <= _NAME_LIMIT:
        return f"{cr_name}{suffix}"
    digest = hashlib.sha256(cr_name.encode()).hexdigest()[:8]
    keep = _NAME_LIMIT - len(suffix) - len(digest) - 1
    return f"{cr_name[:keep].rstrip('-.')}-{digest}{suffix}"


def tail(chunks: Iterable[bytes], limit: int = ARCHIVE_BYTES) -> tuple[bytes, bool]:
    """The last whole lines of `chunks` that fit in `limit` bytes, and whether anything before
    them was dropped. Memory stays within about two chunks plus `limit`, whatever the log's size.
    A last line without its newline (a pod killed mid-write) is kept as it is; a single line
    longer than `limit` keeps its last `limit` bytes."""
    buf = bytearray()
    dropped = False
    for chunk in chunks:
        buf += chunk
        if len(buf) > 2 * limit:
            del buf[: len(buf) - limit - 1]  # keep one byte more: is a line boundary right before?
            dropped = True
    if len(buf) <= limit:
        return bytes(buf), dropped
    over = len(buf) - limit
    cut = buf.find(b"\n", over - 1)  # the newline ending the last line that no longer fits whole
    if cut == -1 or cut + 1 >= len(buf):
        return bytes(buf[-limit:]), True  # no boundary in the window: one overlong line
    return bytes(buf[cut + 1:]), True


__all__ = [
    "ANNOTATION_ATTEMPT", "ANNOTATION_POD", "ANNOTATION_SOURCE", "ANNOTATION_TRUNCATED", "ARCHIVE_BYTES",
    "ARCHIVE_KEY", "LEVELS", "MAX_ARCHIVE_PARTS", "MEDIA_TYPE", "OWN_ARCHIVE_STAGES", "SHARD_LOG_SAMPLE",
    "JsonLineFormatter", "Redactor", "archive_name", "kept", "level_name", "normalize", "now_ts", "parse", "render",
    "tail",
]
