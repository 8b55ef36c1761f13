"""MIA (SalUn protocol) and distinguishability, on synthetic softmax outputs."""

import math

import numpy as np
import pytest
import torch

from unlearn_core.metrics.mia import (
    FEATURES,
    attack_features,
    attack_scores,
    distinguishability,
    mia_all,
    mia_efficacy,
)


def outputs_with_confidence(rng: np.random.Generator, n: int, confidence: float,
                            n_classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Softmax rows whose true-class probability is about `confidence`, rest uniform."""
    labels = rng.integers(0, n_classes, n)
    true_prob = np.clip(confidence + 0.02 * rng.standard_normal(n), 1.0 / n_classes, 1.0)
    probs = np.repeat(((1.0 - true_prob) / (n_classes - 1))[:, None], n_classes, axis=1)
    probs[np.arange(n), labels] = true_prob
    return probs, labels


def dirichlet_outputs(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    return rng.dirichlet(np.full(10, 0.5), n), rng.integers(0, 10, n)


def test_features_on_hand_computed_rows():
    probs = np.array([[0.7, 0.2, 0.1], [0.7, 0.2, 0.1], [0.5, 0.5, 0.0], [1.0, 0.0, 0.0]])
    labels = np.array([0, 1, 1, 0])
    np.testing.assert_allclose(attack_features(probs, labels, "confidence"),
                               [0.7, 0.2, 0.5, 1.0])
    np.testing.assert_array_equal(attack_features(probs, labels, "correctness"),
                                  [1.0, 0.0, 0.0, 1.0])
    entropy_row0 = -(0.7 * math.log(0.7) + 0.2 * math.log(0.2) + 0.1 * math.log(0.1))
    np.testing.assert_allclose(attack_features(probs, labels, "entropy"),
                               [entropy_row0, entropy_row0, math.log(2.0), 0.0], atol=1e-12)
    # Mentr(p, y) = -(1 - p_y) log p_y - sum_{i != y} p_i log(1 - p_i)
    expected = [
        -0.3 * math.log(0.7) - 0.2 * math.log(0.8) - 0.1 * math.log(0.9),
        -0.8 * math.log(0.2) - 0.7 * math.log(0.3) - 0.1 * math.log(0.9),
        -0.5 * math.log(0.5) - 0.5 * math.log(0.5),
        0.0,
    ]
    np.testing.assert_allclose(attack_features(probs, labels, "m_entropy"), expected,
                               atol=1e-12)


def test_m_entropy_is_finite_and_large_for_a_confident_mistake():
    value = attack_features(np.array([[1.0, 0.0]]), np.array([1]), "m_entropy")[0]
    # -(1 - 0) log(1e-30) - 1 * log(1 - 1 -> 1e-30): both terms hit the clip.
    assert value == pytest.approx(-2.0 * math.log(1e-30))


def test_member_like_and_nonmember_like_targets():
    rng = np.random.default_rng(0)
    members = outputs_with_confidence(rng, 300, 0.99)
    nonmembers = outputs_with_confidence(rng, 300, 0.15)
    member_like = outputs_with_confidence(rng, 100, 0.99)
    nonmember_like = outputs_with_confidence(rng, 100, 0.15)
    for feature in ("confidence", "entropy", "m_entropy"):
        assert mia_efficacy(*members, *nonmembers, *member_like, feature=feature) < 0.05
        assert mia_efficacy(*members, *nonmembers, *nonmember_like, feature=feature) > 0.95
    result = mia_all(*members, *nonmembers, *nonmember_like)
    assert tuple(result) == FEATURES
    assert all(0.0 <= value <= 1.0 for value in result.values())


def test_same_distribution_gives_about_half_on_average():
    # With no membership signal the SVC's boundary is noise: on a single draw it can call
    # most targets either way, so average over independent draws.
    efficacies = []
    for seed in range(30):
        rng = np.random.default_rng(100 + seed)
        efficacies.append(mia_efficacy(*dirichlet_outputs(rng, 200), *dirichlet_outputs(rng, 200),
                                       *dirichlet_outputs(rng, 200), seed=seed))
    assert np.mean(efficacies) == pytest.approx(0.5, abs=0.15)


def test_deterministic_with_seed_and_unequal_groups():
    rng = np.random.default_rng(1)
    members = dirichlet_outputs(rng, 400)  # larger: subsampled to 150 with the seed
    nonmembers = dirichlet_outputs(rng, 150)
    target = dirichlet_outputs(rng, 80)
    first = mia_efficacy(*members, *nonmembers, *target, feature="entropy", seed=3)
    assert mia_efficacy(*members, *nonmembers, *target, feature="entropy", seed=3) == first
    tensors = [torch.from_numpy(array) for array in (*members, *nonmembers, *target)]
    assert mia_efficacy(*tensors, feature="entropy", seed=3) == first


def test_attack_scores_agree_with_efficacy():
    rng = np.random.default_rng(2)
    members = outputs_with_confidence(rng, 200, 0.9)
    nonmembers = outputs_with_confidence(rng, 200, 0.6)
    target = outputs_with_confidence(rng, 120, 0.75)
    scores = attack_scores(*members, *nonmembers, *target)
    assert scores.shape == (120,)
    assert np.all((scores >= 0.0) & (scores <= 1.0))
    assert np.mean(scores < 0.5) == pytest.approx(mia_efficacy(*members, *nonmembers, *target))


def test_errors():
    rng = np.random.default_rng(3)
    data = outputs_with_confidence(rng, 20, 0.8)
    with pytest.raises(ValueError, match="confidence.*correctness.*entropy.*m_entropy"):
        mia_efficacy(*data, *data, *data, feature="loss")
    with pytest.raises(ValueError, match="target_probs.*empty"):
        mia_efficacy(*data, *data, np.empty((0, 10)), np.empty(0, dtype=int))
    with pytest.raises(ValueError, match="not logits"):
        attack_features(np.log(data[0]), data[1], "confidence")
    with pytest.raises(ValueError, match="labels.*integer"):
        attack_features(data[0], data[1].astype(float), "confidence")
    with pytest.raises(ValueError, match=r"\[0, 9\]"):
        attack_features(data[0], data[1] + 10, "confidence")
    with pytest.raises(ValueError, match="same number of classes"):
        mia_efficacy(*data, *data, np.full((5, 4), 0.25), np.zeros(5, dtype=int))


def test_distinguishability_identical_and_same_distribution_near_one():
    rng = np.random.default_rng(4)
    values = rng.normal(size=1000)
    identical = distinguishability(values, values)
    assert identical["epsilon"] == 0.0 and identical["privacy_score"] == 1.0
    # Two samples of one distribution: epsilon is a max over thresholds, so sampling noise
    # in the tails keeps it above 0; it shrinks with n (median score ~0.85 at n = 1,000).
    same = distinguishability(rng.normal(size=5000), rng.normal(size=5000))
    assert same["privacy_score"] > 0.9


@pytest.mark.parametrize("shift", [10.0, -10.0])
def test_distinguishability_separated_near_zero_either_direction(shift):
    rng = np.random.default_rng(5)
    result = distinguishability(rng.normal(size=1000) + shift, rng.normal(size=1000))
    assert result["epsilon"] > 6.0  # about log(n) once both rates hit the 1/n floor
    assert result["privacy_score"] < 0.02


def test_distinguishability_rates():
    result = distinguishability(np.array([2.0, 3.0]), np.array([1.0, 2.0, 2.0, 4.0]))
    np.testing.assert_array_equal(result["thresholds"], [1.0, 2.0, 3.0, 4.0])
    # "unlearned" if value >= t: fpr = oracle share >= t, fnr = unlearned share < t.
    np.testing.assert_allclose(result["fpr"], [1.0, 0.75, 0.25, 0.25])
    np.testing.assert_allclose(result["fnr"], [0.0, 0.0, 0.5, 1.0])
    moderately_shifted = distinguishability(np.arange(100.0) + 30, np.arange(100.0))
    assert 0.0 < moderately_shifted["privacy_score"] < 1.0
    with pytest.raises(ValueError, match="delta"):
        distinguishability(np.ones(3), np.ones(3), delta=1.0)
    with pytest.raises(ValueError, match="oracle_values"):
        distinguishability(np.ones(3), np.ones((3, 2)))
