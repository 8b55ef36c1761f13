"""Membership inference on softmax outputs: the SalUn MIA protocol and distinguishability.

SalUn protocol (see METHODS.md, "Shared evaluation protocol"): an attacker is trained on
one scalar feature of the model's softmax output, with members (a class-balanced subset
of the retain set, label 1) against non-members (the test set, label 0), using
``SVC(kernel="rbf", C=3, gamma="auto")``. It is then applied to the forget set; the
*MIA efficacy* is the fraction of forget examples it calls non-members. The ideal value
is the oracle's (the retrained model's), not 100%.

Distinguishability compares the unlearned and the oracle model directly, in the spirit of
the NeurIPS 2023 unlearning challenge: how well can a threshold on a per-example value
(e.g. confidence on each forget example) tell the two models apart? The challenge uses
many runs of each model per example; with one unlearned and one oracle model we use the
population of forget examples instead.

Inputs are NumPy arrays or torch tensors: ``probs`` (n, n_classes) softmax probabilities,
``labels`` (n,) integer class indices.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import expit
from sklearn.svm import SVC

from .cka import as_example_matrix, check_int, to_numpy

__all__ = [
    "FEATURES",
    "attack_features",
    "attack_scores",
    "distinguishability",
    "mia_all",
    "mia_efficacy",
]

FEATURES = ("confidence", "correctness", "entropy", "m_entropy")

# Probabilities are clipped to [_LOG_FLOOR, 1] inside logarithms so p = 0 and p = 1 give
# finite features.
_LOG_FLOOR = 1e-30

# Rows of `probs` must sum to 1 within this tolerance. Loose enough for half-precision
# softmax, tight enough to catch logits passed by mistake.
_ROW_SUM_TOLERANCE = 1e-2


def _probabilities_and_labels(probs: Any, labels: Any, probs_name: str,
                              labels_name: str) -> tuple[np.ndarray, np.ndarray]:
    """Validated float64 probabilities (n, n_classes) and int64 labels (n,)."""
    probabilities = to_numpy(probs, probs_name)
    if probabilities.size == 0:
        raise ValueError(f"{probs_name}: the set is empty (no examples)")
    if probabilities.ndim != 2 or not (np.issubdtype(probabilities.dtype, np.floating)
                                       or np.issubdtype(probabilities.dtype, np.integer)):
        raise ValueError(f"{probs_name}: expected real numbers of shape (n, n_classes), got "
                         f"shape {probabilities.shape} and dtype {probabilities.dtype}")
    probabilities = probabilities.astype(np.float64, copy=False)
    if not np.all(np.isfinite(probabilities)):
        raise ValueError(f"{probs_name}: contains NaN or infinite values")
    if (probabilities.min(initial=0.0) < -_ROW_SUM_TOLERANCE
            or np.any(np.abs(probabilities.sum(axis=1) - 1.0) > _ROW_SUM_TOLERANCE)):
        raise ValueError(f"{probs_name}: rows must be probabilities (non-negative, summing "
                         "to 1); pass softmax outputs, not logits")
    label_array = to_numpy(labels, labels_name)
    if label_array.ndim != 1 or not np.issubdtype(label_array.dtype, np.integer):
        raise ValueError(f"{labels_name}: expected a 1-d array of integer class indices, got "
                         f"shape {label_array.shape} and dtype {label_array.dtype}")
    if label_array.shape[0] != probabilities.shape[0]:
        raise ValueError(f"{probs_name} has {probabilities.shape[0]} rows but {labels_name} "
                         f"has {label_array.shape[0]} entries")
    n_classes = probabilities.shape[1]
    if label_array.size and (label_array.min() < 0 or label_array.max() >= n_classes):
        raise ValueError(f"{labels_name}: class indices must lie in [0, {n_classes - 1}] "
                         f"for the {n_classes} columns of {probs_name}, got "
                         f"[{label_array.min()}, {label_array.max()}]")
    return np.clip(probabilities, 0.0, 1.0), label_array.astype(np.int64)


def _check_feature(feature: str) -> None:
    if feature not in FEATURES:
        raise ValueError(f"feature: expected one of {FEATURES}, got {feature!r}")


def _features_of(probabilities: np.ndarray, labels: np.ndarray, feature: str) -> np.ndarray:
    rows = np.arange(labels.shape[0])
    true_class_prob = probabilities[rows, labels]
    if feature == "confidence":
        return true_class_prob
    if feature == "correctness":
        return (probabilities.argmax(axis=1) == labels).astype(np.float64)
    log_probs = np.log(np.clip(probabilities, _LOG_FLOOR, 1.0))
    if feature == "entropy":
        return -np.sum(probabilities * log_probs, axis=1)
    # Modified entropy (Song & Mittal 2021):
    #   -(1 - p_y) log p_y - sum_{i != y} p_i log(1 - p_i)
    # Low for a confident correct prediction, high for a confident wrong one (unlike
    # plain entropy, which cannot tell the two apart).
    log_complements = np.log(np.clip(1.0 - probabilities, _LOG_FLOOR, 1.0))
    other_classes = probabilities * log_complements
    other_classes[rows, labels] = 0.0
    return -(1.0 - true_class_prob) * log_probs[rows, labels] - other_classes.sum(axis=1)


def attack_features(probs: Any, labels: Any, feature: str) -> np.ndarray:
    """One attack feature per example, from softmax probabilities and true labels.

    confidence: p_y. correctness: 1 if argmax p == y else 0. entropy: -sum_i p_i log p_i.
    m_entropy (Song & Mittal 2021): -(1 - p_y) log p_y - sum_{i != y} p_i log(1 - p_i).
    Probabilities are clipped to [1e-30, 1] inside logarithms.
    """
    _check_feature(feature)
    probabilities, label_array = _probabilities_and_labels(probs, labels, "probs", "labels")
    return _features_of(probabilities, label_array, feature)


def _fitted_attack(member_probs: Any, member_labels: Any, nonmember_probs: Any,
                   nonmember_labels: Any, target_probs: Any, target_labels: Any,
                   feature: str, seed: int) -> tuple[SVC, np.ndarray]:
    """SVC trained on members (1) vs non-members (0), and the target's features."""
    _check_feature(feature)
    seed = check_int("seed", seed, 0)
    features = {}
    n_classes = {}
    for group, probs, labels in (("member", member_probs, member_labels),
                                 ("nonmember", nonmember_probs, nonmember_labels),
                                 ("target", target_probs, target_labels)):
        probabilities, label_array = _probabilities_and_labels(
            probs, labels, f"{group}_probs", f"{group}_labels")
        features[group] = _features_of(probabilities, label_array, feature)
        n_classes[f"{group}_probs"] = probabilities.shape[1]
    if len(set(n_classes.values())) > 1:
        raise ValueError("member, nonmember and target probabilities must have the same "
                         f"number of classes, got {n_classes}")
    members, nonmembers = features["member"], features["nonmember"]

    # Balanced training sets, so the SVC's decision is not tilted toward the larger group.
    rng = np.random.default_rng(seed)
    size = min(members.shape[0], nonmembers.shape[0])
    if members.shape[0] > size:
        members = members[np.sort(rng.choice(members.shape[0], size, replace=False))]
    elif nonmembers.shape[0] > size:
        nonmembers = nonmembers[np.sort(rng.choice(nonmembers.shape[0], size, replace=False))]
    attack_inputs = np.concatenate([members, nonmembers])[:, None]
    is_member = np.concatenate([np.ones(size), np.zeros(size)])
    attack = SVC(kernel="rbf", C=3, gamma="auto").fit(attack_inputs, is_member)
    return attack, features["target"][:, None]


def mia_efficacy(member_probs: Any, member_labels: Any, nonmember_probs: Any,
                 nonmember_labels: Any, target_probs: Any, target_labels: Any,
                 feature: str = "confidence", seed: int = 0) -> float:
    """SalUn MIA efficacy: fraction of target examples the attack predicts non-member.

    The attack is SVC(kernel="rbf", C=3, gamma="auto") on the 1-d `feature`, fit on
    members (label 1) vs non-members (label 0); when the two groups differ in size the
    larger is subsampled (seeded) to the size of the smaller. libsvm without probability
    estimates is deterministic, so the same inputs and seed give the same number.
    Cost: the SVC fit grows roughly quadratically with the training size (2 x the smaller
    group); a few thousand examples take about a second.
    """
    attack, target = _fitted_attack(member_probs, member_labels, nonmember_probs,
                                    nonmember_labels, target_probs, target_labels, feature,
                                    seed)
    return float(np.mean(attack.predict(target) == 0))


def mia_all(member_probs: Any, member_labels: Any, nonmember_probs: Any,
            nonmember_labels: Any, target_probs: Any, target_labels: Any,
            seed: int = 0) -> dict[str, float]:
    """`mia_efficacy` for every feature in FEATURES, keyed by feature name."""
    return {feature: mia_efficacy(member_probs, member_labels, nonmember_probs,
                                  nonmember_labels, target_probs, target_labels,
                                  feature=feature, seed=seed)
            for feature in FEATURES}


def attack_scores(member_probs: Any, member_labels: Any, nonmember_probs: Any,
                  nonmember_labels: Any, target_probs: Any, target_labels: Any,
                  feature: str = "confidence", seed: int = 0) -> np.ndarray:
    """Per-target-example membership score in [0, 1], for histograms and drill-down.

    The score is sigmoid(decision_function) of the same SVC as `mia_efficacy`: > 0.5
    exactly where that attack says "member", so mean(score < 0.5) is the efficacy (up to
    examples lying exactly on the boundary). It is a monotone squashing of the signed
    distance to the boundary, not a calibrated probability: Platt scaling
    (SVC(probability=True)) would need an internal 5-fold cross-validation, cost several
    fits, and can disagree with `predict`.
    """
    attack, target = _fitted_attack(member_probs, member_labels, nonmember_probs,
                                    nonmember_labels, target_probs, target_labels, feature,
                                    seed)
    return expit(attack.decision_function(target))


def _values(value: Any, name: str) -> np.ndarray:
    array = to_numpy(value, name)
    if array.ndim != 1 or array.shape[0] == 0:
        raise ValueError(f"{name}: expected a non-empty 1-d array of per-example values, got "
                         f"shape {array.shape}")
    return as_example_matrix(array, name)[:, 0]


def distinguishability(unlearned_values: Any, oracle_values: Any,
                       delta: float = 0.01) -> dict[str, Any]:
    """How well a threshold on a per-example value tells the unlearned model from the oracle.

    unlearned_values / oracle_values: 1-d, one value per example (e.g. confidence on each
    forget example under the unlearned and under the oracle model); sizes may differ.

    The attacker answers "unlearned" when value >= threshold. For each threshold t among
    the distinct pooled values:
      fpr(t) = fraction of oracle values >= t     (oracle wrongly called unlearned)
      fnr(t) = fraction of unlearned values < t   (unlearned wrongly called oracle)
    A model pair that is (epsilon, delta)-indistinguishable satisfies, for every test,
    fpr + e^eps fnr >= 1 - delta and e^eps fpr + fnr >= 1 - delta, so each test gives the
    lower bound max(log((1 - delta - fpr) / fnr), log((1 - delta - fnr) / fpr)).
    epsilon is the largest bound over the thresholds *and their complements* (the
    attacker answering "unlearned" when value < t, with rates 1 - fpr and 1 - fnr), so the
    direction of the shift does not matter. Rates are floored at 1 / n of their group
    (n_oracle for fpr, n_unlearned for fnr) to keep the bound finite; terms whose
    numerator is <= 0 carry no information and are skipped; epsilon is at least 0.
    privacy_score = 2 ** -epsilon: 1 = indistinguishable, near 0 = fully separated.

    Returns dict(thresholds, fpr, fnr, epsilon, privacy_score), the arrays for the
    ">= threshold" attacker.

    Small sets: epsilon is a maximum over thresholds, so sampling noise in the tails
    pushes it above 0 even for identical distributions. Two samples from one normal
    distribution give a median privacy_score of about 0.5 at n = 200 each, 0.85 at
    1,000 and 0.98 at 5,000; compare a method's score with that noise level (or use a
    larger delta, a few / n) before reading much into it.
    """
    if not (isinstance(delta, (float, int)) and 0.0 <= delta < 1.0):
        raise ValueError(f"delta: expected a number in [0, 1), got {delta!r}")
    unlearned = np.sort(_values(unlearned_values, "unlearned_values"))
    oracle = np.sort(_values(oracle_values, "oracle_values"))
    thresholds = np.unique(np.concatenate([unlearned, oracle]))
    fpr = 1.0 - np.searchsorted(oracle, thresholds, side="left") / oracle.shape[0]
    fnr = np.searchsorted(unlearned, thresholds, side="left") / unlearned.shape[0]

    epsilon = 0.0
    for false_positive, false_negative in ((fpr, fnr), (1.0 - fpr, 1.0 - fnr)):
        floored_fp = np.maximum(false_positive, 1.0 / oracle.shape[0])
        floored_fn = np.maximum(false_negative, 1.0 / unlearned.shape[0])
        for numerator, denominator in ((1.0 - delta - floored_fp, floored_fn),
                                       (1.0 - delta - floored_fn, floored_fp)):
            informative = numerator > 0.0
            if np.any(informative):
                bounds = np.log(numerator[informative] / denominator[informative])
                epsilon = max(epsilon, float(bounds.max()))
    return {"thresholds": thresholds, "fpr": fpr, "fnr": fnr, "epsilon": epsilon,
            "privacy_score": float(2.0 ** -epsilon)}
