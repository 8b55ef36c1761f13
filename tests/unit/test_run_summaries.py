"""The store's index keeps a summary of each finished run: stores made before it gain the
columns and are back-filled once from report.json; listing and paging read no run
folder; reports load when first used."""

import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import torch

from unlearn_core import runs
from unlearn_core.errors import UserError
from unlearn_core.runs import RunStore, run_summary, setup_key

OLD_STORE = Path(__file__).resolve().parents[1] / "data" / "store-before-summaries"


def _no_file_reads(monkeypatch):
    def refuse(path):
        raise AssertionError(f"read {path}")
    monkeypatch.setattr(runs, "_read_json_file", refuse)


def _setup(seed=0, forget_class=0):
    return {"data": {"name": "digits"}, "model": {"name": "small_cnn"}, "seed": seed,
            "forget": {"kind": "classes", "classes": [forget_class]}}


def _report(test_acc, title="Finetune"):
    return {"method": {"title": title, "params": {"lr": 0.1}},
            "accuracy": {"unlearned": {"forget_train": 0.0, "retain_train": 0.9,
                                       "test": test_acc},
                         "oracle": {"test": 0.8}, "original": {"test": 0.85}},
            "mia": {"efficacy": {"unlearned": {"confidence": 0.7}}},
            "average_gap": {"unlearned": 0.05, "original": 0.3},
            "layers": {"verdict": {"kind": "core", "mean_depth": 0.9}},
            "cost": {"seconds": 2.0, "speedup": 4.0, "oracle_seconds": 8.0}}


def _store_run(store, method="finetune", seed=0, test_acc=0.5, kind="unlearn"):
    run_id = store.create(kind, {"method": {"name": method}, "setup": _setup(seed)},
                          label=f"{method} seed {seed}")
    store.finish(run_id, _report(test_acc), weights={"w": torch.ones(2)},
                 arrays={"a": np.arange(3)})
    return run_id


def test_an_old_store_gains_summaries_once_and_then_lists_without_reading_folders(
        tmp_path, monkeypatch):
    root = tmp_path / "old"
    shutil.copytree(OLD_STORE, root)
    with sqlite3.connect(root / "index.sqlite") as connection:
        columns = {row[1] for row in connection.execute("PRAGMA table_info(runs)")}
    assert "summary" not in columns  # the fixture really is an index without them

    store = RunStore(root)
    (record,) = store.list(kind="unlearn", status="done")
    report = record.report  # as the store reads it, so as the summary was made
    assert record.summary == run_summary(record.spec, report)
    stored = json.loads((record.path / "report.json").read_text())
    assert record.summary["method"] == "Finetune"
    assert record.summary["test_acc"] == stored["accuracy"]["unlearned"]["test"]
    assert record.summary["forget_set"] == "class 3"
    assert record.summary["verdict"] == stored["layers"]["verdict"]["kind"]
    assert record.summary["avg_gap"] == (report.get("average_gap") or {}).get("unlearned")

    _no_file_reads(monkeypatch)
    reopened = RunStore(root)  # nothing left to back-fill: no report is read again
    assert reopened.backfill_summaries() == 0
    assert [r.summary for r in reopened.query(kind="unlearn", status="done")] == [record.summary]
    assert reopened.count(kind="unlearn", status="done",
                          setup=setup_key(record.spec), methods=["finetune"]) == 1


def test_finish_writes_the_summary_and_the_report_is_read_only_when_used(tmp_path, monkeypatch):
    store = RunStore(tmp_path / "store")
    run_id = _store_run(store, test_acc=0.61)
    monkeypatch.setattr(runs, "_read_json_file", lambda path: pytest.fail(f"read {path}"))
    (record,) = store.list(status="done")
    assert record.summary["test_acc"] == 0.61 and record.summary["avg_gap"] == 0.05
    assert record.summary["seconds"] == 2.0 and record.summary["mean_depth"] == 0.9
    monkeypatch.undo()
    assert record.report == _report(0.61) and record.id == run_id


def test_a_report_damaged_after_listing_is_a_user_error_naming_the_run(tmp_path):
    store = RunStore(tmp_path / "store")
    run_id = _store_run(store)
    (record,) = store.query(status="done")
    (record.path / "report.json").write_text("{")
    with pytest.raises(UserError, match=f"run {run_id} is damaged: report.json is unreadable"):
        _ = record.report


def test_query_filters_orders_and_pages(tmp_path):
    store = RunStore(tmp_path / "store")
    ids = [_store_run(store, method=m, seed=s)
           for m, s in [("finetune", 0), ("neggrad", 0), ("finetune", 1), ("salun", 0)]]
    failed = store.create("unlearn", {"method": {"name": "finetune"}}, label="broken")
    store.fail(failed, "boom")

    assert [r.id for r in store.query(kind="unlearn", status="done")] == ids[::-1]
    assert [r.id for r in store.query(status="done", order="oldest", limit=2, offset=1)] \
        == ids[1:3]
    assert store.count(kind="unlearn") == 5 and store.count(status="done") == 4
    assert [r.id for r in store.query(status="done", methods=["finetune", "salun"])] \
        == [ids[3], ids[2], ids[0]]
    seed_0 = setup_key({"setup": _setup(0)})
    assert [r.id for r in store.query(status="done", setup=seed_0, order="oldest")] \
        == [ids[0], ids[1], ids[3]]
    assert store.count(setup=seed_0, methods=["neggrad"]) == 1
    assert [r.id for r in store.query(status="failed")] == [failed]
    assert [r.id for r in store.query(ids=[ids[1], failed], order="oldest")] == [ids[1], failed]


@pytest.mark.parametrize("arguments, message", [
    ({"order": "best"}, "order: expected one of newest, oldest"),
    ({"limit": -1}, "limit: expected a whole number >= 0"),
    ({"offset": 1.5}, "offset: expected a whole number >= 0"),
    ({"status": "finished"}, "status: expected one of"),
])
def test_bad_query_arguments_name_the_parameter(tmp_path, arguments, message):
    with pytest.raises(UserError, match=message):
        RunStore(tmp_path / "store").query(**arguments)


def test_a_summary_of_a_report_without_sections_holds_none():
    summary = run_summary({}, {"accuracy": {"forget": 0.1}})
    assert summary["test_acc"] is None and summary["method"] is None
    assert summary["forget_set"] is None and summary["params"] == {}
    assert setup_key({}) is None


def test_repair_gives_the_runs_it_adds_their_summaries(tmp_path):
    store = RunStore(tmp_path / "store")
    run_id = _store_run(store, test_acc=0.42)
    store.db_path.unlink()
    for side in ("index.sqlite-wal", "index.sqlite-shm"):
        (store.root / side).unlink(missing_ok=True)
    runs.repair(store.root)
    (record,) = RunStore(store.root).query(status="done")
    assert record.id == run_id and record.summary["test_acc"] == 0.42


def test_a_summary_of_another_version_is_made_again_when_the_store_opens(tmp_path):
    store = RunStore(tmp_path / "store")
    run_id = _store_run(store, test_acc=0.42)
    with sqlite3.connect(store.db_path) as connection:
        connection.execute("UPDATE runs SET summary = json_set(summary, '$.version', 0, "
                           "'$.test_acc', 0.0)")
    (record,) = RunStore(store.root).query(ids=[run_id])
    assert record.summary["version"] == runs.SUMMARY_VERSION
    assert record.summary["test_acc"] == 0.42


def test_a_report_rewritten_after_the_run_was_stored_is_summarised_again(tmp_path):
    store = RunStore(tmp_path / "store")
    run_id = _store_run(store, test_acc=0.42)
    report = json.loads((store.run_dir(run_id) / "report.json").read_text())
    report["accuracy"]["unlearned"]["test"] = 0.77
    (store.run_dir(run_id) / "report.json").write_text(json.dumps(report))
    (record,) = store.query(ids=[run_id])
    assert record.summary["test_acc"] == 0.77 and record.report == report
    with sqlite3.connect(store.db_path) as connection:
        (summary,) = connection.execute("SELECT summary FROM runs").fetchone()
    assert json.loads(summary)["test_acc"] == 0.77  # kept: the next listing reads nothing


def test_a_run_stored_without_a_summary_into_an_open_store_gets_one_when_listed(tmp_path):
    """As when code from before the summaries finishes a run in a store this process has
    open (no back-fill until the next open)."""
    store = RunStore(tmp_path / "store")
    run_id = _store_run(store, test_acc=0.42)
    with sqlite3.connect(store.db_path) as connection:
        connection.execute("UPDATE runs SET summary = NULL, files = NULL")
    (record,) = store.query(status="done")
    assert record.id == run_id and record.summary["test_acc"] == 0.42
    with sqlite3.connect(store.db_path) as connection:
        assert connection.execute("SELECT files FROM runs").fetchone()[0] is not None
