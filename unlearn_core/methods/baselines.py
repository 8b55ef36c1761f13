"""Baselines that train with the plain loop: Retrain, Finetune, NegGrad+."""

from __future__ import annotations

import torch.nn.functional as F

from ..training import fit, repeat_forever, sgd, train_classifier
from .base import (Method, Outcome, Param, UnlearnContext, batch_size_param, epochs_param,
                   lr_param)
from .registry import register_method


@register_method
class Retrain(Method):
    name = "retrain"
    title = "Retrain (oracle)"
    summary = ("Train a fresh model on the retain set only, with the setup's recipe. Exact "
               "unlearning and the reference every other method is measured against; "
               "also the slowest.")
    params = (
        Param("seed_offset", "int", 0, "0 reproduces the cached oracle's initialisation and "
              "data order; another value gives an independent retrain (a noise floor)",
              low=0, high=10_000),
    )

    def unlearn(self, ctx: UnlearnContext) -> Outcome:
        exp = ctx.experiment
        model = exp.new_model(seed=exp.spec.seed + ctx.params["seed_offset"])
        log = train_classifier(model, exp, "retain", exp.spec.train, ctx.progress,
                               label="retraining", seed=exp.spec.seed + ctx.params["seed_offset"])
        return Outcome(model, curves={"retain_loss": log.epoch_losses}, info={"steps": log.steps})


@register_method
class Finetune(Method):
    name = "finetune"
    title = "Finetune"
    summary = ("Keep training the original on the retain set only, hoping the forget set "
               "fades through catastrophic forgetting.")
    params = (epochs_param(3, "passes over the retain set"), lr_param(0.05), batch_size_param(64))

    def unlearn(self, ctx: UnlearnContext) -> Outcome:
        p = ctx.params
        model = ctx.model
        loader = ctx.loader("retain")
        optimizer = sgd(model.parameters(), lr=p["lr"])
        log = fit(model, lambda: loader, lambda b: F.cross_entropy(model(b[0]), b[1]),
                  optimizer, epochs=p["epochs"], progress=ctx.progress, label="finetuning")
        return Outcome(model, curves={"retain_loss": log.epoch_losses}, info={"steps": log.steps})


@register_method
class NegGradPlus(Method):
    name = "neggrad_plus"
    title = "NegGrad+"
    summary = ("Descend on the retain loss while ascending on the forget loss: "
               "minimise a·CE(retain) − (1−a)·CE(forget).")
    reference = "Kurmanji et al., Towards Unbounded Machine Unlearning (NeurIPS 2023)"
    params = (
        epochs_param(3, "passes over the retain set (forget batches cycle alongside)"),
        lr_param(0.02),
        batch_size_param(64),
        Param("alpha", "float", 0.99, "weight a of the retain loss; 1 − a weighs the forget "
              "ascent", low=0.0, high=1.0, low_inclusive=False, high_inclusive=False),
    )

    def unlearn(self, ctx: UnlearnContext) -> Outcome:
        p = ctx.params
        model = ctx.model
        retain, forget = ctx.loader("retain"), ctx.loader("forget")
        optimizer = sgd(model.parameters(), lr=p["lr"])
        alpha = p["alpha"]
        forget_losses: list[float] = []

        def loss_fn(batch):
            (xr, yr), (xf, yf) = batch
            forget_loss = F.cross_entropy(model(xf), yf)
            forget_losses.append(forget_loss.item())
            return alpha * F.cross_entropy(model(xr), yr) - (1 - alpha) * forget_loss

        log = fit(model, lambda: zip(retain, repeat_forever(forget)), loss_fn, optimizer,
                  epochs=p["epochs"], steps_per_epoch=len(retain), progress=ctx.progress,
                  label="NegGrad+")
        return Outcome(model, curves={"loss": log.epoch_losses, "forget_loss_per_step": forget_losses},
                       info={"steps": log.steps})
