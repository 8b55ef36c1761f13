"""Distillation-based unlearning: SCRUB, a student that moves away from its teacher on
the forget set and stays with it on the retain set."""

from __future__ import annotations

import math
from statistics import fmean

import torch
import torch.nn.functional as F

from ..errors import UserError
from ..training import sgd
from .base import (Method, Outcome, Param, UnlearnContext, batch_size_param, epochs_param,
                   lr_param)
from .retain_training import fit_info
from .registry import register_method


def distillation_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                    temperature: float) -> torch.Tensor:
    """KL(teacher ‖ student) between temperature-softened outputs, batch mean, times T²
    so its gradients keep their scale whatever the temperature (Hinton et al.; SCRUB's
    DistillKL)."""
    return F.kl_div(F.log_softmax(student_logits / temperature, dim=1),
                    F.log_softmax(teacher_logits / temperature, dim=1),
                    reduction="batchmean", log_target=True) * temperature ** 2


@register_method
class Scrub(Method):
    name = "scrub"
    plugin_ready = True
    title = "SCRUB"
    summary = ("A student, starting as the original, learns from the frozen original as "
               "teacher: each epoch it first moves away from the teacher on the forget set "
               "(max-steps, only in the first max_epochs epochs), then back towards it on "
               "the retain set while fitting the labels (min-steps).")
    reference = "Kurmanji et al., Towards Unbounded Machine Unlearning (NeurIPS 2023)"
    params = (
        epochs_param(3, "epochs; each has a pass of min-steps over the retain set"),
        Param("max_epochs", "int", 1, "how many of the first epochs also start with a pass "
              "of max-steps over the forget set (at most epochs)", low=0, high=500),
        lr_param(0.0005),
        batch_size_param(64),
        Param("gamma", "float", 0.99, "weight g of the cross-entropy on retain labels in the "
              "min-steps", low=0.0, high=100.0),
        Param("alpha", "float", 0.001, "weight a of KL(teacher ‖ student) on the retain set "
              "in the min-steps", low=0.0, high=100.0),
        Param("temperature", "float", 4.0, "softmax temperature T of the distillation KL",
              low=0.0, high=100.0, low_inclusive=False),
    )

    def check(self, params, model) -> None:
        if params["max_epochs"] > params["epochs"]:
            raise UserError(f"method.params.max_epochs: expected at most epochs "
                            f"({params['epochs']}), got {params['max_epochs']}")

    def unlearn(self, ctx: UnlearnContext) -> Outcome:
        p = ctx.params
        student, teacher = ctx.model, ctx.original
        retain, forget = ctx.loader("retain"), ctx.loader("forget")
        # Per epoch, the losses of each phase's steps: the curves of the outcome.
        forget_kl: list[list[float]] = []
        retain_loss: list[list[float]] = []

        def epoch_batches():
            """One epoch: max-steps over the forget set while max_epochs last, then
            min-steps over the retain set; each batch tagged with its phase."""
            forget_kl.append([])
            retain_loss.append([])
            if len(forget_kl) <= p["max_epochs"]:
                yield from (("max", batch) for batch in forget)
            yield from (("min", batch) for batch in retain)

        def loss_fn(tagged):
            phase, (x, y) = tagged
            student_logits = student(x)
            with torch.no_grad():
                teacher_logits = teacher(x)
            kl = distillation_kl(student_logits, teacher_logits, p["temperature"])
            if phase == "max":
                forget_kl[-1].append(kl.item())
                return -kl
            loss = p["gamma"] * F.cross_entropy(student_logits, y) + p["alpha"] * kl
            retain_loss[-1].append(loss.item())
            return loss

        # The cosine schedule spans all steps; epochs differ in length (max-steps only in
        # the first max_epochs), so fit gets the mean epoch length, rounded up so the
        # learning rate never passes its minimum and rises again.
        total_steps = p["epochs"] * len(retain) + p["max_epochs"] * len(forget)
        log = ctx.fit(student, epoch_batches, loss_fn, sgd(student.parameters(), lr=p["lr"]),
                      epochs=p["epochs"], steps_per_epoch=math.ceil(total_steps / p["epochs"]),
                      progress=ctx.progress, label="SCRUB")
        return Outcome(student,
                       curves={"forget_kl": [fmean(v) for v in forget_kl if v],
                               "retain_loss": [fmean(v) for v in retain_loss]},
                       info=fit_info(log, max_epochs_run=sum(1 for v in forget_kl if v)))
