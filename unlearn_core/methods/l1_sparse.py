"""l1-sparse: fine-tuning on the retain set with an l1 penalty on every weight."""

from __future__ import annotations


import torch
from torch import nn

from .base import (Method, Outcome, Param, UnlearnContext, batch_size_param, epochs_param,
                   lr_param)
from .retain_training import fit_info, fit_on_retain
from .registry import register_method


def l1_norm(model: nn.Module) -> torch.Tensor:
    """‖θ‖₁ over every parameter, differentiable (as in the paper's code)."""
    return sum(p.abs().sum() for p in model.parameters())


@register_method
class L1Sparse(Method):
    name = "l1_sparse"
    plugin_ready = True
    title = "l1-sparse"
    summary = ("Finetune on the retain set with an l1 penalty a_t·‖θ‖₁ whose weight decays "
               "linearly from a to 0 over the steps: sparser weights make the forget set's "
               "traces easier to overwrite, and the penalty fades so accuracy can recover.")
    reference = ("Jia et al., Model Sparsity Can Simplify Machine Unlearning "
                 "(NeurIPS 2023)")
    params = (
        epochs_param(3, "passes over the retain set"),
        lr_param(0.1),
        batch_size_param(64),
        Param("alpha", "float", 1e-4, "starting weight a of the l1 penalty on all "
              "parameters (decays linearly to 0)", low=0.0, high=1.0, low_inclusive=False,
              log_scale=True),
    )

    def unlearn(self, ctx: UnlearnContext) -> Outcome:
        model = ctx.model
        alpha = ctx.params["alpha"]
        norm_before = l1_norm(model).item()
        log = fit_on_retain(ctx, model, model, "l1-sparse",
                            penalty=lambda done: alpha * (1.0 - done) * l1_norm(model))
        return Outcome(model, curves={"loss": log.epoch_losses},
                       info=fit_info(log, l1_norm_before=norm_before,
                                     l1_norm_after=l1_norm(model).item()))
