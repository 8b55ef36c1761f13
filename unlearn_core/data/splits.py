"""Forget / retain / test splits from a ForgetSpec, and reading uploaded index lists."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from ..config import ForgetSpec
from ..errors import UserError
from .registry import Dataset


@dataclass(frozen=True, eq=False)
class Split:
    """Sorted int64 positions: forget + retain partition the train set, test_forget +
    test_retain partition the test set (test_forget = labels in `forget_classes`)."""

    forget: np.ndarray
    retain: np.ndarray
    test_forget: np.ndarray
    test_retain: np.ndarray
    forget_classes: tuple[int, ...]

    def sizes(self) -> dict[str, int]:
        return {"forget": len(self.forget), "retain": len(self.retain),
                "test_forget": len(self.test_forget), "test_retain": len(self.test_retain)}


def make_split(dataset: Dataset, forget: ForgetSpec, seed: int) -> Split:
    """The split `forget` describes; random choices come from numpy Generator(seed)."""
    train_labels = dataset.train.labels.numpy()
    n_train = len(train_labels)
    rng = np.random.default_rng(seed)
    _check_classes(dataset, forget.classes)

    if forget.kind == "classes":
        for label in forget.classes:
            _check_class_present(dataset, train_labels, label)
        forget_positions = np.flatnonzero(np.isin(train_labels, forget.classes))
    elif forget.kind == "random":
        count = max(1, round(forget.fraction * n_train))
        forget_positions = rng.choice(n_train, size=count, replace=False)
    elif forget.kind == "non_iid":
        chosen = []
        for label in forget.classes:
            members = _check_class_present(dataset, train_labels, label)
            count = max(1, round(forget.fraction * len(members)))
            chosen.append(rng.choice(members, size=count, replace=False))
        forget_positions = np.concatenate(chosen)
    elif forget.kind == "poison":
        forget_positions = _poison_positions(dataset, train_labels, forget, rng)
    else:
        out_of_range = [index for index in forget.indices if index >= n_train]
        if out_of_range:
            raise UserError(f"forget.indices: index {out_of_range[0]} is out of range; the "
                            f"training set of {dataset.name} has {n_train:,} examples "
                            f"(indices 0..{n_train - 1})")
        forget_positions = np.asarray(forget.indices)

    forget_mask = np.zeros(n_train, dtype=bool)
    forget_mask[forget_positions] = True
    if forget_mask.all():
        parameter = {"indices": "forget.indices", "random": "forget.fraction",
                     "poison": "forget.poison.fraction"}.get(
            forget.kind, "forget.classes")
        raise UserError(f"{parameter}: the forget set would be the whole training set of "
                        f"{dataset.name} ({n_train:,} examples), so the retain set would "
                        f"be empty")

    forget_classes = forget.classes if forget.kind in ("classes", "non_iid") else ()
    test_mask = np.isin(dataset.test.labels.numpy(), forget_classes)
    return Split(forget=_positions(forget_mask), retain=_positions(~forget_mask),
                 test_forget=_positions(test_mask), test_retain=_positions(~test_mask),
                 forget_classes=tuple(forget_classes))


def _poison_positions(dataset: Dataset, train_labels: np.ndarray, forget: ForgetSpec,
                      rng: np.random.Generator) -> np.ndarray:
    """`poison.fraction` of the training set; a backdoor's drawn from the classes other
    than the target (a target-class image relabelled as the target would teach no
    backdoor), Gaussian noise's from every class."""
    from .poison import check_target, trigger_window

    poison = forget.poison
    if poison.attack == "gaussian":
        candidates = np.arange(len(train_labels))
        count = max(1, round(poison.fraction * len(train_labels)))
        return rng.choice(candidates, size=count, replace=False)
    check_target(poison, dataset)
    trigger_window(poison, dataset.image_size)
    candidates = np.flatnonzero(train_labels != poison.target)
    count = max(1, round(poison.fraction * len(train_labels)))
    if count >= len(candidates):
        raise UserError(f"forget.poison.fraction: {poison.fraction:g} of {len(train_labels):,} "
                        f"training examples is {count:,}, but only {len(candidates):,} are "
                        f"outside the target class {poison.target} and at least one must "
                        f"stay clean")
    return rng.choice(candidates, size=count, replace=False)


def _positions(mask: np.ndarray) -> np.ndarray:
    """Sorted int64 positions where `mask` holds, read-only because splits are shared."""
    positions = np.flatnonzero(mask).astype(np.int64)
    positions.setflags(write=False)
    return positions


def _check_classes(dataset: Dataset, classes: tuple[int, ...]) -> None:
    for label in classes:
        if label >= dataset.num_classes:
            raise UserError(f"forget.classes: class {label} is out of range; dataset "
                            f"{dataset.name} has classes 0..{dataset.num_classes - 1}")


def _check_class_present(dataset: Dataset, train_labels: np.ndarray, label: int) -> np.ndarray:
    """Train positions of `label`; an empty class would give an empty forget set."""
    members = np.flatnonzero(train_labels == label)
    if len(members) == 0:
        raise UserError(f"forget.classes: dataset {dataset.name} has no training examples "
                        f"of class {label} ({dataset.classes[label]}), so the forget set "
                        f"would be empty")
    return members


_TOKEN_SEPARATORS = re.compile(r"[,\s]+")
_HEADER_TOKEN = re.compile(r"[A-Za-z_][\w.-]*")


def read_index_csv(data: str | bytes) -> tuple[int, ...]:
    """Training-set indices from an uploaded CSV: integers separated by commas, newlines
    or spaces, with at most one header line first (such as `index`). Returns them sorted
    without duplicates."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8-sig")  # spreadsheets often write a byte-order mark
        except UnicodeDecodeError:
            raise UserError("forget.indices: the file is not UTF-8 text; upload a CSV of "
                            "training-set indices, one integer per line") from None
    indices: set[int] = set()
    seen_content = False
    for line_number, line in enumerate(data.lstrip("\ufeff").splitlines(), start=1):
        tokens = [token.strip("\"'") for token in _TOKEN_SEPARATORS.split(line) if token]
        if not tokens:
            continue
        if not seen_content and all(_HEADER_TOKEN.fullmatch(token) for token in tokens):
            if len(tokens) > 1:
                raise UserError(f"forget.indices: line {line_number}: the header has "
                                f"{len(tokens)} columns ({', '.join(tokens)}); upload a "
                                f"single column of training-set indices")
            seen_content = True
            continue
        seen_content = True
        for token in tokens:
            indices.add(_parse_index(token, line_number))
    if not indices:
        raise UserError("forget.indices: the file holds no indices; expected non-negative "
                        "integers, one per line or separated by commas")
    return tuple(sorted(indices))


def _parse_index(token: str, line_number: int) -> int:
    if token.isdecimal() and token.isascii():
        if len(token) > 18:  # past any training set, and past int()'s 4,300-digit limit
            raise UserError(f"forget.indices: line {line_number}: a {len(token):,}-digit "
                            "number is out of range; expected positions in the training set")
        return int(token)
    if re.fullmatch(r"-\d+", token):
        problem = f"{token} is negative"
    elif re.fullmatch(r"[+-]?(\d+\.\d*|\.\d+|\d+(\.\d*)?[eE][+-]?\d+)", token):
        problem = f"{token} is not a whole number"
    else:
        problem = f"{token!r} is not a number"
    raise UserError(f"forget.indices: line {line_number}: {problem}; expected "
                    f"non-negative integers (positions in the training set)")
