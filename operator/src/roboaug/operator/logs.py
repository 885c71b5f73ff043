"""Structured logs: one JSON object per line (kopf's JSON formatter, which adds the object's
namespace/name under `object`), or kopf's text format for local runs."""

from __future__ import annotations

import logging

import kopf


def configure(log_format: str = "json", level: str = "INFO") -> None:
    fmt = kopf.LogFormat.JSON if log_format == "json" else kopf.LogFormat.FULL
    kopf.configure(log_format=fmt, verbose=level == "DEBUG", quiet=level in ("WARNING", "ERROR"))
    logging.getLogger().setLevel(level)
    # Client libraries log request details (URLs, sometimes headers) at DEBUG: keep them out.
    for noisy in ("urllib3", "kubernetes", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if level != "DEBUG":
        # kopf reports every handler call on every watch event ("Handler 'pod_event' succeeded"):
        # thousands of lines per minute under load, and nothing our own transition logs lack.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
