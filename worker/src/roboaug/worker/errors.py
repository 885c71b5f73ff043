"""The worker's failures with a known cause. Exit codes, their classes and the error line are the
worker contract's (`roboaug.api.contract`), shared with the operator; `ExitCode` is re-exported
here for the worker's modules."""

from __future__ import annotations

from roboaug.api.contract import PERMANENT_EXIT_CODES, ExitCode, error_line, is_permanent

__all__ = ["PERMANENT_EXIT_CODES", "ExitCode", "WorkerError"]


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
        return not is_permanent(self.code)

    def line(self) -> str:
        return error_line(self.code, self.message)
