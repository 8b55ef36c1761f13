"""Finetune: keep training the original on the retain set only."""

from __future__ import annotations



from .base import (Method, Outcome, UnlearnContext, batch_size_param, epochs_param,
                   lr_param)
from .retain_training import fit_info, fit_on_retain
from .registry import register_method


@register_method
class Finetune(Method):
    name = "finetune"
    plugin_ready = True
    title = "Finetune"
    summary = ("Keep training the original on the retain set only, hoping the forget set "
               "fades through catastrophic forgetting.")
    params = (epochs_param(3, "passes over the retain set"), lr_param(0.2), batch_size_param(64))

    def unlearn(self, ctx: UnlearnContext) -> Outcome:
        log = fit_on_retain(ctx, ctx.model, ctx.model, "finetuning")
        return Outcome(ctx.model, curves={"retain_loss": log.epoch_losses}, info=fit_info(log))
