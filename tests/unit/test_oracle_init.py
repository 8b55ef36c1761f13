"""The oracle's initialisation as a setup choice: "same" as the original (today's
reference, hashes unchanged) or "independent", with a twin original measuring seed noise
that the verdict respects and the Layers chart draws."""


import pytest
import torch

from tests.conftest import tiny_setup
from unlearn_core.config import MethodSpec, RunSpec, SetupSpec
from unlearn_core.errors import UserError
from unlearn_core.figures import cka_per_layer
from unlearn_core.metrics.layers import verdict


def test_same_is_the_default_and_keeps_the_hashes():
    assert "oracle_init" not in SetupSpec().to_dict()
    independent = tiny_setup(oracle_init="independent")
    assert independent.oracle_key != tiny_setup().oracle_key
    assert independent.original_key == tiny_setup().original_key
    assert SetupSpec.from_json(independent.to_json()) == independent
    with pytest.raises(UserError, match="oracle_init: expected one of"):
        tiny_setup(oracle_init="random")


@pytest.mark.slow
def test_independent_oracle_and_twin_start_from_another_seed(shared_store, tiny_refs):
    from unlearn_core.pipeline import run_unlearning, train_references
    refs = train_references(tiny_setup(oracle_init="independent"), shared_store)
    exp = refs.experiment
    same_init = exp.new_model()
    other_init = exp.new_model(exp.spec.oracle_seed)
    assert not torch.equal(next(same_init.parameters()), next(other_init.parameters()))
    assert refs.twin is not None and refs.twin.meta["train_size"] == len(exp.dataset.train)
    assert not torch.equal(next(refs.oracle.model.parameters()),
                           next(tiny_refs.oracle.model.parameters()))
    run_id = run_unlearning(RunSpec(exp.spec, MethodSpec("finetune")), shared_store)
    report = shared_store.get(run_id).report
    assert report["oracle"]["init"] == "independent"
    noise = report["layers"]["seed_noise"]["forget_train"]
    assert len(noise) == len(report["layers"]["names"]) and all(0 < v <= 1 for v in noise)
    figure = cka_per_layer(report, ["forget_train"], "original")
    assert any(trace.name.startswith("Seed noise") for trace in figure.data)


def _layers(excess_low: float, twin: float | None) -> dict:
    names = ["block1", "block2", "block3", "embedding", "logits"]
    report = {"names": names, "depth": {"forget_train": [None] * 5},
              "cka": {"unlearned_vs_original": {"forget_train": [0.99] * 5},
                      "oracle_vs_original": {"forget_train": [0.95] * 5}},
              "cka_excess": {"forget_train": {"value": [0.04] * 5, "low": [excess_low] * 5,
                                              "high": [0.05] * 5}},
              "probes": None}
    if twin is not None:
        report["seed_noise"] = {"forget_train": [twin] * 5}
    return report


ACCURACY = {role: {"test_forget": 0.0, "forget_train": 0.0} for role in ("unlearned", "oracle")}


def test_a_difference_inside_the_seed_noise_is_not_called_superficial():
    assert verdict(ACCURACY, _layers(0.03, None))["kind"] == "superficial"
    inside = verdict(ACCURACY, _layers(0.03, twin=0.96))  # noise 0.04 > lower bound 0.03
    assert inside["kind"] == "undetermined" and "seed noise" in inside["text"]
    outside = verdict(ACCURACY, _layers(0.03, twin=0.99))  # noise 0.01 < 0.03
    assert outside["kind"] == "superficial"


def test_independent_needs_an_original_trained_here():
    from unlearn_core.config import ModelSpec
    from unlearn_core.training import prepare
    with pytest.raises(UserError, match="oracle_init: 'independent' needs an original"):
        prepare(tiny_setup(oracle_init="independent", model=ModelSpec("dkvb")))


def test_an_oracle_no_further_than_the_twin_leaves_the_verdict_undetermined():
    layers = _layers(0.03, twin=0.95)  # the oracle (0.95) sits where the twin does
    layers["depth"]["forget_train"] = [0.2] * 5  # which alone would read "superficial"
    result = verdict(ACCURACY, layers)
    assert result["kind"] == "undetermined" and "inside seed noise" in result["text"]
