"""`bench --suite readouts`: how far each readout separates the ORIGINAL from the ORACLE.

Only the two references are measured (the original, trained on everything, and the
oracle, retrained without the forget set), so nothing is tuned to any unlearning
method's result. Per setup seed, per feature layer and per readout of
metrics/readouts.py: the held-out forget score of each reference, their difference and
the retain baseline; plus the relearning test (metrics/relearn.py) of each reference,
which is a readout of the whole model, not of a layer. Mean ± sample std over seeds.

A readout "separates" the references when the original scores above the oracle on every
seed and by at least SEPARATION_POINTS percentage points on average (a rule fixed before
the first measurement: the linear probe's 1-3 points on the embedded default are what
the views could not show). The one with the largest mean difference is named.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Callable, Sequence

from .config import SetupSpec
from .errors import UserError
from .metrics.activations import activations, probe_subset, reference_cache_key
from .metrics.readouts import READOUT_LABELS, READOUTS, model_readouts
from .metrics.relearn import (DEFAULT_K, DEFAULT_LR, DEFAULT_STEPS, DEFAULT_TARGET,
                              relearn_curve, steps_to_reach)
from .pipeline import train_references
from .runs import RunStore
from .engine import format_stat, stat
from .training import reference_key
from .vocabulary import REFERENCE_ROLES

SEPARATION_POINTS = 5.0
Log = Callable[[str], None]


def measure_seed(base: SetupSpec, seed: int, store: RunStore, *, k: int = DEFAULT_K,
                 steps: int = DEFAULT_STEPS, lr: float = DEFAULT_LR,
                 log: Log | None = None) -> dict:
    """Every readout of the original and the oracle of `base` with setup seed `seed`:
    {"seed", "layers", "readouts": {role: model_readouts(...)}, "relearn": {role: curve},
     "seconds": {"references", "readouts", "relearn"}}."""
    spec = dataclasses.replace(base, seed=seed)
    started = time.perf_counter()
    refs = train_references(spec, store)
    exp = refs.experiment
    trained = {"original": refs.original, "oracle": refs.oracle}
    references_seconds = time.perf_counter() - started
    subset = probe_subset(exp, seed=seed)
    layers = list(refs.original.model.feature_layers)
    started = time.perf_counter()
    readouts = {}
    for role in REFERENCE_ROLES:
        if log:
            log(f"seed {seed}: readouts of the {role}")
        acts = activations(trained[role].model, exp, subset,
                           reference_cache_key(reference_key(spec, role), trained[role].model))
        readouts[role] = model_readouts(acts, subset, layers, seed=seed)
    readouts_seconds = time.perf_counter() - started
    started = time.perf_counter()
    relearn = {}
    for role in REFERENCE_ROLES:
        if log:
            log(f"seed {seed}: relearning the {role}")
        relearn[role] = relearn_curve(trained[role].model, exp, k=k, steps=steps, lr=lr,
                                      seed=seed)
    return {"seed": seed, "layers": layers, "readouts": readouts, "relearn": relearn,
            "test_accuracy": {role: trained[role].meta.get("test_accuracy") for role in REFERENCE_ROLES},
            "seconds": {"references": references_seconds, "readouts": readouts_seconds,
                        "relearn": time.perf_counter() - started}}


def _difference(a, b):
    return None if a is None or b is None else a - b


def layer_rows(per_seed: Sequence[dict]) -> list[dict]:
    """Per (readout, layer): stats over seeds of the original's and the oracle's held-out
    forget score, their difference, the retain baselines, and on how many seeds the
    original scored higher."""
    layers = per_seed[0]["layers"]
    rows = []
    for name in READOUTS:
        for i, layer in enumerate(layers):
            def values(role, which, name=name, i=i):
                return [s["readouts"][role]["readouts"][name][which][i] for s in per_seed]
            original, oracle = values("original", "forget"), values("oracle", "forget")
            differences = [_difference(a, b) for a, b in zip(original, oracle)]
            rows.append({"readout": name, "layer": layer,
                         "original": stat(original), "oracle": stat(oracle),
                         "difference": stat(differences),
                         "original_retain": stat(values("original", "retain")),
                         "oracle_retain": stat(values("oracle", "retain")),
                         "original_higher": sum(d is not None and d > 0 for d in differences),
                         "seeds": len(per_seed)})
    return rows


def relearn_rows(per_seed: Sequence[dict]) -> list[dict]:
    """Per summary of the relearning curves (score before any step, after one step, mean
    over the steps, steps to reach 50%): stats over seeds for each reference and their
    difference."""
    summaries = {
        "forget accuracy before relearning (step 0)": lambda c: c["scores"][0],
        "after 1 step": lambda c: c["scores"][1],
        f"mean over steps 1-{per_seed[0]['relearn']['original']['steps']}":
            lambda c: sum(c["scores"][1:]) / (len(c["scores"]) - 1),
    }
    rows = []
    for label, summary in summaries.items():
        original = [summary(s["relearn"]["original"]) for s in per_seed]
        oracle = [summary(s["relearn"]["oracle"]) for s in per_seed]
        differences = [a - b for a, b in zip(original, oracle)]
        rows.append({"summary": label, "original": stat(original), "oracle": stat(oracle),
                     "difference": stat(differences),
                     "original_higher": sum(d > 0 for d in differences),
                     "seeds": len(per_seed), "scale": 100.0})
    reach = {role: [steps_to_reach(s["relearn"][role]["scores"], DEFAULT_TARGET)
                    for s in per_seed] for role in REFERENCE_ROLES}
    rows.append({"summary": f"steps to reach {DEFAULT_TARGET:.0%} (None: never)",
                 "reach": reach, "seeds": len(per_seed)})
    return rows


def best_readout(rows: Sequence[dict]) -> dict | None:
    """The (readout, layer) row with the largest mean difference among those that
    separate the references (original higher on every seed, mean difference at least
    SEPARATION_POINTS points); None when none does."""
    separating = [r for r in rows if r["difference"]["mean"] is not None
                  and r["original_higher"] == r["seeds"]
                  and 100 * r["difference"]["mean"] >= SEPARATION_POINTS]
    return max(separating, key=lambda r: r["difference"]["mean"]) if separating else None


def best_per_readout(rows: Sequence[dict]) -> dict[str, dict]:
    """Per readout, its row with the largest mean difference (over layers)."""
    out: dict[str, dict] = {}
    for r in rows:
        if r["difference"]["mean"] is None:
            continue
        if r["readout"] not in out or r["difference"]["mean"] > out[r["readout"]]["difference"]["mean"]:
            out[r["readout"]] = r
    return out


def markdown(result: dict) -> str:
    f = format_stat
    lines = ["# Readouts: how far each separates the original from the oracle", ""]
    lines += [f"{line}  " for line in result["header"]]
    lines += ["", "## Feature readouts, per layer", "",
              "Held-out forget accuracy of each readout on the frozen features of a layer, "
              "in % (mean ± sample std over seeds); difference = original − oracle; "
              "retain = the same readout's accuracy on held-out retain examples (its "
              "baseline); higher = on how many seeds the original scored above the oracle.",
              "",
              "| readout | layer | original | oracle | difference (pp) | higher | "
              "retain: original | retain: oracle |",
              "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in result["layer_rows"]:
        lines.append(f"| {READOUT_LABELS[r['readout']]} | {r['layer']} | {f(r['original'])} | "
                     f"{f(r['oracle'])} | {f(r['difference'])} | "
                     f"{r['original_higher']}/{r['seeds']} | {f(r['original_retain'])} | "
                     f"{f(r['oracle_retain'])} |")
    lines += ["", "## Relearning test (the whole model)", "",
              f"Fine-tuning a copy of each reference for {result['relearn_params']['steps']} "
              f"SGD steps (lr {result['relearn_params']['lr']:g}, momentum 0.9) on "
              f"k = {result['relearn_params']['k']} forget-train examples mixed with as many "
              "retain examples per step; held-out forget accuracy in %.", "",
              "| summary | original | oracle | difference (pp) | higher |",
              "|---|---:|---:|---:|---:|"]
    for r in result["relearn_rows"]:
        if "reach" in r:
            cells = [", ".join("never" if v is None else str(v) for v in r["reach"][role])
                     for role in REFERENCE_ROLES]
            lines.append(f"| {r['summary']}, per seed | {cells[0]} | {cells[1]} | | |")
        else:
            lines.append(f"| {r['summary']} | {f(r['original'])} | {f(r['oracle'])} | "
                         f"{f(r['difference'])} | {r['original_higher']}/{r['seeds']} |")
    lines += ["", "## Which readout separates the references most", "", result["conclusion"], ""]
    return "\n".join(lines)


def conclusion(layer_rows_: Sequence[dict]) -> str:
    best = best_readout(layer_rows_)
    per_readout = best_per_readout(layer_rows_)
    ranking = sorted(per_readout.values(), key=lambda r: -r["difference"]["mean"])
    listed = "; ".join(f"{READOUT_LABELS[r['readout']]} {100 * r['difference']['mean']:+.1f} "
                       f"pp at {r['layer']} ({r['original_higher']}/{r['seeds']} seeds)"
                       for r in ranking)
    rule = (f"(rule, fixed before measuring: the original above the oracle on every seed "
            f"and by at least {SEPARATION_POINTS:g} points on average)")
    if best is None:
        return (f"No feature readout separates the original from the oracle {rule}. "
                f"Largest mean difference per readout: {listed}.")
    return (f"{READOUT_LABELS[best['readout']]} at {best['layer']} separates the references "
            f"most among the feature readouts {rule}: original "
            f"{format_stat(best['original'])}% against oracle {format_stat(best['oracle'])}%, "
            f"a difference of {format_stat(best['difference'])} points. Largest mean "
            f"difference per readout: {listed}.")


def readouts_suite(store: RunStore, *, seeds: Sequence[int] = (0, 1, 2),
                   base: SetupSpec | None = None, k: int = DEFAULT_K,
                   steps: int = DEFAULT_STEPS, lr: float = DEFAULT_LR,
                   command: str | None = None, machine_note: str | None = None,
                   log: Log | None = None) -> dict:
    """Measure every readout on the references of `base` (the embedded default) for each
    setup seed; returns {"per_seed", "layer_rows", "relearn_rows", "best", "conclusion",
    "header", "table"}."""
    from .bench import describe_setup, machine_description
    seeds = list(seeds)
    if not seeds:
        raise UserError("--seeds: expected at least one setup seed")
    base = base or SetupSpec()
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    per_seed = [measure_seed(base, seed, store, k=k, steps=steps, lr=lr, log=log)
                for seed in seeds]
    wall = time.perf_counter() - started
    layer_rows_ = layer_rows(per_seed)
    header = ([f"Command: `{command}`"] if command else []) + [
        f"Machine: {machine_description(base.device)}"
        + (f" ({machine_note})" if machine_note else ""),
        f"Date: {time.strftime('%Y-%m-%d %H:%M %Z')}",
        f"Load average (1 min) of the machine: {load_before:.1f} at the start, "
        f"{os.getloadavg()[0]:.1f} at the end, on {os.cpu_count()} cores (other work ran "
        "beside this benchmark when it is above 1 per core)",
        f"Setup: {describe_setup(base, seeds)}; forget {base.forget.describe()}",
        f"Run store: {store.root}",
        "Seconds per seed (references trained or loaded / feature readouts / relearning): "
        + "; ".join(f"seed {s['seed']}: {s['seconds']['references']:.0f} / "
                    f"{s['seconds']['readouts']:.0f} / {s['seconds']['relearn']:.0f}"
                    for s in per_seed) + f"; {wall:.0f} s in all",
        "Test accuracy of the references: " + "; ".join(
            f"seed {s['seed']}: original {100 * s['test_accuracy']['original']:.1f}%, oracle "
            f"{100 * s['test_accuracy']['oracle']:.1f}%" for s in per_seed)]
    result = {"per_seed": per_seed, "layer_rows": layer_rows_,
              "relearn_rows": relearn_rows(per_seed), "best": best_readout(layer_rows_),
              "conclusion": conclusion(layer_rows_), "header": header,
              "relearn_params": {"k": k, "steps": steps, "lr": lr}}
    result["table"] = markdown(result)
    return result
