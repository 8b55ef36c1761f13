"""EC — Erase at the Core: multi-layer contrastive unlearning with deep supervision.

At every supervision point (each feature stage of the model once, plus the head: see
`supervision_points`) EC adds two terms:
a contrastive unlearning loss that pulls the forget examples' embeddings toward retain
examples of other classes and away from their own class, and a cross-entropy on retain
data that keeps the layer useful. Feature layers get auxiliary modules for both (global
average pool -> MLP d -> d -> 128 -> L2 norm for the embedding; a linear classifier on
the pooled features); at "logits" the model's own classifier gives the cross-entropy and
its L2-normalised logits the embedding. The auxiliary modules are warmed up on the retain
set with the network frozen, trained jointly while unlearning, and discarded: the
unlearned model has exactly the original architecture.

L_EC = Σ_s w_s [λ_UL · L_CT,s + λ_CE · CE_s(D_r)], w_s increasing with depth by default.

Batch norm: a forget batch holds one class (class forgetting) or a skewed sample, and
passing it through batch norm in train mode on its own pulls the running statistics,
which the unlearned model is evaluated with, toward it. `bn_mode` chooses how EC avoids
that (see `BN_MODES`); the default is "mixed", measured (issue 19) on the embedded
default, mnist5k / small_cnn, setup seed 0, EC alone with its defaults, mean ± std over
3 runs (class 0) or 2 runs (10% random) that differ in data order and head
initialisation, stop rule checked every 2 steps:

    bn_mode        class: forget / retain-train acc    random: forget / retain-train acc
    mixed          0.0% / 74.1 ± 22.4%                  95.0 ± 3.9% / 95.3 ± 4.1%
    frozen_forget  0.0% / 41.9 ± 5.5%                   61.8 ± 8.8% / 61.4 ± 10.6%
    train (old)    0.0% / 85.6 ± 1.9%                   95.6 ± 3.0% / 96.1 ± 2.9%

(the oracle: 0.0% / 99.1% and 97.2% / 99.4%; the random target is 97.9%). On resnet18
at width 0.25 (mnist5k, class 0, one run): mixed 0.0% / 93.3%, frozen_forget 0.0% /
11.1%, train 53.8% / 98.8% after all 10 epochs (never reaching the target: the forget
batch, normalised by its own statistics, is not the function that is evaluated).
Freezing the statistics for the forget pass makes the contrastive gradient act on the
very function that is evaluated, and two steps at lr 0.05 already wreck the model (the
stop rule then fires at once); "mixed" is the better of the two guarded modes and the
only one of the three that works on resnet18. On small_cnn the old "train" keeps more
retain accuracy at the stop on class forgetting: the ~5-point retain cost of EC on
mnist5k is not explained by batch norm (docs/benchmarks/ec-fidelity-mnist5k.md has the
tables and the CKA per layer).

Two ways to use it: the standalone method "ec", and the plug-in "<method>+ec" that adds
β · L_EC to every training step of any `plugin_ready` method.
"""

from __future__ import annotations

import dataclasses
from contextlib import contextmanager
from statistics import fmean
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..errors import UserError
from ..metrics.accuracy import EVAL_BATCH
from ..models import LOGITS, LensModel
from ..progress import Progress
from ..training import fit, repeat_forever, sgd
from .base import (Method, Outcome, Param, UnlearnContext, batch_size_param, epochs_param,
                   lr_param)
from .retain_training import fit_info
from .stop_rules import accuracy_and_loss, forget_accuracy_target, stop_params
from .registry import register_method, register_plugin

EMBEDDING_DIM = 128
PLUGIN_PREFIX = "ec_"


def pooled(h: torch.Tensor) -> torch.Tensor:
    """A layer's output as one vector per example: conv maps averaged over space,
    token sequences over tokens, vectors as they are."""
    if h.dim() == 4:
        return h.mean(dim=(2, 3))
    if h.dim() == 3:
        return h.mean(dim=1)
    return h.flatten(1)


class AuxiliaryHead(nn.Module):
    """The auxiliary module of one feature layer: a projection to the contrastive
    embedding and a linear classifier, both on the pooled features. The pooled features
    are layer-normalised first: averaged activations differ far more in their common
    mean than between examples (measured on digits: embeddings of all examples nearly
    identical before the warm-up), and a per-example norm, unlike a batch norm, does not
    depend on whether the batch holds forget or retain examples."""

    def __init__(self, width: int, num_classes: int):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.projection = nn.Sequential(nn.Linear(width, width), nn.ReLU(),
                                        nn.Linear(width, EMBEDDING_DIM))
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.norm(pooled(h))
        return F.normalize(self.projection(features), dim=1), self.classifier(features)


def contrastive_unlearning_loss(z_forget: torch.Tensor, y_forget: torch.Tensor,
                                z_retain: torch.Tensor, y_retain: torch.Tensor,
                                temperature: float) -> torch.Tensor:
    """Contrastive unlearning (after Lee et al. 2024) for unit-norm embeddings.

    Each forget anchor f is compared with the retain batch and with the other forget
    examples: s_fj = z_f · z_j / τ. The loss is −mean over the other-class retain
    examples n of log(exp(s_fn) / Σ_j exp(s_fj)), j over the retain batch and the
    anchor's same-class companions: minimising it pulls f toward other classes and away
    from its own. The same-class companions include the other forget examples of the
    anchor's class (our choice): when whole classes are forgotten the retain batch holds
    none of them, and without them the loss is already minimal once f is equally similar
    to every retain example — measured on digits, EC then left forget accuracy at 100%.
    Anchors without any other-class retain example in the batch are left out; 0 if none
    is left.
    """
    similarity_retain = z_forget @ z_retain.T / temperature
    similarity_forget = z_forget @ z_forget.T / temperature
    own_class = y_forget[:, None] == y_forget[None, :]
    own_class.fill_diagonal_(False)
    similarity_forget = similarity_forget.masked_fill(~own_class, float("-inf"))
    normaliser = torch.logsumexp(torch.cat([similarity_retain, similarity_forget], dim=1),
                                 dim=1, keepdim=True)
    others = (y_forget[:, None] != y_retain[None, :]).to(similarity_retain.dtype)
    counts = others.sum(dim=1)
    per_anchor = -((similarity_retain - normaliser) * others).sum(dim=1) / counts.clamp(min=1)
    kept = counts > 0
    return per_anchor[kept].mean() if kept.any() else similarity_retain.sum() * 0.0


def supervised_contrastive_loss(z: torch.Tensor, y: torch.Tensor,
                                temperature: float) -> torch.Tensor:
    """SupCon (Khosla et al. 2020) within one batch: each example against the others,
    same-class examples as positives. Warms up the projections so the embedding space
    has class structure before unlearning starts pulling forget examples across it."""
    similarity = z @ z.T / temperature
    self_mask = torch.eye(len(z), dtype=torch.bool, device=z.device)
    similarity = similarity.masked_fill(self_mask, float("-inf"))
    positives = ((y[:, None] == y[None, :]) & ~self_mask).to(z.dtype)
    log_share = similarity - torch.logsumexp(similarity, dim=1, keepdim=True)
    log_share = log_share.masked_fill(self_mask, 0.0)
    counts = positives.sum(dim=1)
    kept = counts > 0
    if not kept.any():
        return similarity.masked_fill(self_mask, 0.0).sum() * 0.0
    return (-(log_share * positives).sum(dim=1)[kept] / counts[kept]).mean()


def supervision_points(model: LensModel) -> list[str]:
    """EC's supervision points: the model's feature stages, each once, plus the head
    ("logits"), shallowest first.

    A probe layer whose stage has no parameters (a global average pool and flatten, as
    resnet18's "embedding") is the stage before it seen another way: supervising it
    trains exactly the stages the one before it trains, so that stage would be
    supervised twice and the shallower ones would lose weight. Such layers are left out.
    Derived from the stages, not written per model: resnet18 gives layer1..layer4 +
    logits; small_cnn (whose "embedding" is a trained hidden layer) and vit_tiny (a
    layer-normed class token) keep every probe layer. Stages frozen by the model (the
    encoder of a frozen-encoder model) still count: EC refuses those models anyway.
    """
    layers = model.probe_layers
    points = [layer for layer in model.feature_layers
              if any(True for _ in model.stages[layer].parameters())]
    return points + [layers[-1]]


def default_layer_weights(count: int) -> list[float]:
    """1, 2, ..., count, normalised: deeper supervision points weigh more."""
    return [s / (count * (count + 1) / 2) for s in range(1, count + 1)]


def layer_weights(model: LensModel, given: list[float], param: str) -> list[float]:
    """The normalised weights of the model's supervision points, or a UserError naming
    `param` when the list does not match the model."""
    layers = supervision_points(model)
    if not given:
        return default_layer_weights(len(layers))
    if len(given) != len(layers):
        raise UserError(f"method.params.{param}: expected {len(layers)} weights, one per "
                        f"supervision point {layers}, got {len(given)}")
    total = sum(given)
    return [w / total for w in given]


# How EC keeps its forget and retain batches from shifting batch-norm running statistics.
BN_MODES = ("mixed", "frozen_forget", "train")


@contextmanager
def frozen_batch_norm(model: nn.Module):
    """Batch-norm modules in eval mode inside the block (normalising with, and not
    updating, their running statistics), as they were afterwards."""
    norms = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    modes = [m.training for m in norms]
    for m in norms:
        m.eval()
    try:
        yield
    finally:
        for m, mode in zip(norms, modes):
            m.train(mode)


class ErasureLoss(nn.Module):
    """L_EC on one forget batch and one retain batch, with the auxiliary heads; keeps
    the per-layer terms of every call for the curves.

    `bn_mode` (BN_MODES): "frozen_forget" runs the forget batch with batch norm in eval
    mode (its running statistics are neither used from nor updated by the forget batch;
    the retain batch updates them as in finetuning); "mixed" runs forget and retain
    batch as one concatenated batch (the statistics see both together); "train" is the
    behaviour before issue 19 (two separate train-mode passes: the forget-only batch
    moves the running statistics), kept for comparison."""

    def __init__(self, model: LensModel, weights: list[float], input_shape: tuple[int, ...], *,
                 lambda_ul: float, lambda_ce: float, temperature: float,
                 bn_mode: str = "mixed"):
        super().__init__()
        if bn_mode not in BN_MODES:
            raise ValueError(f"bn_mode: expected one of {BN_MODES}, got {bn_mode!r}")
        self.model = [model]  # a list: the model is not a submodule (not trained here)
        self.layers = tuple(supervision_points(model))
        self.weights = dict(zip(self.layers, weights))
        self.lambda_ul, self.lambda_ce, self.temperature = lambda_ul, lambda_ce, temperature
        self.bn_mode = bn_mode
        device = model.classifier.weight.device
        widths = self._widths(model, input_shape)
        self.heads = nn.ModuleDict({
            layer: AuxiliaryHead(widths[layer], model.num_classes).to(device)
            for layer in self.layers if layer != LOGITS and self.weights[layer] > 0})
        self.calls = 0
        self.log: dict[str, list[float]] = {f"{kind}/{layer}": [] for kind in ("contrastive", "ce")
                                            for layer in self.layers}

    @staticmethod
    def _widths(model: LensModel, input_shape: tuple[int, ...]) -> dict[str, int]:
        """Pooled width of each feature layer, from one example of zeros (in eval mode,
        so batch-norm statistics stay as they are)."""
        was_training = model.training
        model.eval()
        with torch.no_grad():
            outputs = model.forward_features(
                torch.zeros((1, *input_shape), device=model.classifier.weight.device),
                model.feature_layers)
        model.train(was_training)
        return {layer: pooled(h).shape[1] for layer, h in outputs.items()}

    def embeddings(self, layer: str, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if layer == LOGITS:
            return F.normalize(h, dim=1), h
        return self.heads[layer](h)

    def forward(self, forget: tuple[torch.Tensor, torch.Tensor],
                retain: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        (xf, yf), (xr, yr) = forget, retain
        model = self.model[0]
        wanted = [layer for layer in self.layers if self.weights[layer] > 0]
        out_f, out_r = self.features(model, xf, xr, wanted)
        self.calls += 1
        total = xf.new_zeros(())
        for layer in wanted:
            z_f, _ = self.embeddings(layer, out_f[layer])
            z_r, logits_r = self.embeddings(layer, out_r[layer])
            contrastive = contrastive_unlearning_loss(z_f, yf, z_r, yr, self.temperature)
            ce = F.cross_entropy(logits_r, yr)
            self.log[f"contrastive/{layer}"].append(contrastive.item())
            self.log[f"ce/{layer}"].append(ce.item())
            total = total + self.weights[layer] * (self.lambda_ul * contrastive
                                                   + self.lambda_ce * ce)
        return total

    def features(self, model: LensModel, xf: torch.Tensor, xr: torch.Tensor,
                 layers: list[str]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """The outputs of `layers` for the forget and the retain batch, under bn_mode."""
        if self.bn_mode == "mixed":
            both = model.forward_features(torch.cat([xf, xr]), layers)
            return ({k: h[:len(xf)] for k, h in both.items()},
                    {k: h[len(xf):] for k, h in both.items()})
        return self.forget_features(model, xf, layers), model.forward_features(xr, layers)

    def forget_features(self, model: LensModel, xf: torch.Tensor,
                        layers: list[str]) -> dict[str, torch.Tensor]:
        """The forget batch's pass on its own ("frozen_forget" and "train" modes)."""
        if self.bn_mode == "frozen_forget":
            with frozen_batch_norm(model):
                return model.forward_features(xf, layers)
        return model.forward_features(xf, layers)

    def warm_up(self, ctx: UnlearnContext, epochs: int, lr: float, progress: Progress) -> None:
        """Train the auxiliary heads on the retain set with the network frozen (eval
        mode, no gradient): classifiers by cross-entropy, projections by SupCon."""
        if epochs == 0 or not len(self.heads):
            return
        model = self.model[0]
        layers = list(self.heads)
        retain = ctx.loader("retain")

        def loss_fn(batch):
            x, y = batch
            model.eval()
            with torch.no_grad():
                outputs = model.forward_features(x, layers)
            loss = x.new_zeros(())
            for layer in layers:
                z, logits = self.heads[layer](outputs[layer])
                loss = loss + F.cross_entropy(logits, y) + supervised_contrastive_loss(
                    z, y, self.temperature)
            return loss

        fit(self.heads, lambda: retain, loss_fn, sgd(self.heads.parameters(), lr=lr),
            epochs=epochs, progress=progress, label="EC warm-up of the auxiliary heads")

    def epoch_curves(self, boundaries: list[int]) -> dict[str, list[float]]:
        """Mean of each per-layer term over each epoch (`boundaries`: call counts at the
        end of each epoch, the last one possibly partial)."""
        curves = {}
        for name, values in self.log.items():
            if not values:
                continue
            starts = [0, *boundaries[:-1]]
            curves[f"ec/{name}"] = [fmean(values[a:b]) for a, b in zip(starts, boundaries) if b > a]
        return curves


# EC's losses act through the intermediate layers; on a frozen encoder they would train
# only the discarded auxiliary heads and leave the model as it was.
EC_ON_FROZEN_ENCODER = ("its losses move the intermediate layers, which this model keeps "
                        "frozen: the EC term would change nothing")


BN_MODE_HELP = ("how batch norm sees EC's forget and retain batches: 'mixed' (default) "
                "runs them as one batch; 'frozen_forget' runs the forget batch with batch "
                "norm in eval mode (running statistics untouched by it); 'train' as two "
                "train-mode batches (before issue 19: a forget-only batch shifts the "
                "running statistics). Measured on mnist5k, stop checked every 2 steps: "
                "retain accuracy at the stop 74% (mixed) vs 42% (frozen_forget) for class "
                "forgetting, 95% vs 61% for random; docs/benchmarks/ec-fidelity-mnist5k.md")


def ec_params(prefix: str = "") -> tuple[Param, ...]:
    """EC's own hyperparameters; the plug-in's carry the prefix "ec_"."""
    return (
        Param(prefix + "lambda_ul", "float", 3.0, "weight λ_UL of the contrastive "
              "unlearning loss at each supervision point", low=0.0, high=100.0),
        Param(prefix + "lambda_ce", "float", 1.0, "weight λ_CE of the retain cross-entropy "
              "(deep supervision) at each supervision point", low=0.0, high=100.0),
        Param(prefix + "tau", "float", 0.7, "temperature τ of the contrastive similarities",
              low=0.0, high=10.0, low_inclusive=False),
        Param(prefix + "layer_weights", "floats", [], "weight w_s of each supervision point "
              "(the model's feature stages, each once, plus the head: on resnet18 "
              "layer1..layer4 and logits; on small_cnn and vit_tiny every probe layer), "
              "shallowest first (normalised to sum 1; empty = 1, 2, ..., S: increasing with "
              "depth); 0 leaves a layer out"),
        Param(prefix + "warmup_epochs", "int", 1, "passes over the retain set that train "
              "the auxiliary heads with the network frozen, before unlearning", low=0,
              high=50),
        Param(prefix + "aux_lr", "float", 0.05, "SGD learning rate of the auxiliary heads "
              "(warm-up and joint training)", low=0.0, high=10.0, low_inclusive=False,
              log_scale=True),
        Param(prefix + "bn_mode", "choice", "mixed", BN_MODE_HELP,
              choices=BN_MODES),
    )


def erasure_loss(ctx: UnlearnContext, prefix: str = "") -> ErasureLoss:
    p = ctx.params
    weights = layer_weights(ctx.model, p[prefix + "layer_weights"], prefix + "layer_weights")
    data = ctx.experiment.dataset
    return ErasureLoss(ctx.model, weights, (data.in_channels, data.image_size, data.image_size),
                       lambda_ul=p[prefix + "lambda_ul"],
                       lambda_ce=p[prefix + "lambda_ce"], temperature=p[prefix + "tau"],
                       bn_mode=p[prefix + "bn_mode"])


@register_method
class EraseAtTheCore(Method):
    name = "ec"
    title = "EC (Erase at the Core)"
    summary = ("Contrastive unlearning at every layer, not only the logits: auxiliary heads "
               "on each intermediate layer pull the forget examples' features toward "
               "other classes while a cross-entropy on retain data (deep supervision) keeps "
               "each layer useful. The heads are discarded afterwards.")
    reference = ("Lee, Kim and Kim, Erase at the Core: Representation Unlearning for "
                 "Machine Unlearning; contrastive unlearning after Lee et al. 2024")
    params = (
        epochs_param(10, "most passes over the forget set, a retain batch beside each "
                     "forget batch (the stop rule usually ends sooner)"),
        lr_param(0.05, "SGD learning rate of the network (cosine schedule)"),
        batch_size_param(64),
    ) + ec_params() + (
        Param("check_every", "int", 2, "steps between two checks of the stop rule (forget "
              "accuracy over the whole forget set); also checked after each epoch. EC can "
              "overshoot within one epoch (before issue 19 it was checked once per epoch, "
              "and random forgetting on mnist5k collapsed inside the first)", low=1,
              high=10_000),
    ) + stop_params(when="every check_every steps and after each epoch")
    frozen_encoder_refusal = EC_ON_FROZEN_ENCODER

    def check(self, params, model) -> None:
        layer_weights(model, params["layer_weights"], "layer_weights")

    def unlearn(self, ctx: UnlearnContext) -> Outcome:
        p = ctx.params
        model = ctx.model
        loss = erasure_loss(ctx)
        loss.warm_up(ctx, p["warmup_epochs"], p["aux_lr"], ctx.progress.stage(0.0, 0.2))
        forget, retain = ctx.loader("forget"), ctx.loader("retain")
        forget_eval = ctx.experiment.loader("forget", batch_size=EVAL_BATCH)
        target = forget_accuracy_target(ctx)
        optimizer = torch.optim.SGD([
            {"params": list(model.parameters()), "lr": p["lr"]},
            {"params": list(loss.heads.parameters()), "lr": p["aux_lr"]}], momentum=0.9)
        checks: list[dict[str, float]] = []
        stop_reason = f"ran all {p['epochs']} epochs"

        def stop() -> bool:
            nonlocal stop_reason
            accuracy = accuracy_and_loss(model, forget_eval)[0]
            checks.append({"step": loss.calls, "forget_accuracy": accuracy})
            if target is None or accuracy > target:
                return False
            epoch = loss.calls / len(forget)
            stop_reason = (f"forget accuracy {accuracy:.3f} reached the target {target:.3f} "
                           f"after step {loss.calls} (epoch {epoch:.2f})")
            return True

        retain_batches = repeat_forever(retain)
        log = fit(model, lambda: ((batch, next(retain_batches)) for batch in forget),
                  lambda pair: loss(*pair), optimizer, epochs=p["epochs"],
                  steps_per_epoch=len(forget), progress=ctx.progress.stage(0.2, 1.0),
                  label="EC", stop=stop, stop_every=p["check_every"],
                  precision=ctx.experiment.spec.train.precision)
        return Outcome(model, curves={"loss": log.epoch_losses,
                                      **loss.epoch_curves(log.epoch_ends)},
                       info=fit_info(log, stop_reason=stop_reason, stop_target=target,
                                     stop_checks=checks, steps_per_epoch=len(forget),
                                     supervision_points=list(loss.layers),
                                     bn_mode=loss.bn_mode,
                                     layer_weights=dict(loss.weights)))


class ErasurePlugin:
    """β · L_EC in every training step of another method (a `TrainingPlugin`): each
    step draws its own forget and retain batch. Its optimizer trains the auxiliary
    heads and any parameter of the model that the method's optimizer leaves alone (LAU,
    which trains only the classifier, then gets its feature layers moved by EC)."""

    def __init__(self, ctx: UnlearnContext, loss: ErasureLoss, *, beta: float, lr: float):
        self.model = ctx.model
        self.erasure = loss
        self.beta, self.lr = beta, lr
        self.forget = repeat_forever(ctx.loader("forget"))
        self.retain: Iterator[Any] = repeat_forever(ctx.loader("retain"))
        self.optimizer: torch.optim.Optimizer | None = None
        self.boundaries: list[int] = []
        self.left_to_ec = 0  # parameters of the model only EC's optimizer trains

    def start(self, optimizer: torch.optim.Optimizer) -> None:
        covered = {id(p) for group in optimizer.param_groups for p in group["params"]}
        rest = [p for p in self.model.parameters() if id(p) not in covered]
        self.left_to_ec = sum(p.numel() for p in rest)
        trained = [*self.erasure.heads.parameters(), *rest]
        self.optimizer = sgd(trained, lr=self.lr) if trained else None

    def loss(self) -> torch.Tensor:
        if self.optimizer is not None:
            self.optimizer.zero_grad(set_to_none=True)
        return self.beta * self.erasure(next(self.forget), next(self.retain))

    def after_step(self) -> None:
        if self.optimizer is not None:
            self.optimizer.step()

    def end_epoch(self) -> None:
        self.boundaries.append(self.erasure.calls)


class WithErasure(Method):
    """A `plugin_ready` method with β · L_EC added to each of its training steps: its own
    parameters, plus EC's prefixed "ec_"."""

    def __init__(self, base: Method):
        clashes = [p.name for p in base.params if p.name.startswith(PLUGIN_PREFIX)]
        if clashes:
            raise ValueError(f"{base.name}: parameters {clashes} clash with EC's prefix")
        self.base = base
        self.frozen_encoder_refusal = EC_ON_FROZEN_ENCODER
        self.name = f"{base.name}+ec"
        self.title = f"{base.title} + EC"
        self.summary = (f"{base.summary} With the EC plug-in: β times EC's multi-layer "
                        "contrastive unlearning and deep-supervision loss joins every "
                        "training step, so the forgetting reaches the intermediate layers.")
        self.reference = "; ".join(r for r in (base.reference, EraseAtTheCore.reference) if r)
        self.params = base.params + (
            Param(PLUGIN_PREFIX + "beta", "float", 0.1, "weight β of the EC term added to "
                  "the method's loss", low=0.0, high=100.0, low_inclusive=False),
        ) + ec_params(PLUGIN_PREFIX)

    def _base_params(self, params: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in params.items() if not k.startswith(PLUGIN_PREFIX)}

    def check(self, params, model) -> None:
        self.base.accept(self._base_params(params), model)
        layer_weights(model, params[PLUGIN_PREFIX + "layer_weights"],
                      PLUGIN_PREFIX + "layer_weights")

    def unlearn(self, ctx: UnlearnContext) -> Outcome:
        p = ctx.params
        loss = erasure_loss(ctx, PLUGIN_PREFIX)
        loss.warm_up(ctx, p[PLUGIN_PREFIX + "warmup_epochs"], p[PLUGIN_PREFIX + "aux_lr"],
                     ctx.progress.stage(0.0, 0.2))
        plugin = ErasurePlugin(ctx, loss, beta=p[PLUGIN_PREFIX + "beta"],
                               lr=p[PLUGIN_PREFIX + "aux_lr"])
        outcome = self.base.unlearn(dataclasses.replace(
            ctx, params=self._base_params(p), plugin=plugin,
            progress=ctx.progress.stage(0.2, 1.0)))
        outcome.curves.update(loss.epoch_curves(plugin.boundaries))
        outcome.info["ec"] = {"layer_weights": dict(loss.weights), "steps": loss.calls,
                              "parameters_only_ec_trained": plugin.left_to_ec}
        return outcome


register_plugin("ec", WithErasure)
