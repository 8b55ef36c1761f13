"""EC alone under a few parameter variants on one setup, one seed: retain and forget
accuracy, steps, seconds and per-layer linear CKA to the original on forget-train
examples (the oracle's beside it). A quick stand-in for `bench --suite ec` where that is
too slow (issue 19: docs/benchmarks/ec-fidelity-mnist5k.md).

    OMP_NUM_THREADS=1 python scripts/ec_compare.py --scenario class --dataset mnist5k
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import time

import numpy as np
import torch

from unlearn_core.config import DataSpec, ForgetSpec, ModelSpec, SetupSpec
from unlearn_core.methods import UnlearnContext, get_method
from unlearn_core.metrics.accuracy import accuracies, predictions
from unlearn_core.metrics.activations import compute_activations, probe_subset
from unlearn_core.metrics.cka import linear_cka
from unlearn_core.pipeline import _frozen, train_references
from unlearn_core.progress import Progress
from unlearn_core.runs import RunStore

# name -> EC params. "before" = the choices before issue 19 (two train-mode batch-norm
# passes, stop rule once per epoch: check_every larger than any epoch).
VARIANTS = {
    "default": {},  # the defaults of whichever code runs (also code before issue 19)
    "before": {"bn_mode": "train", "check_every": 10_000},
    "train_bn": {"bn_mode": "train"},
    "frozen_forget": {"bn_mode": "frozen_forget"},
    "mixed": {"bn_mode": "mixed"},
}
for _mode in ("train", "frozen_forget", "mixed"):  # per-epoch stop checks, as before
    VARIANTS[f"{_mode}/epoch"] = {"bn_mode": _mode, "check_every": 10_000}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scenario", choices=("class", "random"), default="class")
    parser.add_argument("--dataset", default="mnist5k")
    parser.add_argument("--model", default="small_cnn")
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--store", default="/tmp/ec-compare-store")
    parser.add_argument("--params", default="{}", help="JSON: EC params for every variant")
    parser.add_argument("--repeats", type=int, default=1, help="runs per variant, each with "
                        "its own data order and head initialisation (seed + r)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    forget = ForgetSpec() if args.scenario == "class" else ForgetSpec("random", fraction=0.1)
    spec = dataclasses.replace(SetupSpec(), data=DataSpec(args.dataset), forget=forget,
                               model=ModelSpec(args.model, width=args.width), seed=args.seed,
                               device="cpu")
    refs = train_references(spec, RunStore(args.store))
    exp = refs.experiment
    subset = probe_subset(exp, seed=args.seed)
    rows = subset.mask("forget_train")
    layers = list(refs.original.model.probe_layers)
    acts_original = compute_activations(refs.original.model, exp, subset)
    acts_oracle = compute_activations(refs.oracle.model, exp, subset)

    def cka_to_original(acts):
        return [round(linear_cka(acts[layer][rows], acts_original[layer][rows],
                                 debiased=int(rows.sum()) < 200), 4) for layer in layers]

    def summary(model):
        acc = accuracies(predictions(model, exp), exp.split, exp.dataset.num_classes)
        return {k: acc[k] for k in ("forget_train", "retain_train", "test_forget", "test_retain")}

    results = {"setup": f"{args.dataset}/{args.model} width {args.width}, {args.scenario}, "
                        f"seed {args.seed}", "layers": layers,
               "original": summary(refs.original.model),
               "oracle": {**summary(refs.oracle.model),
                          "cka_forget": cka_to_original(acts_oracle)}}
    method = get_method("ec")
    for name in args.variants.split(","):
        params = method.resolve_params({**VARIANTS[name], **json.loads(args.params)})
        method.accept(params, refs.original.model)
        runs = []
        for r in range(args.repeats):
            ctx = UnlearnContext(model=copy.deepcopy(refs.original.model),
                                 original=_frozen(copy.deepcopy(refs.original.model)),
                                 experiment=exp, params=params, progress=Progress(),
                                 seed=args.seed + r)
            torch.manual_seed(args.seed + r)
            started = time.perf_counter()
            outcome = method.unlearn(ctx)
            seconds = time.perf_counter() - started
            run = {**summary(outcome.model), "seconds": round(seconds, 1),
                   "steps": outcome.info["steps"],
                   "steps_per_epoch": outcome.info.get("steps_per_epoch"),
                   "stop_reason": outcome.info["stop_reason"],
                   "supervision_points": outcome.info.get("supervision_points"),
                   "cka_forget": cka_to_original(compute_activations(outcome.model, exp,
                                                                     subset))}
            print(name, r, json.dumps(run), flush=True)
            runs.append(run)
        mean = {k: float(np.mean([run[k] for run in runs])) if runs[0][k] is not None
                else None for k in ("forget_train", "retain_train", "test_forget",
                                    "test_retain", "steps", "seconds")}
        mean["cka_forget"] = [round(float(v), 4) for v in
                              np.mean([run["cka_forget"] for run in runs], axis=0)]
        spread = {k: float(np.std([run[k] for run in runs], ddof=1)) if len(runs) > 1 else None
                  for k in ("forget_train", "retain_train", "test_retain")}
        results[name] = {"mean": mean, "std": spread, "runs": runs}
        print(name, "MEAN", json.dumps(mean), "STD", json.dumps(spread), flush=True)
    print("RESULTS " + json.dumps(results, default=lambda v: float(v) if isinstance(
        v, np.floating) else str(v)))


if __name__ == "__main__":
    main()
