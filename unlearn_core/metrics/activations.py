"""Probe-layer activations on a fixed, seeded probe subset, cached for reuse.

Every layer view (CKA, depth, probes, embeddings) reads the same activations of the same
examples, so they are computed once per (model, subset) and kept in a small cache.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol, TypeVar

import numpy as np
import torch
import torch.nn.functional as F

from ..data import ImageSet, Split, TensorLoader
from ..models import LOGITS, LensModel
from ..training import Experiment
from ..vocabulary import PART_BY_NAME, PARTS
from ..memory import evaluation_batches
from .accuracy import EVAL_BATCH, Predictions

MAX_FEATURES = 8192  # wider conv maps are average-pooled spatially to fit (memory, speed)
_CACHE_SIZE = 32  # a setup's references fill about 12 entries
T = TypeVar("T")
_cache: OrderedDict = OrderedDict()


class PartsCache(Protocol):
    """Where values computed from the reference models outlive the process (the run
    store's cache, `RunStore.parts_get` / `parts_put`)."""

    def parts_get(self, key: str) -> Any | None: ...
    def parts_put(self, key: str, value: Any) -> None: ...


@functools.lru_cache(maxsize=1)
def _code_digest() -> str:
    """A digest of what a reference's evaluation parts are computed by: the sources of
    the metrics, models and data packages and the numeric libraries' versions. Kept
    parts computed by other code are not found, so a change never serves stale numbers."""
    import sklearn  # noqa: PLC0415 -- only for its version
    digest = hashlib.sha256(f"{np.__version__} {torch.__version__} "
                            f"{sklearn.__version__}".encode())
    package = Path(__file__).resolve().parents[1]
    for folder in ("metrics", "models", "data"):
        for source in sorted((package / folder).glob("*.py")):
            digest.update(source.name.encode())
            digest.update(source.read_bytes())
    return digest.hexdigest()


def parts_key(key: tuple) -> str:
    """The key a cached part is kept under on disk: the in-process key, the code that
    computes it and torch's thread count (CPU kernels sum in another order with another)."""
    return hashlib.sha256(repr((key, _code_digest(), torch.get_num_threads())).encode()
                          ).hexdigest()[:32]


@dataclass(frozen=True)
class ProbeSubset:
    """Up to `per_part` seeded examples of each non-empty part of the split."""

    parts: tuple[str, ...]       # the parts present
    part: np.ndarray             # (n,) index into `parts`
    index: np.ndarray            # (n,) position in the train or test set
    labels: np.ndarray           # (n,)
    key: str                     # identifies the subset in caches

    def mask(self, name: str) -> np.ndarray:
        return self.part == self.parts.index(name) if name in self.parts else np.zeros(
            len(self.part), bool)


def probe_subset(exp: Experiment, per_part: int = 500, seed: int = 0) -> ProbeSubset:
    rng = np.random.default_rng(seed)
    split: Split = exp.split
    parts, part_ids, indices, labels = [], [], [], []
    for part in PARTS:
        available = getattr(split, part.split_attr)
        if len(available) == 0:
            continue
        chosen = np.sort(rng.choice(available, size=min(per_part, len(available)), replace=False))
        part_ids.append(np.full(len(chosen), len(parts)))
        parts.append(part.name)
        indices.append(chosen)
        labels.append(getattr(exp.dataset, part.from_set).labels[torch.from_numpy(chosen)].numpy())
    key = f"{exp.spec.oracle_key}-{per_part}-{seed}"
    return ProbeSubset(tuple(parts), np.concatenate(part_ids), np.concatenate(indices),
                       np.concatenate(labels), key)


def _flatten(h: torch.Tensor) -> torch.Tensor:
    """(n, ...) -> (n, d), pooling conv maps spatially when d would exceed MAX_FEATURES."""
    if h.dim() == 4 and h[0].numel() > MAX_FEATURES:
        side = max(1, int((MAX_FEATURES / h.shape[1]) ** 0.5))
        h = F.adaptive_avg_pool2d(h, side)
    return h.flatten(1)


def compute_activations(model: LensModel, exp: Experiment, subset: ProbeSubset,
                        batch_size: int = 256) -> dict[str, np.ndarray]:
    """Activations of every probe layer, in eval mode (BatchNorm statistics untouched);
    in smaller batches if `batch_size` does not fit the device."""
    return evaluation_batches(model, batch_size, "activations",
                              lambda size: _compute_activations(model, exp, subset, size))


@torch.no_grad()
def _compute_activations(model: LensModel, exp: Experiment, subset: ProbeSubset,
                         batch_size: int) -> dict[str, np.ndarray]:
    model.eval()
    out: dict[str, list[np.ndarray]] = {name: [] for name in model.probe_layers}
    for set_name in ("train", "test"):
        in_set = np.array([PART_BY_NAME[p].from_set == set_name for p in subset.parts])[subset.part]
        if not in_set.any():
            continue
        chunks = layer_outputs(model, exp, getattr(exp.dataset, set_name), subset.index[in_set],
                               batch_size)
        for name, values in chunks.items():
            out[name].append(values)
    # Rows follow the subset's order: PARTS lists the train parts before the test parts.
    return {name: np.concatenate(chunks) for name, chunks in out.items()}


@torch.no_grad()
def layer_outputs(model: LensModel, exp: Experiment, images: ImageSet, index: np.ndarray,
                  batch_size: int = 256) -> dict[str, np.ndarray]:
    """Every probe layer's flattened outputs (eval mode) on `images` at `index`, normalised
    with the experiment's statistics: also for images outside the dataset (triggered ones)."""
    model.eval()
    out: dict[str, list[np.ndarray]] = {name: [] for name in model.probe_layers}
    loader = TensorLoader(images, index, mean=exp.dataset.mean, std=exp.dataset.std,
                          batch_size=batch_size, device=exp.device)
    for x, _ in loader:
        for name, h in model.forward_features(x).items():
            out[name].append(_flatten(h).float().cpu().numpy())
    return {name: np.concatenate(chunks) for name, chunks in out.items()}


def cached(key: tuple | None, compute: Callable[[], T], parts: PartsCache | None = None) -> T:
    """`compute()`, kept in a small in-process LRU under `key` (None: not cached) and, with
    `parts`, on disk as well (found there by a later process). Keys name reference
    checkpoints (original, oracle), which every run of a setup reuses."""
    if key is None:
        return compute()
    if _held(key, parts):
        return _cache[key]
    return _hold(key, compute(), parts)


def _held(key: tuple, parts: PartsCache | None, decode: Callable[[Any], Any] = lambda v: v
          ) -> bool:
    """Whether `key` is in the in-process cache, after taking it from `parts` (decoded)
    if it was only there."""
    if key not in _cache and parts is not None:
        stored = parts.parts_get(parts_key(key))
        if stored is not None:
            _cache_put(key, decode(stored))
    if key in _cache:
        _cache.move_to_end(key)
        return True
    return False


def _hold(key: tuple, value: T, parts: PartsCache | None,
          encode: Callable[[T], Any] = lambda v: v) -> T:
    """`value` kept under `key` in-process and, with `parts`, on disk (encoded)."""
    if parts is not None:
        parts.parts_put(parts_key(key), encode(value))
    return _cache_put(key, value)


def _cache_put(key: tuple, value: T) -> T:
    _cache[key] = value
    _cache.move_to_end(key)
    while len(_cache) > _CACHE_SIZE:
        _cache.popitem(last=False)
    return value


def compute_predictions_and_activations(model: LensModel, exp: Experiment, subset: ProbeSubset,
                                        batch_size: int = EVAL_BATCH
                                        ) -> tuple[Predictions, dict[str, np.ndarray]]:
    """`accuracy.predictions` and `compute_activations` from one forward pass over the
    train and test sets: softmax of the logits for every example, and every probe
    layer's output kept for the subset's rows only (in the subset's order). In smaller
    batches if `batch_size` does not fit the device."""
    return evaluation_batches(model, batch_size, "predictions and activations",
                              lambda size: _predictions_and_activations(model, exp, subset, size))


@torch.no_grad()
def _predictions_and_activations(model: LensModel, exp: Experiment, subset: ProbeSubset,
                                 batch_size: int) -> tuple[Predictions, dict[str, np.ndarray]]:
    model.eval()
    sets = {}
    layer_rows: dict[str, list[np.ndarray]] = {name: [] for name in model.probe_layers}
    for set_name in ("train", "test"):
        images = getattr(exp.dataset, set_name)
        in_set = np.array([PART_BY_NAME[p].from_set == set_name for p in subset.parts])[subset.part]
        wanted = subset.index[in_set]
        kept: dict[str, np.ndarray] = {}
        probs, labels = [], []
        loader = TensorLoader(images, np.arange(len(images)), mean=exp.dataset.mean,
                              std=exp.dataset.std, batch_size=batch_size, device=exp.device)
        start = 0
        for x, y in loader:
            stop = start + len(x)
            outputs = model.forward_features(x)
            probs.append(torch.softmax(outputs[LOGITS].float(), dim=1).cpu())
            labels.append(y.cpu())
            here = (wanted >= start) & (wanted < stop)
            for name, h in outputs.items():
                flat = _flatten(h).float().cpu().numpy()
                if name not in kept:
                    kept[name] = np.empty((len(wanted), flat.shape[1]), np.float32)
                kept[name][here] = flat[wanted[here] - start]
            start = stop
        sets[set_name] = ((torch.cat(probs).numpy(), torch.cat(labels).numpy()) if probs
                          else (np.zeros((0, 0), np.float32), np.zeros(0, np.int64)))
        if in_set.any():
            for name, values in kept.items():
                layer_rows[name].append(values)
    # Rows follow the subset's order: PARTS lists the train parts before the test parts.
    acts = {name: np.concatenate(chunks) for name, chunks in layer_rows.items()}
    return Predictions(*sets["train"], *sets["test"]), acts


def predictions_and_activations(model: LensModel, exp: Experiment, subset: ProbeSubset,
                                cache_key: str | None = None, parts: PartsCache | None = None
                                ) -> tuple[Predictions, dict[str, np.ndarray]]:
    """`compute_predictions_and_activations`, cached under `cache_key` (a reference
    model's key) as the predictions and the activations separately, so `activations`
    finds them too. With `parts`, the predictions are kept on disk as well: a later
    process then needs only the probe subset's activations, not a pass over every example."""
    if cache_key is None:
        return compute_predictions_and_activations(model, exp, subset)
    predictions_key = ("predictions", cache_key, exp.spec.oracle_key)
    if _held(predictions_key, parts, lambda stored: Predictions(**stored)):
        return _cache[predictions_key], activations(model, exp, subset, cache_key)
    preds, acts = compute_predictions_and_activations(model, exp, subset)
    _cache_put(("activations", cache_key, subset.key), acts)
    return _hold(predictions_key, preds, parts, dataclasses.asdict), acts


# memo(roles, what, compute): compute(), or its result kept from an earlier evaluation
# when every model in `roles` is a reference checkpoint (`evaluate` builds one per run).
Memo = Callable[[tuple[str, ...], str, Callable[[], T]], T]


def no_memo(roles: tuple[str, ...], what: str, compute: Callable[[], T]) -> T:
    """The Memo that keeps nothing: every part is computed."""
    return compute()


def reference_cache_key(checkpoint_key: str, model: torch.nn.Module) -> str:
    """What the in-process caches key a reference model's parts by: its checkpoint key
    and a digest of its weights and buffers. The key alone is not enough: two stores can
    hold different weights under one key (an original trained with another torch thread
    count sums in another order), and a process may read both."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().reshape(-1).contiguous().view(torch.uint8)
                      .numpy().tobytes())
    return f"{checkpoint_key}#{digest.hexdigest()[:16]}"


def reference_memo(reference_keys: dict[str, str], subset: ProbeSubset,
                   parts: PartsCache | None = None) -> Memo:
    """A Memo that caches, in-process and with `parts` on disk, the parts of an evaluation
    that read only reference models (the original's and oracle's probes, their MIA,
    their CKA to each other): the same checkpoints, probe subset and seed give the same
    numbers for every run of a setup. `subset.key` names the setup's split and seed."""
    def memo(roles, what, compute):
        if not all(role in reference_keys for role in roles):
            return compute()
        return cached(("evaluate", what, *(reference_keys[r] for r in roles), subset.key),
                      compute, parts)
    return memo


def clear_cache() -> None:
    """Forget every cached reference computation: the next evaluation of a setup starts
    as the first one in a process does (the evaluate bench times both)."""
    _cache.clear()


def activations(model: LensModel, exp: Experiment, subset: ProbeSubset,
                cache_key: str | None = None) -> dict[str, np.ndarray]:
    """`compute_activations`, cached under `cache_key` (e.g. a reference model's key)."""
    key = None if cache_key is None else ("activations", cache_key, subset.key)
    return cached(key, lambda: compute_activations(model, exp, subset))
