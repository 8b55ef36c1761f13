"""Batch sizes that fit the device, tested on the CPU with a model that raises torch's
out-of-memory error above a batch size (CUDA's error type; no GPU needed): evaluation
passes halve their batch and give the same numbers; training refuses, naming the batch
size, since its numbers depend on it."""

import copy

import numpy as np
import pytest
import torch

from conftest import tiny_setup
from unlearn_core import memory
from unlearn_core.errors import UserError
from unlearn_core.metrics.activations import (compute_activations,
                                              compute_predictions_and_activations, probe_subset)
from unlearn_core.training import predict, train_classifier


def fits_at_most(model, rows: int):
    """`model` (a copy) whose forward raises torch.OutOfMemoryError above `rows` examples;
    returns it and the list of batch sizes it was called with."""
    model = copy.deepcopy(model)
    seen = []
    forward, forward_features = model.forward, model.forward_features

    def check(x):
        seen.append(x.shape[0])
        if x.shape[0] > rows:
            raise torch.OutOfMemoryError(f"CUDA out of memory (a test: {x.shape[0]} > {rows})")

    def limited_forward(x, *args, **kwargs):
        check(x)
        return forward(x, *args, **kwargs)

    def limited_features(x, *args, **kwargs):
        check(x)
        return forward_features(x, *args, **kwargs)

    model.forward, model.forward_features = limited_forward, limited_features
    return model, seen


@pytest.fixture(autouse=True)
def forget_fitted_sizes():
    memory._fitting.clear()
    yield
    memory._fitting.clear()


def test_predictions_halve_their_batch_until_it_fits_and_give_the_same_numbers(tiny_refs):
    exp = tiny_refs.experiment
    original = tiny_refs.original.model
    expected = predict(original, exp.loader("test", batch_size=512))
    limited, seen = fits_at_most(original, 100)
    probs, labels = predict(limited, exp.loader("test", batch_size=512))
    np.testing.assert_allclose(probs, expected[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(labels, expected[1])
    n = len(labels)  # fewer than 512: one batch of all of them is tried first
    assert 128 < n < 512 and seen[:3] == [n, 256, 128] and max(seen[3:]) == 64
    # The size that fitted is remembered: the next pass starts there.
    seen.clear()
    predict(limited, exp.loader("test", batch_size=512))
    assert max(seen) == 64


def test_activations_and_the_shared_pass_halve_too(tiny_refs):
    exp = tiny_refs.experiment
    subset = probe_subset(exp, per_part=40, seed=0)
    original = tiny_refs.original.model
    expected_acts = compute_activations(original, exp, subset)
    expected_preds, _ = compute_predictions_and_activations(original, exp, subset)
    limited, seen = fits_at_most(original, 50)
    acts = compute_activations(limited, exp, subset, batch_size=256)
    memory._fitting.clear()
    preds, shared_acts = compute_predictions_and_activations(limited, exp, subset, batch_size=512)
    assert max(seen[-5:]) <= 32 < 50
    for name, values in expected_acts.items():
        np.testing.assert_allclose(acts[name], values, rtol=1e-4, atol=1e-5, err_msg=name)
        np.testing.assert_allclose(shared_acts[name], values, rtol=1e-4, atol=1e-5, err_msg=name)
    np.testing.assert_allclose(preds.train_probs, expected_preds.train_probs, rtol=1e-5,
                               atol=1e-6)


def test_one_example_that_does_not_fit_is_said(tiny_refs):
    limited, _ = fits_at_most(tiny_refs.original.model, 0)
    with pytest.raises(UserError, match="predictions: one example does not fit in cpu's memory"):
        predict(limited, tiny_refs.experiment.loader("test", batch_size=8))


def test_training_that_does_not_fit_is_refused_naming_the_batch_size(tiny_refs):
    from unlearn_core.progress import Progress
    limited, _ = fits_at_most(tiny_refs.original.model, 16)
    recipe = tiny_setup().train
    with pytest.raises(UserError, match=r"batch_size: training original ran out of cpu memory "
                                        r"at a batch of 32 examples; choose a smaller"):
        train_classifier(limited, tiny_refs.experiment, "train", recipe, Progress(),
                         label="training original")
