"""Selective Synaptic Dampening: weights far more important to the forget set than to
the whole training set are shrunk (importances from methods/gradients.py)."""

from __future__ import annotations

import torch

from .base import NEEDS_EVERY_GRADIENT, Method, Outcome, Param, UnlearnContext
from .gradients import mean_batch_gradients, stage_fractions
from .registry import register_method


@register_method
class SelectiveSynapticDampening(Method):
    name = "ssd"
    title = "SSD (Selective Synaptic Dampening)"
    summary = ("No training: weights far more important to the forget set than to the whole "
               "training set (importance = mean squared gradient) are shrunk toward zero, "
               "each in proportion to how much more the forget set relies on it.")
    reference = ("Foster et al., Fast Machine Unlearning Without Retraining Through Selective "
                 "Synaptic Dampening (AAAI 2024)")
    params = (
        Param("alpha", "float", 5.0, "selection α: a weight is dampened where its forget "
              "importance exceeds α times its importance on the whole training set; larger "
              "selects fewer weights (the paper uses 10, which selects almost nothing on "
              "mnist5k; 5 is the best of the sweep in docs/benchmarks/)", low=0.0, high=1e12,
              low_inclusive=False, log_scale=True),
        Param("dampening", "float", 1.0, "dampening λ: a selected weight is multiplied by "
              "min(λ·I_D / I_f, 1); smaller shrinks harder, 0 zeroes the selected weights",
              low=0.0, high=1e6),
        Param("batch_size", "int", 64, "examples per batch when measuring importances "
              "(64 in the paper's code); importance is a per-batch squared gradient, so the "
              "batch size shifts which weights pass α", low=1, high=65536),
    )
    frozen_encoder_refusal = NEEDS_EVERY_GRADIENT

    def unlearn(self, ctx: UnlearnContext) -> Outcome:
        p = ctx.params
        model = ctx.model
        # Shuffled (seeded) so every batch mixes classes even where the data are stored
        # sorted by class: class-pure batches would measure another importance.
        train = ctx.loader("train", shuffle=True)
        forget = ctx.loader("forget", shuffle=False)
        # Share the bar by batch count, the measure of the work.
        train_share = len(train) / (len(train) + len(forget))
        importance_all = mean_batch_gradients(model, train, ctx.progress.stage(0.0, train_share),
                                              transform=torch.square,
                                              label="importance on the training set")
        importance_forget = mean_batch_gradients(model, forget,
                                                 ctx.progress.stage(train_share, 1.0),
                                                 transform=torch.square,
                                                 label="importance on the forget set")
        dampened: dict[str, torch.Tensor] = {}
        with torch.no_grad():
            for name, weight in model.named_parameters():
                i_all, i_forget = importance_all[name], importance_forget[name]
                selected = i_forget > p["alpha"] * i_all
                factor = torch.ones_like(weight)
                # Only selected weights are divided by: there I_f > 0, so no 0/0.
                factor[selected] = (p["dampening"] * i_all[selected]
                                    / i_forget[selected]).clamp(max=1.0)
                weight.mul_(factor)
                # A selected weight with factor 1 (possible when λ > α) is left as it was.
                dampened[name] = factor < 1.0
        fractions, overall = stage_fractions(model, dampened)
        ctx.progress.update(1.0, f"dampened {overall:.2%} of the weights")
        return Outcome(model, artifacts={"mask_fraction": fractions},
                       info={"mask_fraction": overall, "steps": 0,
                             "importance_batches": len(train) + len(forget)})
