"""The steps several methods share: fine-tuning on the retain set, a run's fit info."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..training import FitLog, sgd
from .base import (UnlearnContext)


def fit_on_retain(ctx: UnlearnContext, trained: nn.Module,
                  forward: Callable[[torch.Tensor], torch.Tensor], label: str,
                  penalty: Callable[[float], torch.Tensor] | None = None) -> FitLog:
    """Minimise CE(forward(x), y) over the retain set, updating the parameters of
    `trained` only, with the method's epochs, lr and batch_size. `penalty(done)`, if
    given, is added to each step's loss; `done` is the fraction of steps already taken
    (0 at the first step), for penalties that follow a schedule."""
    p = ctx.params
    loader = ctx.loader("retain")
    total_steps = p["epochs"] * len(loader)
    steps_taken = 0

    def loss_fn(batch):
        nonlocal steps_taken
        x, y = batch
        loss = F.cross_entropy(forward(x), y)
        if penalty is not None:
            loss = loss + penalty(steps_taken / total_steps)
        steps_taken += 1
        return loss

    return ctx.fit(trained, lambda: loader, loss_fn, sgd(trained.parameters(), lr=p["lr"]),
                   epochs=p["epochs"], progress=ctx.progress, label=label)



def fit_info(log: FitLog, **extra) -> dict:
    return {"steps": log.steps, "epochs_run": len(log.epoch_losses), **extra}
