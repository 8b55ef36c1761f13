"""Baselines that train with the plain loop: Retrain, Finetune, NegGrad, NegGrad+,
l1-sparse, CF-k and EU-k."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data import TensorLoader
from ..errors import DivergedError, UserError
from ..metrics.accuracy import EVAL_BATCH
from ..models import LensModel
from ..training import FitLog, predict, repeat_forever, sgd, train_classifier
from .base import (Method, Outcome, Param, UnlearnContext, batch_size_param, epochs_param,
                   lr_param)
from .registry import register_method


def fit_on_retain(ctx: UnlearnContext, trained: nn.Module,
                  forward: Callable[[torch.Tensor], torch.Tensor], label: str,
                  penalty: Callable[[float], torch.Tensor] | None = None) -> FitLog:
    """Minimise CE(forward(x), y) over the retain set, updating the parameters of
    `trained` only, with the method's epochs, lr and batch_size. `penalty(done)`, if
    given, is added to each step's loss; `done` is the fraction of steps already taken
    (0 at the first step), for penalties that follow a schedule."""
    p = ctx.params
    loader = ctx.loader("retain")
    total_steps = p["epochs"] * len(loader)
    steps_taken = 0

    def loss_fn(batch):
        nonlocal steps_taken
        x, y = batch
        loss = F.cross_entropy(forward(x), y)
        if penalty is not None:
            loss = loss + penalty(steps_taken / total_steps)
        steps_taken += 1
        return loss

    return ctx.fit(trained, lambda: loader, loss_fn, sgd(trained.parameters(), lr=p["lr"]),
                   epochs=p["epochs"], progress=ctx.progress, label=label)


def accuracy_and_loss(model: nn.Module, loader: TensorLoader) -> tuple[float, float]:
    """Accuracy and mean cross-entropy over a loader. A probability that underflowed to 0
    counts as 1e-30, so the loss reads as huge (69 nats) rather than inf."""
    probs, labels = predict(model, loader)
    true_class = probs[np.arange(len(labels)), labels]
    return (float((probs.argmax(1) == labels).mean()),
            float(-np.log(np.maximum(true_class, 1e-30)).mean()))


def fit_info(log: FitLog, **extra) -> dict:
    return {"steps": log.steps, "epochs_run": len(log.epoch_losses), **extra}


@register_method
class Retrain(Method):
    name = "retrain"
    title = "Retrain (oracle)"
    summary = ("Train a fresh model on the retain set only, with the setup's recipe. Exact "
               "unlearning and the reference every other method is measured against; "
               "also the slowest.")
    params = (
        Param("seed_offset", "int", 0, "0 reproduces the cached oracle's initialisation and "
              "data order; another value gives an independent retrain (a noise floor)",
              low=0, high=10_000),
    )
    frozen_encoder_refusal = ("it would train the frozen encoder from random weights; this "
                              "model's retrain oracle is the setup's oracle (the encoder "
                              "model's oracle with a head trained on the retain set)")

    def unlearn(self, ctx: UnlearnContext) -> Outcome:
        exp = ctx.experiment
        model = exp.new_model(seed=exp.spec.seed + ctx.params["seed_offset"])
        log = train_classifier(model, exp, "retain", exp.spec.train, ctx.progress,
                               label="retraining", seed=exp.spec.seed + ctx.params["seed_offset"])
        return Outcome(model, curves={"retain_loss": log.epoch_losses}, info=fit_info(log))


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


# Mean cross-entropy (nats) on the forget examples, of a batch or of the whole set after
# an epoch, above which NegGrad fails the run: the true class then gets probability
# e^-25 ≈ 1e-11 (geometric mean), far past what forgetting needs. Beyond it the ascent
# only inflates the logits, which wrecks the retained classes as well and ends in inf/NaN
# a few steps later. Runs that stop by their rule end near 3 to 13 nats (measured on
# digits and mnist5k, class 0).
NEGGRAD_LOSS_CAP = 25.0
STOP_RULES = ("unseen", "target", "none")


def stop_params(when: str = "after each epoch") -> tuple[Param, ...]:
    """The early-stopping rule of methods that stop by forget accuracy (see
    `forget_accuracy_target`); `when` says when the method checks it."""
    return (
        Param("stop_rule", "choice", "unseen",
              f"when to stop early, checked {when}: 'unseen' once forget accuracy "
              "is at or below what a model that never saw the forget set would score (0 "
              "when whole classes are forgotten; otherwise the original's accuracy on "
              "held-out test examples of the same classes); 'target' once it "
              "is at or below stop_accuracy; 'none' runs every epoch",
              choices=STOP_RULES),
        Param("stop_accuracy", "float", 0.0, "forget accuracy to stop at, with stop_rule "
              "'target'", low=0.0, high=1.0),
    )


def forget_accuracy_target(ctx: UnlearnContext) -> float | None:
    """The forget accuracy to stop at under the `stop_params` rule; None when the run
    never stops early."""
    p = ctx.params
    if p["stop_rule"] == "none":
        return None
    if p["stop_rule"] == "target":
        return p["stop_accuracy"]
    exp = ctx.experiment
    if exp.spec.forget.kind == "classes":
        return 0.0  # a model never shown a class cannot name it
    # Random or listed examples: a retrained model still knows their classes from
    # other examples and gets them right about as often as unseen test data. Measured
    # on the original, not the current model: a collapsing model would drag a moving
    # target down with it. Test examples of the forget set's classes where there are
    # some (non-IID), else the whole test set.
    held_out = exp.loader("test_forget" if len(exp.split.test_forget) else "test",
                          batch_size=EVAL_BATCH)
    return accuracy_and_loss(ctx.original, held_out)[0]


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


def k_param(default: int, help: str) -> Param:
    # The real upper bound is the model's stage count, checked in `last_stages`.
    return Param("k", "int", default, help, low=1, high=64)


def last_stages(model: LensModel, k: int) -> tuple[str, ...]:
    """Names of the last k stages, or a UserError giving this model's allowed range."""
    stages = model.probe_layers
    # A model on a frozen encoder (dkvb, frozen_linear) must keep its encoder as it is.
    frozen = getattr(model, "frozen_stages", ())
    allowed = len(stages) - len(frozen)
    if k > allowed:
        which = f", of which {list(frozen)} are a frozen encoder" if frozen else ""
        raise UserError(f"method.params.k: expected an integer in [1, {allowed}] for this "
                        f"model, whose stages are {list(stages)}{which}; got {k}")
    return stages[-k:]


class LastStagesMethod(Method):
    """A method that changes only the last k stages: k is checked against the model
    before the run is recorded."""

    bottleneck_refusal = ("its only trainable parameters are the bottleneck's values (the "
                          "classifier is their fixed mean): Finetune trains exactly those")

    def check(self, params, model) -> None:
        last_stages(model, params["k"])


def fit_last_stages(ctx: UnlearnContext, trained_names: tuple[str, ...], label: str) -> FitLog:
    """Train the stages `trained_names` (the last ones) on the retain set; the earlier
    stages stay exactly as they are, batch-norm statistics included, because they run
    in eval mode without gradients (fit switches only the trained stages to train mode)."""
    model = ctx.model
    frozen_names = model.probe_layers[:-len(trained_names)]
    trained = nn.ModuleList(model.stages[name] for name in trained_names)
    if not frozen_names:
        return fit_on_retain(ctx, trained, model, label)
    boundary = frozen_names[-1]
    for name in frozen_names:
        model.stages[name].eval()

    def forward(x):
        with torch.no_grad():
            h = model.forward_features(x, [boundary])[boundary]
        return model.forward_from(boundary, h)

    return fit_on_retain(ctx, trained, forward, label)


@register_method
class CatastrophicForgettingK(LastStagesMethod):
    name = "cf_k"
    title = "CF-k"
    summary = ("Finetune only the last k stages on the retain set, the rest frozen: "
               "catastrophic forgetting confined to the top of the network.")
    reference = ("Goel et al., Towards Adversarial Evaluation of Machine Unlearning "
                 "(2022; 'Evaluating inexact unlearning requires revisiting forgetting')")
    params = (
        k_param(3, "how many of the last stages to finetune, the classifier ('logits') "
                "included: 1 = classifier only, the model's stage count = Finetune"),
        epochs_param(3, "passes over the retain set"),
        lr_param(0.2),
        batch_size_param(64),
    )

    def unlearn(self, ctx: UnlearnContext) -> Outcome:
        trained_names = last_stages(ctx.model, ctx.params["k"])
        log = fit_last_stages(ctx, trained_names, f"CF-{len(trained_names)}")
        return Outcome(ctx.model, curves={"retain_loss": log.epoch_losses},
                       info=fit_info(log, trained_stages=list(trained_names)))


@register_method
class ExactUnlearningK(LastStagesMethod):
    name = "eu_k"
    title = "EU-k"
    summary = ("Re-initialise the last k stages and train them from scratch on the retain "
               "set, the rest frozen: exact for those stages, while whatever the frozen "
               "stages learned from the forget set stays.")
    reference = ("Goel et al., Towards Adversarial Evaluation of Machine Unlearning "
                 "(2022; 'Evaluating inexact unlearning requires revisiting forgetting')")
    params = (
        k_param(2, "how many of the last stages to re-initialise and retrain, the "
                "classifier ('logits') included: 1 = classifier only, the model's stage "
                "count = a full retrain on this method's budget"),
        epochs_param(5, "passes over the retain set"),
        lr_param(0.05),
        batch_size_param(64),
    )

    def unlearn(self, ctx: UnlearnContext) -> Outcome:
        model = ctx.model
        trained_names = last_stages(model, ctx.params["k"])
        # A model freshly built with the run's seed gives the initial weights: the ones the
        # original and the oracle started from, so k = all stages retrains like the oracle.
        fresh = ctx.experiment.new_model(seed=ctx.seed)
        for name in trained_names:
            model.stages[name].load_state_dict(fresh.stages[name].state_dict())
        log = fit_last_stages(ctx, trained_names, f"EU-{len(trained_names)}")
        return Outcome(model, curves={"retain_loss": log.epoch_losses},
                       info=fit_info(log, trained_stages=list(trained_names)))
