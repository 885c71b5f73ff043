"""The live progress display of `submit --watch` and `wait`: one line redrawn in place on a
terminal; on anything else (a log file, CI) a plain line when the phase changes or every
`every` seconds, so the log stays short and readable."""

from __future__ import annotations

import shutil
import time
from typing import Callable, Optional, TextIO

from roboaug.api.client.progress import ProgressView, RateMeter, progress_of, render_line
from roboaug.api.models import AugmentationStatusResponse

CLEAR_LINE = "\x1b[K"


class Watcher:
    def __init__(self, out: TextIO, tty: bool, *, every: float = 10.0,
                 clock: Callable[[], float] = time.monotonic,
                 width: Callable[[], int] = lambda: shutil.get_terminal_size((100, 24)).columns):
        self.out, self.tty, self.every, self.clock, self.width = out, tty, every, clock, width
        self.meter = RateMeter()
        self.start = clock()
        self._last_line: Optional[str] = None
        self._last_print = float("-inf")
        self._last_phase: Optional[str] = None
        self._drawn = False

    def update(self, status: AugmentationStatusResponse) -> None:
        now = self.clock()
        view: ProgressView = progress_of(status)
        self.meter.add(now, view.frames_done)
        if self.tty:
            line = render_line(view, self.meter.rate(), now - self.start, max(20, self.width() - 1))
            self.out.write("\r" + line + CLEAR_LINE)
            self._drawn = True
        else:
            if view.phase == self._last_phase and now - self._last_print < self.every:
                return
            line = render_line(view, self.meter.rate(), now - self.start, 120)
            if line == self._last_line and view.phase == self._last_phase:
                return
            self.out.write(line + "\n")
            self._last_line, self._last_print, self._last_phase = line, now, view.phase
        self.out.flush()

    def close(self) -> None:
        """Leave the cursor on a fresh line (the redrawn line stays on screen)."""
        if self.tty and self._drawn:
            self.out.write("\n")
            self.out.flush()
            self._drawn = False
