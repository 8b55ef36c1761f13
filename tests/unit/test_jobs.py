import threading
import time
from typing import Callable

import pytest

from unlearn_core.errors import UserError
from unlearn_core.jobs import Job, JobRunner
from unlearn_core.progress import Progress

TIMEOUT_S = 10.0


def wait_until(condition, timeout: float = TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.005)


def wait_finished(job: Job) -> Job:
    wait_until(lambda: not job.is_active)
    return job


@pytest.fixture
def runner():
    job_runner = JobRunner()
    yield job_runner
    job_runner.shutdown(wait=True)


def blocker() -> tuple[threading.Event, threading.Event, Callable[[Progress], str]]:
    """A job function that reports progress, then waits until released, then keeps
    reporting so a cancel can land."""
    started, release = threading.Event(), threading.Event()

    def work(progress: Progress) -> str:
        progress.update(0.25, "step one")
        started.set()
        release.wait(TIMEOUT_S)
        for _ in range(100):
            progress.update(0.5)
            time.sleep(0.002)
        return "finished"

    return started, release, work


def test_jobs_run_in_submission_order(runner):
    order: list[int] = []
    jobs = [runner.submit(f"job {i}", lambda progress, i=i: order.append(i) or i)
            for i in range(5)]
    for job in jobs:
        wait_finished(job)
    assert order == [0, 1, 2, 3, 4]
    assert [job.result for job in jobs] == [0, 1, 2, 3, 4]
    assert all(job.status == "done" and job.fraction == 1.0 for job in jobs)
    assert all(job.started >= job.created and job.finished >= job.started for job in jobs)
    assert runner.jobs() == jobs[::-1]
    assert runner.get(jobs[2].id) is jobs[2] and runner.get("nope") is None


def test_progress_is_visible_while_running(runner):
    started, release, work = blocker()
    job = runner.submit("slow", work)
    assert started.wait(TIMEOUT_S)
    assert (job.status, job.fraction, job.message) == ("running", 0.25, "step one")
    assert runner.active() == [job]
    release.set()
    wait_finished(job)
    # An update without a message keeps the last message.
    assert (job.status, job.result, job.message) == ("done", "finished", "step one")
    assert runner.active() == []


def test_cancel_running_job_then_next_job_runs(runner):
    started, release, work = blocker()
    running = runner.submit("to cancel", work)
    following = runner.submit("next", lambda progress: "next done")
    assert started.wait(TIMEOUT_S)
    running.cancel()
    release.set()
    wait_finished(running)
    assert running.status == "cancelled" and running.result is None
    assert wait_finished(following).status == "done"
    assert following.result == "next done"


def test_cancel_queued_job_never_starts(runner):
    started, release, work = blocker()
    first = runner.submit("first", work)
    ran = threading.Event()
    queued = runner.submit("queued", lambda progress: ran.set())
    assert started.wait(TIMEOUT_S)
    assert runner.active() == [queued, first]
    queued.cancel()
    assert queued.status == "cancelled" and queued.started is None
    release.set()
    wait_finished(first)
    after = runner.submit("after", lambda progress: "ok")
    wait_finished(after)
    assert not ran.is_set() and queued.started is None and first.status == "done"


def test_failing_job_does_not_kill_the_worker(runner):
    def broken(progress):
        raise ValueError("bad value")

    failed = wait_finished(runner.submit("broken", broken))
    assert failed.status == "failed"
    assert failed.error == "ValueError: bad value"
    assert "Traceback" in failed.traceback and "bad value" in failed.traceback
    assert wait_finished(runner.submit("fine", lambda progress: 1)).result == 1


def test_user_error_message_is_kept(runner):
    def user_mistake(progress):
        raise UserError("lr: expected a number in (0, 1], got 5")

    job = wait_finished(runner.submit("mistake", user_mistake))
    assert (job.status, job.error, job.traceback) == (
        "failed", "lr: expected a number in (0, 1], got 5", None)


def test_jobs_from_two_threads_all_complete(runner):
    submitted: list[Job] = []
    lock = threading.Lock()

    def submit_many(tab: int) -> None:
        for i in range(10):
            job = runner.submit(f"tab {tab} job {i}", lambda progress, i=i: i * i)
            with lock:
                submitted.append(job)

    tabs = [threading.Thread(target=submit_many, args=(tab,)) for tab in range(2)]
    for tab in tabs:
        tab.start()
    for tab in tabs:
        tab.join()
    for job in submitted:
        wait_finished(job)
    assert len(submitted) == 20 and all(job.status == "done" for job in submitted)
    assert len({job.id for job in submitted}) == 20


def test_finished_jobs_are_forgotten_beyond_the_limit():
    runner = JobRunner(keep_finished=3)
    try:
        jobs = [runner.submit(str(i), lambda progress: None) for i in range(6)]
        for job in jobs:
            wait_finished(job)
        wait_until(lambda: len(runner.jobs()) == 3)
        assert runner.jobs() == jobs[:2:-1]
    finally:
        runner.shutdown()


def test_shutdown_cancels_queued_and_running_and_refuses_new_jobs():
    runner = JobRunner()
    started, release, work = blocker()
    running = runner.submit("running", work)
    queued = runner.submit("queued", lambda progress: None)
    assert started.wait(TIMEOUT_S)
    runner.shutdown(wait=False)
    release.set()
    wait_finished(running)
    assert running.status == "cancelled" and queued.status == "cancelled"
    with pytest.raises(RuntimeError, match="shut down"):
        runner.submit("late", lambda progress: None)
