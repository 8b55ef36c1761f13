"""SalUn: Random Label on the most salient weights only."""

from __future__ import annotations

from typing import Callable

import torch

from ..models import LensModel
from .base import (NEEDS_EVERY_GRADIENT, Method, Outcome, Param, UnlearnContext)
from .gradients import mean_batch_gradients, stage_fractions
from .random_label import random_label_params, train_random_label
from .registry import register_method


def top_fraction_masks(saliency: dict[str, torch.Tensor],
                       fraction: float) -> dict[str, torch.Tensor]:
    """Boolean masks selecting the round(fraction · N) largest values over all tensors
    together (one global ranking, ties broken by topk)."""
    flat = torch.cat([s.flatten() for s in saliency.values()])
    count = max(1, round(fraction * flat.numel()))
    chosen = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
    chosen[torch.topk(flat, count, sorted=False).indices] = True
    masks, start = {}, 0
    for name, s in saliency.items():
        masks[name] = chosen[start:start + s.numel()].view_as(s)
        start += s.numel()
    return masks


def pin_unselected(model: LensModel, original: LensModel,
                   masks: dict[str, torch.Tensor]) -> Callable[[], None]:
    """A step hook that copies the original's value back into every unselected weight:
    weight decay, and the momentum it feeds, move weights whose gradient is zeroed."""
    current = dict(model.named_parameters())
    triples = [(current[name], weight, masks[name]) for name, weight in original.named_parameters()]

    def pin() -> None:
        with torch.no_grad():
            for weight, original_weight, selected in triples:
                weight.copy_(torch.where(selected, weight, original_weight))
    return pin


@register_method
class SalUn(Method):
    name = "salun"
    plugin_ready = True
    title = "SalUn"
    summary = ("Rank weights by saliency, |∇θ of the forget loss| on the original model, and "
               "run Random Label on the top ρ only: the other weights get no gradient.")
    reference = ("Fan et al., SalUn: Empowering Machine Unlearning via Gradient-based Weight "
                 "Saliency in Both Image Classification and Generation (ICLR 2024)")
    params = random_label_params(lr=0.02) + (
        Param("rho", "float", 0.5, "fraction ρ of all weights updated: the most salient, "
              "ranked globally", low=0.0, high=1.0, low_inclusive=False),
        Param("strict", "bool", False, "also pin the other weights to the original after "
              "every step; off (as in the paper's code), weight decay still shrinks them"),
    )
    frozen_encoder_refusal = NEEDS_EVERY_GRADIENT

    def unlearn(self, ctx: UnlearnContext) -> Outcome:
        model = ctx.model
        # Saliency of |∇(−CE)| = |∇CE|: the sign does not matter after the absolute value.
        gradients = mean_batch_gradients(model, ctx.loader("forget", shuffle=False),
                                         ctx.progress.stage(0.0, 0.1), label="saliency")
        masks = top_fraction_masks({name: g.abs() for name, g in gradients.items()},
                                   ctx.params["rho"])
        named = dict(model.named_parameters())
        # Tensor hooks zero the gradients of unselected weights as they are computed,
        # before the optimizer sees them; fit itself stays the one plain loop.
        hooks = [named[name].register_hook(lambda grad, keep=mask: grad * keep)
                 for name, mask in masks.items()]
        pin = pin_unselected(model, ctx.original, masks) if ctx.params["strict"] else None
        try:
            log = train_random_label(ctx, ctx.progress.stage(0.1, 1.0), label="SalUn",
                                     after_step=pin)
        finally:
            for hook in hooks:
                hook.remove()
        fractions, overall = stage_fractions(model, masks)
        return Outcome(model, curves={"loss": log.epoch_losses},
                       artifacts={"mask_fraction": fractions},
                       info={"steps": log.steps, "mask_fraction": overall})
