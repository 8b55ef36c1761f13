"""Per-layer views of forgetting: CKA to the original and to the oracle, forgetting
depth, linear probes, head refit and the one-sentence verdict (METHODS.md, "Shared
evaluation protocol")."""

from __future__ import annotations

import math

import numpy as np

from ..vocabulary import ROLES
from .activations import Memo, ProbeSubset, no_memo
from .cka import (ConstantFeaturesError, NotEstimableError, bootstrap_cka_replicates, cka_interval,
                  cka_matrix, difference_interval, forgetting_depth, linear_cka)
from .probes import probe_margins

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


def not_estimable(needed: int, has: int) -> str:
    """The reason stored (report["not_estimable"]) for a value left out."""
    return f"needs at least {needed} examples, has {has}"


def _finite_or_none(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _estimable(compute, notes: dict, where: str):
    """compute(), or None where CKA is not defined: too few examples (the reason goes to
    `notes[where]`) or a dead layer (a constant representation, shown as a gap)."""
    try:
        return compute()
    except NotEstimableError as error:
        notes[where] = not_estimable(error.needed, error.has)
        return None
    except ConstantFeaturesError:
        return None


def _pair_report(acts: dict, a: str, b: str, subset: ProbeSubset, layers: list[str],
                 seed: int) -> dict:
    """CKA(a, b) per part and layer; on forget parts also the bootstrap draws (the band
    comes from them, and the CKA-difference interval from two pairs' paired draws)."""
    values, draws, notes = {}, {}, {}
    for part in subset.parts:
        rows = subset.mask(part)
        debiased = int(rows.sum()) < DEBIASED_BELOW  # the plain estimator is biased for small n
        if part.startswith("forget"):
            draws[part] = [_estimable(
                lambda layer=layer, rows=rows, debiased=debiased: bootstrap_cka_replicates(
                acts[a][layer][rows], acts[b][layer][rows], n_boot=N_BOOT, seed=seed,
                debiased=debiased), notes, f"cka.{part}") for layer in layers]
            values[part] = [None if d is None else cka_interval(d, debiased=debiased)
                            for d in draws[part]]
        else:
            values[part] = [_estimable(lambda layer=layer, rows=rows, debiased=debiased: (linear_cka(
                acts[a][layer][rows], acts[b][layer][rows], debiased=debiased), None, None),
                notes, f"cka.{part}") for layer in layers]
        values[part] = [(None, None, None) if v is None else v for v in values[part]]
    return {"values": values, "draws": draws, "notes": notes}


def _layer_matrix(acts: dict, a: str, b: str, layers: list[str], rows: np.ndarray,
                  notes: dict) -> list | None:
    matrix = _estimable(lambda: cka_matrix({name: acts[a][name][rows] for name in layers},
                                           {name: acts[b][name][rows] for name in layers}),
                        notes, "cka_matrix")
    return None if matrix is None else matrix.tolist()


def cka_report(acts: dict[str, dict[str, np.ndarray]], subset: ProbeSubset,
               layers: list[str], seed: int, memo: Memo = no_memo) -> dict:
    """CKA of each pair of PAIRS per part and layer, bootstrap bands on forget parts, the
    forgetting depth, the paired CKA difference to the oracle ("cka_excess") and the
    layer x layer matrices. `memo` keeps what only the references decide (the
    oracle-vs-original pair) across runs of a setup."""
    pairs = {pair: memo((a, b), f"cka-pair-{seed}",
                        lambda a=a, b=b: _pair_report(acts, a, b, subset, layers, seed))
             for pair, (a, b) in PAIRS.items()}
    notes: dict[str, str] = {}  # "cka.<part>" etc. -> why it is not estimable
    for result in pairs.values():
        notes.update(result["notes"])
    cka = {pair: {part: [v[0] for v in values] for part, values in result["values"].items()}
           for pair, result in pairs.items()}
    band = {pair: {part: {"low": [v[1] for v in values], "high": [v[2] for v in values]}
                   for part, values in result["values"].items()}
            for pair, result in pairs.items()}
    depth, excess = {}, {}
    for part in subset.parts:
        if part.startswith("forget"):
            u, r = cka["unlearned_vs_original"][part], cka["oracle_vs_original"][part]
            depth[part] = [None if ui is None or ri is None
                           else _finite_or_none(forgetting_depth(ui, ri, eps=DEPTH_FLOOR))
                           for ui, ri in zip(u, r)]
            # CKA(unlearned, original) - CKA(oracle, original) with its paired 95%
            # interval: above 0, the layer stayed closer to the original than the oracle.
            values = [(None, None, None) if du is None or dr is None
                      else difference_interval(du - dr)
                      for du, dr in zip(pairs["unlearned_vs_original"]["draws"][part],
                                        pairs["oracle_vs_original"]["draws"][part])]
            if f"cka.{part}" in notes:
                notes[f"cka_excess.{part}"] = notes[f"cka.{part}"]
            excess[part] = {key: [v[i] for v in values]
                            for i, key in enumerate(("value", "low", "high"))}
    forget_part = next((p for p in subset.parts if p.startswith("forget")), subset.parts[0])
    rows = subset.mask(forget_part)
    matrices = {pair: memo(PAIRS[pair], "cka-matrix", lambda pair=pair: _layer_matrix(
        acts, *PAIRS[pair], layers, rows, notes)) for pair in ("unlearned_vs_original",
                                                                "oracle_vs_original")}
    return {"cka": cka, "cka_band": band, "depth": depth, "depth_floor": DEPTH_FLOOR,
            "cka_excess": excess,
            "cka_matrix": {"part": forget_part, **matrices}, "not_estimable": notes}


def probe_rows(subset: ProbeSubset, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows the probes are fit on, rows they are scored on) of the probe subset.

    Fit on the retain training rows and a seeded share of the forget training rows,
    class-balanced: each forget class contributes at most as many rows as the median
    retain class (in class forgetting the forget class otherwise made ~29% of the rows,
    about 8% per retain class, which inflated "recovery"). Scored on held-out forget
    examples: the forget test part when there is one, else the forget training rows not
    fit on."""
    forget_train = np.flatnonzero(subset.mask("forget_train"))
    retain_train = np.flatnonzero(subset.mask("retain_train"))
    rng = np.random.default_rng(seed)
    shuffled = rng.permutation(forget_train)
    retain_counts = np.unique(subset.labels[retain_train], return_counts=True)[1]
    per_class = int(np.median(retain_counts)) if len(retain_counts) else len(shuffled) // 2
    fit, held = [], []
    for label in np.unique(subset.labels[shuffled]):
        rows = shuffled[subset.labels[shuffled] == label]
        cap = min(per_class, len(rows) // 2)
        fit.append(rows[:cap])
        held.append(rows[cap:])
    fit_forget = np.concatenate(fit) if fit else np.zeros(0, np.int64)
    train_rows = np.concatenate([retain_train, fit_forget])
    test_rows = (np.flatnonzero(subset.mask("forget_test")) if "forget_test" in subset.parts
                 else np.sort(np.concatenate(held)) if held else np.zeros(0, np.int64))
    return train_rows, test_rows


def probe_report(acts: dict[str, dict[str, np.ndarray]], subset: ProbeSubset,
                 feature_layers: list[str], unlearned_preds: np.ndarray, seed: int,
                 memo: Memo = no_memo) -> dict:
    """Linear probes fit on the rows `probe_rows` chooses, scored on held-out forget
    examples ("probes") and, as the baseline they are read against, on held-out retain
    examples ("probes_retain": the retain test part). `memo` keeps the references'
    probes across runs of a setup."""
    train_rows, test_rows = probe_rows(subset, seed)
    if len(test_rows) == 0 or len(np.unique(subset.labels[train_rows])) < 2:
        return {"probe_layers": feature_layers, "probes": None, "probes_retain": None,
                "head_refit": None}
    retain_rows = np.flatnonzero(subset.mask("retain_test"))
    query = np.concatenate([test_rows, retain_rows])

    def probe_accuracy(features: np.ndarray) -> tuple[float | None, float | None]:
        if np.all(features[train_rows].max(axis=0) == features[train_rows].min(axis=0)):
            return None, None  # a dead layer (e.g. a collapsed model): nothing to fit on
        margins = probe_margins(features[train_rows], subset.labels[train_rows],
                                features[query], subset.labels[query], seed=seed)
        correct = np.nan_to_num(margins, nan=-1.0) > 0  # NaN: a class the probe never saw
        forget = float(correct[:len(test_rows)].mean())
        return forget, float(correct[len(test_rows):].mean()) if len(retain_rows) else None

    scores = {role: memo((role,), f"probes-{seed}", lambda role=role: [
        probe_accuracy(acts[role][layer]) for layer in feature_layers])
        for role in ROLES}
    probes = {role: [s[0] for s in values] for role, values in scores.items()}
    before = float((unlearned_preds[test_rows] == subset.labels[test_rows]).mean())
    after = probes["unlearned"][-1]  # a refit classifier on the unlearned trunk
    return {"probe_layers": feature_layers, "probes": probes,
            "probes_retain": {role: [s[1] for s in values] for role, values in scores.items()},
            "head_refit": {"forget_accuracy_before": before, "forget_accuracy_after": after,
                           "returned": None if after is None else after - before,
                           "n_held_out": int(len(test_rows))}}


def verdict(accuracy: dict, layers_report: dict) -> dict:
    """One sentence, computed from the numbers: was the forgetting superficial or core?

    It is judged at the middle feature layer ("focus"): by the forgetting depth there
    when the oracle moved measurably at that layer, otherwise by whether the layer
    stayed significantly closer to the original than the oracle's (the paired 95%
    interval of the CKA difference lies above 0: superficial) or not (core).
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
    focus = feature_layers[len(feature_layers) // 2]
    i = names.index(focus)
    cka_u = layers_report["cka"]["unlearned_vs_original"][part][i]
    cka_r = layers_report["cka"]["oracle_vs_original"][part][i]
    depths = [d for d in layers_report["depth"][part][:-1] if d is not None]
    mean_depth = float(np.mean(depths)) if depths else None
    probes = layers_report.get("probes")
    probe_text = ""
    if probes:
        j = layers_report["probe_layers"].index(focus)
        probe_text = (f" and probe accuracy {_fmt_percent(probes['unlearned'][j])} "
                      f"(oracle {_fmt_percent(probes['oracle'][j])})")
    facts = (f"forget accuracy {fa:.0%} (oracle {fa_oracle:.0%}), {focus} CKA to the original "
             f"{_fmt(cka_u)} (oracle {_fmt(cka_r)}){probe_text}")
    if fa > fa_oracle + NOT_FORGOTTEN_MARGIN:
        return {"kind": "not_forgotten", "text": f"{facts}: not forgotten yet.",
                "mean_depth": mean_depth}
    depth = layers_report["depth"][part][i]
    excess = layers_report.get("cka_excess", {}).get(part)
    value, low, high = ((excess["value"][i], excess["low"][i], excess["high"][i]) if excess
                        else (None, None, None))
    twin = (layers_report.get("seed_noise") or {}).get(part)
    noise = None if twin is None or twin[i] is None else 1 - twin[i]
    within_noise = noise is not None and (low is None or low <= noise)
    if noise is not None and cka_r is not None and twin[i] - cka_r < DEPTH_FLOOR:
        # The oracle sits no further from the original than a twin trained on the same
        # data with its seed: at this layer the forget data's own effect is inside seed
        # noise, so neither depth nor the CKA difference can speak to it.
        return {"kind": "undetermined", "mean_depth": mean_depth,
                "text": f"{facts}: at {focus} the oracle is no further from the original "
                        f"than an original trained with the oracle's seed ({twin[i]:.2f}), so "
                        "the forget data's effect there is inside seed noise and the layers "
                        "cannot show whether the forgetting is core or superficial."}
    if depth is not None:
        kind = ("core" if depth >= CORE_DEPTH else "superficial" if depth <= SUPERFICIAL_DEPTH
                else "partial")
        if kind == "superficial" and within_noise:
            return _inside_seed_noise(facts, focus, value, noise, mean_depth)
        label = {"core": "core forgetting", "superficial": "superficial",
                 "partial": "partly at the core"}[kind]
        return {"kind": kind, "mean_depth": mean_depth,
                "text": f"{facts}; forgetting depth at {focus} {depth:.2f}: {label}."}
    if value is None:
        return {"kind": "undetermined", "mean_depth": mean_depth,
                "text": f"{facts}: the oracle itself barely moved at {focus} and CKA cannot "
                        "be compared there, so the layers cannot show whether the forgetting "
                        "is core or superficial."}
    interval = f"{value:+.3f}, 95% interval {low:+.3f} to {high:+.3f}"
    if low > 0 and within_noise:
        return _inside_seed_noise(facts, focus, value, noise, mean_depth)
    if low > 0:
        return {"kind": "superficial", "mean_depth": mean_depth,
                "text": f"{facts}: {focus} stayed closer to the original than the oracle's "
                        f"did ({interval}): superficial."}
    how = "moved further from" if high < 0 else "stayed no closer to"
    return {"kind": "core", "mean_depth": mean_depth,
            "text": f"{facts}: {focus} {how} the original than the oracle's ({interval}; "
                    "the oracle itself moved little there): core forgetting."}


def _inside_seed_noise(facts: str, focus: str, excess: float | None, noise: float,
                       mean_depth: float | None) -> dict:
    """The verdict when the unlearned model's lead over the oracle is no larger than what
    another training seed alone moves a model (1 - CKA(twin original, original))."""
    lead = "n/a" if excess is None else f"{excess:+.3f}"
    return {"kind": "undetermined", "mean_depth": mean_depth,
            "text": f"{facts}: {focus} stayed closer to the original than the oracle's by "
                    f"{lead}, no more than seed noise ({noise:.3f}: an original trained with "
                    f"the oracle's seed moves that far), so this does not show superficial "
                    f"forgetting."}


def seed_noise(acts: dict[str, dict[str, np.ndarray]], subset: ProbeSubset,
               layers: list[str]) -> dict:
    """{forget part: [per layer CKA(twin original, original)]}: how far a model trained on
    the same data with the independent oracle's seed sits from the original."""
    out = {}
    for part in subset.parts:
        if part.startswith("forget"):
            rows = subset.mask(part)
            debiased = int(rows.sum()) < DEBIASED_BELOW
            out[part] = [_estimable(lambda layer=layer, rows=rows, debiased=debiased: linear_cka(
                acts["twin"][layer][rows], acts["original"][layer][rows], debiased=debiased),
                {}, "seed_noise") for layer in layers]
    return out


def _fmt_percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"
