"""Boundary Unlearning: move the decision boundary instead of the weights' knowledge.
Boundary Shrink relabels each forget example as its nearest wrong class; Boundary
Expand sends the forget set to an extra shadow class and then deletes that class."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..data import TensorLoader
from ..models import LOGITS, LensModel
from ..training import seeded, sgd
from .base import (NO_GRADIENT_THROUGH_KEYS, Method, Outcome, Param, UnlearnContext,
                   batch_size_param, epochs_param, lr_param)
from .registry import register_method
from .random_label import forget_labels, relabelled_loader

REFERENCE = "Chen et al., Boundary Unlearning (CVPR 2023)"


def fgsm_neighbour_labels(model: LensModel, loader: TensorLoader,
                          eps: float) -> tuple[torch.Tensor, float]:
    """For each example of `loader` (in its order), the wrong class the model prefers
    after one FGSM step of size `eps` in its (normalised) input space, and the fraction
    of examples whose prediction the step alone changed.

    The true class is excluded from the argmax: where the step does not cross a
    boundary, the runner-up at the perturbed point is still the nearest wrong class,
    and training toward the true label would teach nothing.
    """
    model.eval()
    labels, flipped = [], 0
    for x, y in loader:
        x = x.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(F.cross_entropy(model(x), y), [x])
        with torch.no_grad():
            logits = model(x + eps * grad.sign())
            flipped += int((logits.argmax(1) != y).sum())
            logits[torch.arange(len(y), device=y.device), y] = -torch.inf
            labels.append(logits.argmax(1).cpu())
    neighbours = torch.cat(labels)
    return neighbours, flipped / max(len(neighbours), 1)


def boundary_params(epochs: int, lr: float) -> tuple[Param, ...]:
    return (epochs_param(epochs, "passes over the forget set"), lr_param(lr), batch_size_param(64))


@register_method
class BoundaryShrink(Method):
    name = "boundary_shrink"
    plugin_ready = True
    title = "Boundary Shrink"
    summary = ("Find each forget example's nearest wrong class with one FGSM step on the "
               "original and finetune on the forget set with those labels, so the forget "
               "class's region shrinks into its neighbours.")
    reference = REFERENCE
    params = boundary_params(epochs=5, lr=0.0005) + (
        Param("eps", "float", 0.1, "FGSM step size in normalised input units (the model's "
              "input, (x/255 − mean)/std): eps·std of the pixel range, about 8/255 on MNIST",
              low=0.0, high=10.0, low_inclusive=False),
    )
    bottleneck_refusal = NO_GRADIENT_THROUGH_KEYS

    def unlearn(self, ctx: UnlearnContext) -> Outcome:
        p = ctx.params
        model = ctx.model
        forget = ctx.loader("forget", shuffle=False)
        neighbours, flipped = fgsm_neighbour_labels(ctx.original, forget, p["eps"])
        ctx.progress.update(0.0, f"FGSM changed {flipped:.0%} of the forget predictions")
        loader = relabelled_loader(ctx, neighbours, with_retain=False, batch_size=p["batch_size"])
        optimizer = sgd(model.parameters(), lr=p["lr"])
        log = ctx.fit(model, lambda: loader, lambda b: F.cross_entropy(model(b[0]), b[1]),
                      optimizer, epochs=p["epochs"], progress=ctx.progress,
                      label="Boundary Shrink")
        return Outcome(model, curves={"loss": log.epoch_losses},
                       info={"steps": log.steps, "fgsm_flipped_fraction": flipped})


def with_output_rows(classifier: nn.Linear, rows: int, seed: int) -> nn.Linear:
    """A copy of `classifier` with `rows` outputs: existing rows kept, new rows drawn
    with nn.Linear's default initialisation (seeded)."""
    with seeded(seed):
        widened = nn.Linear(classifier.in_features, rows)
    widened = widened.to(classifier.weight.device, classifier.weight.dtype)
    kept = min(rows, classifier.out_features)
    with torch.no_grad():
        widened.weight[:kept] = classifier.weight[:kept]
        widened.bias[:kept] = classifier.bias[:kept]
    return widened


@register_method
class BoundaryExpand(Method):
    name = "boundary_expand"
    plugin_ready = True
    title = "Boundary Expand"
    summary = ("Add a shadow class to the classifier, finetune the forget set into it, then "
               "delete the shadow class: the forget examples are left in the region it took.")
    reference = REFERENCE
    params = boundary_params(epochs=10, lr=0.0003)
    bottleneck_refusal = ("it widens the classifier by a shadow class, and a DKVB model's "
                          "classifier is the fixed mean of its values")

    def unlearn(self, ctx: UnlearnContext) -> Outcome:
        p = ctx.params
        model = ctx.model
        classes = model.num_classes
        model.stages[LOGITS] = with_output_rows(model.classifier, classes + 1, ctx.seed)
        shadow = torch.full_like(forget_labels(ctx), classes)
        loader = relabelled_loader(ctx, shadow, with_retain=False, batch_size=p["batch_size"])
        optimizer = sgd(model.parameters(), lr=p["lr"])
        log = ctx.fit(model, lambda: loader, lambda b: F.cross_entropy(model(b[0]), b[1]),
                      optimizer, epochs=p["epochs"], progress=ctx.progress,
                      label="Boundary Expand")
        model.stages[LOGITS] = with_output_rows(model.classifier, classes, ctx.seed)
        return Outcome(model, curves={"loss": log.epoch_losses}, info={"steps": log.steps})
