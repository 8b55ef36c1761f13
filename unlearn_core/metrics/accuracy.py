"""Accuracies of the shared evaluation protocol, from one pass over train and test."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data import Split
from ..models import LensModel
from ..training import Experiment, predict

ACCURACY_KEYS = ("forget_train", "retain_train", "test_forget", "test_retain", "test")
EVAL_BATCH = 512


@dataclass
class Predictions:
    """Softmax outputs of one model on the whole train and test sets."""

    train_probs: np.ndarray
    train_labels: np.ndarray
    test_probs: np.ndarray
    test_labels: np.ndarray


def predictions(model: LensModel, exp: Experiment) -> Predictions:
    train = predict(model, exp.loader("train", batch_size=EVAL_BATCH))
    test = predict(model, exp.loader("test", batch_size=EVAL_BATCH))
    return Predictions(*train, *test)


def _mean_correct(probs: np.ndarray, labels: np.ndarray, idx: np.ndarray) -> float | None:
    """Accuracy on the examples at idx; None for an empty part (e.g. no held-out
    forget classes when forgetting random examples)."""
    if len(idx) == 0:
        return None
    return float((probs[idx].argmax(1) == labels[idx]).mean())


def accuracies(pred: Predictions, split: Split, num_classes: int) -> dict:
    correct = pred.test_probs.argmax(1) == pred.test_labels
    per_class = [float(correct[pred.test_labels == c].mean()) if (pred.test_labels == c).any()
                 else None for c in range(num_classes)]
    return {
        "forget_train": _mean_correct(pred.train_probs, pred.train_labels, split.forget),
        "retain_train": _mean_correct(pred.train_probs, pred.train_labels, split.retain),
        "test_forget": _mean_correct(pred.test_probs, pred.test_labels, split.test_forget),
        "test_retain": _mean_correct(pred.test_probs, pred.test_labels, split.test_retain),
        "test": float(correct.mean()),
        "per_class_test": per_class,
    }
