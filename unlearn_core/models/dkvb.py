"""Models built on another model's frozen trunk: the discrete key-value bottleneck
(DKVB, Träuble et al. 2023; unlearning by masking keys, Shah et al., "Unlearning via
Sparse Representations") and the frozen-encoder linear model the paper compares with.

"dkvb" (ModelSpec(name="dkvb", encoder="small_cnn", bottleneck=BottleneckSpec(...))):

    encoder stages (frozen)  ->  "bottleneck"  ->  "logits"

* The encoder is every feature stage of the `encoder` model; its weights come from that
  model's trained original (training.py loads them) and never change: parameters frozen
  and the stages kept in eval mode, so even a method that trains "everything" leaves
  their batch-norm statistics alone.
* "bottleneck" projects the encoder output into each of C codebooks with the codebook's
  own fixed Gaussian matrix, picks the nearest key (top-1, squared Euclidean) among P
  keys there, and outputs the fetched values of all codebooks side by side, (n, C·d_v),
  with d_v = number of classes. That is its probe layer: compact (C·d_v, not C·P) and it
  is exactly what the decoder averages, so CKA, probes and embeddings show what the
  masking changed. Keys are buffers (fitted by EMA k-means, `EmaKMeans`, then frozen);
  values are the only trained parameters. Values start at zero, so a key no training
  example selects answers with a zero vector (at the paper's scale on small data many
  do, and an all-zero output reads as class 0: docs/benchmarks/dkvb-mnist5k-cpu-2core.md).
* "logits" is the non-parametric decoder, the mean of the fetched values, written as
  the nn.Linear every LensModel ends with: weight (1/C)·[I … I], bias 0, both frozen.
* Masking: `mask` (C, P) is a boolean buffer, so a run's weights carry it. A masked pair
  is left out of the nearest-key search and the next-nearest unmasked key answers; a
  codebook whose keys are all masked contributes a zero vector. Clearing the mask
  restores the original outputs exactly.

"frozen_linear" is the encoder model itself with its trunk frozen the same way: only
its linear head trains. Its original and oracle are the encoder model's own (same
weights), so Finetune, NegGrad+, SCRUB and EU-k (k = 1: the head retrained on the retain
set) on it are the paper's linear-head baselines on the same frozen encoder.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from ..config import BottleneckSpec, ModelSpec
from ..errors import UserError
from .base import LOGITS, LensModel
from .registry import build_model, register_model

BOTTLENECK = "bottleneck"
# Largest value or key table (floats) a bottleneck may allocate: 2^27 float32 = 512 MiB.
# The paper's scale (256 x 4096 keys) fits up to 128 classes; training the values needs
# about three times the table (gradients, momentum).
MAX_TABLE_FLOATS = 2**27
# Floats in one chunk of the (examples, keys) distances of a codebook's search: small
# enough to stay in cache.
_DISTANCE_CHUNK = 2**20
# A key whose EMA assignment count falls below this fraction of the count it would have
# under uniform use (batch / keys) is dead and is moved onto a feature of the batch.
DEAD_KEY_FRACTION = 0.1


def encoder_spec(spec: ModelSpec) -> ModelSpec:
    """The spec of the model whose trunk a "dkvb" or "frozen_linear" model is built on."""
    return ModelSpec(spec.encoder, spec.width)


def check_tables(spec: BottleneckSpec, num_classes: int) -> None:
    """Refuse a bottleneck whose value or key table would exceed MAX_TABLE_FLOATS, before
    anything is allocated."""
    c, p = spec.codebooks, spec.keys
    for table, width, what in (("value", num_classes, "classes"), ("key", spec.key_dim, "key_dim")):
        floats = c * p * width
        if floats > MAX_TABLE_FLOATS:
            raise UserError(
                f"model.bottleneck.keys: the {table} table would hold codebooks x keys x "
                f"{what} = {c} x {p} x {width} = {floats:,} floats ({4 * floats / 2**20:,.0f} "
                f"MiB), over the limit of {MAX_TABLE_FLOATS:,} "
                f"({4 * MAX_TABLE_FLOATS / 2**20:,.0f} MiB); lower model.bottleneck.keys or "
                f"model.bottleneck.codebooks")


class KeyValueBottleneck(nn.Module):
    """C codebooks of P (key, value) pairs; see the module docstring."""

    def __init__(self, in_features: int, codebooks: int, keys: int, key_dim: int,
                 num_values: int):
        super().__init__()
        projection = torch.randn(codebooks, in_features, key_dim) / math.sqrt(in_features)
        self.register_buffer("projection", projection)
        self.register_buffer("keys", torch.randn(codebooks, keys, key_dim))
        self.register_buffer("mask", torch.zeros(codebooks, keys, dtype=torch.bool))
        self.values = nn.Parameter(torch.zeros(codebooks, keys, num_values))

    @property
    def codebooks(self) -> int:
        return self.keys.shape[0]

    @property
    def num_keys(self) -> int:
        return self.keys.shape[1]

    @property
    def num_values(self) -> int:
        return self.values.shape[2]

    def project(self, h: torch.Tensor) -> torch.Tensor:
        """Encoder output (n, ...) -> the query of each codebook, (n, C, key_dim)."""
        return torch.einsum("nd,cdk->nck", h.flatten(1).to(self.projection.dtype),
                            self.projection)

    def _nearest_in(self, codebook: int, z: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Nearest key outside `mask` (P,) of one codebook for its queries z (m, key_dim),
        -1 if every key is masked. The one place distances are computed, so a search over
        some examples always agrees with a search over all of them."""
        out = torch.full((len(z),), -1, dtype=torch.long, device=z.device)
        if mask.all():
            return out
        keys = self.keys[codebook]
        squared = (keys * keys).sum(-1)
        step = max(1, _DISTANCE_CHUNK // len(keys))
        for start in range(0, len(z), step):
            # Squared distance less the query's own norm, which every key shares.
            distances = torch.addmm(squared, z[start:start + step], keys.T, alpha=-2)
            if mask.any():
                distances.masked_fill_(mask, math.inf)
            out[start:start + step] = distances.argmin(-1)
        return out

    def nearest(self, z: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Index (n, C) of the nearest key outside `mask` (default: this module's mask) in
        each codebook; -1 where every key of the codebook is masked."""
        mask = self.mask if mask is None else mask
        out = torch.empty(z.shape[:2], dtype=torch.long, device=z.device)
        by_codebook = z.transpose(0, 1).contiguous()
        for c in range(self.codebooks):
            out[:, c] = self._nearest_in(c, by_codebook[c], mask[c])
        return out

    def reselect(self, z: torch.Tensor, selection: torch.Tensor,
                 mask: torch.Tensor) -> torch.Tensor:
        """`nearest(z, mask)`, given `selection` = nearest(z, m) under a smaller mask m
        (m inside `mask`): only the (example, codebook) pairs whose key is now masked are
        searched again, all of them at once, which makes a sweep over growing masks cheap.
        (The batched distances could round differently from `nearest`'s; a pair could only
        go another way where two keys are equally near to float precision.)"""
        codebook = torch.arange(self.codebooks, device=selection.device)
        rows, books = ((selection >= 0) & mask[codebook, selection.clamp(min=0)]).nonzero(
            as_tuple=True)
        out = selection.clone()
        step = max(1, _DISTANCE_CHUNK // (self.num_keys * self.keys.shape[2]))
        squared = (self.keys * self.keys).sum(-1)
        for start in range(0, len(rows), step):
            row, book = rows[start:start + step], books[start:start + step]
            keys = self.keys[book]
            distances = torch.baddbmm(squared[book].unsqueeze(1), z[row, book].unsqueeze(1),
                                      keys.transpose(1, 2), alpha=-2).squeeze(1)
            masked = mask[book]
            best = distances.masked_fill_(masked, math.inf).argmin(-1)
            out[row, book] = torch.where(masked.all(-1), -1, best)
        return out

    def select(self, h: torch.Tensor) -> torch.Tensor:
        """The key each codebook picks for encoder outputs h, under the current mask."""
        return self.nearest(self.project(h))

    def fetch(self, selection: torch.Tensor) -> torch.Tensor:
        """Values (n, C, d_v) of the selected keys; zeros where a codebook has none (-1)."""
        codebook = torch.arange(self.codebooks, device=selection.device)
        fetched = self.values[codebook, selection.clamp(min=0)]
        return fetched * (selection >= 0).unsqueeze(-1).to(fetched.dtype)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.fetch(self.select(h)).flatten(1)


def usage_counts(selection: torch.Tensor, num_keys: int) -> torch.Tensor:
    """How often each (codebook, key) pair was selected, (C, P) int64, from selections
    (n, C); -1 (no key) counts nowhere."""
    codebooks = selection.shape[1]
    flat = (torch.arange(codebooks, device=selection.device) * num_keys + selection)[selection >= 0]
    return torch.bincount(flat, minlength=codebooks * num_keys).view(codebooks, num_keys)


class EmaKMeans:
    """EMA k-means of a bottleneck's keys (the exponential-moving-average codebook update
    of VQ-VAE, as the DKVB paper initialises its keys), with dead-key replacement.

    Keys start at random queries of `first` (n, C, key_dim). Each `update(z)` assigns a
    batch of queries to their nearest keys (mask ignored) and decays the assignment counts
    and sums: N <- γN + (1-γ)n, S <- γS + (1-γ)s, key = S / N. A key whose N falls below
    DEAD_KEY_FRACTION of the uniform share (batch / P) moves onto a random query of the
    batch, so no key stays stranded where no data is.
    """

    def __init__(self, bottleneck: KeyValueBottleneck, first: torch.Tensor, decay: float,
                 generator: torch.Generator):
        self.bottleneck = bottleneck
        self.decay = decay
        self.generator = generator
        c, p = bottleneck.codebooks, bottleneck.num_keys
        pick = self._draw(len(first), (c, p)).to(first.device)
        keys = first[pick, torch.arange(c, device=first.device)[:, None]]
        bottleneck.keys.copy_(keys)
        self.counts = torch.ones(c, p, device=keys.device)
        self.sums = keys.clone()
        self.replaced = 0

    def _draw(self, n: int, shape: Sequence[int]) -> torch.Tensor:
        return torch.randint(n, tuple(shape), generator=self.generator)

    @torch.no_grad()
    def update(self, z: torch.Tensor) -> None:
        b = self.bottleneck
        c, p, dim = b.keys.shape
        selection = b.nearest(z, torch.zeros_like(b.mask))
        flat = (torch.arange(c, device=z.device) * p + selection).flatten()
        counts = usage_counts(selection, p).to(z.dtype)
        sums = torch.zeros(c * p, dim, device=z.device).index_add_(0, flat, z.reshape(-1, dim))
        self.counts.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.sums.mul_(self.decay).add_(sums.view(c, p, dim), alpha=1 - self.decay)
        keys = self.sums / self.counts.clamp_min(1e-12).unsqueeze(-1)
        dead = self.counts < DEAD_KEY_FRACTION * len(z) / p
        if dead.any():
            codebook, key = dead.nonzero(as_tuple=True)
            source = self._draw(len(z), (len(codebook),)).to(z.device)
            keys[codebook, key] = z[source, codebook]
            self.counts[codebook, key] = len(z) / p
            self.sums[codebook, key] = keys[codebook, key] * (len(z) / p)
            self.replaced += len(codebook)
        b.keys.copy_(keys)


class MeanOfValues(nn.Linear):
    """The DKVB decoder, mean over codebooks of the fetched values, as a frozen Linear
    (d_v x C·d_v weight (1/C)·[I … I], zero bias): the LensModel's classifier."""

    def __init__(self, codebooks: int, num_values: int):
        super().__init__(codebooks * num_values, num_values)
        with torch.no_grad():
            self.weight.copy_(torch.eye(num_values).repeat(1, codebooks) / codebooks)
            self.bias.zero_()
        self.requires_grad_(False)


class FrozenEncoderModel(LensModel):
    """A LensModel whose first stages (`frozen_stages`, the encoder) never train: their
    parameters do not require gradients and `train()` leaves them in eval mode."""

    def __init__(self, stages: Sequence[tuple[str, nn.Module]], frozen_stages: Sequence[str]):
        super().__init__(stages)
        self.frozen_stages = tuple(frozen_stages)
        for name in self.frozen_stages:
            self.stages[name].requires_grad_(False)
        self.train(self.training)

    def train(self, mode: bool = True) -> "FrozenEncoderModel":
        super().train(mode)
        for name in self.frozen_stages:
            self.stages[name].eval()
        return self

    @property
    def encoder_output(self) -> str:
        """The probe layer the encoder ends with (the bottleneck's or head's input)."""
        return self.frozen_stages[-1]


def bottleneck_of(model: nn.Module) -> KeyValueBottleneck | None:
    """The key-value bottleneck of a DKVB model, None for any other model."""
    if isinstance(model, FrozenEncoderModel) and BOTTLENECK in model.stages:
        stage = model.stages[BOTTLENECK]
        if isinstance(stage, KeyValueBottleneck):
            return stage
    return None


def _encoder(spec: ModelSpec, in_channels: int, num_classes: int, image_size: int) -> LensModel:
    return build_model(encoder_spec(spec), in_channels=in_channels, num_classes=num_classes,
                       image_size=image_size)


@register_model("dkvb", description="a trained model's frozen trunk + discrete key-value "
                "bottleneck (DKVB); unlearns by masking keys", min_image_size=4)
def dkvb(spec: ModelSpec, in_channels: int, num_classes: int, image_size: int) -> LensModel:
    b = spec.bottleneck
    check_tables(b, num_classes)
    encoder = _encoder(spec, in_channels, num_classes, image_size)
    projection = b.codebooks * encoder.embedding_dim * b.key_dim
    if projection > MAX_TABLE_FLOATS:
        raise UserError(f"model.bottleneck.key_dim: the projections would hold codebooks x "
                        f"encoder features x key_dim = {projection:,} floats, over the limit "
                        f"of {MAX_TABLE_FLOATS:,}; lower model.bottleneck.codebooks or key_dim")
    stages = [(name, encoder.stages[name]) for name in encoder.feature_layers]
    stages += [(BOTTLENECK, KeyValueBottleneck(encoder.embedding_dim, b.codebooks, b.keys,
                                               b.key_dim, num_classes)),
               (LOGITS, MeanOfValues(b.codebooks, num_classes))]
    return FrozenEncoderModel(stages, encoder.feature_layers)


@register_model("frozen_linear", description="a trained model's frozen trunk with its "
                "linear head (the DKVB paper's baselines train only the head)",
                min_image_size=4)
def frozen_linear(spec: ModelSpec, in_channels: int, num_classes: int,
                  image_size: int) -> LensModel:
    encoder = _encoder(spec, in_channels, num_classes, image_size)
    return FrozenEncoderModel(list(encoder.stages.items()), encoder.feature_layers)
