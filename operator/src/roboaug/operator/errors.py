"""Turns what Kubernetes reports about a failed (or never started) pod into the text a person
reads in status.error.

A worker failure is its exit code (named through the worker contract, `roboaug.api.contract`)
plus its last message (the container's termination message, which with
`terminationMessagePolicy: FallbackToLogsOnError` is the worker's final log line). Anything that
looks like a token is masked: error texts end up in the CR, in Events and in logs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

from roboaug.api.contract import ExitCode, find_error_line, is_permanent

_SECRETS = [
    re.compile(r"hf_[A-Za-z0-9]{8,}"),                     # Hugging Face tokens
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}"),   # Authorization headers
    re.compile(r"(?i)((?:token|password|secret)[\"']?\s*[:=]\s*[\"']?)[^\s\"',]{4,}"),
]
MAX_MESSAGE = 500
_SIGNALS = {137: "killed (SIGKILL)", 143: "terminated (SIGTERM)", 139: "segmentation fault (SIGSEGV)"}


def redact(text: str) -> str:
    """Mask token-looking substrings."""
    for pattern in _SECRETS:
        text = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + "***", text)
    return text


def last_message(message: Optional[str]) -> Optional[str]:
    """The worker's own error line if present, else the last non-empty line; redacted, bounded."""
    if not message:
        return None
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    if not lines:
        return None
    worker_lines = [found.text for line in lines if (found := find_error_line(line))]
    text = worker_lines[-1] if worker_lines else lines[-1]
    return _bounded(redact(text))


def _bounded(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."


def exit_code_name(code: int, reason: Optional[str] = None) -> str:
    """`10` -> `dataset_not_found`; `137` with reason OOMKilled -> `OOMKilled`."""
    if reason == "OOMKilled":
        return "OOMKilled"
    try:
        return ExitCode(code).name.lower()
    except ValueError:
        return _SIGNALS.get(code, "unknown")


@dataclass(frozen=True)
class PodFailure:
    """One failed worker pod."""

    exit_code: Optional[int]
    reason: Optional[str] = None      # container terminated.reason (Error, OOMKilled...)
    message: Optional[str] = None     # container terminated.message (raw)
    pod: Optional[str] = None
    node: Optional[str] = None

    @property
    def permanent(self) -> bool:
        return is_permanent(self.exit_code)

    @property
    def out_of_memory(self) -> bool:
        """Killed by the kernel at the memory limit (137, reason OOMKilled) or the worker's own
        MemoryError (exit out_of_memory)."""
        return self.reason == "OOMKilled" or self.exit_code == ExitCode.OUT_OF_MEMORY

    def describe(self) -> str:
        """`worker exited with code 10 (dataset_not_found, permanent): <last line>`."""
        if self.exit_code is None:
            head = f"worker pod failed ({self.reason or 'no exit code reported'})"
        else:
            kind = "permanent" if self.permanent else "retryable"
            head = (f"worker exited with code {self.exit_code} "
                    f"({exit_code_name(self.exit_code, self.reason)}, {kind})")
        msg = last_message(self.message)
        return f"{head}: {msg}" if msg else head

    def data(self) -> dict:
        out = {"exit_code": self.exit_code, "exit_reason": self.reason, "pod": self.pod, "node": self.node}
        if self.exit_code is not None:
            out["exit_name"] = exit_code_name(self.exit_code, self.reason)
            out["permanent"] = self.permanent
        return {k: v for k, v in out.items() if v is not None}


def job_failure_text(condition_reason: Optional[str], condition_message: Optional[str],
                     failure: Optional[PodFailure], attempts: int) -> str:
    """status.error for a Job whose `Failed` condition is set."""
    if failure is not None:
        text = failure.describe()
        if condition_reason == "BackoffLimitExceeded":
            text += f" (gave up after {attempts} attempt{'s' if attempts != 1 else ''})"
        return text
    reason = condition_reason or "Failed"
    msg = redact(condition_message or "")
    return f"Job failed: {reason}" + (f": {msg}" if msg else "")


def pending_timeout_text(timeout_s: int, scheduler_message: Optional[str]) -> str:
    """status.error when no node took the pod in time, with the scheduler's own words."""
    why = scheduler_message or "the pod was not scheduled (no reason reported by the scheduler)"
    return f"no node could run the worker within {timeout_s}s: {why}"


def kubelet_waiting_text(reason: str, message: Optional[str]) -> str:
    """`CreateContainerConfigError: secret "roboaug-hf-token" not found`: the kubelet's own
    words, masked (a registry or a templated env value can echo a credential) and bounded."""
    msg = " ".join((message or "").split())
    return _bounded(redact(f"{reason}: {msg}" if msg else reason))


def start_timeout_text(timeout_s: int, reason: str, message: Optional[str]) -> str:
    """status.error when the pod got a node but its container never started in time."""
    return f"the worker container did not start within {timeout_s}s: {kubelet_waiting_text(reason, message)}"
