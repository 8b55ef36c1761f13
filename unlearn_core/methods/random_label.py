"""Random Label: fine-tune with the forget examples relabelled to random other classes;
the relabelling helpers Boundary Shrink and SalUn share."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from ..data import ImageSet, TensorLoader
from ..progress import Progress
from ..training import FitLog, sgd
from .base import (Method, Outcome, Param, UnlearnContext,
                   batch_size_param, epochs_param, lr_param)
from .registry import register_method


def forget_labels(ctx: UnlearnContext) -> torch.Tensor:
    """True labels of the forget examples, in the order of an unshuffled forget loader."""
    images, indices = ctx.experiment.part("forget")
    return images.labels[torch.tensor(indices, dtype=torch.int64)]


def relabelled_loader(ctx: UnlearnContext, new_forget_labels: torch.Tensor, *,
                      with_retain: bool, batch_size: int) -> TensorLoader:
    """Shuffled batches of the forget examples under `new_forget_labels` (in forget-set
    order), mixed with the retain examples under their own labels if `with_retain`."""
    exp = ctx.experiment
    train = exp.dataset.train
    indices = torch.tensor(exp.part("forget")[1], dtype=torch.int64)
    labels = new_forget_labels.to("cpu", torch.int64)
    if with_retain:
        retain = torch.tensor(exp.part("retain")[1], dtype=torch.int64)
        labels = torch.cat([labels, train.labels[retain]])
        indices = torch.cat([indices, retain])
    relabelled = ImageSet(train.images[indices], labels)
    return TensorLoader(relabelled, torch.arange(len(relabelled)), mean=exp.dataset.mean,
                        std=exp.dataset.std, batch_size=batch_size, shuffle=True,
                        seed=ctx.seed, device=exp.device)


def random_other_labels(labels: torch.Tensor, num_classes: int, seed: int) -> torch.Tensor:
    """For each label, a class drawn uniformly from the other num_classes − 1."""
    generator = torch.Generator().manual_seed(seed)
    offsets = torch.randint(1, num_classes, labels.shape, generator=generator)
    return (labels + offsets) % num_classes


def train_random_label(ctx: UnlearnContext, progress: Progress, *, label: str,
                       after_step: Callable[[], None] | None = None) -> FitLog:
    """Train on the forget set under fixed random wrong labels together with the retain
    set: the recipe of Random Label and of SalUn."""
    p = ctx.params
    model = ctx.model
    labels = random_other_labels(forget_labels(ctx), model.num_classes, ctx.seed)
    loader = relabelled_loader(ctx, labels, with_retain=True, batch_size=p["batch_size"])
    optimizer = sgd(model.parameters(), lr=p["lr"], weight_decay=p["weight_decay"])
    return ctx.fit(model, lambda: loader, lambda b: F.cross_entropy(model(b[0]), b[1]),
                   optimizer, epochs=p["epochs"], progress=progress, label=label,
                   after_step=after_step)


def random_label_params(lr: float) -> tuple[Param, ...]:
    return (
        epochs_param(3, "passes over forget + retain"),
        lr_param(lr),
        batch_size_param(64),
        Param("weight_decay", "float", 5e-4, "SGD weight decay (5e-4 in SalUn's code)",
              low=0.0, high=0.1),
    )


@register_method
class RandomLabel(Method):
    name = "random_label"
    plugin_ready = True
    title = "Random Label"
    summary = ("Give every forget example a fixed random wrong label and train on it "
               "together with the retain set, so the model stops trusting what it "
               "learned from the forget set.")
    reference = ("Golatkar et al., Eternal Sunshine of the Spotless Net (CVPR 2020); "
                 "as used by Fan et al., SalUn (ICLR 2024)")
    params = random_label_params(lr=0.05)

    def unlearn(self, ctx: UnlearnContext) -> Outcome:
        log = train_random_label(ctx, ctx.progress, label="Random Label")
        return Outcome(ctx.model, curves={"loss": log.epoch_losses}, info={"steps": log.steps})
