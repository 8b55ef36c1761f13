"""Progress reporting and cancellation for long work (training, unlearning, metrics).

Long functions take a `Progress` and call `update` now and then; `update` raises
`Cancelled` once the user asked to stop, so work ends at the next step boundary.
"""

from __future__ import annotations

import sys
import threading
from typing import Callable, TextIO

from .errors import Cancelled

ProgressCallback = Callable[[float, str], None]


class Progress:
    """Reports a fraction in [0, 1] with a message; `stage` maps a sub-task onto a
    slice of the parent's range so one bar covers a job of several steps."""

    def __init__(self, callback: ProgressCallback | None = None,
                 cancel_event: threading.Event | None = None,
                 *, _start: float = 0.0, _end: float = 1.0):
        self._callback = callback
        self._cancel = cancel_event if cancel_event is not None else threading.Event()
        self._start = _start
        self._end = _end

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def cancel(self) -> None:
        self._cancel.set()

    def check(self) -> None:
        if self._cancel.is_set():
            raise Cancelled("cancelled by the user")

    def update(self, fraction: float, message: str = "") -> None:
        self.check()
        if self._callback is not None:
            clipped = min(max(float(fraction), 0.0), 1.0)
            self._callback(self._start + clipped * (self._end - self._start), message)

    def stage(self, start: float, end: float) -> "Progress":
        span = self._end - self._start
        return Progress(self._callback, self._cancel,
                        _start=self._start + start * span, _end=self._start + end * span)


class ConsoleProgress:
    """A progress callback printing to `stream` (default stderr): a rewritten line on a
    terminal, else a line per 10% (a notebook's output, a log file)."""

    def __init__(self, quiet: bool = False, stream: TextIO | None = None):
        self.quiet = quiet
        self.stream = stream
        self.last_decile = -1

    def __call__(self, fraction: float, message: str) -> None:
        if self.quiet:
            return
        stream = self.stream or sys.stderr
        if stream.isatty():
            print(f"\r[{fraction:6.1%}] {message[:100]:<100}", end="", file=stream, flush=True)
        elif int(fraction * 10) > self.last_decile:
            self.last_decile = int(fraction * 10)
            print(f"[{fraction:6.1%}] {message}", file=stream, flush=True)
