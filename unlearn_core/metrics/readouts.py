"""Readouts of whether a model's features still hold the forget data.

Each readout scores one layer's frozen features on HELD-OUT forget examples (how often
they are put in their true class) and, as a baseline, on held-out retain examples (a
readout that fails there says nothing about forgetting). All work on the activations of
the probe subset (metrics/activations.py) and are pure functions of arrays:

* ``linear_probe``: the probe of the Layers page (metrics/probes.py), fit on the retain
  examples and half of the forget-train examples (`layers.probe_rows`).
* ``ncm_k1``, ``ncm_k5``, ``ncm_k20``: few-shot nearest class mean. Class means of the
  retain-train examples, plus, for each class that only the forget set holds, the mean
  of k forget-train examples (for other forget sets, k forget examples join their
  classes' means); a held-out example goes to the nearest mean. Features are centred on
  the retain-train mean and scaled to unit length first (the usual "CL2N" of few-shot
  work), so no layer's scale decides. Averaged over `draws` seeded draws of the k.
* ``knn``: k-nearest neighbours (k = 5, cosine after the same centring) on the examples
  the linear probe is fit on.

A feature space that still holds a forgotten class keeps its examples together, so a
mean of a few of them, or their nearest neighbours, finds the held-out ones; the
question these answer is whether that differs between a model that saw the class (the
original) and one that never did (the oracle). The relearning test (relearn.py) is the
model-level readout; docs/benchmarks/readouts-mnist5k-cpu-2core.md measures all of them
on the two references.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .activations import ProbeSubset
from .layers import probe_rows
from .probes import probe_margins

FEW_SHOT_KS = (1, 5, 20)
KNN_NEIGHBOURS = 5
DRAWS = 10
READOUTS = ("linear_probe", *(f"ncm_k{k}" for k in FEW_SHOT_KS), "knn")
READOUT_LABELS = {"linear_probe": "Linear probe",
                  **{f"ncm_k{k}": f"Few-shot nearest class mean, k = {k}" for k in FEW_SHOT_KS},
                  "knn": f"{KNN_NEIGHBOURS}-nearest neighbours"}
# The readout the probe view leads with: the one that separated the original from the
# oracle most in docs/benchmarks/readouts-mnist5k-cpu-2core.md (set from that table;
# None would mean that none separates them).
HEADLINE: str | None = "ncm_k1"


def _normalised(features: np.ndarray, centre_rows: np.ndarray) -> np.ndarray:
    """Centred on the mean of `centre_rows`, each row scaled to unit length (an all-zero
    row stays zero)."""
    x = features.astype(np.float32, copy=False)
    x = x - x[centre_rows].mean(axis=0)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def nearest_class_mean(support_X: np.ndarray, support_y: np.ndarray,
                       query_X: np.ndarray) -> np.ndarray:
    """Predicted labels: the class whose support mean is nearest (Euclidean)."""
    classes = np.unique(support_y)
    if len(classes) == 0:
        raise ValueError("support_y: no examples")
    means = np.stack([support_X[support_y == c].mean(axis=0) for c in classes])
    distances = ((query_X ** 2).sum(1, keepdims=True) - 2 * query_X @ means.T
                 + (means ** 2).sum(1)[None, :])
    return classes[distances.argmin(axis=1)]


def nearest_neighbours(support_X: np.ndarray, support_y: np.ndarray, query_X: np.ndarray,
                       neighbours: int = KNN_NEIGHBOURS) -> np.ndarray:
    """Predicted labels by a majority of the `neighbours` most similar support rows (dot
    product: cosine on unit rows); a tie goes to the class of the nearest among them."""
    if len(support_y) == 0:
        raise ValueError("support_y: no examples")
    n = min(neighbours, len(support_y))
    similarity = query_X @ support_X.T
    nearest = np.argsort(-similarity, axis=1, kind="stable")[:, :n]
    votes = support_y[nearest]
    predicted = np.empty(len(query_X), dtype=support_y.dtype)
    for row, labels in enumerate(votes):
        values, counts = np.unique(labels, return_counts=True)
        tied = set(values[counts == counts.max()].tolist())
        predicted[row] = next(label for label in labels if label in tied)
    return predicted


def held_out_rows(subset: ProbeSubset, exclude: np.ndarray | None = None) -> dict:
    """{"forget": held-out forget rows, "retain": held-out retain rows}: the test parts,
    or, without a forget test part, the forget-train rows not in `exclude`."""
    if "forget_test" in subset.parts:
        forget = np.flatnonzero(subset.mask("forget_test"))
    else:
        forget = np.setdiff1d(np.flatnonzero(subset.mask("forget_train")),
                              np.zeros(0, int) if exclude is None else exclude)
    retain = np.flatnonzero(subset.mask("retain_test"))
    return {"forget": forget, "retain": retain}


def _scores(predicted: np.ndarray, labels: np.ndarray, rows: dict,
            index: dict[int, int]) -> dict:
    return {which: (float((predicted[[index[r] for r in found]] == labels[found]).mean())
                    if len(found) else None) for which, found in rows.items()}


def few_shot_ncm(features: np.ndarray, subset: ProbeSubset, k: int, *, seed: int = 0,
                 draws: int = DRAWS) -> dict:
    """Few-shot nearest-class-mean readout of one layer (see the module docstring):
    {"forget": mean held-out forget accuracy over draws, "retain": the same on held-out
    retain examples, "forget_std": spread over draws, "k", "draws"}."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k: expected an integer >= 1, got {k!r}")
    if isinstance(draws, bool) or not isinstance(draws, (int, np.integer)) or draws < 1:
        raise ValueError(f"draws: expected an integer >= 1, got {draws!r}")
    retain_rows = np.flatnonzero(subset.mask("retain_train"))
    forget_rows = np.flatnonzero(subset.mask("forget_train"))
    if len(retain_rows) == 0 or len(forget_rows) == 0:
        raise ValueError("subset: few-shot readouts need retain-train and forget-train rows")
    x = _normalised(features, retain_rows)
    labels = subset.labels
    only_forget = sorted(set(labels[forget_rows].tolist()) - set(labels[retain_rows].tolist()))
    groups = [forget_rows[labels[forget_rows] == c] for c in only_forget] or [forget_rows]
    rng = np.random.default_rng(seed)
    forget_scores, retain_scores = [], []
    for _ in range(draws):
        shots = np.concatenate([rng.choice(g, size=min(k, len(g)), replace=False)
                                for g in groups])
        support = np.concatenate([retain_rows, shots])
        rows = held_out_rows(subset, exclude=shots)
        query = np.concatenate([rows["forget"], rows["retain"]])
        predicted = nearest_class_mean(x[support], labels[support], x[query])
        scores = _scores(predicted, labels, rows, {r: i for i, r in enumerate(query)})
        forget_scores.append(scores["forget"])
        retain_scores.append(scores["retain"])
    forget_scores = [s for s in forget_scores if s is not None]
    retain_scores = [s for s in retain_scores if s is not None]
    return {"forget": float(np.mean(forget_scores)) if forget_scores else None,
            "retain": float(np.mean(retain_scores)) if retain_scores else None,
            "forget_std": float(np.std(forget_scores)) if forget_scores else None,
            "k": int(k), "draws": int(draws)}


def knn_readout(features: np.ndarray, subset: ProbeSubset, *, seed: int = 0,
                neighbours: int = KNN_NEIGHBOURS) -> dict:
    """k-NN on the rows the linear probe is fit on (`layers.probe_rows`), scored on the
    held-out rows: {"forget", "retain"} accuracies."""
    train_rows, test_rows = probe_rows(subset, seed)
    if len(train_rows) == 0 or len(test_rows) == 0:
        return {"forget": None, "retain": None}
    x = _normalised(features, train_rows)
    rows = held_out_rows(subset, exclude=train_rows)
    query = np.concatenate([rows["forget"], rows["retain"]])
    predicted = nearest_neighbours(x[train_rows], subset.labels[train_rows], x[query],
                                   neighbours)
    return _scores(predicted, subset.labels, rows, {r: i for i, r in enumerate(query)})


def linear_probe_readout(features: np.ndarray, subset: ProbeSubset, *, seed: int = 0) -> dict:
    """The Layers page's linear probe, scored on held-out forget and retain rows:
    {"forget", "retain"} accuracies (None for a dead layer)."""
    train_rows, test_rows = probe_rows(subset, seed)
    rows = held_out_rows(subset, exclude=train_rows)
    if len(test_rows) == 0 or len(np.unique(subset.labels[train_rows])) < 2 or np.all(
            features[train_rows].max(axis=0) == features[train_rows].min(axis=0)):
        return {"forget": None, "retain": None}
    query = np.concatenate([rows["forget"], rows["retain"]])
    margins = probe_margins(features[train_rows], subset.labels[train_rows], features[query],
                            subset.labels[query], seed=seed)
    correct = np.nan_to_num(margins, nan=-1.0) > 0
    n_forget = len(rows["forget"])
    return {"forget": float(correct[:n_forget].mean()) if n_forget else None,
            "retain": float(correct[n_forget:].mean()) if len(rows["retain"]) else None}


def layer_readouts(features: np.ndarray, subset: ProbeSubset, *, seed: int = 0,
                   readouts: Sequence[str] = READOUTS) -> dict[str, dict]:
    """Every readout of one layer: {name: {"forget", "retain", ...}}."""
    unknown = [name for name in readouts if name not in READOUTS]
    if unknown:
        raise ValueError(f"readouts: unknown {unknown}; expected some of {list(READOUTS)}")
    out = {}
    for name in readouts:
        if name == "linear_probe":
            out[name] = linear_probe_readout(features, subset, seed=seed)
        elif name == "knn":
            out[name] = knn_readout(features, subset, seed=seed)
        else:
            out[name] = few_shot_ncm(features, subset, int(name.removeprefix("ncm_k")),
                                     seed=seed)
    return out


def model_readouts(acts: dict[str, np.ndarray], subset: ProbeSubset, layers: Sequence[str],
                   *, seed: int = 0, readouts: Sequence[str] = READOUTS) -> dict:
    """The readouts of one model's layers: {"layers": [...], "readouts": {name:
    {"forget": [per layer], "retain": [per layer]}}}."""
    per_layer = [layer_readouts(acts[layer], subset, seed=seed, readouts=readouts)
                 for layer in layers]
    return {"layers": list(layers),
            "readouts": {name: {which: [values[name][which] for values in per_layer]
                                for which in ("forget", "retain")} for name in readouts}}
