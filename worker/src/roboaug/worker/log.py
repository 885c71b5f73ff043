"""The worker's log: every line it writes, on stdout or stderr, is one JSON object of the job-log
contract (`roboaug.api.joblogs`: `ts`, `level`, `msg`, plus fields), which the gateway serves at
GET /v1/augmentation/{id}/logs and the CLI prints.

`setup` is called once, first thing in `main`: it routes the `logging` module (the worker's
libraries: huggingface_hub, PIL, ...) and `warnings` through the contract's formatter on stderr,
and gives the redactor the Hub token, so the token is masked in every line written here even
where a library or an error message quotes it. `emit` writes one line of the worker's own.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, Optional, TextIO

from roboaug.api.contract import HF_TOKEN
from roboaug.api.joblogs import JsonLineFormatter, Redactor, render

_redact = Redactor()


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is when a record comes (a test may swap it)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def setup(token: Optional[str] = None, level: int = logging.INFO) -> None:
    """JSON lines for `logging` and `warnings`; `token` (default: the HF_TOKEN variable) masked."""
    global _redact
    _redact = Redactor([token if token is not None else os.environ.get(HF_TOKEN.name)])
    handler = _StderrHandler()
    handler.setFormatter(JsonLineFormatter(_redact))
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _StderrHandler)]:  # setup() again: ours only
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # HTTP client libraries log request details (URLs, sometimes headers) at DEBUG: keep them out.
    # huggingface_hub >= 1 ships its own copy of httpx, logging as "httpx2".
    for noisy in ("urllib3", "httpx", "httpx2", "httpcore", "kubernetes", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # captureWarnings(True) is a no-op while capture is on, even if a catch_warnings() block has
    # since replaced the hook (seen when setup() runs again in one process): install it afresh.
    logging.captureWarnings(False)
    logging.captureWarnings(True)
    # Progress bars are `\r`-redrawn lines on stderr: noise in a log; progress has its own lines.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def emit(level: str, msg: str, *, stream: Optional[TextIO] = None, **fields: Any) -> str:
    """Write one contract line (to stdout unless `stream`) and return it."""
    line = render(level, msg, redact=_redact, **fields)
    print(line, file=stream if stream is not None else sys.stdout, flush=True)
    return line


__all__ = ["emit", "setup"]
