"""`evaluate`: everything a run's report holds, computed once and stored (the report as
JSON, per-example arrays in npz; see docs/report-schema.md)."""

from __future__ import annotations

import time
from contextlib import contextmanager

import numpy as np
import torch

from .. import array_keys
from ..models import LensModel
from ..progress import Progress
# average_gap is defined beside the report's types (an older report's upgrade computes it);
# the sweeps rank by it from here (the oracle's row too, which the report does not store).
from ..report_schema import SCHEMA_VERSION, Report, average_gap, average_gaps  # noqa: F401
from ..training import Experiment, speedup
from ..vocabulary import ROLES
from .accuracy import ACCURACY_KEYS, accuracies
from .activations import (PartsCache, activations, predictions_and_activations, probe_subset,
                          reference_cache_key, reference_memo)
from .embeddings import fit_joint_pca
from .layers import cka_report, probe_report, seed_noise, verdict
from .poison import poison_report
from .privacy import privacy_report


def pca_at_evaluation(names: list[str]) -> list[str]:
    """The layers whose joint PCA evaluate() stores: those every view opens on (the deepest
    feature layer and the logits). A wide conv layer's PCA costs ~0.25 s on 2 cores, most
    of an evaluation's map time, so the others are fitted when first viewed
    (`pipeline.embedding_of_run`) and kept with the run."""
    return names[-2:]


def joint_pca_arrays(features: dict[str, np.ndarray], layer: str,
                     seed: int) -> dict[str, np.ndarray]:
    """The stored arrays of one layer's joint PCA: each role's (n, 2) coordinates and the
    explained variance ratio."""
    pca = fit_joint_pca(features, seed=seed)
    arrays = {array_keys.embedding("pca", layer, role): coords.astype(np.float32)
              for role, coords in pca.coords.items()}
    arrays[array_keys.embedding_variance("pca", layer)] = np.asarray(pca.explained_variance_ratio)
    return arrays


def gaps_to_oracle(unlearned: dict, oracle: dict) -> dict:
    """Unlearned minus oracle for each accuracy (None where a part is empty)."""
    return {k: None if unlearned[k] is None or oracle[k] is None else unlearned[k] - oracle[k]
            for k in ACCURACY_KEYS}


def cost_section(exp: Experiment, seconds: float, oracle_seconds: float | None) -> dict:
    """What the run cost and where it ran. The torch thread count is part of what makes
    its numbers reproducible: CPU kernels sum in another order with another count."""
    return {"seconds": seconds, "oracle_seconds": oracle_seconds,
            "speedup": speedup(oracle_seconds, seconds), "device": str(exp.device),
            "torch_threads": torch.get_num_threads()}


class PartTimer:
    """Wall seconds per named part of `evaluate`, summed over a part's blocks: the report's
    cost.evaluate_parts, which the evaluate bench prints as its profile."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextmanager
    def part(self, name: str):
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started


def evaluate(models: dict[str, LensModel], exp: Experiment, *, seconds: float,
             oracle_seconds: float, reference_keys: dict[str, str] | None = None,
             parts_cache: PartsCache | None = None,
             progress: Progress | None = None) -> tuple[Report, dict[str, np.ndarray]]:
    """The report of one unlearning run and its per-example arrays.

    `models` maps "unlearned", "original" and "oracle" to models; `reference_keys` names
    the original's and oracle's checkpoints so their forward passes and every part that
    reads only them (probes, MIA, their CKA to each other) are reused across runs of a
    setup in this process, and with `parts_cache` (the run store) across processes: those
    parts, and the references' predictions, are kept beside their checkpoints.
    """
    progress = progress or Progress()
    timer = PartTimer()
    seed = exp.spec.seed
    reference_keys = reference_keys or {}
    # What the caches key each reference's parts by: its checkpoint key and its weights.
    memo_keys = {role: reference_cache_key(key, models[role])
                 for role, key in reference_keys.items() if role in models}
    subset = probe_subset(exp, seed=seed)
    progress.update(0.0, "evaluating: predictions and activations")
    with timer.part("forward passes"):
        outputs = {role: predictions_and_activations(models[role], exp, subset,
                                                     memo_keys.get(role), parts_cache)
                   for role in ROLES}
    preds = {role: outputs[role][0] for role in ROLES}
    acts = {role: outputs[role][1] for role in ROLES}
    acc = {role: accuracies(preds[role], exp.split, exp.dataset.num_classes) for role in ROLES}
    names = list(models["unlearned"].probe_layers)
    memo = reference_memo(memo_keys, subset, parts_cache)
    progress.update(0.3, "evaluating: CKA per layer")
    with timer.part("cka"):
        layers = {"names": names, "parts": list(subset.parts),
                  "probe_sizes": {p: int(subset.mask(p).sum()) for p in subset.parts},
                  **cka_report(acts, subset, names, seed, memo)}
    progress.update(0.55, "evaluating: linear probes")
    unlearned_preds = acts["unlearned"][names[-1]].argmax(1)
    with timer.part("probes"):
        layers.update(probe_report(acts, subset, names[:-1], unlearned_preds, seed, memo))
    if "twin" in models:
        with timer.part("seed noise"):
            twin_acts = {**acts, "twin": activations(models["twin"], exp, subset,
                                                     memo_keys.get("twin"))}
            layers["seed_noise"] = seed_noise(twin_acts, subset, names)
    layers["verdict"] = verdict(acc, layers)

    progress.update(0.75, "evaluating: membership inference")
    with timer.part("mia"):
        mia, arrays = privacy_report(preds, exp.split, seed, memo)
    arrays.update({array_keys.PROBE_INDEX: subset.index, array_keys.PROBE_PART: subset.part,
                   array_keys.PROBE_LABEL: subset.labels})
    for role in ROLES:
        arrays[array_keys.pred(role)] = acts[role][names[-1]].argmax(1)
    progress.update(0.9, "evaluating: embeddings")
    with timer.part("pca"):
        for layer in pca_at_evaluation(names):
            arrays.update(joint_pca_arrays({role: acts[role][layer] for role in ROLES},
                                           layer, seed))
    if exp.spec.forget.kind == "poison":
        progress.update(0.95, "evaluating: the backdoor")
        with timer.part("poison"):
            poison, poison_arrays = poison_report(models, exp, names, seed=seed,
                                                  reference_keys=memo_keys)
        arrays.update(poison_arrays)
    report: Report = {
        "schema_version": SCHEMA_VERSION,
        "oracle": {"init": exp.spec.oracle_init, "seed": exp.spec.oracle_seed,
                   "key": reference_keys.get("oracle")},
        "accuracy": acc,
        "gap_to_oracle": gaps_to_oracle(acc["unlearned"], acc["oracle"]),
        "cost": {**cost_section(exp, seconds, oracle_seconds),
                 "evaluate_parts": timer.seconds},
        "split": exp.split.sizes(),
        "classes": list(exp.dataset.classes),
        "forget_classes": list(exp.split.forget_classes),
        "layers": layers,
        "mia": mia,
    }
    report["average_gap"] = average_gaps(report)
    if exp.spec.forget.kind == "poison":
        report["poison"] = poison
    # Everything left out for too few examples, in one place: "section.key" -> reason
    # ("needs at least N examples, has M"); the pages show "not estimable from M examples".
    report["not_estimable"] = {
        **{f"layers.{k}": v for k, v in layers.get("not_estimable", {}).items()},
        **{f"mia.{k}": v for k, v in mia.get("not_estimable", {}).items()}}
    return report, arrays
