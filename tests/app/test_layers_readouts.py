"""The Layers page's readouts and relearning test through AppTest: before they are
computed the page offers to compute them (and keeps the stored linear probe); once kept
with the run it draws them from the stored numbers."""

import json

import numpy as np
import pytest

from tests.app.test_inside_pages import LAYERS, chart, open_page, stored, texts, trace  # noqa: F401
from unlearn_core.metrics.readouts import HEADLINE, READOUT_LABELS, READOUTS
from unlearn_core.metrics.relearn import relearn_sentence
from unlearn_core.pipeline import READOUTS_DERIVED, RELEARN_DERIVED

FEATURE_LAYERS = LAYERS[:-1]


def put_json(store, run_id, name, value):
    store.put_derived(run_id, name, {"report_json": np.array(json.dumps(value))})


def synthetic_readouts(rng) -> dict:
    def values():
        return [round(float(v), 3) for v in rng.uniform(0.2, 1.0, len(FEATURE_LAYERS))]
    return {"layers": FEATURE_LAYERS,
            "roles": {role: {"layers": FEATURE_LAYERS,
                             "readouts": {name: {"forget": values(), "retain": values()}
                                          for name in READOUTS}}
                      for role in ("unlearned", "original", "oracle")}}


def synthetic_relearn() -> dict:
    curves = {"unlearned": [0.0, 0.3, 0.6, 0.8], "oracle": [0.0, 0.0, 0.1, 0.4],
              "original": [0.97] * 4}
    report = {"curves": {role: {"scores": scores, "score_name": "forget accuracy (held-out)",
                                "k": 32, "steps": 3, "lr": 0.01, "seed": 0, "n_scored": 36}
                         for role, scores in curves.items()},
              "target": 0.5, "target_from": "50% (the original starts above it)",
              "steps_to_target": {"unlearned": 2, "oracle": None, "original": 0},
              "faster_by": 2, "params": {"k": 32, "steps": 3, "lr": 0.01, "seed": 0}}
    report["sentence"] = relearn_sentence(report)
    return report


def test_before_computing_the_page_offers_readouts_and_relearning(stored):  # noqa: F811 (fixture)
    at = open_page("layers")
    chart(at, "Linear probe accuracy")  # the stored probe meanwhile
    assert at.button(key="layers-readouts-compute").label == "Compute the layer readouts"
    assert at.button(key="layers-relearn-compute").label == "Run the relearning test"
    assert "Relearning test" in texts(at.subheader)
    assert "not computed for this run yet" in texts(at.info).lower()


def test_stored_readouts_and_relearning_are_drawn_from_the_stored_numbers(stored):  # noqa: F811
    store, run_id = stored
    readouts = synthetic_readouts(np.random.default_rng(1))
    relearn = synthetic_relearn()
    put_json(store, run_id, READOUTS_DERIVED, readouts)
    put_json(store, run_id, RELEARN_DERIVED, relearn)
    at = open_page("layers")
    keys = [b.key for b in at.button]
    assert "layers-readouts-compute" not in keys and "layers-relearn-compute" not in keys

    headline = HEADLINE or "linear_probe"
    assert at.selectbox(key="layers-readout").value == headline
    figure = chart(at, READOUT_LABELS[headline])
    for role, name in (("unlearned", "Unlearned"), ("oracle", "Retrain oracle")):
        values = readouts["roles"][role]["readouts"][headline]
        assert trace(figure, f"{name}: forget")["y"] == pytest.approx(
            [100 * v for v in values["forget"]])
        assert trace(figure, f"{name}: retain (baseline)")["y"] == pytest.approx(
            [100 * v for v in values["retain"]])
    note = "Headline: " if HEADLINE is not None else "no readout separated the original"
    assert note in texts(at.caption)

    other = next(name for name in READOUTS if name != headline)
    at.selectbox(key="layers-readout").set_value(other).run()
    assert not at.exception
    figure = chart(at, READOUT_LABELS[other])
    assert trace(figure, "Original: forget")["y"] == pytest.approx(
        [100 * v for v in readouts["roles"]["original"]["readouts"][other]["forget"]])

    curves = chart(at, "Relearning: 3 fine-tuning steps on 32 forget examples")
    assert trace(curves, "Unlearned")["y"] == pytest.approx([0, 30, 60, 80])
    assert trace(curves, "Retrain oracle")["y"] == pytest.approx([0, 0, 10, 40])
    assert relearn["sentence"] in texts(at.warning)
    assert "2 steps faster than to the oracle: hidden, not removed" in relearn["sentence"]
