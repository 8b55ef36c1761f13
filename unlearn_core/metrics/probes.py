"""Linear probes on frozen activations: does a layer still carry the forgotten classes?

A multinomial logistic regression is fit on one layer's activations of some examples
and scored on held-out ones. If a probe on an intermediate layer of the unlearned model
still recognises the forget class, the forgetting is superficial (it happened in the
later layers only).

Pipeline, all fitted on the training examples only: standardise each feature, then, when
there are more than `max_dim` features, project onto the top `max_dim` principal axes,
then fit ``LogisticRegression`` (lbfgs, multinomial for more than two classes).

Why the reduction: conv activations have thousands of features (6,272 for a 32 x 14 x 14
map); with a couple of thousand examples a probe on all of them is slow on 2 CPU cores
and no more informative. The principal axes come from a seeded randomized SVD (Halko et
al. 2011: a random range finder with one power iteration, then an exact eigen-
decomposition of the small projected problem), in float32. Computing the small
problem's spectrum directly, instead of through scikit-learn's PCA, avoids a slow SVD
of a (max_dim x d) matrix and keeps a 2,000 x 6,272 probe well under a second.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.utils.extmath import randomized_range_finder
from threadpoolctl import ThreadpoolController

from .cka import as_example_matrix, check_int, to_numpy

__all__ = ["ProbeResult", "fit_linear_probe", "probe_margins", "probe_predictions"]

# Extra random directions in the range finder beyond max_dim, and power iterations: the
# usual randomized-SVD settings for a good approximation of the leading subspace.
_OVERSAMPLES = 10
_POWER_ITERATIONS = 1

# Principal axes whose variance is below this fraction of the largest are dropped: they
# are numerical noise (the data have lower rank than max_dim).
_RELATIVE_VARIANCE_FLOOR = 1e-6

# A probe's matrices are small (hundreds of rows, at most 256 columns after the
# reduction): a second BLAS thread costs more in hand-offs than it saves. Measured on 2
# cores, a 554 x 256 ten-class fit took 0.137 s with two OpenBLAS threads, 0.007 s with
# one; the reduction of 554 x 3,136 activations was faster with one as well.
_BLAS = ThreadpoolController()

# Enough for lbfgs to converge on standardised, whitened inputs (typically 10-100
# iterations); it stops earlier when converged.
_MAX_ITER = 1000


@dataclass(frozen=True)
class ProbeResult:
    """Test accuracy of a linear probe.

    accuracy: fraction of test examples classified correctly.
    per_class: test accuracy for each class present in the test labels.
    n_train, n_test: examples used. dim_used: input dimension of the logistic regression
    (the number of features, or of principal axes kept when reduced).
    """

    accuracy: float
    per_class: dict[int, float]
    n_train: int
    n_test: int
    dim_used: int


def _labels(value: Any, name: str, n_examples: int, examples_name: str) -> np.ndarray:
    labels = to_numpy(value, name)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{name}: expected a 1-d array of integer class labels, got shape "
                         f"{labels.shape} and dtype {labels.dtype}")
    if labels.shape[0] != n_examples:
        raise ValueError(f"{name} has {labels.shape[0]} labels but {examples_name} has "
                         f"{n_examples} examples")
    return labels.astype(np.int64)


def _principal_axes(standardised: np.ndarray, max_components: int, seed: int) -> np.ndarray:
    """Columns: the leading principal axes (d, k) of already-centred data, k <= max_components."""
    n, d = standardised.shape
    sketch_size = min(max_components + _OVERSAMPLES, n, d)
    basis = randomized_range_finder(standardised, size=sketch_size,
                                    n_iter=_POWER_ITERATIONS, random_state=seed)
    projected = basis.T @ standardised  # (sketch_size, d): the data in the sketch's basis
    # Eigenvectors of the small (sketch_size x sketch_size) matrix give the right singular
    # vectors of `projected`, i.e. the principal axes, without an SVD of a wide matrix.
    variances, eigenvectors = np.linalg.eigh((projected @ projected.T).astype(np.float64))
    order = np.argsort(variances)[::-1][:max_components]
    order = order[variances[order] > _RELATIVE_VARIANCE_FLOOR * variances[order[0]]]
    axes = projected.T @ eigenvectors[:, order].astype(projected.dtype)
    axes /= np.linalg.norm(axes, axis=0)
    return axes


def fit_linear_probe(train_X: Any, train_y: Any, test_X: Any, test_y: Any, *,
                     seed: int = 0, max_dim: int = 256) -> ProbeResult:
    """Fit a logistic-regression probe on `train_X` and report its accuracy on `test_X`.

    Activations with more than two dimensions are flattened per example. Features are
    standardised with the training statistics (constant ones are zeroed); when
    there are more than `max_dim` features they are projected on at most `max_dim`
    principal axes fitted on the training examples (seeded randomized PCA, see the module
    docstring), and the projected features are rescaled to unit variance so lbfgs
    converges in a few dozen iterations. Then a multinomial LogisticRegression (C=1) is fit.

    per_class covers the classes present in test_y; a class absent from train_y cannot be
    predicted and scores 0. Raises ValueError if the training labels hold a single class,
    if every training feature is constant, if shapes disagree, or if a set is empty.
    """
    probe, test, test_labels, (n_train, dim_used) = _fitted_probe(
        train_X, train_y, test_X, test_y, seed, max_dim)
    correct = probe.predict(test) == test_labels
    per_class = {int(label): float(correct[test_labels == label].mean())
                 for label in np.unique(test_labels)}
    return ProbeResult(accuracy=float(correct.mean()), per_class=per_class,
                       n_train=n_train, n_test=int(test.shape[0]), dim_used=dim_used)


def probe_margins(train_X: Any, train_y: Any, test_X: Any, test_y: Any, *,
                  seed: int = 0, max_dim: int = 256) -> np.ndarray:
    """Per test example, how surely the probe `fit_linear_probe` fits recovers its label:
    the probe's logit of the true class minus the largest other class's logit (> 0: the
    probe classifies it correctly). NaN where the true class is absent from `train_y`,
    which the probe cannot predict. Same inputs, checks and preprocessing."""
    probe, test, test_labels, _ = _fitted_probe(train_X, train_y, test_X, test_y, seed, max_dim)
    logits = probe.decision_function(test)
    if logits.ndim == 1:  # two classes: one logit, that of classes_[1] against classes_[0]
        logits = np.column_stack([np.zeros_like(logits), logits])
    margins = np.full(len(test_labels), np.nan)
    column = {int(label): i for i, label in enumerate(probe.classes_)}
    for row, label in enumerate(test_labels):
        if int(label) in column:
            others = np.delete(logits[row], column[int(label)])
            margins[row] = logits[row, column[int(label)]] - others.max()
    return margins


def probe_predictions(train_X: Any, train_y: Any, test_X: Any, *, seed: int = 0,
                      max_dim: int = 256) -> np.ndarray:
    """The class the probe `fit_linear_probe` fits predicts for each row of `test_X`.
    Same inputs (test labels are not needed), checks and preprocessing."""
    test = as_example_matrix(test_X, "test_X", dtype=np.float32)
    placeholder = np.zeros(test.shape[0], dtype=np.int64)
    probe, test, _, _ = _fitted_probe(train_X, train_y, test, placeholder, seed, max_dim)
    return probe.predict(test)


def _fitted_probe(train_X: Any, train_y: Any, test_X: Any, test_y: Any, seed: int,
                  max_dim: int) -> tuple[LogisticRegression, np.ndarray, np.ndarray,
                                         tuple[int, int]]:
    """The fitted probe, the test examples in its input space, their labels and the
    (examples, dimensions) it was fit on: the checks and steps `fit_linear_probe` documents."""
    seed = check_int("seed", seed, 0)
    max_dim = check_int("max_dim", max_dim, 1)
    train = as_example_matrix(train_X, "train_X", dtype=np.float32)
    test = as_example_matrix(test_X, "test_X", dtype=np.float32)
    if train.shape[1] != test.shape[1]:
        raise ValueError(f"train_X and test_X must have the same features per example, got "
                         f"{train.shape[1]} and {test.shape[1]}")
    train_labels = _labels(train_y, "train_y", train.shape[0], "train_X")
    test_labels = _labels(test_y, "test_y", test.shape[0], "test_X")
    classes = np.unique(train_labels)
    if classes.size < 2:
        raise ValueError(f"train_y: a probe needs at least two classes to tell apart, got "
                         f"only class {classes[0]}")
    with _BLAS.limit(limits=1, user_api="blas"):
        probe, train, test = _standardised_fit(train, train_labels, test, seed, max_dim)
    return probe, test, test_labels, (int(train.shape[0]), int(train.shape[1]))


def _standardised_fit(train: np.ndarray, train_labels: np.ndarray, test: np.ndarray, seed: int,
                      max_dim: int) -> tuple[LogisticRegression, np.ndarray, np.ndarray]:
    """The fitted probe and the training and test examples in its input space."""
    # Constant training features carry nothing and are zeroed (an infinite scale), in the
    # test set as well; detected exactly, since centring can leave rounding residue.
    constant = train.max(axis=0) == train.min(axis=0)
    if np.all(constant):
        raise ValueError("train_X: every feature is constant across the training examples")
    mean = train.mean(axis=0)
    train = train - mean
    test = test - mean
    scale = np.sqrt(np.einsum("ij,ij->j", train, train) / train.shape[0])
    scale[constant] = np.inf
    train /= scale
    test /= scale
    if train.shape[1] > max_dim:
        axes = _principal_axes(train, max_dim, seed)
        train = train @ axes
        test = test @ axes
        component_scale = train.std(axis=0)
        train /= component_scale
        test /= component_scale
    probe = LogisticRegression(max_iter=_MAX_ITER).fit(train, train_labels)
    return probe, train, test
