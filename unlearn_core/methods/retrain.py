"""Retrain: the exact-unlearning baseline, a fresh model trained on the retain set."""

from __future__ import annotations



from ..training import train_classifier
from .base import (Method, Outcome, Param, UnlearnContext)
from .retain_training import fit_info
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
    frozen_encoder_refusal = ("it would train the frozen encoder from random weights; this "
                              "model's retrain oracle is the setup's oracle (the encoder "
                              "model's oracle with a head trained on the retain set)")

    def unlearn(self, ctx: UnlearnContext) -> Outcome:
        exp = ctx.experiment
        model = exp.new_model(seed=exp.spec.seed + ctx.params["seed_offset"])
        log = train_classifier(model, exp, "retain", exp.spec.train, ctx.progress,
                               label="retraining", seed=exp.spec.seed + ctx.params["seed_offset"])
        return Outcome(model, curves={"retain_loss": log.epoch_losses}, info=fit_info(log))
