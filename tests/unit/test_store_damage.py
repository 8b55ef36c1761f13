"""Damage to the run store: one damaged run is listed as damaged with its reason and
every other run stays listed and loads; a damaged index is rebuilt from the run folders
by `runs repair`; a damaged cached reference model is set aside and made again."""


import numpy as np
import pytest
import torch

from unlearn_core import cli
from unlearn_core.errors import UserError
from unlearn_core.progress import Progress
from unlearn_core.runs import RunStore, repair


def _store_with_runs(tmp_path, n=3):
    store = RunStore(tmp_path / "store")
    ids = []
    for i in range(n):
        run_id = store.create("unlearn", {"method": {"name": "finetune"}, "i": i},
                              label=f"run {i}")
        store.finish(run_id, {"accuracy": {"forget": 0.1 * i}},
                     weights={"w": torch.full((2, 2), float(i))},
                     arrays={"a": np.arange(3) + i})
        ids.append(run_id)
    return store, ids


def _assert_intact(store, ids):
    for run_id in ids:
        record = store.get(run_id)
        assert record.status == "done" and record.damage is None
        i = record.spec["i"]
        assert record.report == {"accuracy": {"forget": 0.1 * i}}
        assert torch.equal(store.load_weights(run_id)["w"], torch.full((2, 2), float(i)))
        np.testing.assert_array_equal(store.load_arrays(run_id)["a"], np.arange(3) + i)


def _cli(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("damage, reason", [
    (lambda d: (d / "report.json").write_text('{"accuracy": {"for'), "report.json is unreadable"),
    (lambda d: (d / "report.json").write_bytes(b"\xff\xfe\x00"), "report.json is unreadable"),
    (lambda d: (d / "report.json").write_text("[1, 2]"), "report.json does not hold a JSON object"),
    (lambda d: (d / "report.json").unlink(), "report.json is missing"),
    (lambda d: (d / "spec.json").write_text("{"), "spec.json is unreadable"),
    (lambda d: (d / "weights.safetensors").unlink(), "weights.safetensors is missing"),
    (lambda d: (d / "artifacts.npz").unlink(), "artifacts.npz is missing"),
])
def test_a_damaged_run_is_listed_with_its_reason_and_the_others_stay_usable(
        tmp_path, capsys, damage, reason):
    store, ids = _store_with_runs(tmp_path)
    damage(store.run_dir(ids[1]))
    store = RunStore(store.root)

    listed = {r.id: r for r in store.list()}
    assert listed[ids[1]].status == "damaged" and reason in listed[ids[1]].damage
    assert [r.id for r in store.list(status="done")] == [ids[2], ids[0]]
    assert [r.id for r in store.list(status="damaged")] == [ids[1]]
    _assert_intact(store, [ids[0], ids[2]])
    with pytest.raises(UserError, match="damaged"):
        store.load_weights(ids[1])

    code, out, err = _cli(capsys, "--store", str(store.root), "runs", "list")
    assert code == 0, err
    assert all(run_id in out for run_id in ids)
    assert f"[damaged: {listed[ids[1]].damage}]" in out
    code, out, _ = _cli(capsys, "--store", str(store.root), "runs", "show", ids[1])
    assert code == 0 and f"damaged: {reason}" in out
    code, _, err = _cli(capsys, "--store", str(store.root), "report", ids[1],
                        "--out", str(tmp_path / "r.html"))
    assert code == 2 and err.count("\n") == 1 and "damaged" in err


def test_a_missing_run_folder_is_damaged_not_an_error(tmp_path):
    store, ids = _store_with_runs(tmp_path)
    import shutil
    shutil.rmtree(store.run_dir(ids[0]))
    assert store.get(ids[0]).damage == "its run folder is missing"
    _assert_intact(store, ids[1:2])


@pytest.mark.parametrize("damage", ["garbage", "truncated", "deleted"])
def test_a_damaged_index_names_runs_repair_and_repair_gets_every_run_back(
        tmp_path, capsys, damage):
    store, ids = _store_with_runs(tmp_path, n=4)
    failed = store.create("unlearn", {"i": 9}, label="failing")
    store.fail(failed, "boom")
    db = store.db_path
    # Fold the WAL into the main file first, so the damage below is to the only copy.
    import sqlite3
    with sqlite3.connect(db) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    for side in (db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        side.unlink(missing_ok=True)
    if damage == "garbage":
        db.write_bytes(b"this is not a database\n" * 100)
    elif damage == "truncated":
        data = db.read_bytes()
        assert len(data) > 4096
        db.write_bytes(data[:4096])  # the schema page only: the tables' pages are gone
    else:
        db.unlink()

    if damage != "deleted":
        code, _, err = _cli(capsys, "--store", str(store.root), "runs", "list")
        assert code == 2 and err.count("\n") == 1, err
        assert "python -m unlearn_core runs repair" in err and "index is damaged" in err
    code, out, err = _cli(capsys, "--store", str(store.root), "runs", "repair")
    assert code == 0, err
    assert "added" in out

    store = RunStore(store.root)
    assert sorted(r.id for r in store.list()) == sorted(ids)
    assert [r.label for r in store.list()] == ["run 3", "run 2", "run 1", "run 0"]
    _assert_intact(store, ids)
    if damage == "garbage":
        assert list(store.root.glob("index.sqlite.damaged-*"))


def test_repair_of_a_healthy_index_keeps_it_and_adds_only_missing_rows(tmp_path):
    store, ids = _store_with_runs(tmp_path)
    failed = store.create("unlearn", {"i": 9}, label="failing")
    store.fail(failed, "boom")
    result = repair(store.root)
    assert result["set_aside"] is None and result["added"] == []
    assert store.get(failed).status == "failed"
    _assert_intact(store, ids)


def test_repair_recovers_runs_stored_before_run_json(tmp_path):
    store, ids = _store_with_runs(tmp_path)
    for run_id in ids:
        (store.run_dir(run_id) / "run.json").unlink()
    store.db_path.unlink()
    result = repair(store.root)
    assert sorted(result["added"]) == sorted(ids)
    store = RunStore(store.root)
    assert {r.kind for r in store.list()} == {"unlearn"}
    assert [r.id for r in store.list()] == ids[::-1]  # creation order from the ids
    _assert_intact(store, ids)


@pytest.mark.parametrize("damage", ["weights truncated", "weights missing", "meta missing",
                                    "meta garbage"])
def test_a_damaged_cache_entry_is_set_aside_with_a_note(tmp_path, damage):
    store = RunStore(tmp_path / "store")
    store.cache_put("k1", {"w": torch.ones(100)}, {"acc": 1.0})
    store.cache_put("k2", {"w": torch.zeros(3)}, {"acc": 0.5})
    entry = store.cache_dir / "k1"
    if damage == "weights truncated":
        data = (entry / "weights.safetensors").read_bytes()
        (entry / "weights.safetensors").write_bytes(data[:len(data) // 2])
    elif damage == "weights missing":
        (entry / "weights.safetensors").unlink()
    elif damage == "meta missing":
        (entry / "meta.json").unlink()
    else:
        (entry / "meta.json").write_text("{{{")
    notes = []
    assert store.cache_get("k1", on_damage=notes.append) is None
    assert len(notes) == 1 and "k1 was damaged" in notes[0] and "set aside" in notes[0]
    assert not entry.exists() and len(list(store.cache_dir.glob(".damaged-k1-*"))) == 1
    RunStore(store.root)  # reopening keeps the set-aside entry for a look
    assert len(list(store.cache_dir.glob(".damaged-k1-*"))) == 1
    weights, meta = store.cache_get("k2")
    assert torch.equal(weights["w"], torch.zeros(3)) and meta == {"acc": 0.5}


def test_a_damaged_cached_original_is_trained_again_with_a_note(tmp_path):
    from conftest import tiny_setup
    from unlearn_core.pipeline import train_references
    from unlearn_core.training import reference_key

    store = RunStore(tmp_path / "store")
    spec = tiny_setup(train=tiny_setup().train.__class__(epochs=1, batch_size=64))
    first = train_references(spec, store)
    entry = store.cache_dir / reference_key(spec, "original")
    data = (entry / "weights.safetensors").read_bytes()
    (entry / "weights.safetensors").write_bytes(data[:100])
    messages = []
    again = train_references(spec, store, Progress(lambda f, m: messages.append(m)))
    assert any("was damaged" in m and "made again" in m for m in messages), messages
    assert any("training original" in m for m in messages)
    assert again.original.meta["test_accuracy"] == pytest.approx(
        first.original.meta["test_accuracy"])
    assert store.cache_get(reference_key(spec, "original")) is not None
