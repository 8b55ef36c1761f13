"""Figures of the Layers, Privacy and Embeddings pages, from a small hand-written report and
arrays that follow docs/report-schema.md: every trace must carry the report's numbers,
and a null must stay a gap, never become 0."""

import numpy as np
import pytest

from unlearn_core import figures
from unlearn_core.metrics.mia import distinguishability

NAMES = ["block1", "block2", "logits"]
PARTS = ["forget_train", "retain_train"]
PAIRS = ("unlearned_vs_original", "unlearned_vs_oracle", "oracle_vs_original")


def report() -> dict:
    cka = {"unlearned_vs_original": {"forget_train": [0.95, None, 0.2],
                                     "retain_train": [0.99, 0.97, 0.9]},
           "unlearned_vs_oracle": {"forget_train": [0.9, 0.7, 0.8],
                                   "retain_train": [0.98, 0.96, 0.92]},
           "oracle_vs_original": {"forget_train": [0.9, 0.5, -0.01],
                                  "retain_train": [0.97, 0.95, 0.9]}}
    # Bands exist on forget parts only.
    def shifted(values, by):
        return [None if v is None else v + by for v in values]

    band = {pair: {"forget_train": {"low": shifted(by_part["forget_train"], -0.05),
                                    "high": shifted(by_part["forget_train"], 0.03)},
                   "retain_train": None} for pair, by_part in cka.items()}
    return {
        "classes": ["zero", "one", "two"], "forget_classes": [0],
        "layers": {
            "names": NAMES, "parts": PARTS,
            "probe_sizes": {"forget_train": 4, "retain_train": 4},
            "cka": cka, "cka_band": band,
            "depth": {"forget_train": [None, 0.6, 0.8]},
            "cka_matrix": {"part": "forget_train",
                           "unlearned_vs_original": [[0.9, 0.4, None], [0.5, 0.8, 0.3],
                                                     [0.1, 0.2, 0.2]],
                           "oracle_vs_original": [[0.9, 0.4, 0.1], [0.5, 0.6, 0.3],
                                                  [0.1, 0.2, 0.1]]},
            "probes": {"unlearned": [0.8, None], "original": [0.95, 0.99],
                       "oracle": [0.1, 0.0]},
            "probe_layers": ["block1", "block2"],
            "head_refit": {"forget_accuracy_before": 0.0, "forget_accuracy_after": 0.6,
                           "returned": 0.6},
            "verdict": {"kind": "superficial", "text": "Forgotten in the head only."}},
        "mia": {"efficacy": {"unlearned": {"confidence": 0.9, "correctness": 1.0,
                                           "entropy": None, "m_entropy": 0.7},
                             "oracle": {"confidence": 0.8, "correctness": 0.95,
                                        "entropy": 0.6, "m_entropy": 0.75},
                             "original": {"confidence": 0.1, "correctness": 0.0,
                                          "entropy": 0.2, "m_entropy": 0.05}},
                "headline": "confidence",
                "distinguishability": {"confidence": {"epsilon": 1.2, "privacy_score": 0.43},
                                       "entropy": {"epsilon": 0.4, "privacy_score": 0.76}}},
    }


def arrays() -> dict:
    rng = np.random.default_rng(0)
    # Probe subset: two forget examples (class 0) and two retain ones.
    out = {"eval/probe_index": np.array([3, 8, 1, 5]), "eval/probe_part": np.array([0, 0, 1, 1]),
           "eval/probe_label": np.array([0, 0, 1, 2]),
           "eval/pred/original": np.array([0, 0, 1, 2]),
           "eval/pred/unlearned": np.array([1, 2, 1, 2]),
           "eval/pred/oracle": np.array([2, 1, 1, 2])}
    for layer in NAMES:
        for shift, role in enumerate(figures.ROLES_BEFORE_AFTER):
            out[f"eval/pca/{layer}/{role}"] = (rng.normal(size=(4, 2)) + shift).astype(np.float32)
        out[f"eval/pca_variance/{layer}"] = np.array([0.5, 0.25])
    for feature in ("conf", "entropy"):
        for role in ("unlearned", "oracle", "original"):
            for subset, size in (("forget", 30), ("test", 50)):
                out[f"eval/{feature}/{role}/{subset}"] = rng.uniform(size=size)
    for feature in ("confidence", "entropy"):
        curve = distinguishability(rng.normal(0.3, 1, 40), rng.normal(0, 1, 40))
        for key in ("thresholds", "fpr", "fnr"):
            out[f"eval/dist/{feature}/{key}"] = curve[key]
    return out


def trace(fig, name):
    return next(t for t in fig.data if t.name == name)


def test_cka_lines_carry_the_report_with_gaps_and_a_dashed_reference():
    fig = figures.cka_per_layer(report(), parts=("forget_train", "retain_train"))
    unlearned = trace(fig, "Unlearned vs original · Forget (train)")
    assert list(unlearned.x) == NAMES
    assert list(unlearned.y) == [0.95, None, 0.2]
    assert unlearned.line.dash == "solid"
    reference = trace(fig, "Oracle vs original (reference) · Retain (train)")
    assert list(reference.y) == [0.97, 0.95, 0.9] and reference.line.dash == "dash"
    band = trace(fig, "Unlearned vs original · Forget (train), 95% band")
    # Outline of each run of known layers (low edge out, high edge back), split at the null.
    assert band.fill == "toself"
    assert list(band.x) == ["block1", "block1", None, "logits", "logits", None]
    assert list(band.y) == pytest.approx([0.90, 0.98, None, 0.15, 0.23, None])
    assert list(fig.layout.xaxis.categoryarray) == NAMES  # the null does not reorder layers
    # The slightly negative debiased value stays visible.
    assert fig.layout.yaxis.range[0] < -0.01
    # Retain parts have no band: only the lines.
    assert not [t.name for t in fig.data if "Retain" in t.name and "band" in t.name]


def test_cka_against_the_oracle_and_without_band():
    fig = figures.cka_per_layer(report(), reference="oracle", show_band=False)
    assert [t.name for t in fig.data] == ["Unlearned vs oracle · Forget (train)",
                                          "Oracle vs original (reference) · Forget (train)"]
    assert list(fig.data[0].y) == [0.9, 0.7, 0.8]
    with pytest.raises(ValueError, match="reference"):
        figures.cka_per_layer(report(), reference="retain")


def test_depth_bars_leave_a_null_layer_empty_and_say_why():
    fig = figures.forgetting_depth_bars(report(), "forget_train")
    assert list(fig.data[0].y) == [None, 0.6, 0.8]
    [note] = fig.layout.annotations
    assert note.x == "block1" and "n/a" in note.text


def test_probes_plot_percentages_per_probe_layer():
    fig = figures.probe_accuracy_per_layer(report())
    assert list(trace(fig, "Unlearned").x) == ["block1", "block2"]
    assert list(trace(fig, "Unlearned").y) == [80.0, None]
    assert list(trace(fig, "Retrain oracle").y) == [10.0, 0.0]


def test_no_probe_figure_without_probes():
    without = report()
    without["layers"]["probes"] = None
    assert figures.probe_accuracy_per_layer(without) is None


def test_heatmap_shows_the_stored_matrix():
    fig = figures.cka_heatmap(report(), "unlearned_vs_original")
    heatmap = fig.data[0]
    assert [list(row) for row in heatmap.z] == report()["layers"]["cka_matrix"][
        "unlearned_vs_original"]
    assert list(heatmap.x) == NAMES and "Forget (train)" in fig.layout.title.text
    assert "unlearned" in fig.layout.yaxis.title.text


def test_mia_bars_per_feature_with_the_oracle_as_target():
    fig = figures.mia_efficacy_bars(report())
    unlearned = trace(fig, "Unlearned")
    assert list(unlearned.x) == ["Confidence", "Correctness", "Entropy", "Modified entropy"]
    assert list(unlearned.y) == [90.0, 100.0, None, 70.0]
    assert list(trace(fig, "Retrain oracle (target)").y) == pytest.approx([80, 95, 60, 75])


def test_score_histograms_overlay_forget_test_and_oracle():
    data = arrays()
    fig = figures.score_histograms(data, "entropy")
    assert [t.name for t in fig.data] == ["Forget, unlearned model", "Test, unlearned model",
                                          "Forget, retrain oracle"]
    assert list(fig.data[1].x) == pytest.approx(data["eval/entropy/unlearned/test"])
    assert fig.data[0].xbins.size == fig.data[2].xbins.size  # bars line up
    with pytest.raises(ValueError, match="feature"):
        figures.score_histograms(data, "confidence")


def test_rates_at_any_threshold_match_a_direct_count():
    rng = np.random.default_rng(1)
    unlearned, oracle = rng.normal(0.5, 1, 60), rng.normal(0, 1, 50)
    curve = distinguishability(unlearned, oracle)
    data = {f"eval/dist/confidence/{k}": curve[k] for k in ("thresholds", "fpr", "fnr")}
    for threshold in (-1.0, 0.123, curve["thresholds"][7], 5.0):
        rates = figures.rates_at_threshold(data, "confidence", threshold)
        assert rates["fpr"] == pytest.approx(np.mean(oracle >= threshold))
        assert rates["fnr"] == pytest.approx(np.mean(unlearned < threshold))


def test_distinguishability_curve_marks_the_chosen_threshold():
    data = arrays()
    threshold = figures.most_telling_threshold(data, "confidence")
    fig = figures.distinguishability_curve(data, "confidence", threshold)
    fpr = trace(fig, "FPR: oracle called unlearned")
    assert list(fpr.x) == pytest.approx(data["eval/dist/confidence/thresholds"])
    assert list(fpr.y) == pytest.approx(data["eval/dist/confidence/fpr"])
    marker = trace(fig, "chosen threshold")
    rates = figures.rates_at_threshold(data, "confidence", threshold)
    assert list(marker.y) == [rates["fpr"], rates["fnr"]]
    assert fig.layout.shapes[0].x0 == threshold
    assert "chosen threshold" not in [t.name for t in
                                      figures.distinguishability_curve(data, "confidence").data]


def test_embedding_panels_share_axes_and_mark_forget_examples():
    data = arrays()
    fig = figures.embedding_panels(report(), data, "block2", show_displacement=True)
    assert fig.layout.xaxis2.matches == "x" and fig.layout.yaxis3.matches == "y"
    forget = [t for t in fig.data if t.name == "Forget examples"]
    assert [t.xaxis for t in forget] == ["x", "x2", "x3"]
    assert forget[1].marker.symbol == "x" and forget[1].marker.color == figures.FORGET_COLOR
    unlearned = data["eval/pca/block2/unlearned"]
    assert list(forget[1].x) == pytest.approx(unlearned[:2, 0])
    assert list(forget[1].y) == pytest.approx(unlearned[:2, 1])
    assert forget[1].hovertext[0] == ("#3 · Forget (train)<br>label: zero<br>"
                                      "predicted: zero → one (oracle: two)")
    retain = [t for t in fig.data if t.name == "Retain examples (colour = class)"]
    assert list(retain[0].x) == pytest.approx(data["eval/pca/block2/original"][2:, 0])
    moves = trace(fig, "Forget: original → unlearned")
    original = data["eval/pca/block2/original"]
    assert moves.xaxis == "x2"
    assert list(moves.x[:3]) == pytest.approx([original[0, 0], unlearned[0, 0], None])
    assert fig.layout.xaxis.title.text == "PC1 (50.0% of variance)"
    assert "Forget: original → unlearned" not in [
        t.name for t in figures.embedding_panels(report(), data, "block2").data]


def test_embedded_layers_are_those_with_coordinates():
    data = arrays()
    del data["eval/pca/block1/original"]
    assert figures.embedded_layers(report(), data) == ["block2", "logits"]


@pytest.mark.parametrize("build", [
    lambda: figures.cka_per_layer(report()),
    lambda: figures.forgetting_depth_bars(report(), "forget_train"),
    lambda: figures.probe_accuracy_per_layer(report()),
    lambda: figures.cka_heatmap(report(), "oracle_vs_original"),
    lambda: figures.mia_efficacy_bars(report()),
    lambda: figures.score_histograms(arrays(), "conf"),
    lambda: figures.distinguishability_curve(arrays(), "entropy", 0.0),
    lambda: figures.embedding_panels(report(), arrays(), "logits"),
])
def test_every_figure_has_a_title_and_axis_titles(build):
    layout = build().layout
    assert layout.title.text
    assert layout.xaxis.title.text and layout.yaxis.title.text


def test_selected_probe_rows_maps_points_back_to_examples_once():
    points = [{"customdata": 5, "curve_number": 1}, {"customdata": [2]},
              {"customdata": 5, "curve_number": 4}, {"point_index": 3}]  # a line: no row
    assert figures.selected_probe_rows(points) == [5, 2]
    assert figures.selected_probe_rows([]) == []


def test_selected_forget_examples_keeps_forget_train_rows_as_training_indices():
    report = {"layers": {"parts": ["forget_train", "retain_train", "forget_test"]}}
    arrays = {"eval/probe_index": np.array([11, 12, 13, 14]),
              "eval/probe_part": np.array([0, 1, 2, 0])}
    assert figures.selected_forget_examples(report, arrays, [3, 1, 2, 0]) == [14, 11]
    assert figures.selected_forget_examples(report, arrays, []) == []
