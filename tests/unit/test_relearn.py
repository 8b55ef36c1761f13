"""The relearning test (metrics/relearn.py) on the tiny digits references, and its
derived result kept with a run (pipeline.relearn_of_run)."""

import copy

import pytest
import torch

from tests.conftest import tiny_setup
from unlearn_core.config import MethodSpec, RunSpec
from unlearn_core.errors import UserError
from unlearn_core.metrics.relearn import (relearn_curve, relearn_report, relearn_sentence,
                                          steps_to_reach)
from unlearn_core.pipeline import (readouts_of_run, relearn_of_run, run_unlearning,
                                   stored_readouts, stored_relearn)
from unlearn_core.training import reference_key


def state_copy(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same_state(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_relearning_leaves_the_passed_model_untouched(tiny_refs):
    model = copy.deepcopy(tiny_refs.oracle.model)
    for p in model.parameters():
        p.requires_grad_(False)
    model.eval()
    before = state_copy(model)
    curve = relearn_curve(model, tiny_refs.experiment, k=16, steps=5, lr=0.05, seed=0)
    assert same_state(before, state_copy(model))
    assert not model.training
    assert not any(p.requires_grad for p in model.parameters())
    # ... while its copy did move: the oracle's forget accuracy changed.
    assert curve["scores"][-1] != curve["scores"][0]


def test_relearning_is_deterministic_for_a_seed(tiny_refs):
    exp, model = tiny_refs.experiment, tiny_refs.oracle.model
    first = relearn_curve(model, exp, k=8, steps=4, lr=0.05, seed=1)
    again = relearn_curve(model, exp, k=8, steps=4, lr=0.05, seed=1)
    other = relearn_curve(model, exp, k=8, steps=4, lr=0.05, seed=2)
    assert first == again
    assert first["forget_indices"] != other["forget_indices"]
    assert len(first["scores"]) == 5 and first["n_scored"] == len(exp.split.test_forget)


def test_fine_tuning_on_the_forget_class_brings_it_back_to_the_oracle(tiny_refs):
    """The oracle never predicts the class it never saw; enough steps on labelled
    examples of it teach it (the test measures something), a learning rate near 0 does
    not (the curve only moves through the fine-tuning)."""
    exp, oracle = tiny_refs.experiment, tiny_refs.oracle.model
    learned = relearn_curve(oracle, exp, k=32, steps=20, lr=0.05, seed=0)
    assert learned["scores"][0] < 0.1
    assert max(learned["scores"]) > 0.5
    frozen = relearn_curve(oracle, exp, k=32, steps=3, lr=1e-9, seed=0)
    assert frozen["scores"] == [frozen["scores"][0]] * 4


def test_a_callers_score_is_measured_before_and_after_every_step(tiny_refs):
    calls = []

    def score(model):
        calls.append(model.training)
        return float(len(calls))

    curve = relearn_curve(tiny_refs.oracle.model, tiny_refs.experiment, k=4, steps=3,
                          score=score)
    assert curve["scores"] == [1.0, 2.0, 3.0, 4.0]
    assert calls == [False] * 4  # measured in eval mode
    assert curve["score_name"] == "caller's score" and curve["n_scored"] is None


@pytest.mark.parametrize("kwargs, name", [
    ({"k": 0}, "relearn.k"), ({"k": 2.5}, "relearn.k"), ({"k": True}, "relearn.k"),
    ({"steps": 0}, "relearn.steps"), ({"steps": "3"}, "relearn.steps"),
    ({"lr": 0}, "relearn.lr"), ({"lr": -0.1}, "relearn.lr"),
    ({"lr": float("nan")}, "relearn.lr")])
def test_bad_parameters_are_refused_naming_the_parameter(tiny_refs, kwargs, name):
    with pytest.raises(UserError, match=name.replace(".", r"\.")):
        relearn_curve(tiny_refs.oracle.model, tiny_refs.experiment, **kwargs)


def test_more_forget_examples_than_the_forget_set_holds_is_refused(tiny_refs):
    exp = tiny_refs.experiment
    with pytest.raises(UserError, match=r"relearn\.k: the forget set has"):
        relearn_curve(tiny_refs.oracle.model, exp, k=len(exp.split.forget) + 1)


def test_the_report_counts_steps_to_the_target_and_reads_them():
    assert steps_to_reach([0.0, 0.2, 0.6, 0.9], 0.5) == 2
    assert steps_to_reach([0.7, 0.2], 0.5) == 0
    assert steps_to_reach([0.0, 0.1], 0.5) is None

    def report(unlearned, oracle):
        return {"params": {"steps": 10}, "target": 0.5, "faster_by": (
            None if unlearned is None and oracle is None else
            (11 if oracle is None else oracle) - (11 if unlearned is None else unlearned)),
            "steps_to_target": {"unlearned": unlearned, "oracle": oracle}}

    assert "3 steps faster than to the oracle: hidden, not removed" in \
        relearn_sentence(report(2, 5))
    assert "at least 9 steps faster" in relearn_sentence(report(2, None))
    assert relearn_sentence(report(5, 5)).endswith("no faster than to the oracle.")
    assert "no faster than to the oracle (it comes back more slowly)" in \
        relearn_sentence(report(None, 8))
    assert "neither relearns it" in relearn_sentence(report(None, None))


def test_relearn_report_uses_the_same_examples_for_every_model(tiny_refs):
    exp = tiny_refs.experiment
    models = {"unlearned": tiny_refs.original.model, "oracle": tiny_refs.oracle.model,
              "original": tiny_refs.original.model}
    report = relearn_report(models, exp, k=8, steps=2, lr=0.05, seed=0)
    curves = report["curves"]
    assert curves["unlearned"] == curves["original"]  # same model, same examples: same curve
    assert curves["oracle"]["forget_indices"] == curves["original"]["forget_indices"]
    assert report["target"] == min(curves["original"]["scores"][0], 0.5)
    assert report["steps_to_target"]["original"] == 0
    with pytest.raises(ValueError, match="missing"):
        relearn_report({"unlearned": tiny_refs.original.model}, exp)


@pytest.mark.slow
def test_relearn_and_readouts_of_a_run_are_kept_and_leave_the_stored_models_untouched(
        shared_store, tiny_refs):
    run_id = run_unlearning(RunSpec(tiny_setup(), MethodSpec("random_label")), shared_store)
    weights = shared_store.load_weights(run_id)
    original_key = reference_key(tiny_setup(), "original")
    cached_original = shared_store.cache_get(original_key)[0]
    assert stored_relearn(shared_store, run_id) is None

    report = relearn_of_run(shared_store, run_id)
    assert set(report["curves"]) == {"unlearned", "oracle", "original"}
    assert report["sentence"] == relearn_sentence(report)
    assert same_state(weights, shared_store.load_weights(run_id))
    assert same_state(cached_original, shared_store.cache_get(original_key)[0])
    assert stored_relearn(shared_store, run_id) == report
    assert relearn_of_run(shared_store, run_id) == report  # read back, not recomputed

    readouts = readouts_of_run(shared_store, run_id)
    assert readouts["layers"] == list(tiny_refs.original.model.feature_layers)
    assert set(readouts["roles"]) == {"unlearned", "original", "oracle"}
    assert stored_readouts(shared_store, run_id) == readouts

    # The CLI verb reads the kept result back (the run and store of this test).
    from unlearn_core.cli import main
    assert main(["--store", str(shared_store.root), "--quiet", "relearn", run_id]) == 0
    assert main(["--store", str(shared_store.root), "relearn", "no-such-run"]) == 2
