"""Localization: which parameters an unlearning algorithm may change.

A strategy returns a boolean mask per parameter tensor ({name: bool tensor}) that selects
at most a budget ρ of all the model's parameters (DEL paper, Torkzadehmahani et al.):

* "del": criticality |w·g| per parameter, g = the gradient of the loss on the forget set
  summed over its batches (eval mode). Channel granularity: a channel (row of a weight
  with 2+ dimensions: a conv filter, a linear output neuron) scores the mean of its
  top-k parameter scores, k = max(1, ⌊topk_fraction · C_out⌋) capped at the row length,
  on convolutional networks, and the plain mean of its scores on transformers (models
  with attention), as the authors' code scores ResNets and ViTs; 1-d parameters
  (biases, norm weights) are scored per element. All units are ranked together and
  whole units are taken from the top while the total stays within ρ.
* "salloc": |g| per parameter, the top ρ of all parameters (SalUn's saliency).
* "shallowest" / "deepest": units in model order from the input side / from the
  classifier side, with the same whole-unit rule. The paper takes whole layers and reads
  the budget off afterwards; here the layer at the boundary is filled channel by channel
  so every strategy spends the same budget.
* "random": the control. For each parameter tensor, as many units as a reference
  strategy (`random_like`) selected there, drawn uniformly at random: the same per-layer
  counts at the same granularity, without the choice of which.

The classifier is ranked like any other layer. Masks are judged on the model as given
(the original): compute them before changing it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cache
from typing import Callable

import numpy as np
import torch

from ..data import TensorLoader
from ..errors import UserError
from ..models import LensModel
from ..progress import Progress
from .base import Param
from .gradients import batch_gradients, stage_fractions
from .salun import top_fraction_masks

CHANNEL, PARAMETER = "channel", "parameter"


@dataclass(frozen=True)
class Strategy:
    name: str
    title: str
    summary: str
    granularity: str  # CHANNEL or PARAMETER: the unit the random control redraws
    select: Callable[["LocalizationInputs"], "Localization"]


STRATEGIES: dict[str, Strategy] = {}


def strategy(name: str, title: str, summary: str, granularity: str):
    def register(select):
        STRATEGIES[name] = Strategy(name, title, summary, granularity, select)
        return select
    return register


@dataclass
class Localization:
    """A mask and what produced it. `channel_scores` holds, for each weight tensor with 2+
    dimensions, one criticality per channel when the strategy ranks by a score (from the
    reference strategy for "random"); empty for the data-agnostic ones."""

    strategy: str
    rho: float
    granularity: str
    masks: dict[str, torch.Tensor]
    channel_scores: dict[str, torch.Tensor] = field(default_factory=dict)
    scores_from: str | None = None
    # How a channel's score summarises its parameters' (CHANNEL_SCORES), when it ranks
    # channels by a score.
    channel_score: str | None = None


@dataclass
class LocalizationInputs:
    model: LensModel
    rho: float
    topk_fraction: float
    seed: int
    random_like: str
    # Summed forget-set gradients, computed on first use: the data-agnostic strategies
    # never pay for them.
    gradients: Callable[[], dict[str, torch.Tensor]]


# --- units: the channels of 2+-d weights, the elements of 1-d parameters ---------------


@dataclass(frozen=True)
class Units:
    """Every selection unit of a model, in model order: tensor index, row/element index
    within it, and size in parameters."""

    names: tuple[str, ...]
    tensor: torch.Tensor
    index: torch.Tensor
    size: torch.Tensor

    @staticmethod
    def of(model: LensModel) -> "Units":
        names, tensor, index, size = [], [], [], []
        for position, (name, p) in enumerate(model.named_parameters()):
            rows = p.shape[0] if p.dim() >= 2 else p.numel()
            names.append(name)
            tensor.append(torch.full((rows,), position, dtype=torch.int64))
            index.append(torch.arange(rows))
            size.append(torch.full((rows,), p[0].numel() if p.dim() >= 2 else 1,
                                   dtype=torch.int64))
        return Units(tuple(names), torch.cat(tensor), torch.cat(index), torch.cat(size))

    def masks(self, model: LensModel, chosen: torch.Tensor) -> dict[str, torch.Tensor]:
        """Masks with the units at positions `chosen` (into this table) selected."""
        masks = {name: torch.zeros(p.shape, dtype=torch.bool, device=p.device)
                 for name, p in model.named_parameters()}
        for position, name in enumerate(self.names):
            rows = self.index[chosen[self.tensor[chosen] == position]]
            mask = masks[name]
            if mask.dim() >= 2:
                mask[rows.to(mask.device)] = True
            else:
                mask.view(-1)[rows.to(mask.device)] = True
        return masks


def take_prefix(units: Units, order: torch.Tensor, rho: float, total: int,
                strategy_name: str) -> torch.Tensor:
    """The longest prefix of `order` whose units hold at most ρ · total parameters (the
    paper's rule: the largest number of units from the top of the ranking within the
    budget). A budget smaller than the first unit is a UserError, not an empty mask."""
    cumulative = torch.cumsum(units.size[order], 0)
    count = int((cumulative <= rho * total).sum())
    if count == 0:
        first = int(units.size[order[0]])
        raise UserError(f"method.params.rho: ρ = {rho:g} allows {rho * total:.0f} of "
                        f"{total:,} parameters, fewer than the first unit {strategy_name} "
                        f"selects ({first:,} parameters); choose a larger rho")
    return order[:count]


TOPK_MEAN, MEAN = "topk_mean", "mean"
CHANNEL_SCORES = (TOPK_MEAN, MEAN)


def channel_score_rule(model: torch.nn.Module) -> str:
    """The authors' code scores a ResNet's channels by their top-k mean and a ViT's by
    their plain mean; attention is what tells the two families apart here."""
    has_attention = any(isinstance(m, torch.nn.MultiheadAttention) for m in model.modules())
    return MEAN if has_attention else TOPK_MEAN


def channel_criticality(scores: torch.Tensor, topk_fraction: float,
                        rule: str = TOPK_MEAN) -> torch.Tensor:
    """Per row (output channel) of a 2+-d score tensor: the mean of its k largest scores,
    k = max(1, ⌊topk_fraction · C_out⌋), at most the row length (TOPK_MEAN), or the mean
    of all its scores (MEAN)."""
    rows = scores.reshape(scores.shape[0], -1)
    if rule == MEAN:
        return rows.mean(dim=1)
    k = min(rows.shape[1], max(1, math.floor(topk_fraction * scores.shape[0])))
    return rows.topk(k, dim=1).values.mean(dim=1)


def unit_scores(model: LensModel, scores: dict[str, torch.Tensor],
                topk_fraction: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One score per unit (the `Units.of(model)` order) and the per-channel scores of the
    2+-d tensors, summarised by the model's `channel_score_rule`."""
    rule = channel_score_rule(model)
    per_unit, channels = [], {}
    for name, p in model.named_parameters():
        if p.dim() >= 2:
            channels[name] = channel_criticality(scores[name], topk_fraction, rule)
            per_unit.append(channels[name])
        else:
            per_unit.append(scores[name].reshape(-1))
    return torch.cat(per_unit).cpu(), channels


def _ranked(inputs: LocalizationInputs, name: str, units: Units, order: torch.Tensor,
            channel_scores: dict[str, torch.Tensor] | None = None) -> Localization:
    total = int(units.size.sum())
    chosen = take_prefix(units, order, inputs.rho, total, name)
    return Localization(name, inputs.rho, CHANNEL, units.masks(inputs.model, chosen),
                        channel_scores or {}, scores_from=name if channel_scores else None,
                        channel_score=channel_score_rule(inputs.model) if channel_scores
                        else None)


@strategy("del", "DEL (weighted gradient, channels)",
          "|w·g| on the forget set, channels scored by their top-k mean (plain mean on "
          "transformers), ranked globally",
          CHANNEL)
def _del(inputs: LocalizationInputs) -> Localization:
    gradients = inputs.gradients()
    with torch.no_grad():
        scores = {name: (p * gradients[name]).abs()
                  for name, p in inputs.model.named_parameters()}
    per_unit, channels = unit_scores(inputs.model, scores, inputs.topk_fraction)
    # Stable: equal scores (zero gradients, dead units) keep model order.
    order = torch.argsort(per_unit, descending=True, stable=True)
    return _ranked(inputs, "del", Units.of(inputs.model), order, channels)


@strategy("salloc", "SalLoc (gradient magnitude, parameters)",
          "|g| on the forget set per parameter, the top ρ of all parameters", PARAMETER)
def _salloc(inputs: LocalizationInputs) -> Localization:
    gradients = inputs.gradients()
    saliency = {name: g.abs() for name, g in gradients.items()}
    masks = top_fraction_masks(saliency, inputs.rho)  # one global ranking, as SalUn's
    # For display only: a channel's mean saliency (the selection ignores channels).
    channels = {name: s.reshape(s.shape[0], -1).mean(dim=1)
                for name, s in saliency.items() if s.dim() >= 2}
    return Localization("salloc", inputs.rho, PARAMETER, masks, channels, "salloc")


@strategy("shallowest", "Shallowest layers", "whole layers from the input side", CHANNEL)
def _shallowest(inputs: LocalizationInputs) -> Localization:
    units = Units.of(inputs.model)
    return _ranked(inputs, "shallowest", units, torch.arange(len(units.size)))


@strategy("deepest", "Deepest layers", "whole layers from the classifier side", CHANNEL)
def _deepest(inputs: LocalizationInputs) -> Localization:
    units = Units.of(inputs.model)
    # Tensors from the last, channels within a tensor in index order.
    order = torch.argsort(-units.tensor * (len(units.size) + 1) + units.index)
    return _ranked(inputs, "deepest", units, order)


@strategy("random", "Random (control)",
          "per layer as many units as the reference strategy, drawn at random", CHANNEL)
def _random(inputs: LocalizationInputs) -> Localization:
    reference = STRATEGIES[inputs.random_like].select(inputs)
    generator = torch.Generator().manual_seed(inputs.seed)
    masks = {}
    for name, chosen in reference.masks.items():
        by_channel = reference.granularity == CHANNEL and chosen.dim() >= 2
        # Count and redraw rows for channel strategies, single entries otherwise.
        picked = chosen.reshape(chosen.shape[0], -1).any(dim=1) if by_channel else chosen.reshape(-1)
        count = int(picked.sum())
        draw = torch.zeros(picked.numel(), dtype=torch.bool)
        draw[torch.randperm(picked.numel(), generator=generator)[:count]] = True
        draw = draw.to(chosen.device)
        masks[name] = (draw.view(-1, *([1] * (chosen.dim() - 1))).expand_as(chosen).clone()
                       if by_channel else draw.view_as(chosen))
    return Localization("random", inputs.rho, reference.granularity, masks,
                        reference.channel_scores, reference.scores_from,
                        reference.channel_score)


REFERENCE_STRATEGIES = tuple(name for name in STRATEGIES if name != "random")

RHO = Param("rho", "float", 0.3, "budget ρ: the fraction of all parameters the mask may "
            "select (whole channels for the channel strategies, so up to one channel less)",
            low=0.0, high=1.0, low_inclusive=False)
TOPK_FRACTION = Param("topk_fraction", "float", 0.1, "DEL's channel score is the mean of "
                      "its k largest |w·g|, k = max(1, ⌊topk_fraction · output channels⌋); "
                      "on transformers the mean of all, as the authors' code (k unused)",
                      low=0.0, high=1.0, low_inclusive=False)
STRATEGY = Param("strategy", "choice", "del", "which parameters to update: " + "; ".join(
    f"{s.name} = {s.summary}" for s in STRATEGIES.values()), choices=tuple(STRATEGIES))
RANDOM_LIKE = Param("random_like", "choice", "del", "with strategy 'random': the strategy "
                    "whose per-layer counts the random mask copies",
                    choices=REFERENCE_STRATEGIES)


def localize(model: LensModel, forget: TensorLoader, strategy_name: str, rho: float,
             progress: Progress, *, topk_fraction: float = TOPK_FRACTION.default,
             seed: int = 0, random_like: str = RANDOM_LIKE.default) -> Localization:
    """The mask of `strategy_name` at budget `rho` for forgetting `forget` from `model`;
    bad names or values are UserErrors naming the parameter."""
    name = STRATEGY.validate(strategy_name)
    rho = RHO.validate(rho)
    topk_fraction = TOPK_FRACTION.validate(topk_fraction)
    random_like = RANDOM_LIKE.validate(random_like)

    @cache
    def gradients() -> dict[str, torch.Tensor]:
        return batch_gradients(model, forget, progress, reduction="sum",
                               label="gradients on the forget set")

    localization = STRATEGIES[name].select(
        LocalizationInputs(model, rho, topk_fraction, seed, random_like, gradients))
    progress.update(1.0, f"{name}: selected {selected_fraction(localization.masks):.1%} "
                         "of the parameters")
    return localization


def selected_fraction(masks: dict[str, torch.Tensor]) -> float:
    return sum(int(m.sum()) for m in masks.values()) / max(sum(m.numel() for m in masks.values()), 1)


# --- what a mask looks like, per layer and per channel ----------------------------------


def weight_tensors(model: LensModel) -> list[tuple[str, str, torch.nn.Parameter]]:
    """(parameter name, label, tensor) of every parameter with 2+ dimensions, in model
    order; the label is the probe layer, or "layer/rest" where a layer has several."""
    found = [(name, name.split(".")[1], p) for name, p in model.named_parameters()
             if p.dim() >= 2]
    per_stage = {stage: sum(s == stage for _, s, _ in found) for _, stage, _ in found}
    return [(name, stage if per_stage[stage] == 1 else f"{stage}/{name.split('.', 2)[2]}", p)
            for name, stage, p in found]


def _padded(columns: list[np.ndarray]) -> np.ndarray:
    """Columns of different lengths side by side, NaN below the shorter ones."""
    out = np.full((max((len(c) for c in columns), default=0), len(columns)), np.nan,
                  dtype=np.float32)
    for j, column in enumerate(columns):
        out[:len(column), j] = column
    return out


def mask_summary(model: LensModel, localization: Localization) -> tuple[dict[str, np.ndarray], dict]:
    """Artifacts and info describing a mask.

    Arrays: "mask/stage_parameter_fraction" and "mask/stage_channel_fraction" (per probe
    layer), "mask/tensor_parameter_fraction" (per parameter tensor),
    "mask/channel_fraction" (channel x weight tensor: the share of each channel's
    parameters selected, NaN below a tensor's last channel), "mask/criticality" (same
    shape, the strategy's channel scores, only when it has some) and
    "mask/selected_channels" ((n, 2): weight-tensor column, channel). A channel counts
    as selected when any of its parameters is; the channel strategies select whole
    channels, so there it is the same as all.
    """
    masks = localization.masks
    stage_params, overall = stage_fractions(model, masks)
    weights = weight_tensors(model)
    per_channel = [masks[name].reshape(p.shape[0], -1).float().mean(dim=1).cpu().numpy()
                   for name, _, p in weights]
    stage_channels = []
    for stage in model.probe_layers:
        touched = [c > 0 for (name, label, _), c in zip(weights, per_channel)
                   if name.split(".")[1] == stage]
        stage_channels.append(float(np.concatenate(touched).mean()) if touched else 0.0)
    named = list(model.named_parameters())
    arrays = {
        "mask/stage_parameter_fraction": stage_params,
        "mask/stage_channel_fraction": np.asarray(stage_channels, dtype=np.float32),
        "mask/tensor_parameter_fraction": np.asarray(
            [float(masks[name].float().mean()) for name, _ in named], dtype=np.float32),
        "mask/channel_fraction": _padded(per_channel),
        "mask/selected_channels": np.asarray(
            [(j, c) for j, column in enumerate(per_channel) for c in np.flatnonzero(column > 0)],
            dtype=np.int32).reshape(-1, 2),
    }
    if localization.channel_scores:
        arrays["mask/criticality"] = _padded(
            [localization.channel_scores[name].detach().cpu().numpy() for name, _, _ in weights])
    selected_parameters = sum(int(m.sum()) for m in masks.values())
    total_parameters = sum(p.numel() for _, p in named)
    info = {
        "strategy": localization.strategy, "granularity": localization.granularity,
        "scores_from": localization.scores_from, "channel_score": localization.channel_score,
        "rho": localization.rho,
        "selected_parameters": selected_parameters, "total_parameters": total_parameters,
        "selected_fraction": overall,
        "selected_channels": int(sum(int((c > 0).sum()) for c in per_channel)),
        "total_channels": int(sum(len(c) for c in per_channel)),
        "weight_tensors": [label for _, label, _ in weights],
        "parameter_tensors": [name for name, _ in named],
        "layers": list(model.probe_layers),
    }
    return arrays, info


# --- forget-vs-retain selectivity of channels on the original model ----------------------


def _channel_means(h: torch.Tensor) -> torch.Tensor:
    """(batch, channels): the mean activation of each channel per example. Channels are
    dim 1 of conv maps (B, C, H, W), the last dim otherwise (B, C) or tokens (B, N, C)."""
    if h.dim() == 4:
        return h.mean(dim=(2, 3))
    if h.dim() == 3:
        return h.mean(dim=1)
    return h.reshape(h.shape[0], -1)


def _moments(model: LensModel, batches, layers, limit: int | None) -> dict[str, tuple]:
    sums: dict[str, list] = {}
    seen = 0
    with torch.no_grad():
        for x, _ in batches:
            for layer, h in model.forward_features(x, layers).items():
                m = _channel_means(h.float()).double()
                s = sums.setdefault(layer, [0.0, 0.0])
                s[0] = s[0] + m.sum(0)
                s[1] = s[1] + (m * m).sum(0)
            seen += len(x)
            if limit is not None and seen >= limit:
                break
    return {layer: (s[0] / seen, s[1] / seen - (s[0] / seen) ** 2) for layer, s in sums.items()}


def channel_selectivity(original: LensModel, forget: TensorLoader, retain: TensorLoader,
                        localization: Localization) -> dict[str, np.ndarray]:
    """Per output channel of every probe layer, on the original model: how much more the
    channel responds to forget examples than to retain examples.

    A channel's activation for an example is its mean over spatial positions (or
    tokens). Selectivity = (μ_forget − μ_retain) / sqrt((σ²_forget + σ²_retain) / 2), a
    standardized mean difference (Cohen's d) over examples: 0 = no preference, +1 = the
    forget mean lies one pooled standard deviation above the retain mean. NaN for a
    channel constant on both sets (a dead ReLU). The retain side uses as many examples as
    the forget set has (from a shuffled loader, so a random subset).

    Returns "selectivity/value" and "selectivity/selected" (channel x probe layer, NaN
    padded): selected = 1 when the channel's row in the layer's last weight tensor with
    that many output channels is in the mask, 0 when not, NaN where no such tensor exists.
    """
    original.eval()
    layers = original.probe_layers
    f = _moments(original, forget, layers, None)
    r = _moments(original, retain, layers, forget.num_examples)
    weights = weight_tensors(original)
    values, selected = [], []
    for layer in layers:
        (mu_f, var_f), (mu_r, var_r) = f[layer], r[layer]
        pooled = torch.sqrt(((var_f + var_r) / 2).clamp(min=0))
        d = torch.where(pooled > 0, (mu_f - mu_r) / pooled.clamp(min=1e-30),
                        torch.full_like(pooled, float("nan")))
        values.append(d.float().cpu().numpy())
        rows = [name for name, _, p in weights
                if name.split(".")[1] == layer and p.shape[0] == len(d)]
        if rows:
            mask = localization.masks[rows[-1]]
            selected.append(mask.reshape(mask.shape[0], -1).any(dim=1).float().cpu().numpy())
        else:
            selected.append(np.full(len(d), np.nan, dtype=np.float32))
    return {"selectivity/value": _padded(values), "selectivity/selected": _padded(selected)}
