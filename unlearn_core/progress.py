"""Progress reporting and cancellation for long work (training, unlearning, metrics).

Long functions take a `Progress` and call `update` now and then; `update` raises
`Cancelled` once the user asked to stop, so work ends at the next step boundary.
"""

from __future__ import annotations

import threading
from typing import Callable

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
