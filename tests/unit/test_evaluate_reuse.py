"""evaluate() computes each number once and reuses the references' parts across runs of
a setup (issue 22); these tests hold the faster path to the computations it replaced:

* bands and the paired CKA difference built from one set of bootstrap draws per pair
  equal `bootstrap_cka` and `bootstrap_cka_difference` computed separately;
* one forward pass per model gives the predictions and the probe-subset activations
  that the two separate passes gave;
* a second evaluation of a setup, which takes the original's and oracle's probes, MIA
  and CKA to each other from the in-process cache, gives the same report and arrays
  as the first, computed from scratch.
"""

import copy

import numpy as np
import pytest
import torch

from unlearn_core.metrics.accuracy import predictions
from unlearn_core.metrics.activations import (activations, clear_cache,
                                              compute_predictions_and_activations, probe_subset)
from unlearn_core.metrics.cka import bootstrap_cka, bootstrap_cka_difference
from unlearn_core.metrics.layers import DEBIASED_BELOW, N_BOOT
from unlearn_core.metrics.report import evaluate
from unlearn_core.training import reference_key

# Several seconds or more on 2 cores: left out of `make test-fast`.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def perturbed_models(tiny_refs):
    """The tiny references and an 'unlearned' model: the original with seeded noise."""
    unlearned = copy.deepcopy(tiny_refs.original.model)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in unlearned.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
    return {"unlearned": unlearned.eval(), **tiny_refs.models()}


def _evaluate(tiny_refs, models):
    setup = tiny_refs.experiment.spec
    keys = {role: reference_key(setup, role) for role in ("original", "oracle")}
    return evaluate(models, tiny_refs.experiment, seconds=1.0, oracle_seconds=2.0,
                    reference_keys=keys)


@pytest.fixture(scope="module")
def first_and_second(tiny_refs, perturbed_models):
    clear_cache()
    first = _evaluate(tiny_refs, perturbed_models)
    second = _evaluate(tiny_refs, perturbed_models)
    return first, second


def _without_timings(report: dict) -> dict:
    report = copy.deepcopy(report)
    report["cost"].pop("evaluate_parts")
    return report


def test_a_second_run_of_a_setup_reports_what_the_first_computed(first_and_second):
    (first, first_arrays), (second, second_arrays) = first_and_second
    assert _without_timings(second) == _without_timings(first)
    assert set(second_arrays) == set(first_arrays)
    for name, values in first_arrays.items():
        np.testing.assert_array_equal(second_arrays[name], values, err_msg=name)


def test_another_model_under_the_same_key_is_not_given_the_cached_parts(tiny_refs,
                                                                       perturbed_models,
                                                                       first_and_second):
    """Two stores can hold different weights under one checkpoint key (found when the
    suite's shared original, trained with another torch thread count, lent its
    predictions to a fresh store's original): the caches key by the weights too."""
    other_original = copy.deepcopy(tiny_refs.original.model)
    with torch.no_grad():
        other_original.classifier.weight.mul_(-1.0)  # other predictions, same key
    models = {**perturbed_models, "original": other_original.eval()}
    after_the_first, _ = _evaluate(tiny_refs, models)
    clear_cache()
    from_scratch, _ = _evaluate(tiny_refs, models)
    assert _without_timings(after_the_first) == _without_timings(from_scratch)
    (first, _), _ = first_and_second
    assert after_the_first["accuracy"]["original"] != first["accuracy"]["original"]


def test_bands_and_excess_equal_the_separate_bootstraps(tiny_refs, perturbed_models,
                                                        first_and_second):
    (report, _), _ = first_and_second
    exp = tiny_refs.experiment
    subset = probe_subset(exp, seed=exp.spec.seed)
    acts = {role: activations(model, exp, subset) for role, model in perturbed_models.items()}
    layers = report["layers"]
    for part in ("forget_train", "forget_test"):
        rows = subset.mask(part)
        debiased = int(rows.sum()) < DEBIASED_BELOW
        for i, layer in enumerate(layers["names"]):
            u, r, o = (acts[role][layer][rows] for role in ("unlearned", "oracle", "original"))
            for pair, (a, b) in (("unlearned_vs_original", (u, o)),
                                 ("oracle_vs_original", (r, o))):
                value, low, high = bootstrap_cka(a, b, n_boot=N_BOOT, seed=exp.spec.seed,
                                                 debiased=debiased)
                assert layers["cka"][pair][part][i] == pytest.approx(value, abs=1e-6)
                assert layers["cka_band"][pair][part]["low"][i] == pytest.approx(low, abs=1e-6)
                assert layers["cka_band"][pair][part]["high"][i] == pytest.approx(high, abs=1e-6)
            expected = bootstrap_cka_difference(u, r, o, n_boot=N_BOOT, seed=exp.spec.seed,
                                                debiased=debiased)
            excess = layers["cka_excess"][part]
            assert [excess[k][i] for k in ("value", "low", "high")] == pytest.approx(
                list(expected), abs=1e-6), (part, layer)


def test_one_forward_pass_gives_what_the_two_separate_passes_gave(tiny_refs, perturbed_models):
    exp = tiny_refs.experiment
    subset = probe_subset(exp, seed=exp.spec.seed)
    model = perturbed_models["unlearned"]
    preds, acts = compute_predictions_and_activations(model, exp, subset)
    separate = predictions(model, exp)
    for field in ("train_probs", "test_probs"):
        np.testing.assert_allclose(getattr(preds, field), getattr(separate, field), atol=1e-6)
    for field in ("train_labels", "test_labels"):
        np.testing.assert_array_equal(getattr(preds, field), getattr(separate, field))
    expected = activations(model, exp, subset)
    assert list(acts) == list(expected)
    for layer, values in expected.items():
        np.testing.assert_allclose(acts[layer], values, atol=1e-5, err_msg=layer)


def test_a_later_process_takes_the_references_parts_from_the_store(tiny_refs,
                                                                    perturbed_models,
                                                                    first_and_second, tmp_path,
                                                                    monkeypatch):
    """With the run store as the parts cache, the references' predictions, probes, MIA
    and CKA to each other are kept beside their checkpoints: after the in-process cache
    is gone (a new process), an evaluation computes none of them again and reports what
    the first computed."""
    from unlearn_core.metrics import layers, privacy
    from unlearn_core.runs import RunStore
    store = RunStore(tmp_path / "store")
    setup = tiny_refs.experiment.spec
    keys = {role: reference_key(setup, role) for role in ("original", "oracle")}

    def run():
        return evaluate(perturbed_models, tiny_refs.experiment, seconds=1.0,
                        oracle_seconds=2.0, reference_keys=keys, parts_cache=store)

    clear_cache()
    written, _ = run()
    kept = list((store.cache_dir / "evaluation-parts").glob("*.json"))
    assert len(kept) >= 2 + 4  # two references' predictions; probes, MIA, CKA pair, matrix
    clear_cache()
    calls = {"probes": 0, "mia": 0}
    real_probe, real_role_privacy = layers.probe_margins, privacy._role_privacy

    def counted(name, function):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return function(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(layers, "probe_margins", counted("probes", real_probe))
    monkeypatch.setattr(privacy, "_role_privacy", counted("mia", real_role_privacy))
    read_back, arrays = run()
    names = written["layers"]["names"]
    assert calls == {"probes": len(names) - 1, "mia": 1}  # the unlearned model's only
    assert _without_timings(read_back) == _without_timings(written)
    (first, first_arrays), _ = first_and_second
    assert _without_timings(read_back) == _without_timings(first)
    for name, values in first_arrays.items():
        np.testing.assert_array_equal(arrays[name], values, err_msg=name)

    # A damaged file is computed again, not read; other code or another thread count
    # keeps its parts under other names.
    for path in kept:
        path.write_text("{not json")
    clear_cache()
    calls.update(probes=0, mia=0)
    again, _ = run()
    assert calls["mia"] == 3 and _without_timings(again) == _without_timings(written)
    from unlearn_core.metrics.activations import parts_key
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(threads + 1)
        other = parts_key(("evaluate", "probes-0"))
    finally:
        torch.set_num_threads(threads)
    assert other != parts_key(("evaluate", "probes-0"))


def test_tagged_json_gives_back_what_it_was_given():
    from unlearn_core.io import dumps_tagged_json, loads_tagged_json
    value = {"draws": [np.arange(6, dtype=np.float32).reshape(2, 3), None],
             "pair": (0.5, float("nan"), -np.inf), "n": np.int64(3), "nested": [(1, "a")]}
    back = loads_tagged_json(dumps_tagged_json(value))
    assert back["draws"][0].dtype == np.float32
    np.testing.assert_array_equal(back["draws"][0], value["draws"][0])
    assert back["draws"][1] is None and back["n"] == 3 and back["nested"] == [(1, "a")]
    assert back["pair"][0] == 0.5 and np.isnan(back["pair"][1]) and back["pair"][2] == -np.inf
    with pytest.raises(ValueError):
        loads_tagged_json('{"__ndarray__": "%%%", "dtype": "<f4", "shape": [1]}')
