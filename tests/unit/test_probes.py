"""Linear probes: separable classes, random labels, the PCA path, errors."""

import numpy as np
import pytest
import torch

from unlearn_core.metrics.probes import ProbeResult, fit_linear_probe


def blobs(rng: np.random.Generator, n: int, d: int, n_classes: int, separation: float,
          centres: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if centres is None:
        centres = separation * rng.standard_normal((n_classes, d))
    labels = rng.integers(0, n_classes, n)
    return centres[labels] + rng.standard_normal((n, d)), labels, centres


def test_separable_classes_are_recovered():
    rng = np.random.default_rng(0)
    train_X, train_y, centres = blobs(rng, 300, 20, 3, separation=3.0)
    test_X, test_y, _ = blobs(rng, 150, 20, 3, separation=3.0, centres=centres)
    result = fit_linear_probe(train_X, train_y, test_X, test_y)
    assert isinstance(result, ProbeResult)
    assert result.accuracy > 0.98
    assert set(result.per_class) == {0, 1, 2}
    assert all(value > 0.95 for value in result.per_class.values())
    assert (result.n_train, result.n_test, result.dim_used) == (300, 150, 20)


def test_random_labels_give_chance():
    rng = np.random.default_rng(1)
    train_X = rng.standard_normal((600, 30))
    test_X = rng.standard_normal((2000, 30))
    result = fit_linear_probe(train_X, rng.integers(0, 4, 600), test_X, rng.integers(0, 4, 2000))
    assert result.accuracy == pytest.approx(0.25, abs=0.05)


def test_pca_path_for_wide_activations():
    rng = np.random.default_rng(2)
    # Conv-shaped activations (n, 10, 10, 10) = 1,000 features, more than max_dim.
    train_X, train_y, centres = blobs(rng, 400, 1000, 5, separation=0.5)
    test_X, test_y, _ = blobs(rng, 200, 1000, 5, separation=0.5, centres=centres)
    result = fit_linear_probe(train_X.reshape(400, 10, 10, 10), train_y,
                              torch.from_numpy(test_X.reshape(200, 10, 10, 10)), test_y,
                              max_dim=64)
    assert result.dim_used == 64
    assert result.accuracy > 0.95
    again = fit_linear_probe(train_X, train_y, test_X, test_y, max_dim=64)
    assert again == result  # seeded
    # Fewer examples than max_dim: the data have rank < max_dim, only real axes are kept.
    few = fit_linear_probe(train_X[:40], train_y[:40], test_X, test_y, max_dim=64)
    assert few.dim_used <= 40


def test_errors():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((20, 5))
    with pytest.raises(ValueError, match="train_y.*two classes.*class 2"):
        fit_linear_probe(X, np.full(20, 2), X, np.zeros(20, dtype=int))
    with pytest.raises(ValueError, match="train_X and test_X"):
        fit_linear_probe(X, np.arange(20) % 2, X[:, :4], np.zeros(20, dtype=int))
    with pytest.raises(ValueError, match="test_y has 19 labels"):
        fit_linear_probe(X, np.arange(20) % 2, X, np.zeros(19, dtype=int))
    with pytest.raises(ValueError, match="max_dim"):
        fit_linear_probe(X, np.arange(20) % 2, X, np.arange(20) % 2, max_dim=0)
    with pytest.raises(ValueError, match="test_X.*at least 1"):
        fit_linear_probe(X, np.arange(20) % 2, X[:0], np.zeros(0, dtype=int))


def test_constant_features_are_ignored():
    rng = np.random.default_rng(4)
    train_X, train_y, centres = blobs(rng, 200, 6, 2, separation=3.0)
    test_X, test_y, _ = blobs(rng, 100, 6, 2, separation=3.0, centres=centres)
    # A constant column in train (0.1) that differs in test must not leak into the probe.
    train_with_constant = np.hstack([train_X, np.full((200, 1), 0.1)])
    test_with_constant = np.hstack([test_X, rng.standard_normal((100, 1)) * 1e6])
    with_constant = fit_linear_probe(train_with_constant, train_y, test_with_constant, test_y)
    assert with_constant.accuracy == fit_linear_probe(train_X, train_y, test_X, test_y).accuracy
    with pytest.raises(ValueError, match="every feature is constant"):
        fit_linear_probe(np.ones((10, 3)), np.arange(10) % 2, np.ones((4, 3)), np.zeros(4, int))
