"""Exit codes of the worker: the contract between the worker and the operator's podFailurePolicy.

Permanent failures (retrying cannot help) exit with a code in PERMANENT_EXIT_CODES and the Job
fails at once; everything else, including being OOM-killed (137), counts against backoffLimit.
Each failure prints one line `roboaug-worker: error[<code> <name>]: <cause>` naming the cause.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    # permanent
    DATASET_NOT_FOUND = 10
    UNSUPPORTED_FORMAT = 11
    CORRUPT_VIDEO = 12
    NO_CAMERA_FEATURE = 13
    AUTH = 14  # bad or missing token, no write access
    INVALID_SPEC = 15
    # retryable
    NETWORK = 75  # EX_TEMPFAIL: connection errors, timeouts, 5xx / 429 from the Hub
    OUT_OF_MEMORY = 76
    INTERNAL = 70  # EX_SOFTWARE: a bug; retried, since the cause is unknown


PERMANENT_EXIT_CODES: frozenset[int] = frozenset(
    {
        ExitCode.DATASET_NOT_FOUND,
        ExitCode.UNSUPPORTED_FORMAT,
        ExitCode.CORRUPT_VIDEO,
        ExitCode.NO_CAMERA_FEATURE,
        ExitCode.AUTH,
        ExitCode.INVALID_SPEC,
    }
)


class WorkerError(Exception):
    """A failure with a known cause; `code` decides whether the operator retries."""

    def __init__(self, code: ExitCode, message: str):
        super().__init__(message)
        self.code = ExitCode(code)
        self.message = message

    def __reduce__(self):
        # rebuilt with both arguments when it crosses a process boundary (episodes run in a pool)
        return (type(self), (self.code, self.message))

    @property
    def retryable(self) -> bool:
        return self.code not in PERMANENT_EXIT_CODES

    def line(self) -> str:
        return f"roboaug-worker: error[{int(self.code)} {self.code.name.lower()}]: {self.message}"
