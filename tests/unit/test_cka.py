"""CKA: invariances, agreement with a direct O(n^2) HSIC formula, estimator properties."""

import numpy as np
import pytest
import torch

from unlearn_core.metrics.cka import (
    ConstantFeaturesError,
    _cka_from_counts,
    bootstrap_cka,
    bootstrap_cka_difference,
    cka_matrix,
    forgetting_depth,
    linear_cka,
    minibatch_cka,
)


def reference_cka(X: np.ndarray, Y: np.ndarray, debiased: bool) -> float:
    """CKA straight from the definitions, with explicit H and Song et al.'s formula."""
    n = X.shape[0]
    K, L = X @ X.T, Y @ Y.T

    def hsic(A: np.ndarray, B: np.ndarray) -> float:
        if not debiased:
            H = np.eye(n) - np.ones((n, n)) / n
            return np.trace(A @ H @ B @ H) / (n - 1) ** 2
        A, B = A.copy(), B.copy()
        np.fill_diagonal(A, 0.0)
        np.fill_diagonal(B, 0.0)
        ones = np.ones(n)
        return (np.trace(A @ B) + (ones @ A @ ones) * (ones @ B @ ones) / ((n - 1) * (n - 2))
                - 2.0 / (n - 2) * ones @ A @ B @ ones) / (n * (n - 3))

    return hsic(K, L) / np.sqrt(hsic(K, K) * hsic(L, L))


def correlated(rng: np.random.Generator, n: int, d1: int, d2: int,
               noise: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    X = rng.standard_normal((n, d1))
    Y = X @ rng.standard_normal((d1, d2)) / np.sqrt(d1) + noise * rng.standard_normal((n, d2))
    return X, Y


def random_orthogonal(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    """rows x cols with orthonormal columns (rows >= cols) or rows (rows < cols)."""
    q, _ = np.linalg.qr(rng.standard_normal((max(rows, cols), min(rows, cols))))
    return q if rows >= cols else q.T


@pytest.mark.parametrize("debiased", [False, True])
def test_invariant_to_orthogonal_maps(debiased):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((100, 20))
    assert linear_cka(X, X @ random_orthogonal(rng, 20, 20), debiased) == pytest.approx(1.0)
    # A semi-orthogonal map into more dimensions preserves the Gram matrix too.
    assert linear_cka(X, X @ random_orthogonal(rng, 20, 35), debiased) == pytest.approx(1.0)
    Y = rng.standard_normal((100, 30))
    Q = random_orthogonal(rng, 30, 30)
    assert linear_cka(X, Y @ Q, debiased) == pytest.approx(linear_cka(X, Y, debiased))


@pytest.mark.parametrize("debiased", [False, True])
def test_invariant_to_isotropic_scaling_and_translation_and_symmetric(debiased):
    rng = np.random.default_rng(1)
    X, Y = correlated(rng, 80, 15, 25)
    value = linear_cka(X, Y, debiased)
    assert 0.05 < value < 0.95
    assert linear_cka(3.7 * X, 0.01 * Y, debiased) == pytest.approx(value)
    assert linear_cka(X + 5.0, Y - 2.0, debiased) == pytest.approx(value)
    assert linear_cka(Y, X, debiased) == pytest.approx(value)


def test_independent_high_dimensional_debiased_near_zero_biased_not():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((500, 2000))
    Y = rng.standard_normal((500, 2000))
    assert abs(linear_cka(X, Y, debiased=True)) < 0.05
    # The plain estimator is dominated by its bias when d >> n.
    assert linear_cka(X, Y) > 0.5


@pytest.mark.parametrize("debiased", [False, True])
@pytest.mark.parametrize("shape", [(10, 3, 5), (12, 40, 30), (30, 4, 90), (6, 2, 2)])
def test_matches_direct_hsic_formula(shape, debiased):
    n, d1, d2 = shape
    X, Y = correlated(np.random.default_rng(n + d1), n, d1, d2)
    expected = reference_cka(X - X.mean(0), Y - Y.mean(0), debiased)
    assert linear_cka(X, Y, debiased) == pytest.approx(expected, rel=1e-9)
    # The debiased estimator is translation invariant even without centring.
    if debiased:
        assert reference_cka(X, Y, True) == pytest.approx(expected, rel=1e-9)


def test_gram_form_and_feature_form_agree():
    rng = np.random.default_rng(3)
    X, Y = correlated(rng, 40, 60, 50)  # both wider than n: the Gram-form path
    gram_path = linear_cka(X, Y)
    # U * s from the SVD of the centred data has the same centred Gram matrix as the
    # data but only n columns, so it goes through the feature-form path.
    U, s, _ = np.linalg.svd(X - X.mean(0), full_matrices=False)
    V, t, _ = np.linalg.svd(Y - Y.mean(0), full_matrices=False)
    assert linear_cka(U * s, V * t) == pytest.approx(gram_path, rel=1e-10)
    # Mixed: one side wide, the other narrow.
    assert linear_cka(X, V * t) == pytest.approx(gram_path, rel=1e-10)


def test_constant_features_raise():
    rng = np.random.default_rng(4)
    X = rng.standard_normal((20, 5))
    with pytest.raises(ConstantFeaturesError, match="Y is constant"):
        linear_cka(X, np.full((20, 3), 0.1))
    with pytest.raises(ConstantFeaturesError, match="X is constant"):
        linear_cka(np.zeros((20, 7)), X, debiased=True)
    with pytest.raises(ConstantFeaturesError, match=r"acts_b\['dead'\]"):
        cka_matrix({"a": X}, {"dead": np.ones((20, 4))})
    assert issubclass(ConstantFeaturesError, ValueError)


def test_input_validation_names_the_problem():
    rng = np.random.default_rng(5)
    with pytest.raises(ValueError, match=r"\(10, 3\).*\(11, 3\)"):
        linear_cka(rng.standard_normal((10, 3)), rng.standard_normal((11, 3)))
    with pytest.raises(ValueError, match="at least 4"):
        linear_cka(rng.standard_normal((3, 3)), rng.standard_normal((3, 3)), debiased=True)
    with pytest.raises(ValueError, match="NaN"):
        linear_cka(np.full((5, 2), np.nan), rng.standard_normal((5, 2)))
    with pytest.raises(ValueError, match="batch_size"):
        minibatch_cka(rng.standard_normal((10, 3)), rng.standard_normal((10, 3)), batch_size=2)
    with pytest.raises(ValueError, match="level"):
        bootstrap_cka(rng.standard_normal((10, 3)), rng.standard_normal((10, 3)), level=1.5)


def test_torch_input_equals_numpy_and_is_flattened_per_example():
    rng = np.random.default_rng(6)
    X = rng.standard_normal((30, 2, 3, 4)).astype(np.float32)
    Y = rng.standard_normal((30, 8)).astype(np.float32)
    expected = linear_cka(X.reshape(30, -1), Y)
    tensor_X = torch.from_numpy(X).requires_grad_(True)
    assert linear_cka(tensor_X, torch.from_numpy(Y)) == pytest.approx(expected, rel=1e-12)
    assert linear_cka(X, Y) == pytest.approx(expected, rel=1e-12)
    half = linear_cka(torch.from_numpy(X).to(torch.bfloat16), Y)
    assert half == pytest.approx(expected, abs=0.02)


def test_minibatch_close_to_full_debiased():
    rng = np.random.default_rng(7)
    X, Y = correlated(rng, 1200, 50, 40, noise=1.0)
    full = linear_cka(X, Y, debiased=True)
    estimate = minibatch_cka(X, Y, batch_size=200, seed=0)
    assert estimate == pytest.approx(full, abs=0.03)
    assert minibatch_cka(X, Y, batch_size=200, seed=0) == estimate  # seeded
    # A single batch is the full estimator.
    assert minibatch_cka(X[:300], Y[:300], batch_size=256) == pytest.approx(
        linear_cka(X[:300], Y[:300], debiased=True))


@pytest.mark.parametrize("debiased", [False, True])
def test_cka_matrix(debiased):
    rng = np.random.default_rng(8)
    X, Y = correlated(rng, 60, 10, 12)
    acts = {"conv": X.reshape(60, 2, 5), "fc": Y, "logits": Y[:, :3] + X[:, :3]}
    same = cka_matrix(acts, acts, debiased)
    assert same.shape == (3, 3)
    np.testing.assert_allclose(np.diag(same), 1.0)
    np.testing.assert_allclose(same, same.T)
    other = {"a": X + 0.5 * rng.standard_normal(X.shape), "b": Y}
    matrix = cka_matrix(acts, other, debiased)
    assert matrix.shape == (3, 2)
    for i, a in enumerate(acts.values()):
        for j, b in enumerate(other.values()):
            assert matrix[i, j] == pytest.approx(linear_cka(a, b, debiased))
    with pytest.raises(ValueError, match="same examples"):
        cka_matrix(acts, {"short": X[:50]})


def test_bootstrap_contains_value_and_narrows_with_more_examples():
    rng = np.random.default_rng(9)
    X, Y = correlated(rng, 1000, 30, 20)
    small = bootstrap_cka(X[:100], Y[:100], n_boot=200, seed=0)
    large = bootstrap_cka(X, Y, n_boot=200, seed=0)
    for value, low, high in (small, large):
        assert low <= value <= high
    assert large[0] == pytest.approx(linear_cka(X, Y))
    assert large[2] - large[1] < small[2] - small[1]
    assert bootstrap_cka(X[:100], Y[:100], n_boot=200, seed=0) == small  # seeded


def test_bootstrap_replicates_match_explicit_resampling():
    """The count-based replicate formulas (private helper) equal CKA computed on an
    explicitly resampled data set."""
    rng = np.random.default_rng(10)
    X, Y = correlated(rng, 40, 6, 9)
    idx = rng.integers(0, 40, 40)
    counts = np.bincount(idx, minlength=40).astype(float)[:, None]
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)
    K, L = Xc @ Xc.T, Yc @ Yc.T
    plain = _cka_from_counts(K, L, (K * L, K * K, L * L), counts, debiased=False)[0]
    assert plain == pytest.approx(linear_cka(X[idx], Y[idx]), rel=1e-9)
    # Debiased: copies of one example are excluded like the diagonal.
    np.fill_diagonal(K, 0.0)
    np.fill_diagonal(L, 0.0)
    debiased = _cka_from_counts(K, L, (K * L, K * K, L * L), counts, debiased=True)[0]
    same_example = idx[:, None] == idx[None, :]
    # Masking pairs breaks the estimator's translation invariance; the implementation
    # defines it on features centred with the full sample's mean.
    Kb = np.where(same_example, 0.0, (Xc @ Xc.T)[np.ix_(idx, idx)])
    Lb = np.where(same_example, 0.0, (Yc @ Yc.T)[np.ix_(idx, idx)])
    n, ones = 40, np.ones(40)

    def song(A, B):
        return (np.trace(A @ B) + (ones @ A @ ones) * (ones @ B @ ones) / ((n - 1) * (n - 2))
                - 2.0 / (n - 2) * ones @ A @ B @ ones)

    assert debiased == pytest.approx(song(Kb, Lb) / np.sqrt(song(Kb, Kb) * song(Lb, Lb)),
                                     rel=1e-9)


def test_bootstrap_debiased_on_independent_data_straddles_zero():
    rng = np.random.default_rng(11)
    X = rng.standard_normal((200, 800))
    Y = rng.standard_normal((200, 800))
    value, low, high = bootstrap_cka(X, Y, n_boot=100, debiased=True)
    assert low < 0.0 < high
    assert -1.0 <= low <= value <= high <= 1.0


def test_forgetting_depth():
    unlearned = np.array([0.5, 0.9, 1.0, 0.2, 0.95, 0.7])
    oracle = np.array([0.8, 0.6, 1.0, 0.9, 0.90, 1.0 - 1e-8])
    depth = forgetting_depth(unlearned, oracle)
    # (1-0.5)/(1-0.8) = 2.5 -> clipped to 1; (1-0.9)/(1-0.6) = 0.25; oracle did not move ->
    # NaN; (1-0.2)/(1-0.9) = 8 -> 1; (1-0.95)/(1-0.9) = 0.5; oracle moved < eps -> NaN.
    np.testing.assert_allclose(depth, [1.0, 0.25, np.nan, 1.0, 0.5, np.nan])
    assert forgetting_depth(1.0, 0.8) == 0.0
    assert forgetting_depth(1.2, 0.8) == 0.0  # clipped below as well
    assert isinstance(forgetting_depth(0.9, 0.6), float)
    assert forgetting_depth(0.9, 0.6) == pytest.approx(0.25)
    assert np.isnan(forgetting_depth(0.9, 1.0))
    with pytest.raises(ValueError, match="eps"):
        forgetting_depth(0.5, 0.5, eps=0.0)


def test_paired_difference_is_zero_for_the_same_model_and_signed_by_which_stays_closer():
    rng = np.random.default_rng(0)
    original = rng.normal(size=(300, 40))
    same = original @ np.linalg.qr(rng.normal(size=(40, 40)))[0]  # CKA 1 to the original
    nudged = original + 0.3 * rng.normal(size=original.shape)
    moved = original + 1.5 * rng.normal(size=original.shape)
    value, low, high = bootstrap_cka_difference(same, same, original, n_boot=50)
    assert value == pytest.approx(0.0, abs=1e-12) and low == pytest.approx(0.0, abs=1e-12)
    value, low, high = bootstrap_cka_difference(nudged, moved, original, n_boot=100)
    assert value == pytest.approx(linear_cka(nudged, original) - linear_cka(moved, original))
    assert 0 < low <= value <= high
    value, low, high = bootstrap_cka_difference(moved, nudged, original, n_boot=100)
    assert low <= value <= high < 0


def test_paired_difference_interval_is_narrower_than_the_two_separate_intervals():
    rng = np.random.default_rng(1)
    original = rng.normal(size=(200, 30))
    a = original + 0.5 * rng.normal(size=original.shape)
    b = a + 0.1 * rng.normal(size=original.shape)  # moves together with a
    _, low, high = bootstrap_cka_difference(a, b, original, n_boot=200)
    _, a_low, a_high = bootstrap_cka(a, original, n_boot=200)
    _, b_low, b_high = bootstrap_cka(b, original, n_boot=200)
    assert high - low < 0.5 * min(a_high - a_low, b_high - b_low)
