"""Centred kernel alignment (CKA) between two sets of activations of the same examples.

Linear CKA (Kornblith et al. 2019) compares two representations X (n, d1) and Y (n, d2)
of the same n examples; it is invariant to orthogonal transforms and isotropic scaling
of either side, so it can compare layers of different widths and different models.

    CKA(X, Y) = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)),   K = X X^T,  L = Y Y^T

Two estimators of HSIC are offered:

* plain (``debiased=False``): tr(K H L H) with H the centring matrix. It is biased
  upwards when the number of features is large relative to n: two *independent*
  random representations with d >> n get a CKA far from 0.
* debiased (``debiased=True``): the unbiased estimator of Song et al. (2012), computed as
  the inner product of "U-centred" Gram matrices (Szekely & Rizzo 2014), which is
  algebraically the same quantity. Independent representations get a CKA near 0; the
  value can be slightly negative.

Every function computes in float64, accepts NumPy arrays or torch tensors of any
float dtype, and flattens inputs with more than two dimensions per example (a conv
activation (n, c, h, w) becomes (n, c*h*w)). Functions never return NaN for a
representation that does not vary: they raise `ConstantFeaturesError` instead, so a
dead layer is reported rather than silently plotted. (`forgetting_depth` is the one
exception, by design: see its docstring.)

The input helpers `to_numpy`, `as_example_matrix` and `check_int` are shared by the other
metric modules.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = [
    "ConstantFeaturesError",
    "as_example_matrix",
    "bootstrap_cka",
    "bootstrap_cka_difference",
    "bootstrap_cka_replicates",
    "cka_interval",
    "difference_interval",
    "check_int",
    "cka_matrix",
    "forgetting_depth",
    "linear_cka",
    "minibatch_cka",
    "to_numpy",
]

# A feature counts as constant when its range (max - min) is at most this fraction of its
# magnitude: values that differ only by float rounding carry no signal, and CKA on them
# would be noise divided by noise.
_CONSTANT_RELATIVE_TOLERANCE = 1e-12

# Bootstrap replicates are processed in blocks so memory stays at a few (n, block)
# arrays whatever n_boot is.
_BOOTSTRAP_BLOCK = 256


class ConstantFeaturesError(ValueError):
    """A representation has zero variance across the examples, so CKA is 0/0."""


class NotEstimableError(ValueError):
    """Too few examples for an estimator; `needed` and `has` say how many. The report
    marks such a value "not estimable" instead of failing (docs/report-schema.md)."""

    def __init__(self, message: str, needed: int, has: int):
        super().__init__(message)
        self.needed, self.has = needed, has


# ---------------------------------------------------------------------------------------
# Input conversion (shared with mia, probes and embeddings)
# ---------------------------------------------------------------------------------------

def to_numpy(value: Any, name: str) -> np.ndarray:
    """Return `value` (array-like or torch tensor, on any device) as a NumPy array.

    torch is not imported here: tensors are recognised by their methods, so importing
    the metrics never pulls in torch.
    """
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        tensor = value.detach().cpu()
        # NumPy has no bfloat16: widen 16-bit floats before converting.
        if tensor.is_floating_point() and tensor.element_size() < 4:
            tensor = tensor.float()
        return tensor.numpy()
    try:
        return np.asarray(value)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name}: expected an array or a tensor, got "
                         f"{type(value).__name__} ({error})") from None


def as_example_matrix(value: Any, name: str, dtype: type = np.float64,
                      min_examples: int = 1) -> np.ndarray:
    """One row per example: (n,) becomes (n, 1) and (n, ...) is flattened to (n, d).

    Checks that the values are real numbers, finite, and that there are at least
    `min_examples` rows.
    """
    array = to_numpy(value, name)
    if array.ndim == 0:
        raise ValueError(f"{name}: expected one row per example, got a scalar")
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)
            or array.dtype == np.bool_):
        raise ValueError(f"{name}: expected real numbers, got dtype {array.dtype}")
    n_features = int(np.prod(array.shape[1:]))
    array = array.reshape(array.shape[0], n_features).astype(dtype, copy=False)
    if array.shape[0] < min_examples:
        raise NotEstimableError(f"{name}: needs at least {min_examples} examples, got shape "
                                f"{array.shape}", min_examples, array.shape[0])
    if array.shape[1] == 0:
        raise ValueError(f"{name}: has no features (shape {array.shape})")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name}: contains NaN or infinite values")
    return array


def check_int(name: str, value: Any, minimum: int) -> int:
    """`value` as an int, or a ValueError naming `name` unless it is an integer >= minimum."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return int(value)


# ---------------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------------

def _paired_features(X: Any, Y: Any, min_examples: int) -> tuple[np.ndarray, np.ndarray]:
    x = as_example_matrix(X, "X")
    y = as_example_matrix(Y, "Y")
    if x.shape[0] != y.shape[0]:
        raise ValueError("X and Y must hold the same examples (same first dimension), got "
                         f"X with shape {tuple(to_numpy(X, 'X').shape)} and Y with shape "
                         f"{tuple(to_numpy(Y, 'Y').shape)}")
    if x.shape[0] < min_examples:
        raise NotEstimableError(f"X and Y: need at least {min_examples} examples for this "
                                f"estimator, got {x.shape[0]}", min_examples, x.shape[0])
    return x, y


def _check_varies(features: np.ndarray, name: str) -> None:
    """Raise ConstantFeaturesError if no feature varies across the examples."""
    column_max = features.max(axis=0)
    column_min = features.min(axis=0)
    magnitude = np.maximum(np.abs(column_max), np.abs(column_min))
    if np.all(column_max - column_min <= _CONSTANT_RELATIVE_TOLERANCE * magnitude):
        raise ConstantFeaturesError(
            f"{name} is constant: all {features.shape[1]} features have zero variance "
            f"across the {features.shape[0]} examples, so CKA is undefined (0/0). "
            "A dead layer or a probe subset of identical inputs causes this.")


def _centre(features: np.ndarray, name: str) -> np.ndarray:
    """Column-centred copy; raises ConstantFeaturesError if nothing varies."""
    _check_varies(features, name)
    return features - features.mean(axis=0)


def _centred_gram(centred: np.ndarray, debiased: bool) -> np.ndarray:
    """Gram matrix M of column-centred features with HSIC(K, L) proportional to <M_K, M_L>_F.

    Plain: M = Xc Xc^T, which equals H K H because the columns are already centred.
    Debiased: M = U-centred K (zero diagonal; for i != j,
    M_ij = K_ij - r_i/(n-2) - r_j/(n-2) + s/((n-1)(n-2)) with r the row sums and s the
    total of K with its diagonal zeroed). <M_K, M_L> / (n(n-3)) is exactly Song et al.'s
    unbiased HSIC, and since it is an inner product, HSIC(K, K) >= 0 and |CKA| <= 1.
    It does not change when the features are shifted, so centring is optional there.
    """
    gram = centred @ centred.T
    if not debiased:
        return gram
    n = gram.shape[0]
    np.fill_diagonal(gram, 0.0)
    row_sums = gram.sum(axis=1)
    gram -= row_sums[:, None] / (n - 2)
    gram -= row_sums[None, :] / (n - 2)
    gram += row_sums.sum() / ((n - 1) * (n - 2))
    np.fill_diagonal(gram, 0.0)
    return gram


def _gram_norm(centred: np.ndarray) -> float:
    """||Xc^T Xc||_F, which equals ||Xc Xc^T||_F: form whichever square matrix is smaller."""
    n, d = centred.shape
    small = centred.T @ centred if d <= n else centred @ centred.T
    return float(np.linalg.norm(small))


def _cka_from_grams(gram_x: np.ndarray, gram_y: np.ndarray, name_x: str = "X",
                    name_y: str = "Y") -> float:
    norm_x = np.linalg.norm(gram_x)
    norm_y = np.linalg.norm(gram_y)
    for norm, name in ((norm_x, name_x), (norm_y, name_y)):
        if norm == 0.0:
            # Only reachable with the debiased estimator on tiny n: the features vary,
            # but no variation is left once self-similarity terms are removed.
            raise ValueError(f"{name}: the debiased HSIC of the representation with itself "
                             "is 0; use more examples or debiased=False")
    return float(np.vdot(gram_x, gram_y) / (norm_x * norm_y))


# ---------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------

def linear_cka(X: Any, Y: Any, debiased: bool = False) -> float:
    """Linear CKA between two representations of the same n examples.

    X: (n, d1), Y: (n, d2); more dimensions are flattened per example.
    debiased=False: plain estimator, in [0, 1]. Each of the three Frobenius norms it
    needs is formed in the cheaper of the feature-space form (||Yc^T Xc||_F^2,
    cost ~ n d1 d2) and the Gram form (<Kc, Lc>, cost ~ n^2 (d1 + d2)); the Gram form is
    used for the cross term when both d1 and d2 exceed n.
    debiased=True: unbiased HSIC (Song et al. 2012) on Gram matrices; needs n >= 4; can be
    slightly negative for unrelated representations.

    Raises ConstantFeaturesError if X or Y does not vary, ValueError if the example
    counts differ.
    """
    x, y = _paired_features(X, Y, min_examples=4 if debiased else 2)
    x_centred = _centre(x, "X")
    y_centred = _centre(y, "Y")
    n = x.shape[0]
    if debiased:
        return _cka_from_grams(_centred_gram(x_centred, True), _centred_gram(y_centred, True))
    if x.shape[1] > n and y.shape[1] > n:
        return _cka_from_grams(_centred_gram(x_centred, False), _centred_gram(y_centred, False))
    cross = float(np.sum((y_centred.T @ x_centred) ** 2))
    return cross / (_gram_norm(x_centred) * _gram_norm(y_centred))


def minibatch_cka(X: Any, Y: Any, batch_size: int = 256, seed: int = 0) -> float:
    """CKA from unbiased HSIC averaged over minibatches (Nguyen et al. 2021).

    The examples are shuffled with `seed` and split into n // batch_size batches of
    nearly equal size (at least `batch_size` each, so every example is used once; a
    single batch when n < 2 * batch_size). Each batch gives unbiased estimates of
    HSIC(K, L), HSIC(K, K) and HSIC(L, L); their means give
    CKA = mean HSIC(K, L) / sqrt(mean HSIC(K, K) * mean HSIC(L, L)).
    Memory is O(batch_size^2) instead of O(n^2), so it scales to large n.
    """
    batch_size = check_int("batch_size", batch_size, 4)
    seed = check_int("seed", seed, 0)
    x, y = _paired_features(X, Y, min_examples=4)
    _check_varies(x, "X")
    _check_varies(y, "Y")
    n = x.shape[0]
    order = np.random.default_rng(seed).permutation(n)
    batches = np.array_split(order, max(1, n // batch_size))
    hsic_xy = hsic_xx = hsic_yy = 0.0
    # The unbiased HSIC is invariant to shifting the features; subtracting the global
    # mean from each batch only keeps large offsets from costing precision.
    x_mean, y_mean = x.mean(axis=0), y.mean(axis=0)
    for batch in batches:
        gram_x = _centred_gram(x[batch] - x_mean, True)
        gram_y = _centred_gram(y[batch] - y_mean, True)
        scale = len(batch) * (len(batch) - 3)
        hsic_xy += np.vdot(gram_x, gram_y) / scale
        hsic_xx += np.vdot(gram_x, gram_x) / scale
        hsic_yy += np.vdot(gram_y, gram_y) / scale
    if hsic_xx <= 0.0 or hsic_yy <= 0.0:
        raise ValueError("X and Y: no variation is left within the minibatches; "
                         "use a larger batch_size")
    return float(hsic_xy / np.sqrt(hsic_xx * hsic_yy))


def cka_matrix(acts_a: Mapping[str, Any], acts_b: Mapping[str, Any],
               debiased: bool = False) -> np.ndarray:
    """Layer-by-layer CKA: entry [i, j] compares layer i of `acts_a` with layer j of
    `acts_b`, in dict order. All layers must hold the same n examples.

    Each layer's centred (or U-centred) Gram matrix is computed once, normalised, and
    reused for every pair, so the cost is one n x n Gram per distinct layer plus one
    O(n^2) inner product per entry. Arrays passed in both dicts (the same object) share
    their Gram matrix. Memory: one n x n float64 matrix per distinct layer (32 MB at
    n = 2000).
    """
    for name, acts in (("acts_a", acts_a), ("acts_b", acts_b)):
        if not isinstance(acts, Mapping) or len(acts) == 0:
            raise ValueError(f"{name}: expected a non-empty dict of layer name -> "
                             f"activations, got {type(acts).__name__}")
    normalised_grams: dict[int, np.ndarray] = {}
    n_examples: dict[str, int] = {}

    def prepared(dict_name: str, layer: str, value: Any) -> np.ndarray:
        key = id(value)
        if key in normalised_grams:
            return normalised_grams[key]
        label = f"{dict_name}[{layer!r}]"
        features = as_example_matrix(value, label, min_examples=4 if debiased else 2)
        n_examples[label] = features.shape[0]
        if len(set(n_examples.values())) > 1:
            raise ValueError("every layer must hold the same examples, got example counts "
                             + ", ".join(f"{k}: {v}" for k, v in n_examples.items()))
        gram = _centred_gram(_centre(features, label), debiased)
        norm = np.linalg.norm(gram)
        if norm == 0.0:
            raise ValueError(f"{label}: the debiased HSIC of the layer with itself is 0; "
                             "use more examples or debiased=False")
        gram /= norm
        normalised_grams[key] = gram
        return gram

    grams_a = [prepared("acts_a", layer, value) for layer, value in acts_a.items()]
    grams_b = [prepared("acts_b", layer, value) for layer, value in acts_b.items()]
    return np.array([[float(np.vdot(gram_a, gram_b)) for gram_b in grams_b]
                     for gram_a in grams_a])


def bootstrap_cka(X: Any, Y: Any, n_boot: int = 200, seed: int = 0, level: float = 0.95,
                  debiased: bool = False) -> tuple[float, float, float]:
    """CKA with a bootstrap interval over examples: returns (value, low, high).

    `value` is linear_cka(X, Y, debiased). Each replicate resamples the n examples with
    replacement (seeded). Gram matrices are computed once; a replicate is represented by
    how many times each example was drawn (counts c), and every sum over the resampled
    Gram matrix K[idx][:, idx] is written in terms of c (e.g. sum(K_b * L_b) = c^T (K*L) c),
    so all replicates cost a few (n x n) @ (n x n_boot) products.

    Duplicates. A resample holds only ~63% distinct examples, and a pair of copies of the
    same example acts like a diagonal (self-similarity) term:
    * debiased=True: such pairs are excluded exactly like the diagonal (the replicate uses
      K with zeroed diagonal, indexed by the resample), so the estimator stays free of
      self-similarity terms; in simulations the replicates' mean then matches `value`.
      With pairs excluded the estimator is no longer translation invariant; it is defined
      on features centred with the full sample's mean.
    * plain estimator: its upward finite-sample bias grows as the number of distinct
      examples falls, so its replicates sit systematically above `value`.
    For both, the interval is `value` plus the central `level` quantiles of the replicates
    minus their mean: the bootstrap supplies the spread of the estimate, and the shift
    caused by duplicates is removed. The interval describes sampling variability over
    examples; it does not remove the plain estimator's own bias (use debiased=True).
    Bounds are clipped to the estimator's range ([0, 1] plain, [-1, 1] debiased).
    Replicates whose resample does not vary at all (possible only for tiny n) are dropped.
    """
    _check_bootstrap_args(n_boot, seed, level)
    return cka_interval(bootstrap_cka_replicates(X, Y, n_boot, seed, debiased), level, debiased)


def bootstrap_cka_replicates(X: Any, Y: Any, n_boot: int = 200, seed: int = 0,
                             debiased: bool = False) -> np.ndarray:
    """(1 + n_boot,): CKA of the full sample, then of each seeded resample: the draws
    `bootstrap_cka` and `bootstrap_cka_difference` build their intervals from. Resamples
    depend only on (n, n_boot, seed), so draws of several pairs of the same examples
    with the same seed are paired and can be subtracted (a caller that needs a band for
    each pair and the interval of their difference computes each pair's draws once)."""
    n_boot, seed = _check_bootstrap_args(n_boot, seed, 0.95)
    x, y = _paired_features(X, Y, min_examples=4 if debiased else 2)
    counts = _resample_counts(x.shape[0], n_boot, seed)
    return _bootstrap_estimates(x, y, counts, debiased, ("X", "Y"))


def cka_interval(replicates: np.ndarray, level: float = 0.95,
                 debiased: bool = False) -> tuple[float, float, float]:
    """(value, low, high) of `bootstrap_cka` from `bootstrap_cka_replicates`' draws."""
    value = float(replicates[0])
    if not np.isfinite(value):
        raise ValueError("X and Y: the debiased HSIC of a representation with itself is 0; "
                         "use more examples or debiased=False")
    low, high = _interval(value, replicates[1:], level, "X and Y")
    lower_bound = -1.0 if debiased else 0.0
    return value, float(np.clip(low, lower_bound, 1.0)), float(np.clip(high, lower_bound, 1.0))


def difference_interval(difference: np.ndarray,
                        level: float = 0.95) -> tuple[float, float, float]:
    """(value, low, high) of `bootstrap_cka_difference` from the difference of two pairs'
    paired draws (`bootstrap_cka_replicates` with the same examples, n_boot and seed)."""
    value = float(difference[0])
    if not np.isfinite(value):
        raise ValueError("X, Y and Z: the debiased HSIC of a representation with itself is 0; "
                         "use more examples or debiased=False")
    return (value, *_interval(value, difference[1:], level, "X, Y and Z"))


def bootstrap_cka_difference(X: Any, Y: Any, Z: Any, n_boot: int = 200, seed: int = 0,
                             level: float = 0.95,
                             debiased: bool = False) -> tuple[float, float, float]:
    """CKA(X, Z) - CKA(Y, Z) with a paired bootstrap interval: (value, low, high).

    Both CKAs of a replicate use the same resample of examples, so the interval is that of
    the difference itself, much narrower than two separate intervals would suggest when
    the two CKAs move together. Used as "how much closer to the original (Z) does the
    unlearned model (X) stay than the oracle (Y)": an interval above 0 means significantly
    closer. Same estimator and interval construction as `bootstrap_cka`.
    """
    n_boot, seed = _check_bootstrap_args(n_boot, seed, level)
    minimum = 4 if debiased else 2
    x, z = _paired_features(X, Z, min_examples=minimum)
    y, _ = _paired_features(Y, Z, min_examples=minimum)
    counts = _resample_counts(x.shape[0], n_boot, seed)
    estimates = (_bootstrap_estimates(x, z, counts, debiased, ("X", "Z"))
                 - _bootstrap_estimates(y, z, counts, debiased, ("Y", "Z")))
    return difference_interval(estimates, level)


def _check_bootstrap_args(n_boot: Any, seed: Any, level: Any) -> tuple[int, int]:
    if not (isinstance(level, (float, int)) and 0.0 < level < 1.0):
        raise ValueError(f"level: expected a number strictly between 0 and 1, got {level!r}")
    return check_int("n_boot", n_boot, 1), check_int("seed", seed, 0)


def _resample_counts(n: int, n_boot: int, seed: int) -> np.ndarray:
    """(1 + n_boot, n): row 0 is the full sample itself (every count 1), so the value
    comes from the same formulas as the replicates; each further row is a resample."""
    rng = np.random.default_rng(seed)
    return np.concatenate([np.ones((1, n)),
                           rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot)])


def _bootstrap_estimates(x: np.ndarray, y: np.ndarray, counts: np.ndarray, debiased: bool,
                         names: tuple[str, str]) -> np.ndarray:
    """CKA of (x, y) for every row of `counts` (see `bootstrap_cka` on duplicates)."""
    x_centred = _centre(x, names[0])
    y_centred = _centre(y, names[1])
    # Translation invariance: centring the resample again (inside the HSIC formulas)
    # gives the same result as centring its raw features, so the full-data centred
    # Gram matrices can be indexed directly.
    gram_x = x_centred @ x_centred.T
    gram_y = y_centred @ y_centred.T
    if debiased:
        np.fill_diagonal(gram_x, 0.0)
        np.fill_diagonal(gram_y, 0.0)
    products = (gram_x * gram_y, gram_x * gram_x, gram_y * gram_y)
    return np.concatenate([
        _cka_from_counts(gram_x, gram_y, products, block.T.astype(np.float64), debiased)
        for block in np.array_split(counts, max(1, len(counts) // _BOOTSTRAP_BLOCK))])


def _interval(value: float, replicates: np.ndarray, level: float,
              names: str) -> tuple[float, float]:
    """`value` plus the central `level` quantiles of the replicates minus their mean."""
    replicates = replicates[np.isfinite(replicates)]
    if replicates.size == 0:
        raise ValueError(f"{names}: every bootstrap resample was constant; use more examples")
    alpha = 1.0 - level
    low_offset, high_offset = np.quantile(replicates - replicates.mean(),
                                          [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(value + low_offset), float(value + high_offset)


def _cka_from_counts(gram_x: np.ndarray, gram_y: np.ndarray,
                     products: tuple[np.ndarray, np.ndarray, np.ndarray],
                     counts: np.ndarray, debiased: bool) -> np.ndarray:
    """CKA for each column of `counts` (n, b): the resample holding example a c_a times.

    With K_b = K[idx][:, idx]:  sum(K_b * L_b) = c^T (K*L) c,  1^T K_b 1 = c^T K c,
    1^T K_b L_b 1 = sum_a c_a (Kc)_a (Lc)_a. Returns NaN for a replicate whose resample
    does not vary (HSIC(K, K) = 0); the caller drops those.
    """
    n = counts.shape[0]
    kc = gram_x @ counts
    lc = gram_y @ counts
    trace_terms = [np.sum(counts * (product @ counts), axis=0) for product in products]
    sum_x = np.sum(counts * kc, axis=0)
    sum_y = np.sum(counts * lc, axis=0)

    def hsic(trace_term: np.ndarray, sums: np.ndarray, row_products: np.ndarray) -> np.ndarray:
        if debiased:  # Song et al. 2012, up to the common factor 1 / (n (n - 3))
            return trace_term + sums / ((n - 1) * (n - 2)) - 2.0 * row_products / (n - 2)
        return trace_term - 2.0 * row_products / n + sums / n**2  # tr(K H L H)

    hsic_xy = hsic(trace_terms[0], sum_x * sum_y, np.sum(counts * kc * lc, axis=0))
    hsic_xx = hsic(trace_terms[1], sum_x * sum_x, np.sum(counts * kc * kc, axis=0))
    hsic_yy = hsic(trace_terms[2], sum_y * sum_y, np.sum(counts * lc * lc, axis=0))
    denominator = np.sqrt(np.clip(hsic_xx, 0.0, None) * np.clip(hsic_yy, 0.0, None))
    # Relative threshold: a constant resample leaves HSIC(K, K) at rounding level.
    scale = np.sqrt(trace_terms[1] * trace_terms[2])
    degenerate = denominator <= 1e-12 * scale
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(degenerate, np.nan, hsic_xy / np.where(degenerate, 1.0, denominator))


def forgetting_depth(cka_unlearned_vs_original: Any, cka_oracle_vs_original: Any,
                     eps: float = 1e-6) -> Any:
    """Per-layer forgetting depth, clip((1 - u) / (1 - r), 0, 1).

    u = CKA(unlearned, original), r = CKA(oracle, original), per layer, on forget data.
    0 = the layer is as in the original, 1 = it moved as far as the oracle's (or further).
    Where 1 - r < eps the oracle did not move at that layer, so depth is undefined: the
    result is NaN there (the one place in this package where NaN is returned on purpose;
    the UI shows it as "n/a"). Inputs broadcast; scalars in give a float out, arrays in
    give an array of the broadcast shape.
    """
    if not (isinstance(eps, (float, int)) and eps > 0):
        raise ValueError(f"eps: expected a positive number, got {eps!r}")
    unlearned = np.asarray(to_numpy(cka_unlearned_vs_original, "cka_unlearned_vs_original"),
                           dtype=np.float64)
    oracle = np.asarray(to_numpy(cka_oracle_vs_original, "cka_oracle_vs_original"),
                        dtype=np.float64)
    try:
        unlearned, oracle = np.broadcast_arrays(unlearned, oracle)
    except ValueError:
        raise ValueError("cka_unlearned_vs_original and cka_oracle_vs_original: shapes "
                         f"{unlearned.shape} and {oracle.shape} do not match") from None
    oracle_movement = 1.0 - oracle
    defined = oracle_movement >= eps
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = (1.0 - unlearned) / np.where(defined, oracle_movement, 1.0)
    depth = np.where(defined, np.clip(ratio, 0.0, 1.0), np.nan)
    return float(depth) if depth.ndim == 0 else depth
