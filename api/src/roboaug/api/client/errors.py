"""One exception for everything the gateway refuses, and the one-line text of a refusal.

The gateway answers `{"detail": str}` for every error and, for 422, `{"detail": [{loc, msg, type}]}`
(api/gateway/errors.py). A person wants one line that names the field, a script wants the status
code and the items: `ApiError` carries all three.
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Optional

_LOCATIONS = {"body", "query", "path", "header"}
_PREFIXES = ("Value error, ", "Assertion failed, ")


class ApiError(Exception):
    """The gateway refused a request (status_code is its HTTP status), or could not be reached
    (status_code is None). `detail` is one readable line; `errors` the 422 items, if any."""

    def __init__(self, status_code: Optional[int], detail: str, errors: Optional[list[dict]] = None):
        super().__init__(detail if status_code is None else f"{status_code}: {detail}")
        self.status_code = status_code
        self.detail = detail
        self.errors = errors or []

    @property
    def fields(self) -> list[str]:
        """The fields the 422 items are about, in order (empty for other errors)."""
        return [field_path(e.get("loc") or ()) for e in self.errors]


def field_path(loc: Iterable[Any]) -> str:
    """`["body", "augment_copies"]` -> `augment_copies`; nested locations join with dots."""
    parts = [str(p) for p in loc]
    if len(parts) > 1 and parts[0] in _LOCATIONS:
        parts = parts[1:]
    return ".".join(parts) or "request"


def item_line(item: dict) -> str:
    """One validation item (the gateway's or pydantic's) as `field: rule`."""
    path = field_path(item.get("loc") or ())
    msg = str(item.get("msg") or "invalid")
    for prefix in _PREFIXES:
        if msg.startswith(prefix):
            msg = msg[len(prefix):]
    if msg.startswith(f"{path}:") or msg.startswith(f"{path} "):
        return msg
    return f"{path}: {msg}"


def items_line(items: Iterable[dict]) -> str:
    """Several items on one line, each naming its field, without repeats."""
    seen: list[str] = []
    for item in items:
        line = item_line(item)
        if line not in seen:
            seen.append(line)
    return "; ".join(seen) or "invalid request"


def from_response(status_code: int, body: bytes, reason: str = "") -> ApiError:
    """The ApiError of an error answer, whatever its body (a proxy's HTML page included)."""
    try:
        detail = json.loads(body)["detail"]
    except (ValueError, KeyError, TypeError):
        text = body.decode("utf-8", "replace").strip().splitlines()
        return ApiError(status_code, (text[0][:200] if text else "") or reason or "error")
    if isinstance(detail, list):
        items = [d for d in detail if isinstance(d, dict)]
        return ApiError(status_code, items_line(items), items)
    return ApiError(status_code, " ".join(str(detail).split()))
