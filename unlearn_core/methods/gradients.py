"""Per-parameter gradient statistics over a loader, and how much of each stage a
parameter selection covers: the one implementation behind SSD's importances, SalUn's
saliency and the localization strategies (DEL's |w·g|, SalLoc's |g|)."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..data import TensorLoader
from ..models import LensModel
from ..progress import Progress

REDUCTIONS = ("mean", "sum")


def batch_gradients(model: LensModel, loader: TensorLoader, progress: Progress, *,
                    transform: Callable[[torch.Tensor], torch.Tensor] = lambda g: g,
                    reduction: str = "mean", label: str) -> dict[str, torch.Tensor]:
    """Per parameter, the mean (or sum) over `loader`'s batches of
    `transform(∇θ CE(batch))`, keyed by `model.named_parameters()` names.

    Computed in eval mode: the weights are judged as the model is used, and a forward
    pass in train mode would move the batch-norm statistics, changing the model before
    anything was unlearned. `torch.autograd.grad` leaves every `.grad` untouched.
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction: expected one of {REDUCTIONS}, got {reduction!r}")
    model.eval()
    named = list(model.named_parameters())
    totals = {name: torch.zeros_like(p) for name, p in named}
    count = len(loader)
    for index, (x, y) in enumerate(loader):
        grads = torch.autograd.grad(F.cross_entropy(model(x), y), [p for _, p in named])
        for (name, _), grad in zip(named, grads):
            totals[name] += transform(grad)
        progress.update((index + 1) / count, f"{label}: batch {index + 1}/{count}")
    if reduction == "sum":
        return totals
    return {name: total / max(count, 1) for name, total in totals.items()}


def mean_batch_gradients(model: LensModel, loader: TensorLoader, progress: Progress, *,
                         transform: Callable[[torch.Tensor], torch.Tensor] = lambda g: g,
                         label: str) -> dict[str, torch.Tensor]:
    """`batch_gradients` averaged over the batches (SSD's importances, SalUn's saliency)."""
    return batch_gradients(model, loader, progress, transform=transform, reduction="mean",
                           label=label)


def stage_fractions(model: LensModel, masks: dict[str, torch.Tensor]) -> tuple[np.ndarray, float]:
    """Fraction of selected weights in each stage (probe-layer order) and overall.

    `masks` maps parameter names (as `model.named_parameters()` gives them) to boolean
    tensors. A stage without parameters reports 0, not NaN, so figures need no special
    case.
    """
    per_stage, selected_total, size_total = [], 0, 0
    for stage in model.probe_layers:
        selected = size = 0
        for name, p in model.stages[stage].named_parameters(prefix=f"stages.{stage}"):
            selected += int(masks[name].sum())
            size += p.numel()
        per_stage.append(selected / size if size else 0.0)
        selected_total += selected
        size_total += size
    return np.asarray(per_stage, dtype=np.float32), selected_total / max(size_total, 1)
