"""`evaluate`: everything a run's report holds, computed once and stored as JSON."""

from __future__ import annotations

from ..models import LensModel
from ..training import Experiment, speedup
from .accuracy import ACCURACY_KEYS, accuracies, predictions


def gaps_to_oracle(unlearned: dict, oracle: dict) -> dict:
    """Unlearned minus oracle for each accuracy (None where a part is empty)."""
    return {k: None if unlearned[k] is None or oracle[k] is None else unlearned[k] - oracle[k]
            for k in ACCURACY_KEYS}


def evaluate(unlearned: LensModel, original: LensModel, oracle: LensModel, exp: Experiment,
             *, seconds: float, oracle_seconds: float) -> dict:
    """The report of one unlearning run: accuracies of the unlearned model next to the
    original and the oracle, the gaps to the oracle, and the cost."""
    num_classes = exp.dataset.num_classes
    acc = {role: accuracies(predictions(model, exp), exp.split, num_classes)
           for role, model in (("unlearned", unlearned), ("original", original), ("oracle", oracle))}
    return {
        "accuracy": acc,
        "gap_to_oracle": gaps_to_oracle(acc["unlearned"], acc["oracle"]),
        "cost": {"seconds": seconds, "oracle_seconds": oracle_seconds,
                 "speedup": speedup(oracle_seconds, seconds), "device": str(exp.device)},
        "split": exp.split.sizes(),
        "classes": list(exp.dataset.classes),
        "forget_classes": list(exp.split.forget_classes),
    }
