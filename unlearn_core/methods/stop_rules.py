"""Early stopping by forget accuracy, shared by the methods that ascend or relabel
(NegGrad, EC, DKVB's methods): the rule, its parameters and the accuracy it stops at."""

from __future__ import annotations


import numpy as np
from torch import nn

from ..data import TensorLoader
from ..metrics.accuracy import EVAL_BATCH
from ..training import predict
from .base import (Param, UnlearnContext)


def accuracy_and_loss(model: nn.Module, loader: TensorLoader) -> tuple[float, float]:
    """Accuracy and mean cross-entropy over a loader. A probability that underflowed to 0
    counts as 1e-30, so the loss reads as huge (69 nats) rather than inf."""
    probs, labels = predict(model, loader)
    true_class = probs[np.arange(len(labels)), labels]
    return (float((probs.argmax(1) == labels).mean()),
            float(-np.log(np.maximum(true_class, 1e-30)).mean()))



STOP_RULES = ("unseen", "target", "none")


def stop_params(when: str = "after each epoch") -> tuple[Param, ...]:
    """The early-stopping rule of methods that stop by forget accuracy (see
    `forget_accuracy_target`); `when` says when the method checks it."""
    return (
        Param("stop_rule", "choice", "unseen",
              f"when to stop early, checked {when}: 'unseen' once forget accuracy "
              "is at or below what a model that never saw the forget set would score (0 "
              "when whole classes are forgotten; otherwise the original's accuracy on "
              "held-out test examples of the same classes); 'target' once it "
              "is at or below stop_accuracy; 'none' runs every epoch",
              choices=STOP_RULES),
        Param("stop_accuracy", "float", 0.0, "forget accuracy to stop at, with stop_rule "
              "'target'", low=0.0, high=1.0),
    )


def forget_accuracy_target(ctx: UnlearnContext) -> float | None:
    """The forget accuracy to stop at under the `stop_params` rule; None when the run
    never stops early."""
    p = ctx.params
    if p["stop_rule"] == "none":
        return None
    if p["stop_rule"] == "target":
        return p["stop_accuracy"]
    exp = ctx.experiment
    if exp.spec.forget.kind == "classes":
        return 0.0  # a model never shown a class cannot name it
    # Random or listed examples: a retrained model still knows their classes from
    # other examples and gets them right about as often as unseen test data. Measured
    # on the original, not the current model: a collapsing model would drag a moving
    # target down with it. Test examples of the forget set's classes where there are
    # some (non-IID), else the whole test set.
    held_out = exp.loader("test_forget" if len(exp.split.test_forget) else "test",
                          batch_size=EVAL_BATCH)
    return accuracy_and_loss(ctx.original, held_out)[0]
