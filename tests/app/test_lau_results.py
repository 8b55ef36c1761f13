"""The Results page's LAU section through AppTest: shown for a run holding LAU's arrays,
with the stored numbers in its figures, and absent for other methods' runs."""

import numpy as np
import pytest

from test_inside_pages import (chart, charts, open_page, store_run, synthetic_arrays,
                               synthetic_report, texts)
from unlearn_core.runs import RunStore

TARGETS = [0, 0, 30, 6, 0, 0, 12, 0, 3, 9]  # attacks of class-0 samples, by target class
INFO = {"steps": 16, "epochs_run": 2, "attacks": 60, "attacks_per_epoch": [52, 8],
        "stop_reason": "every forget sample misclassified after epoch 2"}


def lau_arrays() -> dict[str, np.ndarray]:
    matrix = np.zeros((10, 10), dtype=np.int64)
    matrix[0] = TARGETS
    return {"lau/still_correct_share": np.array([1.0, 0.25, 0.0]),
            "lau/target_matrix": matrix,
            "lau/perturbation_norm": np.array([4.5, 3.0]),
            "lau/relative_perturbation_norm": np.array([0.5, 0.4])}


@pytest.fixture
def runs(tmp_path, monkeypatch):
    """A NegGrad+ run, then a LAU run (the newest, so the picker starts on it)."""
    monkeypatch.setenv("LENS_STORE", str(tmp_path / "store"))
    store = RunStore(tmp_path / "store")
    rng = np.random.default_rng(0)
    other = store_run(store, synthetic_report(rng), synthetic_arrays(rng))
    report = synthetic_report(rng)
    report["method"] = {"name": "lau", "title": "LAU (Layer Attack Unlearning)",
                        "params": {"epochs": 20}, "info": INFO, "curves": {}}
    lau = store_run(store, report, {**synthetic_arrays(rng), **lau_arrays()}, label="LAU")
    return other, lau


def test_results_page_shows_where_the_forget_samples_went(runs):
    other, lau = runs
    at = open_page("results")
    assert at.selectbox(key="picked_run").value == lau
    assert "LAU: where the forget samples went" in texts(at.subheader)
    summary = texts(at.markdown)
    assert ("2 epochs, 16 gradient steps on the classifier: forget samples correct "
            "100.0% → 0.0% (every forget sample misclassified after epoch 2)") in summary

    heatmap = chart(at, "Where Partial-PGD sent the forget samples")["data"][0]
    assert heatmap["y"] == ["0"]  # only the attacked class is a row
    assert heatmap["text"] == [TARGETS]
    assert heatmap["z"][0] == pytest.approx([100 * t / 60 for t in TARGETS])
    curve = chart(at, "Forget samples still classified correctly")["data"][0]
    assert curve["x"] == [0, 1, 2] and curve["y"] == pytest.approx([100, 25, 0])
    norms = chart(at, "Partial-PGD feature perturbation per epoch")["data"]
    assert norms[0]["y"] == pytest.approx([4.5, 3.0])
    assert norms[1]["y"] == pytest.approx([0.5, 0.4])

    at.selectbox(key="picked_run").set_value(other).run()
    assert not at.exception, at.exception
    assert "LAU: where the forget samples went" not in texts(at.subheader)
    assert not any(title.startswith("Where Partial-PGD") for title in charts(at))
