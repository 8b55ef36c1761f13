import os
import sqlite3
import subprocess
import sys
import threading

import numpy as np
import pytest
import torch

from unlearn_core import io, runs
from unlearn_core.errors import UserError
from unlearn_core.runs import RunStore


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _set_row(store: RunStore, run_id: str, **values) -> None:
    assignments = ", ".join(f"{column} = ?" for column in values)
    with sqlite3.connect(store.db_path) as connection:
        connection.execute(f"UPDATE runs SET {assignments} WHERE id = ?",
                           (*values.values(), run_id))


def _leftovers(store: RunStore) -> list[str]:
    return [p.name for p in store.runs_dir.iterdir() if p.name.startswith(".")]


@pytest.fixture
def store(tmp_path) -> RunStore:
    return RunStore(tmp_path / "store")


def test_default_root_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("LENS_STORE", str(tmp_path / "elsewhere"))
    assert runs.default_store_root() == tmp_path / "elsewhere"
    monkeypatch.delenv("LENS_STORE")
    assert runs.default_store_root().parts[-2:] == (".unlearning-lens", "store")


def test_create_finish_get_round_trip(store):
    spec = {"method": "ga", "lr": 0.01, "classes": (1, 2)}
    run_id = store.create("unlearn", spec, label="first")
    running = store.get(run_id)
    assert (running.status, running.label, running.report, running.finished) == (
        "running", "first", None, None)
    weights = {"w": torch.randn(3, 2), "b": torch.zeros(3)}
    arrays = {"mask": np.array([1, 0, 1], dtype=np.uint8)}
    report = {"forget_acc": 0.1, "mia_auc": float("nan"), "layers": {"conv1": 0.9}}

    record = store.finish(run_id, report, weights=weights, arrays=arrays)

    assert record.status == "done" and record.finished >= record.created
    assert record.spec == {"method": "ga", "lr": 0.01, "classes": [1, 2]}
    assert record.report == {"forget_acc": 0.1, "mia_auc": None, "layers": {"conv1": 0.9}}
    assert record.path == store.runs_dir / run_id
    assert sorted(p.name for p in record.path.iterdir()) == [
        "artifacts.npz", "report.json", "run.json", "spec.json", "weights.safetensors"]
    assert io.read_json(record.path / "spec.json") == record.spec
    loaded = store.load_weights(run_id)
    assert all(torch.equal(loaded[k], weights[k]) for k in weights)
    np.testing.assert_array_equal(store.load_arrays(run_id)["mask"], arrays["mask"])
    assert _leftovers(store) == []


def test_run_without_weights_or_arrays(store):
    run_id = store.create("evaluate", {})
    store.finish(run_id, {"acc": 1.0})
    assert store.load_arrays(run_id) == {}
    with pytest.raises(UserError, match="no stored weights"):
        store.load_weights(run_id)


def test_ids_sort_by_time_and_list_is_newest_first_with_filters(store):
    ids = [store.create("train", {"i": 0}), store.create("unlearn", {"i": 1}),
           store.create("unlearn", {"i": 2})]
    assert ids == sorted(ids) and len(set(ids)) == 3
    store.finish(ids[1], {"ok": True})
    assert [r.id for r in store.list()] == ids[::-1]
    assert [r.id for r in store.list(kind="unlearn")] == [ids[2], ids[1]]
    assert [r.id for r in store.list(status="done")] == [ids[1]]
    assert [r.id for r in store.list(kind="unlearn", status="running")] == [ids[2]]
    assert store.list(kind="nothing") == []
    with pytest.raises(UserError, match="status"):
        store.list(status="finished")


def test_fail_and_cancel_keep_the_error_and_no_folder(store):
    failed = store.create("unlearn", {})
    cancelled = store.create("unlearn", {})
    store.fail(failed, "DivergedError: loss is nan")
    store.fail(cancelled, "cancelled by the user", cancelled=True)
    assert (store.get(failed).status, store.get(failed).error) == (
        "failed", "DivergedError: loss is nan")
    assert store.get(cancelled).status == "cancelled"
    assert store.get(failed).finished is not None
    assert not store.get(failed).path.exists() and _leftovers(store) == []
    with pytest.raises(UserError, match="is failed; only a running run can finish"):
        store.finish(failed, {})
    with pytest.raises(UserError, match="already cancelled"):
        store.fail(cancelled, "again")


def test_unknown_id_says_how_to_find_ids(store):
    store.create("train", {})
    with pytest.raises(UserError, match=r"no run with id 'nope'.*latest: .*list\(\)"):
        store.get("nope")


def test_delete_removes_row_and_folder(store):
    keep = store.create("train", {})
    store.finish(keep, {"a": 1}, weights={"w": torch.ones(1)})
    gone = store.create("train", {})
    store.finish(gone, {"a": 2}, weights={"w": torch.ones(1)})
    store.delete(gone)
    assert [r.id for r in store.list()] == [keep]
    assert not (store.runs_dir / gone).exists() and _leftovers(store) == []
    with pytest.raises(UserError):
        store.get(gone)
    running = store.create("train", {})
    with pytest.raises(UserError, match="still running"):
        store.delete(running)


def test_crash_mid_finish_leaves_no_folder_and_other_runs_untouched(store, monkeypatch):
    other = store.create("train", {})
    store.finish(other, {"a": 1}, weights={"w": torch.ones(2)})
    run_id = store.create("unlearn", {})

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(io, "save_state_dict", crash)
    with pytest.raises(OSError, match="disk full"):
        store.finish(run_id, {"a": 2}, weights={"w": torch.ones(2)})
    monkeypatch.undo()

    assert store.get(run_id).status == "running"
    assert not (store.runs_dir / run_id).exists() and _leftovers(store) == []
    # A process killed at that point would also leave its temp folder behind.
    (store.runs_dir / f".tmp-{run_id}").mkdir()
    (store.runs_dir / f".tmp-{run_id}" / "report.json").write_text("{}")
    _set_row(store, run_id, pid=_dead_pid(), owner="earlier-process")

    reopened = RunStore(store.root)
    assert reopened.get(run_id).status == "failed"
    assert reopened.get(run_id).error == "interrupted"
    assert _leftovers(reopened) == []
    assert reopened.get(other).status == "done"
    assert torch.equal(reopened.load_weights(other)["w"], torch.ones(2))


def test_crash_at_rename_leaves_no_folder(store, monkeypatch):
    run_id = store.create("unlearn", {})

    def crash(src, dst):
        raise OSError("rename failed")

    monkeypatch.setattr(runs.os, "replace", crash)
    with pytest.raises(OSError):
        store.finish(run_id, {"a": 1}, weights={"w": torch.ones(1)})
    monkeypatch.undo()
    assert store.get(run_id).status == "running"
    assert not (store.runs_dir / run_id).exists() and _leftovers(store) == []


def test_crash_after_rename_is_recovered_as_done(store):
    run_id = store.create("unlearn", {})
    store.finish(run_id, {"a": 1})
    # As if the process died between the rename and the status update.
    _set_row(store, run_id, status="running", finished=None, pid=_dead_pid(), owner="x")
    assert store.recover() == []
    assert store.get(run_id).status == "done"
    assert store.get(run_id).report == {"a": 1}


def test_recover_marks_dead_and_earlier_process_rows(store):
    dead = store.create("train", {})
    same_pid_earlier_start = store.create("train", {})
    alive = store.create("train", {})
    _set_row(store, dead, pid=_dead_pid())
    # This process's pid, written by an earlier process that happened to have it.
    _set_row(store, same_pid_earlier_start, owner="token-of-an-earlier-process")

    assert sorted(store.recover()) == sorted([dead, same_pid_earlier_start])
    assert store.get(dead).status == "failed" and store.get(dead).error == "interrupted"
    assert store.get(alive).status == "running"
    assert store.recover() == []


def test_two_stores_in_two_threads_share_one_root(tmp_path):
    root = tmp_path / "shared"
    errors: list[BaseException] = []
    written: list[str] = []

    def write_runs(worker: int) -> None:
        try:
            store = RunStore(root)
            for i in range(5):
                run_id = store.create("train", {"worker": worker, "i": i})
                store.finish(run_id, {"i": i}, weights={"w": torch.full((2,), float(i))})
                written.append(run_id)
        except BaseException as error:  # reported below; a thread cannot fail the test
            errors.append(error)

    threads = [threading.Thread(target=write_runs, args=(w,)) for w in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    listed = RunStore(root).list(status="done")
    assert sorted(r.id for r in listed) == sorted(written) and len(listed) == 10
    assert {r.spec["worker"] for r in listed} == {0, 1}


def test_read_only_root_is_a_user_error(tmp_path):
    root = tmp_path / "locked"
    root.mkdir()
    root.chmod(0o500)
    try:
        if os.access(root, os.W_OK):
            pytest.skip("running as root: permissions are not enforced")
        with pytest.raises(UserError, match="locked"):
            RunStore(root)
    finally:
        root.chmod(0o700)


def test_unwritable_root_message_even_as_root(tmp_path, monkeypatch):
    # Root ignores permission bits, so the check itself is exercised through os.access.
    root = tmp_path / "locked"
    monkeypatch.setattr(runs.os, "access", lambda path, mode: False)
    with pytest.raises(UserError, match=r"run store .*locked: not writable.*LENS_STORE"):
        RunStore(root)


def test_root_that_cannot_be_created_is_a_user_error(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(UserError, match=r"a-file/store.*LENS_STORE"):
        RunStore(blocker / "store")


def test_cache_put_get_has(store):
    key = "original-3f2a9c"
    assert not store.cache_has(key) and store.cache_get(key) is None
    state = {"w": torch.randn(2, 2), "tied": torch.ones(3)}
    state["alias"] = state["tied"]
    store.cache_put(key, state, {"epochs": 3, "acc": 0.98})
    assert store.cache_has(key)
    weights, meta = store.cache_get(key)
    assert meta == {"epochs": 3, "acc": 0.98}
    assert all(torch.equal(weights[k], state[k]) for k in state)
    # A second put of the same key keeps the first entry.
    store.cache_put(key, {"w": torch.zeros(1)}, {"epochs": 0})
    assert store.cache_get(key)[1] == {"epochs": 3, "acc": 0.98}
    assert [p.name for p in store.cache_dir.iterdir()] == [key]
    with pytest.raises(UserError, match="cache key"):
        store.cache_has("../escape")


def test_stale_cache_temp_folders_are_removed_on_open(store):
    stale = store.cache_dir / f".tmp-key.{_dead_pid()}.token.abc123"
    stale.mkdir()
    mine = store._cache_temp("key")
    mine.mkdir()
    RunStore(store.root)
    assert not stale.exists() and mine.exists()


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"),
                    reason="process start times are read from /proc")
def test_running_row_of_another_live_process_survives_recover(store):
    other_process = subprocess.Popen(["sleep", "30"])
    try:
        live = store.create("train", {})
        reused_pid = store.create("train", {})
        started = runs._process_start_time(other_process.pid)
        _set_row(store, live, pid=other_process.pid, pid_started=started, owner="other")
        # Same pid, but the row was written by a process that started at another time.
        _set_row(store, reused_pid, pid=other_process.pid, pid_started="1", owner="older")
        assert store.recover() == [reused_pid]
        assert store.get(live).status == "running"
    finally:
        other_process.kill()
        other_process.wait()
    assert store.recover() == [live]


def test_derived_results_are_kept_with_a_finished_run_and_go_with_it(tmp_path):
    store = runs.RunStore(tmp_path)
    running = store.create("unlearn", {"x": 1})
    with pytest.raises(UserError, match="only a finished run"):
        store.put_derived(running, "umap-block1", {"a": np.zeros(2)})
    store.finish(running, {"ok": True})
    assert store.get_derived(running, "umap-block1") is None
    store.put_derived(running, "umap-block1", {"a": np.arange(3.0)})
    np.testing.assert_array_equal(store.get_derived(running, "umap-block1")["a"], [0, 1, 2])
    with pytest.raises(ValueError, match="name"):
        store.put_derived(running, "../escape", {"a": np.zeros(1)})
    store.delete(running)
    assert not (tmp_path / "runs" / running).exists()
