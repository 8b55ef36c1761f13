"""NegGrad (gradient ascent on the forget set) and NegGrad+ (ascent on forget, descent
on retain)."""

from __future__ import annotations


import torch.nn.functional as F

from ..errors import DivergedError
from ..metrics.accuracy import EVAL_BATCH
from ..training import repeat_forever, sgd
from .base import (Method, Outcome, Param, UnlearnContext, batch_size_param, epochs_param,
                   lr_param)
from .retain_training import fit_info
from .stop_rules import accuracy_and_loss, forget_accuracy_target, stop_params
from .registry import register_method


# Mean cross-entropy (nats) on the forget examples, of a batch or of the whole set after
# an epoch, above which NegGrad fails the run: the true class then gets probability
# e^-25 ≈ 1e-11 (geometric mean), far past what forgetting needs. Beyond it the ascent
# only inflates the logits, which wrecks the retained classes as well and ends in inf/NaN
# a few steps later. Runs that stop by their rule end near 3 to 13 nats (measured on
# digits and mnist5k, class 0).
NEGGRAD_LOSS_CAP = 25.0

@register_method
class NegGrad(Method):
    name = "neggrad"
    plugin_ready = True
    title = "NegGrad"
    summary = ("Gradient ascent on the forget set only: maximise CE(forget), stopping "
               "once the forget accuracy has fallen to where a model that never saw "
               "those examples would be. Nothing holds the retained knowledge in place, "
               "so it is fast but fragile.")
    reference = ("Golatkar et al., Eternal Sunshine of the Spotless Net (CVPR 2020); "
                 "as NegGrad in Kurmanji et al., Towards Unbounded Machine Unlearning "
                 "(NeurIPS 2023)")
    params = (
        epochs_param(30, "most passes over the forget set (the stop rule usually ends "
                     "sooner)"),
        lr_param(0.001),
        # Large batches: the stop rule is checked after each pass, and the ascent speeds up
        # as it goes, so a pass of few steps (one, for forget sets up to 512) stops it close
        # to the target instead of far past it.
        batch_size_param(512),
    ) + stop_params()

    def unlearn(self, ctx: UnlearnContext) -> Outcome:
        p = ctx.params
        model = ctx.model
        forget = ctx.loader("forget")
        forget_eval = ctx.experiment.loader("forget", batch_size=EVAL_BATCH)
        target = forget_accuracy_target(ctx)
        forget_accuracies: list[float] = []
        stop_reason = f"ran all {p['epochs']} epochs"

        def check_forget_loss(value: float, when: str) -> None:
            if value > NEGGRAD_LOSS_CAP:
                raise DivergedError(
                    f"NegGrad: the forget loss reached {value:.1f} nats {when}, past the cap "
                    f"of {NEGGRAD_LOSS_CAP:g}: the ascent blew up the logits instead of "
                    f"forgetting; lower method.params.lr")

        def loss_fn(batch):
            x, y = batch
            forget_loss = F.cross_entropy(model(x), y)
            check_forget_loss(forget_loss.item(), f"in epoch {len(forget_accuracies) + 1}")
            return -forget_loss

        def stop() -> bool:
            # Also catches a blow-up in the last step of a pass, which the next pass's
            # first loss would only see if there were a next pass.
            nonlocal stop_reason
            forget_accuracy, forget_loss = accuracy_and_loss(model, forget_eval)
            epoch = len(forget_accuracies) + 1
            check_forget_loss(forget_loss, f"after epoch {epoch}")
            forget_accuracies.append(forget_accuracy)
            if target is None or forget_accuracy > target:
                return False
            stop_reason = (f"forget accuracy {forget_accuracy:.3f} reached the target "
                           f"{target:.3f} after epoch {epoch}")
            return True

        log = ctx.fit(model, lambda: forget, loss_fn, sgd(model.parameters(), lr=p["lr"]),
                      epochs=p["epochs"], progress=ctx.progress, label="NegGrad", stop=stop)
        return Outcome(model, curves={"forget_loss": [-loss for loss in log.epoch_losses]},
                       info=fit_info(log, stop_reason=stop_reason, stop_target=target,
                                     forget_accuracy_per_epoch=forget_accuracies))



@register_method
class NegGradPlus(Method):
    name = "neggrad_plus"
    plugin_ready = True
    title = "NegGrad+"
    summary = ("Descend on the retain loss while ascending on the forget loss: "
               "minimise a·CE(retain) − (1−a)·CE(forget).")
    reference = "Kurmanji et al., Towards Unbounded Machine Unlearning (NeurIPS 2023)"
    params = (
        epochs_param(3, "passes over the retain set (forget batches cycle alongside)"),
        lr_param(0.02),
        batch_size_param(64),
        Param("alpha", "float", 0.99, "weight a of the retain loss; 1 − a weighs the forget "
              "ascent", low=0.0, high=1.0, low_inclusive=False, high_inclusive=False),
    )

    def unlearn(self, ctx: UnlearnContext) -> Outcome:
        p = ctx.params
        model = ctx.model
        retain, forget = ctx.loader("retain"), ctx.loader("forget")
        optimizer = sgd(model.parameters(), lr=p["lr"])
        alpha = p["alpha"]
        forget_losses: list[float] = []

        def loss_fn(batch):
            (xr, yr), (xf, yf) = batch
            forget_loss = F.cross_entropy(model(xf), yf)
            forget_losses.append(forget_loss.item())
            return alpha * F.cross_entropy(model(xr), yr) - (1 - alpha) * forget_loss

        log = ctx.fit(model, lambda: zip(retain, repeat_forever(forget)), loss_fn, optimizer,
                      epochs=p["epochs"], steps_per_epoch=len(retain), progress=ctx.progress,
                      label="NegGrad+")
        return Outcome(model, curves={"loss": log.epoch_losses, "forget_loss_per_step": forget_losses},
                       info=fit_info(log))
