"""Localized unlearning: an algorithm that may change only the parameters a
localization mask selects (methods/localization.py). DEL = the DEL mask + Reset +
Finetune (Torkzadehmahani et al., Improved Localized Machine Unlearning Through the Lens
of Memorization).

Algorithms:

* "rft" (Reset + Finetune): the selected parameters take the values of a freshly
  initialised model of the same architecture, then the model is finetuned on the retain
  set with every gradient multiplied by the mask, the classifier always trainable (SGD,
  momentum 0.9, weight decay 0, cosine schedule).
* "random_label": Random Label (random_label.py) with gradients multiplied by the mask.
* "neggrad_plus": NegGrad+ (neggrad.py) with gradients multiplied by the mask.

Parameters outside the mask (and, for RFT, outside the classifier) stay bit-identical:
their gradient is zero, so with weight decay 0 their momentum stays zero and SGD adds
exactly 0 to them. Batch-norm running statistics are buffers, not parameters: training
runs in train mode as the paper's loop does, so every norm layer re-estimates them on
the training batches, selected or not. A mask therefore bounds which weights move, not
which layers compute differently.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
from typing import Iterator, Mapping, Sequence

import torch

from ..config import MethodSpec, RunSpec, SetupSpec
from ..models import LensModel
from .base import (NEEDS_EVERY_GRADIENT, Method, Outcome, Param, UnlearnContext,
                   batch_size_param, epochs_param, lr_param)
from .neggrad import NegGradPlus
from .retain_training import fit_info, fit_on_retain
from .localization import (RANDOM_LIKE, RHO, STRATEGY, TOPK_FRACTION, Localization,
                           channel_selectivity, localize, mask_summary)
from .registry import register_method
from .random_label import train_random_label

ALGORITHMS = ("rft", "random_label", "neggrad_plus")
ALGORITHM_TITLES = {"rft": "Reset + Finetune", "random_label": "Random Label",
                    "neggrad_plus": "NegGrad+"}
# Share of the progress bar for the gradients on the forget set and the selectivity.
LOCALIZE_SHARE = 0.1


def reset_selected(model: LensModel, fresh: LensModel, masks: dict[str, torch.Tensor]) -> None:
    """Selected entries take `fresh`'s values; the others keep theirs, bit for bit."""
    fresh_params = dict(fresh.named_parameters())
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.where(masks[name], fresh_params[name].to(p.device), p))


@contextlib.contextmanager
def masked_gradients(model: LensModel, masks: dict[str, torch.Tensor]) -> Iterator[None]:
    """While inside, gradients reach the selected entries only: a tensor with nothing
    selected stops requiring a gradient (so backward does not go through it for
    nothing), a partly selected one has its gradient multiplied by the mask as it is
    computed. Everything is restored on exit."""
    hooks, frozen = [], []
    try:
        for name, p in model.named_parameters():
            mask = masks[name]
            if not bool(mask.any()):
                if p.requires_grad:
                    p.requires_grad_(False)
                    frozen.append(p)
            elif not bool(mask.all()):
                hooks.append(p.register_hook(lambda grad, keep=mask: grad * keep))
        yield
    finally:
        for hook in hooks:
            hook.remove()
        for p in frozen:
            p.requires_grad_(True)


def with_classifier(model: LensModel, masks: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`masks` with every classifier parameter selected."""
    classifier = {f"stages.{model.probe_layers[-1]}.{name}"
                  for name, _ in model.classifier.named_parameters()}
    return {name: torch.ones_like(mask) if name in classifier else mask
            for name, mask in masks.items()}


def reset_finetune(ctx: UnlearnContext, masks: dict[str, torch.Tensor]) -> Outcome:
    """RFT: reset the selected parameters to a fresh initialisation, then finetune the
    selected ones and the classifier on the retain set."""
    model = ctx.model
    # The run seed's initialisation, as EU-k: the weights the original started from, so
    # ρ = 1 retrains like the oracle.
    reset_selected(model, ctx.experiment.new_model(seed=ctx.seed), masks)
    with masked_gradients(model, with_classifier(model, masks)):
        log = fit_on_retain(ctx, model, model, "Reset + Finetune")
    return Outcome(model, curves={"retain_loss": log.epoch_losses}, info=fit_info(log))


def masked_random_label(ctx: UnlearnContext, masks: dict[str, torch.Tensor]) -> Outcome:
    # Weight decay would shrink the unselected weights of partly selected tensors.
    ctx = dataclasses.replace(ctx, params={**ctx.params, "weight_decay": 0.0})
    with masked_gradients(ctx.model, masks):
        log = train_random_label(ctx, ctx.progress, label="Random Label (masked)")
    return Outcome(ctx.model, curves={"loss": log.epoch_losses}, info=fit_info(log))


def masked_neggrad_plus(ctx: UnlearnContext, masks: dict[str, torch.Tensor]) -> Outcome:
    # NegGrad+'s SGD has no weight decay, so the masked gradients are all it takes.
    with masked_gradients(ctx.model, masks):
        return NegGradPlus().unlearn(ctx)


ALGORITHM_RUNNERS = {"rft": reset_finetune, "random_label": masked_random_label,
                     "neggrad_plus": masked_neggrad_plus}


def unlearn_localized(ctx: UnlearnContext, strategy: str, algorithm: str,
                      random_like: str) -> Outcome:
    """Localize on the original, run the algorithm under the mask, and attach the mask's
    per-layer and per-channel description and the channels' selectivity."""
    p = ctx.params
    forget = ctx.loader("forget", shuffle=False)
    localization: Localization = localize(
        ctx.model, forget, strategy, p["rho"], ctx.progress.stage(0.0, LOCALIZE_SHARE),
        topk_fraction=p["topk_fraction"], seed=ctx.seed, random_like=random_like)
    arrays, info = mask_summary(ctx.model, localization)
    arrays.update(channel_selectivity(ctx.original, forget, ctx.loader("retain"), localization))
    training = dataclasses.replace(ctx, progress=ctx.progress.stage(LOCALIZE_SHARE, 1.0))
    outcome = ALGORITHM_RUNNERS[algorithm](training, localization.masks)
    outcome.artifacts.update(arrays)
    # SalUn and SSD report the overall share under this name too.
    outcome.info.update(algorithm=algorithm, random_like=random_like if strategy == "random"
                        else None, localization=info, mask_fraction=info["selected_fraction"])
    return outcome


def training_params(lr: float, epochs: int) -> tuple[Param, ...]:
    return (epochs_param(epochs, "passes over the retain set (NegGrad+: forget batches "
                                 "cycle alongside; Random Label: over forget + retain)"),
            lr_param(lr), batch_size_param(64))


# From the sweep in docs/benchmarks/del-mnist5k-cpu-2core.md: 6 epochs at lr 0.03 came
# out about 0.1 pp of avg gap closer to the oracle, at twice the cost, as many steps
# as retraining.
RFT_LR, RFT_EPOCHS = 0.1, 3


@register_method
class DEL(Method):
    name = "del"
    title = "DEL (Deletion by Example Localization)"
    summary = ("Score every channel by the weighted gradient |w·g| of the forget loss, reset "
               "the most critical channels (a budget ρ of all parameters) to a fresh "
               "initialisation, then finetune them and the classifier on the retain set; "
               "every other parameter stays exactly as it was.")
    reference = ("Torkzadehmahani et al., Improved Localized Machine Unlearning Through the "
                 "Lens of Memorization (2024)")
    params = (RHO, TOPK_FRACTION) + training_params(RFT_LR, RFT_EPOCHS)
    frozen_encoder_refusal = NEEDS_EVERY_GRADIENT

    def unlearn(self, ctx: UnlearnContext) -> Outcome:
        return unlearn_localized(ctx, "del", "rft", RANDOM_LIKE.default)


@register_method
class Localized(Method):
    name = "localized"
    title = "Localized unlearning (strategy × algorithm)"
    summary = ("Any localization strategy (DEL, SalLoc, shallowest, deepest, or a random mask "
               "with another strategy's per-layer counts) paired with Reset + Finetune, "
               "Random Label or NegGrad+, which then change only the selected parameters.")
    reference = DEL.reference
    frozen_encoder_refusal = NEEDS_EVERY_GRADIENT
    params = (STRATEGY, RANDOM_LIKE,
              Param("algorithm", "choice", "rft", "what to run on the selected parameters: "
                    + ", ".join(f"{k} = {v}" for k, v in ALGORITHM_TITLES.items())
                    + " (RFT also always trains the classifier)", choices=ALGORITHMS),
              RHO, TOPK_FRACTION) + training_params(RFT_LR, RFT_EPOCHS) + (
        Param("alpha", "float", 0.99, "NegGrad+ only: weight a of the retain loss; 1 − a "
              "weighs the forget ascent", low=0.0, high=1.0, low_inclusive=False,
              high_inclusive=False),
    )

    def unlearn(self, ctx: UnlearnContext) -> Outcome:
        p = ctx.params
        return unlearn_localized(ctx, p["strategy"], p["algorithm"], p["random_like"])


SWEEP_RHOS = (0.05, 0.1, 0.2, 0.3, 0.5)
# The paper tunes the learning rate and epochs per budget. This grid holds the default
# (lr 0.1, 3 epochs) and the settings that came out best in the one-budget sweep of
# docs/benchmarks/del-mnist5k-cpu-2core.md (lr 0.03, 6 epochs).
TUNING_GRID: Mapping[str, tuple] = {"lr": (0.03, 0.1), "epochs": (3, 6)}


def grid_settings(grid: Mapping[str, Sequence] | None) -> list[dict]:
    """Every combination of the grid's values ([{}] for no grid)."""
    if not grid:
        return [{}]
    return [dict(zip(grid, values)) for values in itertools.product(*grid.values())]


def budget_sweep_specs(setup: SetupSpec, params: dict, rhos: Sequence[float] = SWEEP_RHOS,
                       tuning_grid: Mapping[str, Sequence] | None = None) -> list[RunSpec]:
    """One "localized" run of `setup` per ρ (per ρ and grid setting with `tuning_grid`),
    the other parameters from `params`; resolved, so each spec's hash is the one a
    finished run of it is stored under."""
    method = Localized()
    return [RunSpec(setup, MethodSpec(method.name, method.resolve_params(
                {**params, **setting, "rho": rho})))
            for rho in rhos for setting in grid_settings(tuning_grid)]
