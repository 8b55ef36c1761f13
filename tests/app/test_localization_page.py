"""The Localization page through AppTest, on localized runs stored with synthetic
reports and arrays named as methods/localization.py names them (small_cnn's 5 layers)."""


import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from ui import state
from unlearn_core.config import MethodSpec, RunSpec, SetupSpec
from unlearn_core.engine import runner
from unlearn_core.methods import get_method
from unlearn_core.methods.del_localized import SWEEP_RHOS, TUNING_GRID, grid_settings
from unlearn_core.progress import Progress
from unlearn_core.report_schema import average_gap
from unlearn_core.runs import RunStore
from tests.app.helpers import ROOT, TIMEOUT, chart

PAGE_PATH = "app_pages/localization.py"
# Until app.py lists the page, it is opened on its own; its link to the Unlearn page
# then has no navigation to resolve against (see the last test).
REGISTERED = PAGE_PATH in (ROOT / "app.py").read_text()
LAYERS = ["block1", "block2", "block3", "embedding", "logits"]
CHANNELS = [16, 32, 64, 64, 10]


def localized_run(rng, method: str, params: dict, forget: float):
    """(report, arrays) of a localized run whose mask takes a random share of channels."""
    resolved = get_method(method).resolve_params(params)
    picked = [rng.random(n) < resolved["rho"] for n in CHANNELS]
    channel = np.full((64, 5), np.nan, np.float32)
    scores = np.full((64, 5), np.nan, np.float32)
    selectivity = np.full((64, 5), np.nan, np.float32)
    for j, rows in enumerate(picked):
        channel[:len(rows), j] = rows
        scores[:len(rows), j] = rng.uniform(1e-5, 1e-2, len(rows))
        selectivity[:len(rows), j] = rng.normal(size=len(rows))
    fractions = np.array([rows.mean() for rows in picked], np.float32)
    arrays = {"mask/stage_parameter_fraction": fractions, "mask/stage_channel_fraction": fractions,
              "mask/tensor_parameter_fraction": fractions, "mask/channel_fraction": channel,
              "mask/criticality": scores,
              "mask/selected_channels": np.array([(j, c) for j, rows in enumerate(picked)
                                                  for c in np.flatnonzero(rows)], np.int32),
              "selectivity/value": selectivity, "selectivity/selected": channel}
    info = {"strategy": resolved.get("strategy", "del"), "granularity": "channel",
            "scores_from": "del", "rho": resolved["rho"], "selected_parameters": 18000,
            "total_parameters": 60986, "selected_fraction": 18000 / 60986,
            "selected_channels": int(sum(r.sum() for r in picked)),
            "total_channels": sum(CHANNELS), "weight_tensors": LAYERS, "layers": LAYERS,
            "parameter_tensors": []}
    cka = {pair: {"forget_train": [0.9, 0.8, 0.7, 0.6, 0.5]}
           for pair in ("unlearned_vs_original", "oracle_vs_original")}
    report = {"method": {"name": method, "title": method, "params": resolved,
                         "info": {"localization": info}, "curves": {}},
              "accuracy": {"unlearned": {"forget_train": forget, "retain_train": 0.99,
                                         "test": 0.97},
                           "oracle": {"forget_train": 0.96, "retain_train": 0.99,
                                      "test": 0.975}},
              "mia": {"efficacy": {"unlearned": {"confidence": 0.05},
                                   "oracle": {"confidence": 0.06}}},
              "layers": {"names": LAYERS, "cka": cka, "cka_band": {}},
              "cost": {"device": "cpu", "seconds": 1.0}}
    report["average_gap"] = {"unlearned": average_gap(report)}  # as evaluate() stores it
    return resolved, report, arrays


def store_run(store, rng, method, params, forget=0.97, setup=None, spec=None):
    resolved, report, arrays = localized_run(rng, method, params, forget)
    spec = spec or RunSpec(setup or SetupSpec(), MethodSpec(method, resolved))
    report["run_spec_hash"] = spec.hash
    run_id = store.create("unlearn", spec.to_dict(), label=method)
    store.finish(run_id, report, arrays=arrays)
    return run_id


@pytest.fixture
def stored(tmp_path, monkeypatch):
    """Newest first: the DEL run the page opens on, two more of its setup, one of another
    setup and a finetune run."""
    monkeypatch.setenv("LENS_STORE", str(tmp_path / "store"))
    store = RunStore(tmp_path / "store")
    rng = np.random.default_rng(0)
    finetune = store.create("unlearn", RunSpec(SetupSpec(), MethodSpec("finetune")).to_dict(),
                            label="finetune")
    store.finish(finetune, {"method": {"name": "finetune", "params": {}},
                            "cost": {"device": "cpu", "seconds": 1.0}})
    ids = {
        "other_setup": store_run(store, rng, "del", {}, setup=SetupSpec(seed=1)),
        "salloc": store_run(store, rng, "localized", {"strategy": "salloc", "rho": 0.2}, 0.99),
        "random": store_run(store, rng, "localized", {"strategy": "random"}, 0.995),
        "del": store_run(store, rng, "del", {}, 0.96),
    }
    return store, ids


def open_page(check: bool = True) -> AppTest:
    if REGISTERED:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
        at.run()
        at.switch_page(PAGE_PATH).run()
    else:
        at = AppTest.from_file(str(ROOT / PAGE_PATH), default_timeout=TIMEOUT)
        at.run()
    if check:
        assert not at.exception, at.exception
    return at


def test_page_draws_the_picked_runs_mask_from_its_arrays(stored):
    store, ids = stored
    at = open_page()
    assert at.selectbox(key="loc-run").value == ids["del"]
    assert ids["other_setup"] in at.selectbox(key="loc-run").options[-1]
    assert len(at.selectbox(key="loc-run").options) == 4  # the finetune run is not listed
    arrays = store.load_arrays(ids["del"])
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Strategy · algorithm"] == "del · rft" and metrics["Budget ρ"] == "0.3"
    bars = chart(at, "Where the mask falls")["data"]
    assert len(bars) == 2 and bars[0]["x"] == LAYERS
    np.testing.assert_allclose(bars[1]["y"], 100 * arrays["mask/stage_parameter_fraction"],
                               rtol=1e-6)
    marks = chart(at, "Channel criticality")["data"][1]
    assert len(marks["x"]) == len(arrays["mask/selected_channels"])
    overlay = chart(at, "CKA to the original per layer")
    assert [t["type"] for t in overlay["data"]].count("bar") == 1
    assert chart(at, "Forget-vs-retain selectivity")


def test_compare_offers_only_localized_runs_of_the_same_setup(stored):
    store, ids = stored
    at = open_page()
    compare = at.multiselect(key="loc-compare")
    assert sorted(option.rsplit(" · ", 1)[1] for option in compare.options) == sorted(
        [ids["salloc"], ids["random"]])
    compare.set_value([ids["random"]]).run()
    assert not at.exception
    names = {t["name"] for t in chart(at, "Where the mask falls")["data"]}
    assert any(name.startswith("random (like del) · rft") for name in names) and len(names) == 2


def test_budget_sweep_groups_the_setups_runs_by_series(stored):
    at = open_page()
    sweep = chart(at, "Budget sweep")
    forget = {t["name"]: t for t in sweep["data"] if t.get("xaxis", "x") == "x"}
    assert set(forget) == {"del · rft", "random (like del) · rft", "salloc · rft"}
    assert forget["salloc · rft"]["x"] == [0.2] and forget["salloc · rft"]["y"] == [99.0]
    assert forget["del · rft"]["y"] == [96.0]  # the other setup's DEL run is not mixed in


def test_sweep_form_queues_one_run_per_rho_and_reuses_finished_ones(stored, monkeypatch):
    store, ids = stored
    submitted = {}
    monkeypatch.setattr(state, "submit", lambda label, fn: submitted.update(label=label, fn=fn))
    at = open_page()
    at.selectbox(key="loc-sweep-strategy").set_value("salloc")
    at.selectbox(key="loc-sweep-algorithm").set_value("neggrad_plus")
    at.button[0].click().run()
    assert not at.exception, at.exception
    assert submitted["label"] == "Budget sweep: salloc · neggrad_plus"

    ran, messages = [], []
    # A finished run of the ρ = 0.1 point is reused, not rerun.
    params = {**get_method("del").resolve_params({}), "strategy": "salloc",
              "algorithm": "neggrad_plus", "rho": 0.1}
    done_spec = RunSpec(SetupSpec(), MethodSpec("localized",
                                                 get_method("localized").resolve_params(params)))
    reused = store_run(store, np.random.default_rng(1), "localized",
                       {"strategy": "salloc", "rho": 0.1}, spec=done_spec)
    # The job is the engine's runner on this setup: only its two steps that train are faked.
    engine_runs_without_training(monkeypatch, ran)
    result = submitted["fn"](Progress(lambda fraction, message: messages.append(message)))
    assert [s.params["rho"] for _, s in ran] == [r for r in SWEEP_RHOS if r != 0.1]
    assert all(s.params["strategy"] == "salloc" and s.params["algorithm"] == "neggrad_plus"
               and s.params["lr"] == params["lr"] and setup == SetupSpec() for setup, s in ran)
    assert [r.reused for r in result] == [r == 0.1 for r in SWEEP_RHOS]
    assert result[1].run_id == reused and len(result) == len(SWEEP_RHOS)
    assert messages[-1].startswith(f"{len(SWEEP_RHOS)}/{len(SWEEP_RHOS)} runs: localized")


def engine_runs_without_training(monkeypatch, ran: list) -> None:
    """The engine's runner with its two training steps replaced: the references are taken
    as cached, and each run records its (setup, spec) and ends as a failure the runner
    reports and goes past (nothing is stored)."""
    monkeypatch.setattr(runner, "_references", lambda setup, store, progress=None:
                        (1.0, 1.0, 0, "cpu"))

    def execute(setup, spec, store, progress=None):
        ran.append((setup, spec))
        return None, "not run in this test", 0.0
    monkeypatch.setattr(runner, "_execute", execute)


def test_tuned_sweep_queues_every_grid_setting_per_rho_and_the_chart_picks_the_best(
        stored, monkeypatch):
    store, ids = stored
    submitted = {}
    monkeypatch.setattr(state, "submit", lambda label, fn: submitted.update(label=label, fn=fn))
    at = open_page()
    at.checkbox(key="loc-sweep-tune").check()
    at.button[0].click().run()
    assert not at.exception, at.exception
    ran = []
    engine_runs_without_training(monkeypatch, ran)
    submitted["fn"](Progress())
    points = {(s.params["rho"], s.params["lr"], s.params["epochs"]) for _, s in ran}
    assert len(ran) == len(points) == len(SWEEP_RHOS) * len(grid_settings(TUNING_GRID))

    # A second DEL run at ρ 0.3 with another lr, further from the oracle's 96% forget
    # accuracy than the first (96%): untuned, its own line; tuned, the first is the point.
    store_run(store, np.random.default_rng(2), "del", {"lr": 0.03, "epochs": 6}, 0.99)
    at = open_page()
    lines = {t["name"] for t in chart(at, "Budget sweep")["data"] if t.get("xaxis", "x") == "x"}
    assert {"del · rft (lr 0.03, 6 epochs)", "del · rft (lr 0.1, 3 epochs)"} <= lines
    at.toggle(key="loc-sweep-tuned").set_value(True).run()
    sweep = chart(at, "Budget sweep")
    forget = {t["name"]: t for t in sweep["data"] if t.get("xaxis", "x") == "x"}
    assert forget["del · rft"]["y"] == [pytest.approx(96.0)]
    assert forget["del · rft"]["customdata"] == ["lr 0.1, 3 epochs"]


def test_page_points_to_the_unlearn_page_without_localized_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("LENS_STORE", str(tmp_path / "empty"))
    at = open_page(check=REGISTERED)
    assert "No localized run yet" in at.info[0].value
