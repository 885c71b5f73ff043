"""The worker's log lines as the gateway serves them (`application/x-ndjson`: one JSON object a
line with at least "ts", "level" and "msg", plus structured fields), parsed and made readable."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Optional

_CORE = ("ts", "level", "msg")


@dataclass(frozen=True)
class LogLine:
    ts: Optional[str]
    level: str
    msg: str
    fields: dict[str, Any] = field(default_factory=dict)
    """Every other key of the line (phase, episode, attempt, ...), in the order written."""
    raw: bool = False
    """The worker wrote this line as plain text (a library on stderr); the gateway wrapped it."""

    def to_dict(self) -> dict[str, Any]:
        return {"ts": self.ts, "level": self.level, "msg": self.msg, **self.fields, **({"raw": True} if self.raw else {})}


def parse_line(text: str) -> Optional[LogLine]:
    """One line of the answer; None for a blank one. A line that is not a JSON object (which
    the contract says the gateway never sends, but a proxy might) becomes its own message."""
    text = text.strip()
    if not text:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        return LogLine(ts=None, level="info", msg=text, raw=True)
    extra = {k: v for k, v in data.items() if k not in _CORE and k != "raw"}
    return LogLine(ts=_str(data.get("ts")), level=str(data.get("level") or "info").lower(),
                   msg=str(data.get("msg") if data.get("msg") is not None else ""), fields=extra,
                   raw=bool(data.get("raw")))


def _str(value: Any) -> Optional[str]:
    return None if value is None else str(value)


def _value(value: Any) -> str:
    """Strings bare unless they hold spaces, quotes or `=` (then JSON-quoted); anything else as
    compact JSON (a nested object stays readable as `k={"a":1}`)."""
    if isinstance(value, str):
        return json.dumps(value) if (not value or any(c.isspace() or c in '"=' for c in value)) else value
    text = json.dumps(value, separators=(",", ":"))
    return json.dumps(text) if any(c.isspace() for c in text) else text


MAX_SHOWN_CHARS = 60  # a list or object longer than this is shown only with --output json


def render(line: LogLine) -> str:
    """`2025-07-03T10:00:01Z INFO  augmenting episode=3 frames=90`: time, level, message,
    then key=value for each structured field (values with spaces quoted). Empty values, long
    lists and objects, and a progress `message` the line's message already says are left to `--output json`: a
    progress line carries the whole phase list, which would bury the message a person reads."""
    parts = [line.ts or "-", f"{line.level.upper():<5}", line.msg]
    parts += [f"{k}={text}" for k, v in line.fields.items()
              if v not in (None, "", [], {}) and not (k == "message" and str(v) in line.msg)
              for text in [_value(v)] if len(text) <= MAX_SHOWN_CHARS or not isinstance(v, (list, dict))]
    return " ".join(p for p in parts if p != "")
