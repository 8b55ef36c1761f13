"""The privacy part of a report: SalUn-protocol MIA efficacy for the unlearned model,
the oracle (the ideal) and the original, and distinguishability from the oracle."""

from __future__ import annotations

import numpy as np

from .. import array_keys
from ..data import Split
from ..report_schema import mia_gaps_to_oracle
from .accuracy import Predictions
from .activations import Memo, no_memo
from .mia import FEATURES, attack_features, attack_scores, distinguishability, mia_all

HEADLINE = "confidence"
DISTINGUISHABILITY_FEATURES = ("confidence", "entropy")
# Distinguishability compares the forget set's score distribution under the unlearned
# model with the oracle's; from fewer examples its epsilon is 0 or a step and reads as
# "private" while saying nothing, so it is marked not estimable instead.
MIN_DISTINGUISHABILITY_EXAMPLES = 10


def balanced_members(labels: np.ndarray, retain: np.ndarray, size: int, seed: int) -> np.ndarray:
    """A seeded subset of the retain set with (as nearly as possible) equal counts per
    class, `size` examples in all (fewer if the retain set is smaller)."""
    rng = np.random.default_rng(seed)
    by_class = {c: rng.permutation(retain[labels[retain] == c]) for c in np.unique(labels[retain])}
    size = min(size, len(retain))
    chosen: list[int] = []
    depth = 0
    while len(chosen) < size:  # round-robin over classes so small classes are not starved
        for members in by_class.values():
            if depth < len(members) and len(chosen) < size:
                chosen.append(int(members[depth]))
        depth += 1
    return np.sort(np.array(chosen, dtype=np.int64))


def _role_privacy(role: str, p: Predictions, labels: np.ndarray, members: np.ndarray,
                  split: Split, seed: int) -> tuple[dict, dict]:
    """One model's MIA efficacy for every feature, and its per-example arrays."""
    args = (p.train_probs[members], labels[members], p.test_probs, p.test_labels,
            p.train_probs[split.forget], labels[split.forget])
    arrays = {
        # Per-example membership scores of the forget set (the one-example view shows all
        # three models).
        array_keys.mia_score(role): attack_scores(*args, feature=HEADLINE, seed=seed),
        array_keys.forget_pred(role): p.train_probs[split.forget].argmax(1) if len(split.forget)
        else np.zeros(0, np.int64)}
    for set_name, probs, set_labels in (
            ("forget", p.train_probs[split.forget], labels[split.forget]),
            ("test", p.test_probs, p.test_labels)):
        arrays[array_keys.score("conf", role, set_name)] = attack_features(probs, set_labels,
                                                                          "confidence")
        arrays[array_keys.score("entropy", role, set_name)] = attack_features(probs, set_labels,
                                                                             "entropy")
    return mia_all(*args, seed=seed), arrays


def privacy_report(preds: dict[str, Predictions], split: Split, seed: int,
                   memo: Memo = no_memo) -> tuple[dict, dict]:
    """(report section, arrays) for the roles "unlearned", "original" and "oracle";
    `memo` keeps the references' part across runs of a setup."""
    labels = preds["unlearned"].train_labels
    members = balanced_members(labels, split.retain, len(preds["unlearned"].test_labels), seed)
    efficacy, arrays = {}, {}
    for role, p in preds.items():
        efficacy[role], role_arrays = memo((role,), f"mia-{seed}", lambda role=role, p=p: (
            _role_privacy(role, p, labels, members, split, seed)))
        arrays.update(role_arrays)
    arrays[array_keys.FORGET_INDEX] = np.asarray(split.forget, dtype=np.int64)
    dist, notes = {}, {}
    n_forget = int(len(split.forget))
    if n_forget < MIN_DISTINGUISHABILITY_EXAMPLES:
        notes["distinguishability"] = (f"needs at least {MIN_DISTINGUISHABILITY_EXAMPLES} "
                                       f"examples, has {n_forget}")
    for feature in DISTINGUISHABILITY_FEATURES:
        if notes:
            dist[feature] = {"epsilon": None, "privacy_score": None}
            continue
        short = array_keys.SCORE_ARRAY_NAMES[feature]
        curve = distinguishability(arrays[array_keys.score(short, "unlearned", "forget")],
                                   arrays[array_keys.score(short, "oracle", "forget")])
        dist[feature] = {"epsilon": float(curve["epsilon"]),
                         "privacy_score": float(curve["privacy_score"])}
        for name in array_keys.DISTINGUISHABILITY_CURVES:
            arrays[array_keys.distinguishability(feature, name)] = np.asarray(curve[name])
    report = {"efficacy": efficacy, "gap_to_oracle": mia_gaps_to_oracle(efficacy),
              "headline": HEADLINE, "features": list(FEATURES),
              "distinguishability": dist, "n_members": int(len(members)),
              "n_nonmembers": int(len(preds["unlearned"].test_labels)),
              "n_forget": n_forget, "not_estimable": notes}
    return report, arrays
