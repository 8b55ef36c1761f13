"""The Layers, Privacy and Embeddings pages through AppTest, on a run stored with a
synthetic report and arrays shaped like a real one (docs/report-schema.md): 5 probe layers,
the four parts, 10 classes. Figures are checked against the stored numbers."""

import time
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from ui import state, widgets
from unlearn_core import array_keys, figures
from unlearn_core.metrics.mia import distinguishability
from unlearn_core.runs import RunStore
from tests.app.helpers import TIMEOUT, chart, charts, texts, trace

APP = str(Path(__file__).resolve().parents[2] / "app.py")
LAYERS = ["block1", "block2", "block3", "embedding", "logits"]
PARTS = ["forget_train", "retain_train", "forget_test", "retain_test"]
PAIRS = ("unlearned_vs_original", "unlearned_vs_oracle", "oracle_vs_original")
ROLES = ("unlearned", "original", "oracle")
CLASSES = [str(i) for i in range(10)]
PROBES_PER_PART = 30
FORGET_SIZE, TEST_SIZE = 180, 360


def rounded(values) -> list:
    return [round(float(v), 4) for v in values]


def synthetic_report(rng: np.random.Generator) -> dict:
    """Class 0 forgotten superficially: CKA to the original stays high until the head."""
    def accuracies(forget):
        return {"forget_train": forget, "retain_train": 0.99, "test_forget": forget,
                "test_retain": 0.96, "test": 0.87, "per_class_test": [forget] + [0.96] * 9}

    accuracy = {"unlearned": accuracies(0.0), "original": accuracies(0.98),
                "oracle": accuracies(0.0)}
    cka = {pair: {part: rounded(rng.uniform(0.5, 1.0, len(LAYERS))) for part in PARTS}
           for pair in PAIRS}
    cka["unlearned_vs_original"]["forget_train"][1] = None  # undefined on this layer
    # evaluate() bootstraps bands on forget parts only; retain parts get null edges.
    band = {pair: {part: {"low": [None if v is None or "retain" in part else round(v - 0.05, 4)
                                  for v in values],
                          "high": [None if v is None or "retain" in part
                                   else round(min(v + 0.03, 1.0), 4) for v in values]}
                   for part, values in by_part.items()} for pair, by_part in cka.items()}
    features = ("confidence", "correctness", "entropy", "m_entropy")
    return {
        "accuracy": accuracy,
        "gap_to_oracle": {k: accuracy["unlearned"][k] - accuracy["oracle"][k]
                          for k in ("forget_train", "retain_train", "test_forget",
                                    "test_retain", "test")},
        "cost": {"seconds": 1.5, "oracle_seconds": 6.0, "speedup": 4.0, "device": "cpu"},
        "split": {"forget": FORGET_SIZE, "retain": 1257, "test_forget": 36, "test_retain": 324},
        "classes": CLASSES, "forget_classes": [0],
        "method": {"name": "neggrad_plus", "title": "NegGrad+", "params": {"epochs": 3},
                   "info": {}, "curves": {}},
        "layers": {
            "names": LAYERS, "parts": PARTS,
            "probe_sizes": {part: PROBES_PER_PART for part in PARTS},
            "cka": cka, "cka_band": band,
            "depth": {"forget_train": [None, 0.1, 0.2, 0.3, 0.9],
                      "forget_test": [0.0, 0.05, 0.1, 0.25, 0.95]},
            "depth_floor": 0.02,
            "cka_excess": {part: {"value": [0.001, 0.004, 0.007, -0.1, None],
                                  "low": [0.0005, 0.003, -0.001, -0.14, None],
                                  "high": [0.002, 0.005, 0.01, -0.07, None]}
                           for part in ("forget_train", "forget_test")},
            "cka_matrix": {"part": "forget_train",
                           **{pair: [rounded(rng.uniform(0, 1, len(LAYERS))) for _ in LAYERS]
                              for pair in ("unlearned_vs_original", "oracle_vs_original")}},
            "probe_layers": LAYERS[:-1],
            "probes": {"unlearned": [0.9, 0.85, 0.8, 0.7], "original": [0.95, 0.97, 0.99, 0.99],
                       "oracle": [0.3, 0.1, 0.05, 0.0]},
            "head_refit": {"forget_accuracy_before": 0.0, "forget_accuracy_after": 0.82,
                           "returned": 0.82, "n_held_out": 30},
            "verdict": {"kind": "superficial", "mean_depth": 0.2,
                        "text": "Superficial: the forget class is still readable from block3."}},
        "mia": {"efficacy": {"unlearned": dict(zip(features, (0.97, 1.0, 0.9, 0.95))),
                             "oracle": dict(zip(features, (0.88, 1.0, 0.8, 0.85))),
                             "original": dict(zip(features, (0.02, 0.0, 0.05, 0.03)))},
                "headline": "confidence", "features": list(features),
                "distinguishability": {"confidence": {"epsilon": 0.9, "privacy_score": 0.536},
                                       "entropy": {"epsilon": 0.4, "privacy_score": 0.758}},
                "n_members": TEST_SIZE, "n_nonmembers": TEST_SIZE, "n_forget": FORGET_SIZE},
    }


def synthetic_arrays(rng: np.random.Generator) -> dict[str, np.ndarray]:
    n = PROBES_PER_PART * len(PARTS)
    part = np.repeat(np.arange(len(PARTS)), PROBES_PER_PART)
    is_forget = np.isin(part, [0, 2])
    label = np.where(is_forget, 0, rng.integers(1, 10, n))
    arrays = {"eval/probe_index": rng.integers(0, 1000, n), "eval/probe_part": part,
              "eval/probe_label": label, "eval/pred/original": label,
              "eval/pred/unlearned": np.where(is_forget, rng.integers(1, 10, n), label),
              "eval/pred/oracle": np.where(is_forget, rng.integers(1, 10, n), label),
              "eval/mia_score/unlearned": rng.uniform(size=FORGET_SIZE)}
    for layer in LAYERS:
        for role in ROLES:
            arrays[f"eval/pca/{layer}/{role}"] = rng.normal(size=(n, 2)).astype(np.float32)
        arrays[f"eval/pca_variance/{layer}"] = np.array([0.41, 0.17])
    for role in ROLES:
        for subset, size in (("forget", FORGET_SIZE), ("test", TEST_SIZE)):
            arrays[f"eval/conf/{role}/{subset}"] = rng.beta(2, 5, size)
            arrays[f"eval/entropy/{role}/{subset}"] = rng.uniform(0, np.log(10), size)
    for feature, array_name in array_keys.SCORE_ARRAY_NAMES.items():
        curve = distinguishability(arrays[f"eval/{array_name}/unlearned/forget"],
                                   arrays[f"eval/{array_name}/oracle/forget"])
        for key in ("thresholds", "fpr", "fnr"):
            arrays[f"eval/dist/{feature}/{key}"] = curve[key]
    return arrays


def store_run(store: RunStore, report: dict, arrays=None, label: str = "NegGrad+") -> str:
    run_id = store.create("unlearn", {"method": {"name": "neggrad_plus"}}, label)
    store.finish(run_id, report, arrays=arrays)
    return run_id


@pytest.fixture
def stored(tmp_path, monkeypatch):
    """A store holding one run with the layer metrics; returns (store, run id)."""
    monkeypatch.setenv("LENS_STORE", str(tmp_path / "store"))
    store = RunStore(tmp_path / "store")
    rng = np.random.default_rng(0)
    return store, store_run(store, synthetic_report(rng), synthetic_arrays(rng))


def open_page(page: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    at.switch_page(f"app_pages/{page}.py").run()
    assert not at.exception, at.exception
    return at


def test_layers_page_shows_the_verdict_and_the_stored_layer_metrics(stored):
    store, run_id = stored
    layers = store.get(run_id).report["layers"]
    at = open_page("layers")
    assert layers["verdict"]["text"] in texts(at.warning)

    cka = chart(at, "Linear CKA per layer")
    unlearned = trace(cka, "Unlearned vs original · Forget (train)")
    assert unlearned["x"] == LAYERS
    assert unlearned["y"] == layers["cka"]["unlearned_vs_original"]["forget_train"]
    assert unlearned["y"][1] is None
    assert trace(cka, "Oracle vs original (reference) · Forget (train)")["line"]["dash"] == "dash"
    depth = chart(at, "Forgetting depth per layer, Forget (train)")
    assert depth["data"][0]["y"] == layers["depth"]["forget_train"]
    excess = chart(at, "Closer to the original than the oracle? Forget (train)")["data"][0]
    assert excess["y"] == layers["cka_excess"]["forget_train"]["value"]
    assert excess["error_y"]["array"] == pytest.approx([0.001, 0.001, 0.003, 0.03, None])
    # Red where the interval lies above 0: block1 and block2 only.
    assert [c == figures.FORGET_COLOR for c in excess["marker"]["color"]] == [
        True, True, False, False, False]
    probes = chart(at, "Linear probe accuracy")
    assert trace(probes, "Unlearned")["y"] == pytest.approx([90, 85, 80, 70])
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Forget accuracy after the refit"] == "82.0%"
    assert metrics["Returned"] == "+82.0 points"
    heatmaps = [title for title in charts(at) if title.startswith("Layer × layer")]
    assert heatmaps == ["Layer × layer CKA, unlearned vs original (Forget (train))",
                        "Layer × layer CKA, oracle vs original (Forget (train))"]
    heatmap = chart(at, "Layer × layer CKA, oracle vs original")
    assert heatmap["data"][0]["z"] == layers["cka_matrix"]["oracle_vs_original"]

    at.radio(key="layers-reference").set_value("oracle")
    at.segmented_control(key="layers-parts").set_value(["forget_train", "retain_test"])
    at.toggle(key="layers-band").set_value(False).run()
    assert not at.exception
    cka = chart(at, "Linear CKA per layer")
    assert trace(cka, "Unlearned vs oracle · Retain (test)")["y"] == \
        layers["cka"]["unlearned_vs_oracle"]["retain_test"]
    assert not any("95%" in t["name"] for t in cka["data"])
    # Depth exists on forget parts only: one chart for the one forget part chosen.
    assert [t for t in charts(at) if t.startswith("Forgetting depth")] == [
        "Forgetting depth per layer, Forget (train)"]


def test_privacy_page_compares_mia_with_the_oracle_and_moves_the_threshold(stored):
    store, run_id = stored
    mia = store.get(run_id).report["mia"]
    arrays = store.load_arrays(run_id)
    at = open_page("privacy")

    [headline] = [m for m in at.metric if m.label == "MIA efficacy (confidence)"]
    assert headline.value == "97.0%"
    bars = chart(at, "MIA efficacy per attack feature")
    assert trace(bars, "Retrain oracle (target)")["y"] == pytest.approx([88, 100, 80, 85])
    histograms = chart(at, "Confidence: forget vs test vs oracle")
    assert trace(histograms, "Forget, retrain oracle")["x"] == pytest.approx(
        arrays["eval/conf/oracle/forget"])

    threshold = float(np.median(arrays["eval/dist/confidence/thresholds"]))
    at.slider(key="privacy-threshold-confidence").set_value(threshold).run()
    assert not at.exception
    rates = figures.rates_at_threshold(arrays, "confidence", threshold)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["FPR at the threshold"] == f"{100 * rates['fpr']:.1f}%"
    assert metrics["ε"] == f"{mia['distinguishability']['confidence']['epsilon']:.3f}"
    curve = chart(at, "Telling the unlearned model from the oracle by confidence")
    assert trace(curve, "chosen threshold")["x"] == pytest.approx([threshold, threshold])

    at.radio(key="privacy-feature").set_value("entropy").run()
    assert not at.exception
    assert metrics["Privacy score 2^−ε"] != {m.label: m.value for m in at.metric}[
        "Privacy score 2^−ε"]
    assert chart(at, "Entropy: forget vs test vs oracle")


def test_embeddings_page_draws_the_stored_coordinates(stored):
    store, run_id = stored
    arrays = store.load_arrays(run_id)
    at = open_page("embeddings")
    assert at.selectbox(key="embeddings-layer").value == "embedding"

    panels = chart(at, "embedding: one joint PCA map")
    forget = [t for t in panels["data"] if t["name"] == "Forget examples"]
    is_forget = np.isin(arrays["eval/probe_part"], [0, 2])
    for panel, role in zip(forget, figures.ROLES_BEFORE_AFTER):
        assert panel["x"] == pytest.approx(arrays[f"eval/pca/embedding/{role}"][is_forget, 0])
    assert "41.0%" in texts(at.caption)
    # The drill-down is offered; this synthetic run has no setup to load examples from,
    # which it says (test_compare_page drives it on a real run).
    assert "Drill-down: one forget example" in [h.value for h in at.subheader]
    assert "stored without its setup" in texts(at.error)

    at.selectbox(key="embeddings-layer").set_value("block1")
    at.checkbox(key="embeddings-lines").check().run()
    assert not at.exception
    panels = chart(at, "block1: one joint PCA map")
    assert trace(panels, "Forget: original → unlearned")["xaxis"] == "x2"


def test_a_layer_without_a_stored_pca_is_fitted_once_and_a_failure_is_said(tmp_path,
                                                                            monkeypatch):
    """A layer evaluate() did not map is fitted in the background; here rebuilding the run
    fails: said once, with a button to try again, not started again on every rerun."""
    from unlearn_core import pipeline
    from unlearn_core.errors import UserError

    def cannot_rebuild(store, run_id, purpose, *args, **kwargs):
        raise UserError(f"run {run_id} was evaluated on another probe subset; run it again "
                        f"to {purpose}")

    monkeypatch.setattr(pipeline, "rebuild_run", cannot_rebuild)
    monkeypatch.setenv("LENS_STORE", str(tmp_path / "store"))
    store = RunStore(tmp_path / "store")
    rng = np.random.default_rng(0)
    arrays = {key: value for key, value in synthetic_arrays(rng).items()
              if "/block1" not in key}
    run_id = store_run(store, synthetic_report(rng), arrays)
    at = open_page("embeddings")
    at.selectbox(key="embeddings-layer").set_value("block1").run()
    assert not at.exception
    assert "Fitting the PCA of block1" in texts(at.info)
    assert not at.get("plotly_chart")
    deadline = time.monotonic() + 60
    while "could not be fitted" not in texts(at.warning):
        assert time.monotonic() < deadline, "the failed fit was not said"
        time.sleep(0.3)
        at.run()
    assert not at.exception
    assert "another probe subset" in texts(at.error)  # the job's own message
    assert at.button(key=f"pca-fit-retry-{run_id}-block1")
    at.run()
    assert "could not be fitted" in texts(at.warning)  # not started again

    n = PROBES_PER_PART * len(PARTS)
    fitted = {f"eval/pca/block1/{role}": rng.normal(size=(n, 2)).astype(np.float32)
              for role in ROLES}
    store.put_derived(run_id, "pca-block1", {**fitted, "eval/pca_variance/block1":
                                             np.array([0.3, 0.2])})
    at.run()
    panels = chart(at, "block1: one joint PCA map")
    assert [t for t in panels["data"] if t["name"] == "Forget examples"][1]["x"] == \
        pytest.approx(fitted["eval/pca/block1/unlearned"][np.isin(arrays["eval/probe_part"],
                                                                 [0, 2]), 0])
    assert "30.0%" in texts(at.caption)


def test_layers_page_without_probes_still_shows_the_cka(tmp_path, monkeypatch):
    """evaluate() stores null probes and head refit when no forget example is held out."""
    monkeypatch.setenv("LENS_STORE", str(tmp_path / "store"))
    report = synthetic_report(np.random.default_rng(0))
    report["layers"].update(probes=None, head_refit=None)
    report["layers"]["cka_matrix"]["oracle_vs_original"] = None  # a constant layer
    store_run(RunStore(tmp_path / "store"), report)
    at = open_page("layers")
    assert "No linear probes" in texts(at.caption)
    titles = list(charts(at))
    assert titles[0].startswith("Linear CKA per layer")
    assert [t for t in titles if t.startswith("Layer × layer")] == [
        "Layer × layer CKA, unlearned vs original (Forget (train))"]


@pytest.mark.parametrize("page", ["layers", "privacy", "embeddings"])
def test_a_run_stored_before_the_layer_metrics_asks_to_run_again(stored, page):
    store, run_id = stored
    old_report = synthetic_report(np.random.default_rng(1))
    del old_report["layers"], old_report["mia"]
    store_run(store, old_report, label="old NegGrad+")  # newest, so picked first
    at = open_page(page)
    assert "stored before the layer metrics existed" in texts(at.info)
    assert not at.get("plotly_chart")

    at.selectbox(key=widgets.RUN_PICKER_KEY).set_value(run_id).run()
    assert not at.exception
    assert at.get("plotly_chart")
    assert at.session_state[state.SELECTED_RUN_KEY] == run_id


def test_pages_point_to_the_unlearn_page_without_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("LENS_STORE", str(tmp_path / "empty-store"))
    at = open_page("layers")
    assert "No finished runs yet" in texts(at.info)


def test_embeddings_page_offers_umap_and_draws_it_once_stored(stored):
    store, run_id = stored
    at = open_page("embeddings")
    at.radio(key="embeddings-map").set_value("UMAP").run()
    assert not at.exception
    assert "not computed yet" in texts(at.info)
    assert at.button(key="embeddings-umap").label == "Compute UMAP of embedding"
    chart(at, "embedding: one joint PCA map")  # PCA meanwhile

    n = PROBES_PER_PART * len(PARTS)
    umap = {f"eval/umap/embedding/{role}": np.random.default_rng(i).normal(size=(n, 2))
            for i, role in enumerate(figures.ROLES_BEFORE_AFTER)}
    store.put_derived(run_id, "umap-embedding", umap)
    at.run()
    panels = chart(at, "embedding: one joint UMAP map")
    is_forget = np.isin(store.load_arrays(run_id)["eval/probe_part"], [0, 2])
    forget = [t for t in panels["data"] if t["name"] == "Forget examples"]
    for panel, role in zip(forget, figures.ROLES_BEFORE_AFTER):
        assert panel["x"] == pytest.approx(umap[f"eval/umap/embedding/{role}"][is_forget, 0])
        assert panel["customdata"] == np.flatnonzero(is_forget).tolist()
