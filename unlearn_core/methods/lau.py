"""Layer Attack Unlearning (LAU): unlearn in the classifier only. Forget samples' features
are attacked with PGD through a frozen copy of the classifier (Partial-PGD), and the
classifier is taught to send each still-recognised sample where the attack pointed,
with cross-entropy plus a double-softmax distillation term.

Artifacts (Outcome.artifacts, with E = epochs run, C = classes):
  lau/still_correct_share        (E + 1,) share of the forget set the model classifies
                                 correctly, before the first epoch (index 0) and after each
  lau/target_matrix              (C, C) int64: attacks of the whole run, true class ->
                                 adversarial target class (the teacher's argmax at ℓ_adv);
                                 a sample is attacked, and counted, each time it is still
                                 classified correctly when its batch comes, so the rows sum
                                 to info["attacks"]; the diagonal counts attacks that did
                                 not leave the true class
  lau/perturbation_norm          (E,) mean over the epoch's attacks of ‖ℓ_adv − ℓ_f‖ (L2)
  lau/relative_perturbation_norm (E,) mean of ‖ℓ_adv − ℓ_f‖ / ‖ℓ_f‖ (at most epsilon)
(figures/lau.py reads them under the same names.)
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data import TensorLoader
from ..errors import UserError
from ..metrics.accuracy import EVAL_BATCH
from ..models import LensModel
from ..training import sgd
from .base import (NO_GRADIENT_THROUGH_KEYS, Method, Outcome, Param, UnlearnContext,
                   batch_size_param, epochs_param, lr_param)
from .retain_training import fit_info
from .scrub import distillation_kl
from .registry import register_method

# Artifact names. figures/lau.py reads the same names from its own copy, since the
# figures import no torch.
STILL_CORRECT = "lau/still_correct_share"
TARGET_MATRIX = "lau/target_matrix"
PERTURBATION_NORM = "lau/perturbation_norm"
RELATIVE_PERTURBATION_NORM = "lau/relative_perturbation_norm"


def split_layer(model: LensModel, offset: int) -> str:
    """The probe layer whose output LAU attacks: the last feature layer, moved `offset`
    probe layers earlier; a UserError giving this model's allowed range otherwise."""
    layers = model.feature_layers
    if offset >= len(layers):
        raise UserError(f"method.params.split_offset: expected an integer in "
                        f"[0, {len(layers) - 1}] for this model, whose feature layers are "
                        f"{list(layers)}; got {offset}")
    return layers[-1 - offset]


def stages_after(model: LensModel, split: str) -> tuple[str, ...]:
    """The stages F_c is made of: every one after `split`."""
    names = model.probe_layers
    return names[names.index(split) + 1:]


def partial_pgd(head: nn.Module, features: torch.Tensor, labels: torch.Tensor, *,
                epsilon: float, step_size: float, steps: int,
                nonnegative: bool) -> torch.Tensor:
    """Untargeted L2 PGD in feature space through `head` (frozen, in eval mode): `steps`
    ascent steps on CE(head(ℓ), labels) from ℓ = features, each of length
    step_size·ε·‖ℓ_f‖ along the per-sample normalised gradient, projected back into the
    ball of radius ε·‖ℓ_f‖ around each sample's own features, then clamped at 0 when the
    trunk's output is non-negative (adversarial features a ReLU could never emit would
    teach the head about inputs it never sees).

    Radius and step are relative to each sample's feature norm, so one setting carries
    over between models whose feature scales differ by orders of magnitude.
    """
    shape = (-1,) + (1,) * (features.dim() - 1)
    radius = epsilon * features.flatten(1).norm(dim=1)
    step = (step_size * radius).view(shape)
    adversarial = features.clone()
    for _ in range(steps):
        adversarial.requires_grad_(True)
        # Summed, not averaged: each sample's gradient is its own, whatever the batch size.
        loss = F.cross_entropy(head(adversarial), labels, reduction="sum")
        (grad,) = torch.autograd.grad(loss, [adversarial])
        with torch.no_grad():
            direction = grad / grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(shape)
            delta = adversarial + step * direction - features
            length = delta.flatten(1).norm(dim=1)
            delta = delta * (radius / length.clamp_min(1e-12)).clamp(max=1.0).view(shape)
            adversarial = features + delta
            if nonnegative:
                # Lowering a coordinate to 0 moves it towards ℓ_f's own (>= 0) value, so
                # the clamped point stays inside the ball.
                adversarial = adversarial.clamp_min(0.0)
    return adversarial.detach()


DOUBLE_SOFTMAX = ("teacher", "both")
TEACHERS = ("refreshed", "fixed")


def lau_loss(student_logits: torch.Tensor, target_logits: torch.Tensor, *, alpha: float,
             temperature: float, double_softmax: str = "teacher") -> torch.Tensor:
    """(1 − α)·CE(z_s, ŷ) + α·τ²·KL(softmax(softmax(z_t)/τ) ‖ softmax(z_s/τ)), ŷ = argmax z_t.

    The teacher side goes through softmax twice (the paper's "double softmax"): its
    probabilities, not its logits, are softened by τ, so the distilled target is close
    to uniform and carries only the ranking of the classes as soft information. With
    `double_softmax` "both" the student side does too, as the paper's text writes it
    (softmax(softmax(z_s)/τ)); METHODS.md decided on the teacher only, the default.
    """
    if double_softmax not in DOUBLE_SOFTMAX:
        raise ValueError(f"double_softmax: expected one of {DOUBLE_SOFTMAX}, got {double_softmax!r}")
    hard = target_logits.argmax(dim=1)
    student_side = student_logits.softmax(dim=1) if double_softmax == "both" else student_logits
    return ((1 - alpha) * F.cross_entropy(student_logits, hard)
            + alpha * distillation_kl(student_side, target_logits.softmax(dim=1), temperature))


@torch.no_grad()
def scan_forget(model: LensModel, split: str, loader: TensorLoader) -> tuple[np.ndarray, float]:
    """Per forget sample (loader order), whether the model still classifies it correctly,
    and the smallest value the split layer emits on the forget set. Eval mode: the
    batch-norm statistics stay as they are."""
    model.eval()
    correct, lowest = [], math.inf
    for x, y in loader:
        features = model.forward_features(x, [split])[split]
        lowest = min(lowest, features.min().item())
        correct.append((model.forward_from(split, features).argmax(dim=1) == y).cpu())
    return torch.cat(correct).numpy(), lowest


@register_method
class LayerAttackUnlearning(Method):
    name = "lau"
    # LAU trains only F_c, and does so through ctx.fit, so a plug-in's term joins every
    # step. That is the point of combining it with EC: EC's losses train the feature
    # layers LAU leaves untouched, so EC + LAU shows whether deeper change alters the
    # superficial verdict LAU alone gets.
    plugin_ready = True
    title = "LAU (Layer Attack Unlearning)"
    summary = ("Only the classifier changes, from the forget set alone: each forget "
               "sample's features are pushed across a decision boundary by PGD through a "
               "frozen copy of the classifier (Partial-PGD), and the classifier learns to "
               "send every sample it still recognises to the class the attack reached, "
               "with cross-entropy plus double-softmax distillation. Stops as soon as no "
               "forget sample is classified correctly.")
    reference = ("Kim et al., Layer Attack Unlearning: Fast and Accurate Machine Unlearning "
                 "via Layer Level Attack and Knowledge Distillation (AAAI 2024, "
                 "arXiv:2312.16823)")
    params = (
        epochs_param(20, "most passes over the forget set (the stop rule usually ends "
                     "sooner)"),
        lr_param(0.003),
        batch_size_param(64),
        Param("alpha", "float", 0.5, "weight α of the double-softmax distillation term; "
              "1 − α weighs the cross-entropy on the attack's class", low=0.0, high=1.0),
        Param("temperature", "float", 4.0, "temperature τ of the distillation term",
              low=0.0, high=100.0, low_inclusive=False),
        Param("epsilon", "float", 0.5, "Partial-PGD radius ε, relative to each sample's "
              "feature norm: the attack moves ℓ_f by at most ε·‖ℓ_f‖ (L2)",
              low=0.0, high=100.0, low_inclusive=False),
        Param("pgd_steps", "int", 10, "Partial-PGD steps K", low=1, high=1000),
        Param("step_size", "float", 0.5, "Partial-PGD step a, as a fraction of the radius: "
              "each step moves a·ε·‖ℓ_f‖", low=0.0, high=10.0, low_inclusive=False),
        Param("double_softmax", "choice", "teacher", "where the distillation term applies "
              "softmax twice: 'teacher' (METHODS.md's decision: the teacher's probabilities are "
              "softened by τ) or 'both' (the paper's text: the student's too)",
              choices=DOUBLE_SOFTMAX),
        Param("teacher", "choice", "refreshed", "the frozen classifier the attack runs "
              "through and the targets come from: 'refreshed' to the student at the start "
              "of every epoch (so later attacks see the boundaries already moved) or 'fixed' "
              "(the original's classifier throughout)", choices=TEACHERS),
        Param("split_offset", "int", 0, "where F_f ends: 0 = the last feature layer (only "
              "the classifier is trained, as in the paper); 1 or 2 move the split that "
              "many probe layers earlier and train every stage after it",
              low=0, high=2),
    )

    bottleneck_refusal = NO_GRADIENT_THROUGH_KEYS

    def check(self, params, model) -> None:
        split_layer(model, params["split_offset"])

    def unlearn(self, ctx: UnlearnContext) -> Outcome:
        p = ctx.params
        model = ctx.model
        split = split_layer(model, p["split_offset"])
        trained = stages_after(model, split)
        # F_c as one module sharing the model's own stages: training it trains the model.
        student = nn.Sequential(*(model.stages[name] for name in trained))
        teacher = copy.deepcopy(student).eval().requires_grad_(False)
        forget = ctx.loader("forget")
        forget_eval = ctx.experiment.loader("forget", batch_size=EVAL_BATCH)
        num_classes = model.num_classes

        correct, lowest = scan_forget(model, split, forget_eval)
        # Judged from what the split layer emits, not from the architecture: after a
        # ReLU (or a pooling of one) nothing is negative; a LayerNorm token is.
        nonnegative = lowest >= 0.0
        still_correct = [float(correct.mean())]
        target_matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
        # Per epoch, the L2 norms ‖ℓ_adv − ℓ_f‖ and ‖ℓ_adv − ℓ_f‖ / ‖ℓ_f‖ of every attack.
        norms: list[list[float]] = []
        relative_norms: list[list[float]] = []

        def epoch_batches():
            # A refreshed teacher starts each epoch as the student is now; a fixed one
            # stays the original's classifier.
            if p["teacher"] == "refreshed":
                teacher.load_state_dict(student.state_dict())
            norms.append([])
            relative_norms.append([])
            return forget

        def loss_fn(batch):
            x, y = batch
            # F_f runs without gradients in eval mode, so the feature layers (batch-norm
            # statistics included) stay bit-identical. F_c runs in eval mode as well
            # (fit switches it to train mode each epoch): when the split is moved into
            # the conv blocks, a forget-only batch would otherwise replace its batch-norm
            # statistics with one class's.
            student.eval()
            with torch.no_grad():
                features = model.forward_features(x, [split])[split]
            student_logits = student(features)
            targets = student_logits.detach().clone()
            attacked = targets.argmax(dim=1) == y
            if attacked.any():
                clean = features[attacked]
                adversarial = partial_pgd(teacher, clean, y[attacked], epsilon=p["epsilon"],
                                          step_size=p["step_size"], steps=p["pgd_steps"],
                                          nonnegative=nonnegative)
                with torch.no_grad():
                    targets[attacked] = teacher(adversarial)
                np.add.at(target_matrix, (y[attacked].cpu().numpy(),
                                          targets[attacked].argmax(dim=1).cpu().numpy()), 1)
                shift = (adversarial - clean).flatten(1).norm(dim=1)
                norms[-1].extend(shift.tolist())
                relative_norms[-1].extend(
                    (shift / clean.flatten(1).norm(dim=1).clamp_min(1e-12)).tolist())
            return lau_loss(student_logits, targets, alpha=p["alpha"],
                            temperature=p["temperature"], double_softmax=p["double_softmax"])

        stop_reason = f"ran all {p['epochs']} epochs"

        def stop() -> bool:
            nonlocal stop_reason
            correct_now, _ = scan_forget(model, split, forget_eval)
            still_correct.append(float(correct_now.mean()))
            if correct_now.any():
                return False
            stop_reason = f"every forget sample misclassified after epoch {len(norms)}"
            return True

        if correct.any():
            log = ctx.fit(student, epoch_batches, loss_fn, sgd(student.parameters(), lr=p["lr"]),
                          epochs=p["epochs"], steps_per_epoch=len(forget),
                          progress=ctx.progress, label="LAU", stop=stop)
            losses = log.epoch_losses
            info = fit_info(log)
        else:
            stop_reason = "every forget sample was already misclassified: nothing to do"
            losses = []
            info = {"steps": 0, "epochs_run": 0}
        model.eval()

        attacks_per_epoch = [len(epoch) for epoch in norms]
        return Outcome(
            model,
            curves={"loss": losses, "forget_still_correct": still_correct[1:]},
            artifacts={
                STILL_CORRECT: np.asarray(still_correct, dtype=np.float64),
                TARGET_MATRIX: target_matrix,
                PERTURBATION_NORM: np.asarray([_mean(e) for e in norms], dtype=np.float64),
                RELATIVE_PERTURBATION_NORM: np.asarray([_mean(e) for e in relative_norms],
                                                       dtype=np.float64),
            },
            info={**info, "stop_reason": stop_reason, "split_layer": split,
                  "trained_stages": list(trained),
                  "features_nonnegative": nonnegative, "attacks_per_epoch": attacks_per_epoch,
                  "attacks": int(sum(attacks_per_epoch))})


def _mean(values: list[float]) -> float:
    """NaN for an epoch without attacks (every sample left before its batch came)."""
    return float(np.mean(values)) if values else math.nan
