"""The names the code, the report and the app share: the models' roles, the data parts
and how a method's hyperparameters are shown. One place, so a part or a role has one name and one
display label everywhere (issue 20)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

# The three models every run is judged by, in the report's canonical order.
UNLEARNED, ORIGINAL, ORACLE = "unlearned", "original", "oracle"
ROLES = (UNLEARNED, ORIGINAL, ORACLE)
# The two trained before any method runs (and cached per setup).
REFERENCE_ROLES = (ORIGINAL, ORACLE)
# A second original trained with the oracle's seed: the seed-noise baseline of CKA.
TWIN = "twin"
# The order a figure reads left to right: before, after, target.
ROLES_BEFORE_AFTER = (ORIGINAL, UNLEARNED, ORACLE)
ROLE_LABELS = {UNLEARNED: "Unlearned", ORIGINAL: "Original", ORACLE: "Retrain oracle"}


@dataclass(frozen=True)
class Part:
    """One part of the data. `name` is how the report's layers section and the probe
    arrays call it; `accuracy_key` how the accuracy section calls it (stored reports keep
    both spellings, so this is their one translation); `split_attr` the index array of
    `data.Split` it comes from, `from_set` the dataset ("train" or "test")."""

    name: str
    accuracy_key: str
    split_attr: str
    from_set: str
    label: str


PARTS = (Part("forget_train", "forget_train", "forget", "train", "Forget (train)"),
         Part("retain_train", "retain_train", "retain", "train", "Retain (train)"),
         Part("forget_test", "test_forget", "test_forget", "test", "Forget (test)"),
         Part("retain_test", "test_retain", "test_retain", "test", "Retain (test)"))
PART_NAMES = tuple(p.name for p in PARTS)
PART_BY_NAME = {p.name: p for p in PARTS}
PART_LABELS = {p.name: p.label for p in PARTS}


def format_params(params: Mapping) -> str:
    """Hyperparameters as "a=1, b=0.5", in the given order: a stored report's are sorted
    by name (report.json is written with sorted keys), a grid's follow its method."""
    return ", ".join(f"{name}={value}" for name, value in params.items())

