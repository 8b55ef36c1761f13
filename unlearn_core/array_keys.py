"""The names of a run's per-example arrays in artifacts.npz (docs/report-schema.md,
"artifacts.npz"): every "eval/..." key is built here, so a writer and its readers cannot
spell one differently. The methods' own arrays are named beside the methods."""

from __future__ import annotations

PREFIX = "eval/"

# The probe subset: one row per example, the order of every probe array below.
PROBE_INDEX = "eval/probe_index"  # position in its set (train or test)
PROBE_PART = "eval/probe_part"  # index into the report's layers.parts
PROBE_LABEL = "eval/probe_label"
# The forget set: one row per forget example, the order of every per-forget array.
FORGET_INDEX = "eval/forget_index"
POISON_INDEX = "eval/poison/index"

# The per-example attack features stored per role and set: the report names a feature in
# full ("confidence"), its arrays by a short name ("eval/conf/...").
SCORE_ARRAY_NAMES = {"confidence": "conf", "entropy": "entropy"}
SCORE_SETS = ("forget", "test")


def pred(role: str) -> str:
    """Predicted class of each probe example under `role`."""
    return f"eval/pred/{role}"


def embedding(method: str, layer: str, role: str) -> str:
    """2-d coordinates of the probe examples at `layer` under `role`; `method` "pca"
    (stored by evaluate) or "umap" (a derived result)."""
    return f"eval/{method}/{layer}/{role}"


def embedding_variance(method: str, layer: str) -> str:
    """Explained variance ratio of the joint 2-d map (PCA only)."""
    return f"eval/{method}_variance/{layer}"


def score(feature: str, role: str, set_name: str) -> str:
    """Attack feature `feature` (a value of SCORE_ARRAY_NAMES) of each example of `set_name`
    (one of SCORE_SETS) under `role`."""
    return f"eval/{feature}/{role}/{set_name}"


def mia_score(role: str) -> str:
    """Membership score of each forget example under `role`."""
    return f"eval/mia_score/{role}"


def forget_pred(role: str) -> str:
    """Predicted class of each forget example under `role`."""
    return f"eval/forget_pred/{role}"


DISTINGUISHABILITY_CURVES = ("thresholds", "fpr", "fnr")


def distinguishability(feature: str, curve: str) -> str:
    """The distinguishability curve of `feature`: `curve` one of DISTINGUISHABILITY_CURVES."""
    return f"eval/dist/{feature}/{curve}"


def poison_pred(role: str) -> str:
    """Predicted class of each triggered test image under `role` (backdoor runs)."""
    return f"eval/poison/pred/{role}"


def poison_imprint(role: str) -> str:
    """The noise imprint score of each poisoned example under `role` (Gaussian poisoning)."""
    return f"eval/poison/imprint/{role}"
