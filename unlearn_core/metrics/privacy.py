"""The privacy part of a report: SalUn-protocol MIA efficacy for the unlearned model,
the oracle (the ideal) and the original, and distinguishability from the oracle."""

from __future__ import annotations

import numpy as np

from ..data import Split
from .accuracy import Predictions
from .mia import FEATURES, attack_features, attack_scores, distinguishability, mia_all

HEADLINE = "confidence"
DISTINGUISHABILITY_FEATURES = ("confidence", "entropy")


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


def privacy_report(preds: dict[str, Predictions], split: Split, seed: int) -> tuple[dict, dict]:
    """(report section, arrays) for the roles "unlearned", "original" and "oracle"."""
    labels = preds["unlearned"].train_labels
    members = balanced_members(labels, split.retain, len(preds["unlearned"].test_labels), seed)
    efficacy, arrays = {}, {}
    for role, p in preds.items():
        args = (p.train_probs[members], labels[members], p.test_probs, p.test_labels,
                p.train_probs[split.forget], labels[split.forget])
        efficacy[role] = mia_all(*args, seed=seed)
        if role == "unlearned":
            arrays["eval/mia_score/unlearned"] = attack_scores(*args, feature=HEADLINE, seed=seed)
        for set_name, probs, set_labels in (
                ("forget", p.train_probs[split.forget], labels[split.forget]),
                ("test", p.test_probs, p.test_labels)):
            arrays[f"eval/conf/{role}/{set_name}"] = attack_features(probs, set_labels, "confidence")
            arrays[f"eval/entropy/{role}/{set_name}"] = attack_features(probs, set_labels, "entropy")
    dist = {}
    for feature in DISTINGUISHABILITY_FEATURES:
        short = "conf" if feature == "confidence" else "entropy"
        curve = distinguishability(arrays[f"eval/{short}/unlearned/forget"],
                                   arrays[f"eval/{short}/oracle/forget"])
        dist[feature] = {"epsilon": float(curve["epsilon"]),
                         "privacy_score": float(curve["privacy_score"])}
        for name in ("thresholds", "fpr", "fnr"):
            arrays[f"eval/dist/{feature}/{name}"] = np.asarray(curve[name])
    report = {"efficacy": efficacy, "headline": HEADLINE, "features": list(FEATURES),
              "distinguishability": dist, "n_members": int(len(members)),
              "n_nonmembers": int(len(preds["unlearned"].test_labels)),
              "n_forget": int(len(split.forget))}
    return report, arrays
