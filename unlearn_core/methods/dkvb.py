"""Zero-shot unlearning of a DKVB model by masking key-value pairs (Shah et al.,
"Unlearning via Sparse Representations"); the model is in models/dkvb.py.

Both methods run the encoder forward on the forget set and a retain sample, decide which
(codebook, key) pairs to mask and set the model's mask buffer: no gradient step at all.

* dkvb_activations (Unlearning via Activations): count how often the forget examples
  select each pair and mask the N_a most selected, ranked over all codebooks at once
  ("global", the default) or the top N_a of each codebook ("per_codebook"). Pairs the
  forget set never selects are never masked, so a larger N_a masks at most those.
* dkvb_examples (Unlearning via Examples): mask every pair that N_e forget examples (in
  a seeded random order) select.

Choosing N without the test set: a seeded `validation_fraction` of the forget set is
held out of the counting, and `retain_validation` retain training examples are drawn.
The N sweep masks with the counted part only and measures forget accuracy on the
held-out forget examples and retain accuracy on the retain sample, over a geometric grid
of N, then bisects down to the smallest N that brings held-out forget accuracy to the
target (`stop_rule`, as NegGrad's: 0 when whole classes are forgotten). The sweep's
accuracies are the paper's Figs. 2-3 (retain vs forget accuracy as N grows). The final
mask then uses the whole forget set, counted examples first: Activations masks the top
N_a pairs of the counts over every forget example; Examples masks the pairs of the same
share of the forget set as the sweep found (N_e scaled by forget / counted), since on
mnist5k the exact validated mask (first N_e counted examples only) left up to 6% of a
forget class's test examples recognised. If no swept N reaches the target, every pair
the forget set selects is masked and info says `target_reached: false`. A given `n`
(> 0) is used as it is, on the whole forget set. Retain accuracy in the sweep is on
training examples the values were fitted to, so it reads higher than test accuracy: it
draws the curve and plays no part in choosing N.

Cost: encoder forward passes only (forget set + retain sample); the sweep re-searches
keys just for the examples whose selected key got masked (`KeyValueBottleneck.reselect`).
The key-usage artifacts for the Keys page need the selections of the whole training
set, one more encoder pass; it is timed apart (info "artifact_seconds") from the
unlearning itself ("unlearning_seconds").
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from ..data import TensorLoader
from ..errors import UserError
from ..models import LensModel
from ..models.dkvb import KeyValueBottleneck, bottleneck_of, usage_counts
from ..training import Experiment, encode
from .base import Method, Outcome, Param, UnlearnContext
from .stop_rules import STOP_RULES, forget_accuracy_target
from .registry import register_method

RANKINGS = ("global", "per_codebook")
ENCODE_BATCH = 512


@dataclass
class Queries:
    """Some training examples as the bottleneck sees them: their queries (n, C, key_dim),
    the keys they select under the original mask (n, C) and their labels (n,)."""

    z: torch.Tensor
    selection: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)


def queries(model: LensModel, exp: Experiment, positions: np.ndarray,
            mask: torch.Tensor | None = None) -> Queries:
    """Encoder forward pass over the training examples at `positions`; selections under
    `mask` (default: the model's)."""
    bottleneck = bottleneck_of(model)
    if len(positions) == 0:
        empty = torch.empty(0, bottleneck.codebooks, dtype=torch.long, device=exp.device)
        return Queries(torch.empty(0, *bottleneck.keys.shape[::2], device=exp.device), empty,
                       torch.empty(0, dtype=torch.long, device=exp.device))
    loader = TensorLoader(exp.dataset.train, positions, mean=exp.dataset.mean,
                          std=exp.dataset.std, batch_size=ENCODE_BATCH, device=exp.device)
    h, labels = encode(model, loader, model.encoder_output)
    with torch.no_grad():
        z = bottleneck.project(h)
        return Queries(z, bottleneck.nearest(z, mask), labels)


@torch.no_grad()
def accuracy_of(model: LensModel, selection: torch.Tensor, labels: torch.Tensor) -> float:
    """Accuracy of a DKVB model whose bottleneck selected these keys (n, C)."""
    if len(labels) == 0:
        return float("nan")
    logits = model.classifier(bottleneck_of(model).fetch(selection).flatten(1))
    return float((logits.argmax(1) == labels).float().mean())


def accuracy_under(model: LensModel, q: Queries, mask: torch.Tensor) -> float:
    """Accuracy on `q` with `mask` in the bottleneck (the model itself is not changed)."""
    with torch.no_grad():
        selection = bottleneck_of(model).reselect(q.z, q.selection, mask)
    return accuracy_of(model, selection, q.labels)


def sweep_n(evaluate: Callable[[int], tuple[float, float]], n_max: int, points: int,
            target: float | None) -> tuple[dict[int, tuple[float, float]], int | None]:
    """`evaluate(n)` -> (forget accuracy, retain accuracy) over a geometric grid of
    `points` values of n in [1, n_max], then bisection between the last grid point above
    `target` and the first at or below it. Returns every evaluated point and the smallest
    n found at or below the target (None if no grid point reaches it). The bisection
    assumes forget accuracy falls as n grows, as nested masks make it do in practice."""
    grid = sorted({int(n) for n in np.unique(np.round(np.geomspace(1, n_max, points)))})
    results = {n: evaluate(n) for n in grid}
    passing = [n for n in grid if target is not None and results[n][0] <= target]
    if not passing:
        return results, None
    high = passing[0]
    low = max((n for n in grid if n < high), default=0)
    while high - low > 1:
        middle = (low + high) // 2
        results[middle] = evaluate(middle)
        if results[middle][0] <= target:
            high = middle
        else:
            low = middle
    return dict(sorted(results.items())), high


def _common_params(n_help: str) -> tuple[Param, ...]:
    return (
        Param("n", "int", 0, n_help + "; 0 = the smallest N the sweep finds that brings "
              "held-out forget accuracy to the target", low=0, high=2**31 - 1),
        Param("stop_rule", "choice", "unseen",
              "target of the sweep: 'unseen' = what a model that never saw the forget set "
              "would score (0 when whole classes are forgotten, else the original's "
              "accuracy on held-out test examples of those classes); 'target' = "
              "stop_accuracy", choices=tuple(r for r in STOP_RULES if r != "none")),
        Param("stop_accuracy", "float", 0.0, "held-out forget accuracy to reach, with "
              "stop_rule 'target'", low=0.0, high=1.0),
        Param("validation_fraction", "float", 0.2, "share of the forget set held out of "
              "the counting, to measure forget accuracy in the sweep", low=0.0, high=0.9,
              low_inclusive=False),
        Param("retain_validation", "int", 500, "retain training examples drawn to measure "
              "retain accuracy in the sweep", low=1, high=1_000_000),
        Param("sweep_points", "int", 12, "values of N on the sweep's geometric grid (then "
              "bisection); 0 = no sweep, only with a given n", low=0, high=200),
    )


class KeyMasking(Method):
    """What both DKVB methods share: checks, the forward passes, the sweep, the mask and
    the key-usage artifacts. A subclass says which pairs N masks, given the selections of
    forget examples in order (`pairs`), and how far N can go (`n_range`)."""

    reference = ("Shah et al., Unlearning via Sparse Representations (2023); the "
                 "bottleneck: Träuble et al., Discrete Key-Value Bottleneck (ICML 2023)")

    def check(self, params: dict, model: LensModel) -> None:
        bottleneck = bottleneck_of(model)
        if bottleneck is None:
            raise UserError(f"method.name: {self.name} unlearns a DKVB model by masking its "
                            f"keys; this setup's model has no key-value bottleneck (set "
                            f"model.name to 'dkvb')")
        if params["n"] == 0 and params["sweep_points"] < 2:
            raise UserError("method.params.sweep_points: n = 0 picks N with the sweep, which "
                            f"needs at least 2 points; got {params['sweep_points']}")
        limit = self.n_limit(params, bottleneck)
        if limit is not None and params["n"] > limit[0]:
            raise UserError(f"method.params.n: expected an integer in [0, {limit[0]}] for "
                            f"this model ({limit[1]}), got {params['n']}")

    def n_limit(self, params: dict, bottleneck: KeyValueBottleneck) -> tuple[int, str] | None:
        """The largest N the model allows and why (None: only the data can tell)."""
        return None

    def n_range(self, params: dict, selection: torch.Tensor, keys: int) -> int:
        """The N past which the mask of these selections stops growing."""
        raise NotImplementedError

    def pairs(self, params: dict, n: int, selection: torch.Tensor, keys: int) -> torch.Tensor:
        """The (C, P) pairs N masks, from the selections (n, C) of forget examples."""
        raise NotImplementedError

    def final_n(self, n: int, counted: int, forget: int) -> int:
        """The N for the whole forget set when the sweep found `n` on `counted` of its
        `forget` examples."""
        return n

    def unlearn(self, ctx: UnlearnContext) -> Outcome:
        p = ctx.params
        model, exp = ctx.model, ctx.experiment
        bottleneck = bottleneck_of(model)
        keys = bottleneck.num_keys
        started = time.perf_counter()
        rng = np.random.default_rng(ctx.seed)
        forget = rng.permutation(exp.split.forget)
        if self.n_limit(p, bottleneck) is None and p["n"] > len(forget):
            raise UserError(f"method.params.n: expected an integer in [0, {len(forget)}] (the "
                            f"forget set's size), got {p['n']}")
        sweeping = p["sweep_points"] > 0
        held_out_size = int(round(p["validation_fraction"] * len(forget))) if sweeping else 0
        if sweeping and not 1 <= held_out_size < len(forget):
            raise UserError(f"method.params.validation_fraction: {p['validation_fraction']} of "
                            f"the {len(forget)} forget examples leaves no example to hold out "
                            f"or none to count; change it, or give n with sweep_points 0")
        retain_sample = np.sort(rng.choice(exp.split.retain, size=min(
            p["retain_validation"], len(exp.split.retain)), replace=False))
        ctx.progress.update(0.05, "encoder forward pass over the forget set")
        counting = queries(model, exp, forget[held_out_size:])
        held_out = queries(model, exp, forget[:held_out_size])
        retain = queries(model, exp, retain_sample) if sweeping else None
        # The whole forget set in order: the counted examples first.
        everything = torch.cat([counting.selection, held_out.selection])
        original_mask = bottleneck.mask.clone()
        # The selections of the validation examples under each mask evaluated so far. The
        # pairs of N contain those of any smaller N, so the search for N starts from the
        # largest smaller N evaluated and only redoes the pairs masked in between.
        states = {0: (held_out.selection, None if retain is None else retain.selection)}

        def evaluate(n: int) -> tuple[float, float]:
            mask = original_mask | self.pairs(p, n, counting.selection, keys)
            start = states[max(m for m in states if m < n)]
            with torch.no_grad():
                states[n] = tuple(bottleneck.reselect(q.z, selection, mask)
                                  for q, selection in zip((held_out, retain), start))
            return tuple(accuracy_of(model, selection, q.labels)
                         for q, selection in zip((held_out, retain), states[n]))

        target = forget_accuracy_target(ctx)
        curve: dict[int, tuple[float, float]] = {}
        found = None
        if sweeping:
            ctx.progress.update(0.3, "sweeping N")
            curve, found = sweep_n(self._progress_each(evaluate, ctx),
                                   max(1, self.n_range(p, counting.selection, keys)),
                                   p["sweep_points"], target)
        if p["n"]:
            n = p["n"]
        elif found is None:  # even masking every counted pair missed: mask all of them
            n = self.n_range(p, everything, keys)
        else:
            n = self.final_n(found, len(counting), len(forget))
        masked = original_mask | self.pairs(p, n, everything, keys)
        bottleneck.mask.copy_(masked)
        unlearning_seconds = time.perf_counter() - started

        ctx.progress.update(0.8, "key usage over the training set")
        artifacts, artifact_examples = key_usage(model, exp, original_mask)
        artifacts["dkvb/mask"] = masked.cpu().numpy()
        if curve:
            artifacts["dkvb/sweep_n"] = np.array(list(curve), np.int64)
            artifacts["dkvb/sweep_forget_accuracy"] = np.array([f for f, _ in curve.values()])
            artifacts["dkvb/sweep_retain_accuracy"] = np.array([r for _, r in curve.values()])
        info = {
            "n": n, "n_source": "given" if p["n"] else "sweep", "n_swept": found,
            "target": target,
            "target_reached": None if p["n"] or not sweeping else found is not None,
            "pairs_masked": int((masked & ~original_mask).sum()),
            "pairs_total": int(masked.numel()),
            "forget_examples_counted": len(counting), "forget_held_out": len(held_out),
            "retain_validation": 0 if retain is None else len(retain),
            "validation_before": None if retain is None else {
                "forget": accuracy_under(model, held_out, original_mask),
                "retain": accuracy_under(model, retain, original_mask)},
            "validation_at_n_swept": None if found is None else dict(
                zip(("forget", "retain"), curve[found])),
            "sweep_evaluations": len(curve),
            "encoder_forward_examples": len(forget) + (0 if retain is None else len(retain)),
            "gradient_steps": 0,
            "unlearning_seconds": unlearning_seconds,
            "artifact_forward_examples": artifact_examples,
            "artifact_seconds": time.perf_counter() - started - unlearning_seconds,
        }
        return Outcome(model, artifacts=artifacts, info=info)

    @staticmethod
    def _progress_each(evaluate, ctx: UnlearnContext):
        calls = 0

        def counted(n: int):
            nonlocal calls
            calls += 1
            ctx.progress.update(min(0.3 + 0.02 * calls, 0.75), f"sweeping N: N = {n:,}")
            return evaluate(n)
        return counted


def key_usage(model: LensModel, exp: Experiment,
              mask_before: torch.Tensor) -> tuple[dict[str, np.ndarray], int]:
    """Key-usage counts over the training set, before (under `mask_before`) and after
    (under the model's mask): per (codebook, key) for the forget and the retain set, and
    per (codebook, key, class) before. Returns the arrays and how many examples the
    encoder ran on."""
    bottleneck = bottleneck_of(model)
    everything = queries(model, exp, np.arange(len(exp.dataset.train)), mask_before)
    before = everything.selection
    with torch.no_grad():
        after = bottleneck.reselect(everything.z, before, bottleneck.mask)
    keys = bottleneck.num_keys
    in_forget = torch.zeros(len(everything), dtype=torch.bool, device=before.device)
    in_forget[torch.as_tensor(exp.split.forget.copy(), device=before.device)] = True
    arrays = {}
    for when, selection in (("before", before), ("after", after)):
        arrays[f"dkvb/usage_forget_{when}"] = usage_counts(selection[in_forget], keys)
        arrays[f"dkvb/usage_retain_{when}"] = usage_counts(selection[~in_forget], keys)
    arrays["dkvb/key_class_usage"] = torch.stack(
        [usage_counts(before[everything.labels == c], keys)
         for c in range(exp.dataset.num_classes)], dim=-1)
    return {k: v.cpu().numpy().astype(np.int32) for k, v in arrays.items()}, len(everything)


@register_method
class UnlearnViaActivations(KeyMasking):
    name = "dkvb_activations"
    title = "DKVB: Unlearning via Activations"
    summary = ("Zero-shot, DKVB models only: count how often the forget set selects each "
               "key of the bottleneck and mask the N_a most selected (codebook, key) pairs; "
               "masked keys drop out of the nearest-key search. Forward passes only.")
    params = (
        *_common_params("N_a: how many (codebook, key) pairs to mask, most selected by the "
                        "forget set first (ranking 'global'), or per codebook "
                        "('per_codebook')"),
        Param("ranking", "choice", "global", "'global': the top N_a pairs over all "
              "codebooks; 'per_codebook': the top N_a keys of each codebook",
              choices=RANKINGS),
    )

    def n_limit(self, params: dict, bottleneck: KeyValueBottleneck) -> tuple[int, str]:
        if params["ranking"] == "per_codebook":
            return bottleneck.num_keys, f"{bottleneck.num_keys} keys per codebook"
        return (bottleneck.codebooks * bottleneck.num_keys,
                f"{bottleneck.codebooks} codebooks x {bottleneck.num_keys} keys")

    def n_range(self, params: dict, selection: torch.Tensor, keys: int) -> int:
        used = usage_counts(selection, keys) > 0
        return int(used.sum(1).max() if params["ranking"] == "per_codebook" else used.sum())

    def pairs(self, params: dict, n: int, selection: torch.Tensor, keys: int) -> torch.Tensor:
        return top_pairs(usage_counts(selection, keys), n,
                         per_codebook=params["ranking"] == "per_codebook")


def top_pairs(counts: torch.Tensor, n: int, per_codebook: bool = False) -> torch.Tensor:
    """Boolean (C, P): the n pairs with the highest counts (ties to the lower codebook,
    then key), or the top n keys of each codebook; pairs counted 0 are never chosen."""
    if per_codebook:
        order = torch.argsort(-counts, dim=1, stable=True)
        chosen = torch.zeros_like(counts, dtype=torch.bool).scatter_(1, order[:, :n], True)
    else:
        order = torch.argsort(-counts.flatten(), stable=True)
        chosen = torch.zeros(counts.numel(), dtype=torch.bool, device=counts.device)
        chosen[order[:n]] = True
        chosen = chosen.view_as(counts)
    return chosen & (counts > 0)


@register_method
class UnlearnViaExamples(KeyMasking):
    name = "dkvb_examples"
    title = "DKVB: Unlearning via Examples"
    summary = ("Zero-shot, DKVB models only: mask every (codebook, key) pair that N_e "
               "forget examples select; masked keys drop out of the nearest-key search. "
               "Forward passes only.")
    params = _common_params("N_e: how many forget examples (in a seeded random order) "
                            "whose selected pairs are all masked")

    def n_range(self, params: dict, selection: torch.Tensor, keys: int) -> int:
        return len(selection)

    def pairs(self, params: dict, n: int, selection: torch.Tensor, keys: int) -> torch.Tensor:
        return usage_counts(selection[:n], keys) > 0

    def final_n(self, n: int, counted: int, forget: int) -> int:
        # The sweep measures what share of the forget set must have its pairs masked for
        # unseen forget examples to fail; the whole set gets the same share.
        return min(forget, round(n * forget / counted))
