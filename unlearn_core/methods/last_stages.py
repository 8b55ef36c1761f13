"""CF-k and EU-k: retrain or fine-tune only the last k stages of the original."""

from __future__ import annotations


import torch
from torch import nn

from ..errors import UserError
from ..models import LensModel
from ..training import FitLog
from .base import (Method, Outcome, Param, UnlearnContext, batch_size_param, epochs_param,
                   lr_param)
from .retain_training import fit_info, fit_on_retain
from .registry import register_method


def k_param(default: int, help: str) -> Param:
    # The real upper bound is the model's stage count, checked in `last_stages`.
    return Param("k", "int", default, help, low=1, high=64)


def last_stages(model: LensModel, k: int) -> tuple[str, ...]:
    """Names of the last k stages, or a UserError giving this model's allowed range."""
    stages = model.probe_layers
    # A model on a frozen encoder (dkvb, frozen_linear) must keep its encoder as it is.
    frozen = getattr(model, "frozen_stages", ())
    allowed = len(stages) - len(frozen)
    if k > allowed:
        which = f", of which {list(frozen)} are a frozen encoder" if frozen else ""
        raise UserError(f"method.params.k: expected an integer in [1, {allowed}] for this "
                        f"model, whose stages are {list(stages)}{which}; got {k}")
    return stages[-k:]


class LastStagesMethod(Method):
    """A method that changes only the last k stages: k is checked against the model
    before the run is recorded."""

    bottleneck_refusal = ("its only trainable parameters are the bottleneck's values (the "
                          "classifier is their fixed mean): Finetune trains exactly those")

    def check(self, params, model) -> None:
        last_stages(model, params["k"])


def fit_last_stages(ctx: UnlearnContext, trained_names: tuple[str, ...], label: str) -> FitLog:
    """Train the stages `trained_names` (the last ones) on the retain set; the earlier
    stages stay exactly as they are, batch-norm statistics included, because they run
    in eval mode without gradients (fit switches only the trained stages to train mode)."""
    model = ctx.model
    frozen_names = model.probe_layers[:-len(trained_names)]
    trained = nn.ModuleList(model.stages[name] for name in trained_names)
    if not frozen_names:
        return fit_on_retain(ctx, trained, model, label)
    boundary = frozen_names[-1]
    for name in frozen_names:
        model.stages[name].eval()

    def forward(x):
        with torch.no_grad():
            h = model.forward_features(x, [boundary])[boundary]
        return model.forward_from(boundary, h)

    return fit_on_retain(ctx, trained, forward, label)


@register_method
class CatastrophicForgettingK(LastStagesMethod):
    name = "cf_k"
    title = "CF-k"
    summary = ("Finetune only the last k stages on the retain set, the rest frozen: "
               "catastrophic forgetting confined to the top of the network.")
    reference = ("Goel et al., Towards Adversarial Evaluation of Machine Unlearning "
                 "(2022; 'Evaluating inexact unlearning requires revisiting forgetting')")
    params = (
        k_param(3, "how many of the last stages to finetune, the classifier ('logits') "
                "included: 1 = classifier only, the model's stage count = Finetune"),
        epochs_param(3, "passes over the retain set"),
        lr_param(0.2),
        batch_size_param(64),
    )

    def unlearn(self, ctx: UnlearnContext) -> Outcome:
        trained_names = last_stages(ctx.model, ctx.params["k"])
        log = fit_last_stages(ctx, trained_names, f"CF-{len(trained_names)}")
        return Outcome(ctx.model, curves={"retain_loss": log.epoch_losses},
                       info=fit_info(log, trained_stages=list(trained_names)))


@register_method
class ExactUnlearningK(LastStagesMethod):
    name = "eu_k"
    title = "EU-k"
    summary = ("Re-initialise the last k stages and train them from scratch on the retain "
               "set, the rest frozen: exact for those stages, while whatever the frozen "
               "stages learned from the forget set stays.")
    reference = ("Goel et al., Towards Adversarial Evaluation of Machine Unlearning "
                 "(2022; 'Evaluating inexact unlearning requires revisiting forgetting')")
    params = (
        k_param(2, "how many of the last stages to re-initialise and retrain, the "
                "classifier ('logits') included: 1 = classifier only, the model's stage "
                "count = a full retrain on this method's budget"),
        epochs_param(5, "passes over the retain set"),
        lr_param(0.05),
        batch_size_param(64),
    )

    def unlearn(self, ctx: UnlearnContext) -> Outcome:
        model = ctx.model
        trained_names = last_stages(model, ctx.params["k"])
        # A model freshly built with the run's seed gives the initial weights: the ones the
        # original and the oracle started from, so k = all stages retrains like the oracle.
        fresh = ctx.experiment.new_model(seed=ctx.seed)
        for name in trained_names:
            model.stages[name].load_state_dict(fresh.stages[name].state_dict())
        log = fit_last_stages(ctx, trained_names, f"EU-{len(trained_names)}")
        return Outcome(model, curves={"retain_loss": log.epoch_losses},
                       info=fit_info(log, trained_stages=list(trained_names)))
