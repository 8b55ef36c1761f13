"""Faults: a run killed mid-way, a full disk while saving, two submitters at once.

Each test starts from a store that already holds a finished run and checks afterwards
that this run still loads (report and weights) and that the store holds no half-written
folder. The CLI runs as a real subprocess where the fault is the process's own death.
"""

import errno
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import safetensors.torch

from conftest import (TINY_CLI_ARGS, accuracy_and_mia_only, assert_run_intact, store_with_one_run,
                      tiny_setup)
from unlearn_core import io, pipeline
from unlearn_core.cli import main
from unlearn_core.config import MethodSpec, RunSpec
from unlearn_core.jobs import DONE, FAILED, JobRunner
from unlearn_core.runs import RunStore

# Several seconds or more on 2 cores: left out of `make test-fast`.
pytestmark = pytest.mark.slow

KILL_WAIT_S = 120


@pytest.fixture
def store_with_a_run(tmp_path, monkeypatch):
    """A store with one finished run, checked intact after the test; in this process
    runs get the light evaluation (the CLI subprocesses run the full one)."""
    store, run_id, report = store_with_one_run(tmp_path / "store")
    monkeypatch.setattr(pipeline, "evaluate", accuracy_and_mia_only)
    yield store, run_id
    assert_run_intact(store, run_id, report)  # after every fault


def cli(store: RunStore, *args: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "unlearn_core", "--store", str(store.root),
                             "--quiet", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_a_cli_run_killed_mid_way_is_marked_interrupted_on_next_start(store_with_a_run, capsys):
    store, earlier = store_with_a_run
    # 500 epochs keep the method busy far longer than it takes to see its row.
    worker = cli(store, "unlearn", "--method", "finetune", "--param", "epochs=500", *TINY_CLI_ARGS)
    deadline = time.monotonic() + KILL_WAIT_S
    try:
        while not store.list(status="running"):
            assert worker.poll() is None, worker.communicate()
            assert time.monotonic() < deadline, "the worker never started its run"
            time.sleep(0.2)
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.communicate()
    assert worker.returncode == -signal.SIGKILL

    # The next start (the CLI's, the app's: any RunStore open) settles the dead run.
    assert main(["--store", str(store.root), "--json", "runs", "list"]) == 0
    listed = {r["id"]: r for r in json.loads(capsys.readouterr().out)}
    [killed] = [r for r in listed.values() if r["id"] != earlier]
    assert (killed["status"], killed["error"]) == ("failed", "interrupted")
    assert not store.run_dir(killed["id"]).exists()


def wait_then_shut_down(runner: JobRunner, jobs: list) -> None:
    deadline = time.monotonic() + 120
    while any(job.is_active for job in jobs) and time.monotonic() < deadline:
        time.sleep(0.1)
    runner.shutdown()  # would cancel a job still running: only once they have ended


def fill_the_disk_while_saving(monkeypatch, failing_write: int) -> None:
    """Make the `failing_write`-th atomic file write of RunStore.finish fail with ENOSPC
    (1 spec, 2 report, 3 weights, 4 artifacts: the order finish() writes them); writes
    outside finish() are not touched."""
    writes = {"count": 0}
    real_fsync, real_finish = io._fsync_file, RunStore.finish

    def fsync_until_the_disk_is_full(path):
        writes["count"] += 1
        if writes["count"] == failing_write:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real_fsync(path)

    def finish_on_a_full_disk(self, *args, **kwargs):
        monkeypatch.setattr(io, "_fsync_file", fsync_until_the_disk_is_full)
        try:
            return real_finish(self, *args, **kwargs)
        finally:
            monkeypatch.setattr(io, "_fsync_file", real_fsync)

    monkeypatch.setattr(RunStore, "finish", finish_on_a_full_disk)


@pytest.mark.parametrize("failing_write", [1, 2, 3, 4], ids=["spec", "report", "weights", "arrays"])
def test_a_full_disk_while_saving_marks_the_run_failed_and_loses_nothing(
        store_with_a_run, monkeypatch, capsys, failing_write):
    store, earlier = store_with_a_run
    fill_the_disk_while_saving(monkeypatch, failing_write)
    code = main(["--store", str(store.root), "--quiet", "unlearn", "--method", "neggrad",
                 "--param", "epochs=1", *TINY_CLI_ARGS])
    err = capsys.readouterr().err
    assert code == 1 and "No space left on device" in err and "Traceback" not in err
    [failed] = store.list(status="failed")
    assert "No space left on device" in failed.error and not failed.path.exists()


def test_a_full_disk_under_the_app_fails_the_job_with_the_reason(store_with_a_run, monkeypatch):
    """The app's path: the job the Unlearn page submitted ends failed, and its error,
    shown in the sidebar's job panel, says why."""
    store, _ = store_with_a_run
    fill_the_disk_while_saving(monkeypatch, 3)
    runner = JobRunner()
    spec = RunSpec(tiny_setup(), MethodSpec("neggrad", {"epochs": 1}))
    job = runner.submit("neggrad", lambda progress: pipeline.run_unlearning(spec, store, progress))
    wait_then_shut_down(runner, [job])
    assert job.status == FAILED and job.error.startswith("OSError: [Errno 28] No space left")
    assert [r.error for r in store.list(status="failed")] == [job.error]


def test_a_full_disk_while_caching_a_trained_model_keeps_the_cache_clean(tmp_path, monkeypatch,
                                                                           capsys):
    store = RunStore(tmp_path / "store")

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    # io imports safetensors where it writes (lazily): patch the function it will look up.
    monkeypatch.setattr(safetensors.torch, "save_file", no_space)
    code = main(["--store", str(store.root), "--quiet", "train", *TINY_CLI_ARGS, "--epochs", "1"])
    err = capsys.readouterr().err
    assert code == 1 and "No space left on device" in err and "Traceback" not in err
    assert list(store.cache_dir.iterdir()) == [] and store.list() == []


def test_two_cli_processes_submitting_at_once_both_complete(store_with_a_run):
    store, earlier = store_with_a_run
    workers = [cli(store, "--json", "unlearn", "--method", method, "--param", "epochs=1",
                   *TINY_CLI_ARGS) for method in ("finetune", "neggrad")]
    outputs = [worker.communicate(timeout=300) for worker in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    ids = {json.loads(out)["id"] for out, _ in outputs}
    done = {r.id for r in RunStore(store.root).list(status="done")}
    assert len(ids) == 2 and done == ids | {earlier}


def test_two_app_sessions_submitting_at_once_both_complete(store_with_a_run):
    """The app's path: each browser session submits to the process's one JobRunner."""
    store, earlier = store_with_a_run
    runner = JobRunner()
    jobs = []

    def submit(method: str) -> None:
        spec = RunSpec(tiny_setup(), MethodSpec(method, {"epochs": 1}))
        jobs.append(runner.submit(method, lambda progress: pipeline.run_unlearning(
            spec, store, progress)))

    sessions = [threading.Thread(target=submit, args=(m,)) for m in ("finetune", "neggrad")]
    for session in sessions:
        session.start()
    for session in sessions:
        session.join()
    wait_then_shut_down(runner, jobs)
    assert [(job.status, job.error) for job in jobs] == [(DONE, None)] * 2
    assert {r.id for r in store.list(status="done")} == {job.result for job in jobs} | {earlier}
