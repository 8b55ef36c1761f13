"""Background execution of long work with progress and cancel.

A Streamlit script is rerun, and its work aborted, on every widget click, so training and
unlearning run here instead: one daemon worker thread takes jobs in the order they were
submitted, from any thread (two browser tabs share one runner). Pages poll `Job` fields;
nothing here calls Streamlit.
"""

from __future__ import annotations

import queue
import secrets
import threading
import time
import traceback as traceback_module
from dataclasses import dataclass, field
from typing import Any, Callable

from .errors import Cancelled, UserError
from .progress import Progress

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
ACTIVE_STATUSES = (QUEUED, RUNNING)

JobFunction = Callable[[Progress], Any]


@dataclass
class Job:
    """One unit of work and its live state. Fields are written under the job's lock,
    `status` last, so a poller that sees "done" also sees `result` and `finished`."""

    id: str
    label: str
    status: str = QUEUED
    fraction: float = 0.0
    message: str = ""
    result: Any = None
    error: str | None = None
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    traceback: str | None = None  # set for unexpected exceptions, for a details expander
    _fn: JobFunction | None = field(default=None, repr=False, compare=False)
    _cancel_event: threading.Event = field(default_factory=threading.Event, repr=False,
                                           compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    def cancel(self) -> None:
        """A queued job never starts; a running one stops at its next progress update.
        Work that finishes without another update still counts as done."""
        with self._lock:
            self._cancel_event.set()
            if self.status == QUEUED:
                self.finished = time.time()
                self.error = "cancelled before it started"
                self.status = CANCELLED

    def _report(self, fraction: float, message: str) -> None:
        with self._lock:
            self.fraction = fraction
            if message:  # an update without a message keeps the last one on screen
                self.message = message

    def _start(self) -> bool:
        with self._lock:
            if self.status != QUEUED:
                return False
            self.started = time.time()
            self.status = RUNNING
            return True

    def _end(self, status: str, *, result: Any = None, error: str | None = None,
             traceback: str | None = None) -> None:
        with self._lock:
            self.result = result
            self.error = error
            self.traceback = traceback
            if status == DONE:
                self.fraction = 1.0
            self.finished = time.time()
            self._fn = None  # drop the closure: it may hold models and data
            self.status = status


class JobRunner:
    """One worker thread, first in first out. `keep_finished` bounds how many finished
    jobs (and their results) are remembered; the oldest are forgotten first."""

    def __init__(self, keep_finished: int = 100):
        self._keep_finished = keep_finished
        self._jobs: dict[str, Job] = {}  # insertion order is submission order
        self._lock = threading.Lock()
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._closed = False
        self._worker = threading.Thread(target=self._work, name="unlearning-lens-jobs",
                                        daemon=True)
        self._worker.start()

    def submit(self, label: str, fn: JobFunction) -> Job:
        with self._lock:
            if self._closed:
                raise RuntimeError("JobRunner is shut down; no new jobs accepted")
            # Random ids: a runner rebuilt after a cache clear must not hand out ids
            # that a browser session still holds for an older job.
            job = Job(id=f"job-{secrets.token_hex(6)}", label=label, _fn=fn)
            self._jobs[job.id] = job
            # Enqueued under the lock so queue order equals submission order.
            self._queue.put(job)
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def jobs(self) -> list[Job]:
        """Newest first."""
        with self._lock:
            return list(reversed(self._jobs.values()))

    def active(self) -> list[Job]:
        """Running and queued jobs, newest first."""
        return [job for job in self.jobs() if job.is_active]

    def shutdown(self, wait: bool = True) -> None:
        """Accept no more jobs, cancel the queued ones, ask the running one to stop, and
        with `wait` block until it has."""
        with self._lock:
            self._closed = True
            pending = list(self._jobs.values())
            self._queue.put(None)  # wakes the worker after whatever is queued
        for job in pending:
            if job.is_active:
                job.cancel()
        if wait:
            self._worker.join()

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            if job._start():
                self._run(job)
                self._forget_old_jobs()

    @staticmethod
    def _run(job: Job) -> None:
        progress = Progress(job._report, job._cancel_event)
        try:
            result = job._fn(progress)
        except Cancelled as error:
            job._end(CANCELLED, error=str(error) or "cancelled")
        except UserError as error:
            job._end(FAILED, error=str(error))
        # BaseException too: a job calling sys.exit must not end the worker thread.
        except BaseException as error:
            job._end(FAILED, error=f"{type(error).__name__}: {error}",
                     traceback=traceback_module.format_exc())
        else:
            job._end(DONE, result=result)

    def _forget_old_jobs(self) -> None:
        with self._lock:
            finished = [job_id for job_id, job in self._jobs.items() if not job.is_active]
            for job_id in finished[:max(len(finished) - self._keep_finished, 0)]:
                del self._jobs[job_id]
