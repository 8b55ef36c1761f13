"""Sweeps: grouping statistics against hand-computed values, the TOML config checked key
by key (exit 2 naming the key), and a tiny local sweep on digits from the CLI: grouped
rows, the best setting, reuse on a second call, cancel.

Runs use the light evaluation from conftest (real accuracies and MIA, nothing else): the
sweep reads only those from a report."""

import json
import math
import sys
import threading

import pytest

from conftest import accuracy_and_mia_only
from unlearn_core import engine, pipeline
from unlearn_core.cli import main
from unlearn_core.config import MethodSpec, SetupSpec
from unlearn_core.errors import Cancelled
from unlearn_core.progress import Progress
from unlearn_core.runs import RunStore

# Student t quantiles t(0.975, df) from a printed table, for the hand-computed intervals.
T975 = {1: 12.706, 2: 4.303, 7: 2.365}

TINY_TOML = """
method = "finetune"
seeds = 2

[grid]
lr = [0.05, 0.2]
epochs = [1]

[setup]
device = "cpu"
data = { name = "digits" }
train = { epochs = 3, batch_size = 32 }
"""


@pytest.fixture(autouse=True)
def light_evaluate(monkeypatch):
    monkeypatch.setattr(pipeline, "evaluate", accuracy_and_mia_only)


# --- statistics -------------------------------------------------------------------------


def test_stat_of_1_2_3_by_hand():
    s = engine.stat([1.0, 2.0, 3.0])
    assert s["mean"] == 2.0 and s["std"] == 1.0 and s["n"] == 3
    half = T975[2] * 1.0 / math.sqrt(3)  # 2.484
    assert s["ci"] == pytest.approx([2.0 - half, 2.0 + half], rel=1e-3)


def test_stat_of_eight_values_by_hand():
    s = engine.stat([2, 4, 4, 4, 5, 5, 7, 9])
    assert s["mean"] == 5.0
    assert s["std"] == pytest.approx(math.sqrt(32 / 7))  # squared deviations sum to 32
    half = T975[7] * math.sqrt(32 / 7) / math.sqrt(8)
    assert s["ci"] == pytest.approx([5 - half, 5 + half], rel=1e-3)


def test_stat_with_one_value_has_no_spread_and_says_so():
    s = engine.stat([0.25, None, float("nan")])  # undefined values are left out
    assert s == {"mean": 0.25, "std": None, "ci": None, "n": 1, "values": [0.25]}
    assert engine.format_interval(s) == "n/a (1 seed: no spread)"
    assert engine.format_stat(s) == "25.0"
    empty = engine.stat([])
    assert empty["mean"] is None and engine.format_interval(empty) == "n/a (no finished run)"


def _report(gap: float, seconds: float = 1.0) -> dict:
    """Unlearned = oracle except forget accuracy 4*gap above it: avg gap is exactly gap."""
    oracle = {"forget_train": 0.0, "retain_train": 0.9, "test": 0.8, "test_forget": 0.0,
              "test_retain": 0.9}
    original = {**oracle, "forget_train": 1.0, "test_forget": 0.95}
    unlearned = {**oracle, "forget_train": 4 * gap}
    return {"accuracy": {"unlearned": unlearned, "oracle": oracle, "original": original},
            "mia": {"efficacy": {role: {"confidence": 0.5} for role in
                                 ("unlearned", "oracle", "original")}},
            "cost": {"seconds": seconds, "speedup": 10.0 / seconds}, "forget_classes": [0]}


def _result(lr, seed, gap):
    report = None if gap is None else _report(gap)
    return engine.RunResult("s", seed, MethodSpec("finetune", {"lr": lr}),
                            None if gap is None else f"run-{lr}-{seed}", report,
                            "DivergedError: nan" if gap is None else None, False, 0.0)


def test_grouping_by_setting_ranks_by_mean_avg_gap_with_intervals():
    results = ([_result(0.2, s, g) for s, g in enumerate([0.10, 0.20, 0.30])]
               + [_result(0.1, s, g) for s, g in enumerate([0.01, 0.02, 0.03])]
               + [_result(0.5, 0, 0.005), _result(0.5, 1, None), _result(0.5, 2, None)]
               + [_result(9.0, s, None) for s in range(3)])
    refs = [engine.ReferenceCosts("s", s, 2.0, 10.0, 0) for s in range(3)]
    original, oracle, *methods = engine.tabulate(results, refs, rank=True)
    assert (original["kind"], oracle["kind"]) == ("original", "oracle")
    assert oracle["metrics"]["avg_gap"]["mean"] == 0.0
    assert [m["params"]["lr"] for m in methods] == [0.5, 0.1, 0.2, 9.0]
    one_seed, best, worse, failed = methods
    # lr=0.5 has the lowest mean but from one seed only: still ranked first, no interval
    assert one_seed["best"] and one_seed["n_ok"] == 1
    assert one_seed["metrics"]["avg_gap"]["ci"] is None
    assert best["rank"] == 2 and not best["best"]
    gap = best["metrics"]["avg_gap"]
    assert gap["mean"] == pytest.approx(0.02) and gap["std"] == pytest.approx(0.01)
    half = T975[2] * 0.01 / math.sqrt(3)
    assert gap["ci"] == pytest.approx([0.02 - half, 0.02 + half], rel=1e-3)
    assert best["metrics"]["forget_gap"]["mean"] == pytest.approx(0.08)
    assert failed["rank"] is None and failed["n_ok"] == 0 and len(failed["failures"]) == 3
    records = engine.table_records([original, oracle, *methods])
    assert records[2]["rank"] == "1 (best)" and records[2]["best"]
    assert records[2]["avg gap 95% CI (pp)"] == "n/a (1 seed: no spread)"
    assert records[3]["avg gap (pp)"] == "2.00 ± 1.00"
    assert records[3]["avg gap 95% CI (pp)"] == f"[{2 - 100 * half:.2f}, {2 + 100 * half:.2f}]"
    assert records[5]["rank"] == "–" and "DivergedError" in records[5]["failures"]
    assert records[0]["setting"] == "original (reference)"


# --- config -----------------------------------------------------------------------------


def _write(tmp_path, text):
    path = tmp_path / "sweep.toml"
    path.write_text(text)
    return path


GOOD = 'method = "finetune"\nseeds = 1\n[grid]\nlr = [0.1]\n'


@pytest.mark.parametrize("text, message", [
    (GOOD + "colour = 1\n", "grid.colour: finetune has no parameter 'colour'; allowed: "
                            "batch_size, epochs, lr"),
    ('colour = 1\n' + GOOD, "unknown key(s) ['colour']; allowed: method"),
    ('seeds = 1\n', "method: expected a method name"),
    ('method = "magic"\n', "method: method.name: unknown method 'magic'"),
    ('method = "finetune"\n[grid]\nlr = [0.1, 0]\n', "grid.lr: lr expects a number in (0, 10], got 0"),
    ('method = "finetune"\n[grid]\nlr = ["fast"]\n', "grid.lr: lr expects a number in (0, 10], got 'fast'"),
    ('method = "finetune"\n[grid]\nepochs = [2.5]\n', "grid.epochs: epochs expects an integer"),
    ('method = "finetune"\n[grid]\nlr = []\n', "grid.lr: expected a non-empty list of values"),
    ('method = "finetune"\n[grid]\nlr = 0.1\n', "grid.lr: expected a non-empty list of values"),
    ('method = "finetune"\nseeds = 0\n', "seeds: expected a number of seeds in [1, 100]"),
    ('method = "finetune"\nseeds = [1, 1]\n', "seeds: expected a number of seeds"),
    ('method = "finetune"\n[setup]\nseed = 3\n', "setup.seed: the seeds are the sweep's own"),
    ('method = "finetune"\n[setup]\ncolour = 1\n', "setup: SetupSpec: unknown field(s) ['colour']"),
    ('method = "finetune"\nstore = ""\n', "store: expected a folder path"),
    ('method = "finetune\n', "is not valid TOML"),
])
def test_bad_config_exits_2_naming_the_key(text, message, tmp_path, capsys):
    path = _write(tmp_path, text)
    code = main(["--store", str(tmp_path / "s"), "sweep", str(path)])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert str(path) in err or "cannot read" in err


def test_missing_config_file_exits_2(tmp_path, capsys):
    assert main(["sweep", str(tmp_path / "none.toml")]) == 2
    assert "config: cannot read" in capsys.readouterr().err


def test_ray_option_without_ray_says_what_to_install(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    code = main(["--store", str(tmp_path / "s"), "sweep", str(_write(tmp_path, GOOD)),
                 "--ray", "auto"])
    assert code == 2 and "install requirements-ray.txt" in capsys.readouterr().err
    assert RunStore(tmp_path / "s").list() == []


def test_example_config_is_the_embedded_default_over_three_lrs_and_seeds():
    config = engine.load_config("examples/sweep-finetune-lr.toml")
    assert config.method == "finetune" and config.seeds == (0, 1, 2)
    assert config.setup == SetupSpec()
    assert [s.params for s in config.specs] == [{"lr": v} for v in config.grid["lr"]]
    assert len(config.grid["lr"]) == 3


def test_app_text_fields_parse_like_toml_lists():
    assert engine.grid_from_values("finetune", {"lr": "0.1, 0.2,0.1", "epochs": "2"}) == \
        {"lr": [0.1, 0.2], "epochs": [2]}


# --- a tiny sweep, locally --------------------------------------------------------------


@pytest.mark.slow
def test_cli_sweep_groups_over_seeds_marks_the_best_and_reuses(tmp_path, capsys):
    path = _write(tmp_path, TINY_TOML)
    store = tmp_path / "store"
    out = tmp_path / "sweep.md"
    argv = ["--json", "--quiet", "--store", str(store), "sweep", str(path), "--out", str(out)]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["summary"]["runs"] == 4 and result["summary"]["reused"] == 0
    runs = RunStore(store).list(kind="unlearn", status="done")
    assert len(runs) == 4
    rows = result["rows"]
    assert [r["kind"] for r in rows] == ["original", "oracle", "method", "method"]
    methods = rows[2:]
    assert sorted(r["params"]["lr"] for r in methods) == [0.05, 0.2]
    for r in methods:
        gap = r["metrics"]["avg_gap"]
        assert r["seeds"] == [0, 1] and r["n_ok"] == 2 and gap["n"] == 2
        # the interval by hand from the two per-seed values
        a, b = gap["values"]
        mean, std = (a + b) / 2, abs(a - b) / math.sqrt(2)
        assert gap["mean"] == pytest.approx(mean) and gap["std"] == pytest.approx(std)
        half = T975[1] * std / math.sqrt(2)
        assert gap["ci"] == pytest.approx([mean - half, mean + half], rel=1e-3, abs=1e-12)
    means = [r["metrics"]["avg_gap"]["mean"] for r in methods]
    assert methods[0]["best"] and not methods[1]["best"] and means[0] <= means[1]
    # each per-seed value is the avg gap of that stored run's own report
    by_id = {r.id: r.report for r in runs}
    for r in methods:
        for run_id, value in zip(r["run_ids"], r["metrics"]["avg_gap"]["values"]):
            rep = by_id[run_id]
            acc, oracle = rep["accuracy"]["unlearned"], rep["accuracy"]["oracle"]
            mia = rep["mia"]["efficacy"]
            expected = (sum(abs(acc[k] - oracle[k]) for k in ("forget_train", "retain_train",
                                                              "test"))
                        + abs(mia["unlearned"]["confidence"] - mia["oracle"]["confidence"])) / 4
            assert value == pytest.approx(expected)
    table = out.read_text()
    assert "| **1 (best)** |" in table and "avg gap 95% CI (pp)" in table
    assert "finetune over 2 setting(s) (lr = 0.05, 0.2; epochs = 1) × 2 seed(s)" in table

    assert main(argv) == 0  # again: everything comes from the store
    again = json.loads(capsys.readouterr().out)
    assert again["summary"]["reused"] == 4 and again["summary"]["reference_models_trained"] == 0
    assert [r["metrics"] for r in again["rows"]] == [r["metrics"] for r in rows]
    assert len(RunStore(store).list()) == 4


@pytest.mark.slow
def test_local_sweep_reports_progress_and_stops_on_cancel(tmp_path):
    config = engine.load_config(_write(tmp_path, TINY_TOML))
    store = RunStore(tmp_path / "store")
    cancel = threading.Event()
    fractions = []
    progress = Progress(lambda f, message: fractions.append(f), cancel)

    def log(line):
        if line.startswith("[1/4]"):
            cancel.set()  # as the app's Cancel button does, after the first run

    with pytest.raises(Cancelled):
        engine.run_sweep(config, store, log=log, progress=progress)
    assert [r.status for r in store.list(kind="unlearn")] == ["done"]
    assert fractions == sorted(fractions) and 0 < fractions[-1] < 1

    fractions.clear()
    result = engine.run_sweep(config, store, progress=Progress(lambda f, m: fractions.append(f)))
    assert result["summary"]["reused"] == 1 and result["summary"]["runs"] == 4
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)


def test_sweep_help():
    with pytest.raises(SystemExit) as exit_:
        main(["sweep", "--help"])
    assert exit_.value.code == 0
