"""Per-layer views of forgetting: CKA to the original and to the oracle, forgetting
depth, linear probes, head refit and the one-sentence verdict (METHODS.md, "Shared
evaluation protocol")."""

from __future__ import annotations

import math

import numpy as np

from .activations import ProbeSubset
from .cka import ConstantFeaturesError, bootstrap_cka, cka_matrix, forgetting_depth, linear_cka
from .probes import fit_linear_probe

PAIRS = {"unlearned_vs_original": ("unlearned", "original"),
         "unlearned_vs_oracle": ("unlearned", "oracle"),
         "oracle_vs_original": ("oracle", "original")}
DEBIASED_BELOW = 200  # examples: the plain estimator is biased upward for small n
N_BOOT = 100
# Thresholds of the verdict on the mean forgetting depth of the feature layers.
CORE_DEPTH, SUPERFICIAL_DEPTH = 0.7, 0.3
NOT_FORGOTTEN_MARGIN = 0.2  # forget accuracy this far above the oracle's is not forgotten
# Depth divides by the oracle's own movement 1 - CKA(oracle, original); below this floor
# (the spread of CKA between bootstrap resamples on a few hundred examples is about
# 0.005-0.01) the ratio is noise, so depth is left undefined there.
DEPTH_FLOOR = 0.02


def _finite_or_none(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _cka_with_band(x: np.ndarray, y: np.ndarray, seed: int, band: bool):
    """(value, low, high); the bootstrap band only where asked (it costs most of the
    report's time), else (value, None, None)."""
    debiased = len(x) < DEBIASED_BELOW
    try:
        if band:
            return bootstrap_cka(x, y, n_boot=N_BOOT, seed=seed, debiased=debiased)
        return linear_cka(x, y, debiased=debiased), None, None
    except ConstantFeaturesError:
        return None, None, None  # a dead layer: CKA is undefined, shown as a gap


def cka_report(acts: dict[str, dict[str, np.ndarray]], subset: ProbeSubset,
               layers: list[str], seed: int) -> dict:
    cka: dict = {pair: {} for pair in PAIRS}
    band: dict = {pair: {} for pair in PAIRS}
    for pair, (a, b) in PAIRS.items():
        for part in subset.parts:
            rows = subset.mask(part)
            values = [_cka_with_band(acts[a][layer][rows], acts[b][layer][rows], seed,
                                     band=part.startswith("forget")) for layer in layers]
            cka[pair][part] = [v[0] for v in values]
            band[pair][part] = {"low": [v[1] for v in values], "high": [v[2] for v in values]}
    depth = {}
    for part in subset.parts:
        if part.startswith("forget"):
            u, r = cka["unlearned_vs_original"][part], cka["oracle_vs_original"][part]
            depth[part] = [None if ui is None or ri is None
                           else _finite_or_none(forgetting_depth(ui, ri, eps=DEPTH_FLOOR))
                           for ui, ri in zip(u, r)]
    forget_part = next((p for p in subset.parts if p.startswith("forget")), subset.parts[0])
    rows = subset.mask(forget_part)
    matrices = {}
    for pair in ("unlearned_vs_original", "oracle_vs_original"):
        a, b = PAIRS[pair]
        try:
            matrices[pair] = cka_matrix({l: acts[a][l][rows] for l in layers},
                                        {l: acts[b][l][rows] for l in layers}).tolist()
        except ConstantFeaturesError:
            matrices[pair] = None
    return {"cka": cka, "cka_band": band, "depth": depth, "depth_floor": DEPTH_FLOOR,
            "cka_matrix": {"part": forget_part, **matrices}}


def probe_report(acts: dict[str, dict[str, np.ndarray]], subset: ProbeSubset,
                 feature_layers: list[str], unlearned_preds: np.ndarray, seed: int) -> dict:
    """Linear probes fit on retain + half of the forget training examples of the subset,
    scored on held-out forget examples (the forget test part when there is one)."""
    forget_train = np.flatnonzero(subset.mask("forget_train"))
    rng = np.random.default_rng(seed)
    shuffled = rng.permutation(forget_train)
    half = len(shuffled) // 2
    train_rows = np.concatenate([np.flatnonzero(subset.mask("retain_train")), shuffled[:half]])
    test_rows = (np.flatnonzero(subset.mask("forget_test")) if "forget_test" in subset.parts
                 else shuffled[half:])
    if len(test_rows) == 0 or len(np.unique(subset.labels[train_rows])) < 2:
        return {"probe_layers": feature_layers, "probes": None, "head_refit": None}
    probes = {}
    for role in ("unlearned", "original", "oracle"):
        probes[role] = [fit_linear_probe(acts[role][layer][train_rows], subset.labels[train_rows],
                                         acts[role][layer][test_rows], subset.labels[test_rows],
                                         seed=seed).accuracy for layer in feature_layers]
    before = float((unlearned_preds[test_rows] == subset.labels[test_rows]).mean())
    after = probes["unlearned"][-1]  # a refit classifier on the unlearned trunk
    return {"probe_layers": feature_layers, "probes": probes,
            "head_refit": {"forget_accuracy_before": before, "forget_accuracy_after": after,
                           "returned": after - before, "n_held_out": int(len(test_rows))}}


def verdict(accuracy: dict, layers_report: dict) -> dict:
    """One sentence, computed from the numbers: was the forgetting superficial or core?

    It looks at the feature layers where the oracle moved measurably (its depth is
    defined): the focus layer is the first of them from the middle of the network on,
    and the mean depth is taken over all of them.
    """
    key = "test_forget" if accuracy["unlearned"]["test_forget"] is not None else "forget_train"
    fa, fa_oracle = accuracy["unlearned"][key], accuracy["oracle"][key]
    names = layers_report["names"]
    feature_layers = names[:-1]
    part = "forget_train" if "forget_train" in layers_report["depth"] else next(
        iter(layers_report["depth"]), None)
    if part is None:
        return {"kind": "partial", "text": "No forget examples in the probe subset.",
                "mean_depth": None}
    depth = dict(zip(names, layers_report["depth"][part]))
    measurable = [layer for layer in feature_layers if depth[layer] is not None]
    middle = len(feature_layers) // 2
    focus = next((layer for layer in feature_layers[middle:] if layer in measurable),
                 measurable[-1] if measurable else feature_layers[middle])
    i = names.index(focus)
    cka_u = layers_report["cka"]["unlearned_vs_original"][part][i]
    cka_r = layers_report["cka"]["oracle_vs_original"][part][i]
    mean_depth = float(np.mean([depth[layer] for layer in measurable])) if measurable else None
    probes = layers_report.get("probes")
    probe_text = ""
    if probes:
        j = layers_report["probe_layers"].index(focus)
        probe_text = (f" and probe accuracy {probes['unlearned'][j]:.0%} "
                      f"(oracle {probes['oracle'][j]:.0%})")
    facts = (f"forget accuracy {fa:.0%} (oracle {fa_oracle:.0%}), {focus} CKA to the original "
             f"{_fmt(cka_u)} (oracle {_fmt(cka_r)}){probe_text}")
    if fa > fa_oracle + NOT_FORGOTTEN_MARGIN:
        return {"kind": "not_forgotten", "text": f"{facts}: not forgotten yet.",
                "mean_depth": mean_depth}
    if not measurable:
        return {"kind": "undetermined", "mean_depth": None,
                "text": f"{facts}: the oracle itself moved by less than {DEPTH_FLOOR} in CKA "
                        "at every feature layer, so the layers cannot show whether the "
                        "forgetting is core or superficial."}
    if mean_depth >= CORE_DEPTH:
        kind = "core"
    elif mean_depth <= SUPERFICIAL_DEPTH:
        kind = "superficial"
    else:
        kind = "partial"
    label = {"core": "core forgetting", "superficial": "superficial",
             "partial": "partly at the core"}[kind]
    over = ("" if len(measurable) == len(feature_layers)
            else f" (over {', '.join(measurable)}, where the oracle moved measurably)")
    return {"kind": kind, "mean_depth": mean_depth,
            "text": f"{facts}; mean forgetting depth {mean_depth:.2f}{over}: {label}."}


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"
