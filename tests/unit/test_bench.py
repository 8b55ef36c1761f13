"""The bench suites on the tiny digits setup: tables, a known answer (retrain = oracle),
resuming from the store, failures shown but not fatal, grid input checked.

The bench reads only accuracy, gap_to_oracle, mia and cost from a run's report. The full
`evaluate()` (CKA with bootstrap bands, linear probes, PCA) costs about 15 s of CPU per
run on digits, so these tests swap in an evaluation with the real accuracies and the
real MIA and nothing else (evaluate itself is tested in test_report.py).
"""

import json

import pytest
import torch

from conftest import accuracy_and_mia_only, tiny_setup
from unlearn_core import bench, engine, pipeline
from unlearn_core.cli import main
from unlearn_core.config import MethodSpec
from unlearn_core.methods import Method, Outcome, Param
from unlearn_core.methods import registry
from unlearn_core.runs import RunStore

# Several seconds each on 2 cores: left out of `make test-fast`.
pytestmark = pytest.mark.slow

METHODS = [MethodSpec("retrain"), MethodSpec("finetune", {"epochs": 1})]


class _Scale(Method):
    """Multiplies every weight by `factor`: 1 keeps the original, 1e300 overflows to inf
    so the pipeline raises DivergedError. A failing method without any training."""

    name = "test_scale"
    title = "Scale (test)"
    summary = "multiply every weight by a factor"
    params = (Param("factor", "float", 1.0, "the factor", low=0.0, high=1e300),)

    def unlearn(self, ctx):
        with torch.no_grad():
            for p in ctx.model.parameters():
                p.mul_(ctx.params["factor"])
        return Outcome(ctx.model)


@pytest.fixture(scope="module", autouse=True)
def light_evaluate():
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pipeline, "evaluate", accuracy_and_mia_only)
        yield


@pytest.fixture
def scale_method(monkeypatch):
    monkeypatch.setitem(registry._REGISTRY, _Scale.name, _Scale)


@pytest.fixture(scope="module")
def bench_store(tmp_path_factory):
    return RunStore(tmp_path_factory.mktemp("bench-store"))


@pytest.fixture(scope="module")
def first(bench_store):
    lines = []
    result = bench.baselines(tiny_setup(), bench_store, seeds=2, methods=METHODS,
                             scenarios=("class", "random"), log=lines.append)
    return result, lines


def _method_rows(result):
    return [r for r in result["rows"] if r["kind"] == "method"]


def test_one_row_per_scenario_and_method_with_mean_and_std_over_seeds(first):
    result, lines = first
    rows = _method_rows(result)
    assert [(r["scenario"], r["label"]) for r in rows] == [
        ("class", "retrain"), ("class", "finetune epochs=1"),
        ("random", "retrain"), ("random", "finetune epochs=1")]
    for r in rows:
        assert r["seeds"] == [0, 1] and r["n_ok"] == 2 and not r["failures"]
        for key in ("forget_train", "retain_train", "test", "mia", "avg_gap", "seconds", "speedup"):
            assert r["metrics"][key]["n"] == 2 and r["metrics"][key]["std"] is not None
    # references: the original and the oracle per scenario, the oracle's MIA among them
    refs = [(r["scenario"], r["kind"]) for r in result["rows"] if r["kind"] != "method"]
    assert refs == [("class", "original"), ("class", "oracle"),
                    ("random", "original"), ("random", "oracle")]
    table = result["table"]
    assert "### Class forgetting (class 0), 2 seeds" in table
    assert "### Random forgetting (10% of the training set), 2 seeds" in table
    assert "test retain-classes %" in table and "test forget-classes %" in table
    assert table.count("| finetune |") == 2 and table.count("| retrain |") == 2
    assert " ± " in table and "Machine: " in table and "torch: " in table
    # progress: one line per run and per (scenario, seed) references
    assert sum(line.startswith("[") for line in lines) == 8
    assert any(line.startswith("class seed 1 references") for line in lines)


def test_retrain_matches_the_oracle_exactly(first):
    result, _ = first
    for row in _method_rows(result):
        if row["method"] == "retrain":
            assert all(abs(v) < 1e-9 for v in row["metrics"]["avg_gap"]["values"])
    oracle = [r for r in result["rows"] if r["kind"] == "oracle"]
    retrain = [r for r in result["rows"] if r["method"] == "retrain"]
    for o, r in zip(oracle, retrain):
        assert o["metrics"]["mia"]["values"] == r["metrics"]["mia"]["values"]


def test_second_invocation_reruns_nothing(first, bench_store):
    result, _ = first
    before = len(bench_store.list())
    lines = []
    again = bench.baselines(tiny_setup(), bench_store, seeds=2, methods=METHODS,
                            scenarios=("class", "random"), log=lines.append)
    assert len(bench_store.list()) == before == 8
    assert again["summary"]["reused"] == 8 and again["summary"]["reference_models_trained"] == 0
    assert all("(reused)" in line for line in lines if line.startswith("["))
    assert [r["metrics"] for r in again["rows"]] == [r["metrics"] for r in result["rows"]]


def test_sweep_shows_a_diverged_point_as_failed_and_goes_on(first, bench_store, scale_method,
                                                            tmp_path, capsys):
    setup_json = tmp_path / "setup.json"
    setup_json.write_text(tiny_setup().to_json())
    out = tmp_path / "sweep.md"
    argv = ["--quiet", "--json", "bench", "--suite", "sweep", "--method", "test_scale",
            "--grid", "factor=1e300,1", "--setup-json", str(setup_json),
            "--store", str(bench_store.root), "--out", str(out)]
    assert main(argv) == 0
    rows = [r for r in json.loads(capsys.readouterr().out)["rows"] if r["kind"] == "method"]
    assert [r["params"] for r in rows] == [{"factor": 1.0}, {"factor": 1e300}]  # sorted
    ok, failed = rows
    assert ok["best"] and ok["rank"] == 1 and ok["n_ok"] == 1
    assert failed["n_ok"] == 0 and failed["rank"] is None
    assert failed["failures"][0]["error"].startswith("DivergedError")
    table = out.read_text()
    assert "**1 (best)**" in table and "failed: DivergedError" in table
    assert "Command: `python -m unlearn_core bench --suite sweep --method test_scale" in table
    # the failure is kept: running the sweep again runs nothing
    before = len(bench_store.list())
    assert main(argv) == 0
    assert len(bench_store.list()) == before


@pytest.mark.parametrize("grid, message", [
    ("lr=abc", "--grid 'lr=abc': lr expects a number in (0, 10], got 'abc'"),
    ("lr=0", "--grid 'lr=0': lr expects a number in (0, 10]"),
    ("epochs=2.5", "--grid 'epochs=2.5': epochs expects an integer"),
    ("momentum=0.9", "--grid 'momentum=0.9': finetune has no parameter 'momentum'; allowed:"),
    ("lr", "--grid 'lr': expected NAME=V1,V2,..."),
    ("lr=0.1,", "--grid 'lr=0.1,': an empty value"),
])
def test_bad_grid_exits_2_naming_the_entry(grid, message, tmp_path, capsys):
    code = main(["bench", "--suite", "sweep", "--method", "finetune", "--grid", grid,
                 "--store", str(tmp_path / "s")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert RunStore(tmp_path / "s").list() == []


@pytest.mark.parametrize("argv, message", [
    (["--suite", "sweep", "--method", "magic"], "--method: method.name: unknown method 'magic'"),
    (["--suite", "sweep"], "--method: --suite sweep needs"),
    (["--suite", "baselines", "--methods", "finetune,magic"],
     "--methods: method.name: unknown method 'magic'"),
    (["--suite", "baselines", "--scenarios", "iid"], "--scenarios: unknown scenario"),
    (["--suite", "baselines", "--seeds", "0"], "--seeds: expected an integer >= 1"),
    (["--suite", "baselines", "--grid", "lr=1"], "--grid: not an option of --suite baselines"),
    (["--quick", "--suite", "sweep"], "--quick: same as --suite quick"),
    (["--suite", "dkvb", "--seeds", "0"], "--seeds: expected an integer >= 1"),
    (["--suite", "dkvb", "--methods", "finetune"], "--methods: not an option of --suite dkvb"),
])
def test_bad_bench_options_exit_2(argv, message, tmp_path, capsys):
    code = main(["bench", *argv, "--store", str(tmp_path / "s")])
    err = capsys.readouterr().err
    assert code == 2 and message in err


def test_grid_values_take_the_param_types_and_make_a_product():
    grid = engine.parse_grid("finetune", ["lr=0.01,0.05,0.1", "epochs=2,4,2"])
    assert grid == {"lr": [0.01, 0.05, 0.1], "epochs": [2, 4]}
    assert all(type(v) is int for v in grid["epochs"])
    specs = engine.grid_specs("finetune", grid)
    assert len(specs) == 6 and specs[0] == MethodSpec("finetune", {"lr": 0.01, "epochs": 2})


@pytest.mark.parametrize("argv", [["--quick"], ["--suite", "quick"]])
def test_quick_is_the_quick_suite(argv, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(bench, "run_bench", lambda quick, device: calls.append(quick) or
                        {"machine": "m", "rows": [], "table": "quick table"})
    assert main(["bench", *argv]) == 0
    assert calls == [True] and "quick table" in capsys.readouterr().out


def test_non_iid_scenario_is_the_del_papers_half_of_two_classes():
    base = tiny_setup()
    setup = bench.scenario_setup(base, "non_iid", 2)
    assert setup.seed == 2 and setup.forget == bench.NON_IID_FORGET
    assert (setup.forget.kind, setup.forget.classes, setup.forget.fraction) == ("non_iid", (2, 5), 0.5)
    assert bench.scenario_title("non_iid", None) == "Non-IID forgetting (50% of class 2, 5)"
    assert bench.parse_scenarios("non_iid,random") == ("non_iid", "random")


def test_dkvb_suite_runs_the_dkvb_benchmark_on_the_given_store(monkeypatch, tmp_path, capsys):
    from unlearn_core import bench_dkvb
    calls = []
    monkeypatch.setattr(bench_dkvb, "benchmark", lambda store, **kw: calls.append((store.root, kw))
                        or {"table": "the dkvb table"})
    assert main(["--store", str(tmp_path / "s"), "bench", "--suite", "dkvb", "--seeds", "2",
                 "--device", "cpu"]) == 0
    (root, kw), = calls
    assert root == (tmp_path / "s").resolve() and kw["seeds"] == 2 and kw["device"] == "cpu"
    assert "--suite dkvb --seeds 2 --device cpu" in kw["command"]
    assert "the dkvb table" in capsys.readouterr().out
