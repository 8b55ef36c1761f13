"""Tour runs stored without running anything: reports and arrays shaped like real ones
(docs/report-schema.md), under the resolved specs `run_tour` would write, so
`tour_runs` finds them. Each method gets its own numbers, so a sentence can be traced to
its run; `numbers` lists them and `store_tour_run` takes changes to them."""

from __future__ import annotations

import numpy as np

from unlearn_core.config import MethodSpec, RunSpec, SetupSpec
from unlearn_core.methods import get_method
from unlearn_core.runs import RunStore
from unlearn_core.tour import BASE_METHODS, KEY_METHOD, tour_setups
from unlearn_core.training import resolve_device

LAYERS = ["block1", "block2", "block3", "embedding", "logits"]
PARTS = ["forget_train", "retain_train", "forget_test", "retain_test"]
PAIRS = ("unlearned_vs_original", "unlearned_vs_oracle", "oracle_vs_original")
CLASSES = [str(i) for i in range(10)]
FEATURES = ("confidence", "correctness", "entropy", "m_entropy")
ORACLE_CKA = [0.998, 0.993, 0.983, 0.82, 0.3]
ORACLE = {"forget": 0.0, "probe": 0.71, "mia": 0.95}
ORIGINAL = {"forget": 0.99, "probe": 0.97, "mia": 0.03, "test_retain": 0.975}


def numbers(name: str) -> dict:
    """The default numbers of one method's fabricated run, distinct per method. LAU is
    the superficial one: CKA to the original at 1, probes and head refit high."""
    i = (*BASE_METHODS, KEY_METHOD).index(name)
    superficial = name == "lau"
    return {
        "forget": 0.011 * (i + 1),
        "test_retain": 0.961 - 0.003 * i,
        "cka": [1.0, 1.0, 1.0, 0.999, 0.41] if superficial
        else [0.991 - 0.002 * i, 0.985 - 0.003 * i, 0.96 - 0.01 * i, 0.75 - 0.03 * i, 0.35],
        "probe": 0.93 if superficial else 0.70 + 0.005 * i,
        "refit": 0.94 if superficial else 0.05 + 0.02 * i,
        "mia": 0.52 if superficial else 0.951 + 0.006 * i,
        "privacy": 0.31 + 0.07 * i,
        "seconds": 1.5 + i,
        "verdict": "superficial" if superficial else "core",
        "del_shares": [0.12, 0.25, 0.41, 0.33],
        "pairs_masked": 3458,
    }


def report(name: str, values: dict) -> dict:
    def accuracies(forget, test_retain):
        return {"forget_train": forget, "retain_train": 0.99, "test_forget": forget,
                "test_retain": test_retain, "test": 0.9 * test_retain + 0.1 * forget,
                "per_class_test": [forget] + [test_retain] * 9}

    accuracy = {"unlearned": accuracies(values["forget"], values["test_retain"]),
                "original": accuracies(ORIGINAL["forget"], ORIGINAL["test_retain"]),
                "oracle": accuracies(ORACLE["forget"], 0.97)}
    cka = {"unlearned_vs_original": values["cka"], "oracle_vs_original": ORACLE_CKA,
           "unlearned_vs_oracle": [0.9] * len(LAYERS)}
    excess = [u - o for u, o in zip(values["cka"], ORACLE_CKA)]
    method = get_method(name)
    info: dict = {"steps": 40}
    if name == "del":
        info = {"localization": {"layers": LAYERS[:-1], "rho": 0.3, "selected_fraction": 0.3,
                                 "strategy": "del"}}
    if name == KEY_METHOD:
        info = {"n": 3000, "pairs_masked": values["pairs_masked"], "pairs_total": 64 * 512,
                "gradient_steps": 0, "unlearning_seconds": 0.84}
    efficacy = {"unlearned": dict.fromkeys(FEATURES, values["mia"]),
                "oracle": dict.fromkeys(FEATURES, ORACLE["mia"]),
                "original": dict.fromkeys(FEATURES, ORIGINAL["mia"])}
    return {
        "accuracy": accuracy,
        "gap_to_oracle": {k: accuracy["unlearned"][k] - accuracy["oracle"][k]
                          for k in ("forget_train", "retain_train", "test_forget",
                                    "test_retain", "test")},
        "cost": {"seconds": values["seconds"], "oracle_seconds": 10.0,
                 "speedup": 10.0 / values["seconds"], "device": "cpu", "evaluate_seconds": 9.0},
        "split": {"forget": 180, "retain": 1257, "test_forget": 36, "test_retain": 324},
        "classes": CLASSES, "forget_classes": [0],
        "method": {"name": name, "title": method.title, "params": {}, "info": info,
                   "curves": {}},
        "layers": {
            "names": LAYERS, "parts": PARTS, "probe_sizes": dict.fromkeys(PARTS, 30),
            "cka": {pair: dict.fromkeys(PARTS, curve) for pair, curve in cka.items()},
            "cka_band": {},
            "depth": {"forget_train": [None, None, 0.5, 0.9, 1.0]},
            "depth_floor": 0.02,
            "cka_excess": {"forget_train": {
                "value": excess, "high": [e + 0.01 for e in excess],
                "low": [e - 0.001 if values["verdict"] == "superficial" else e - 0.05
                        for e in excess]}},
            "cka_matrix": {"part": "forget_train"},
            "probe_layers": LAYERS[:-1],
            "probes": {"unlearned": [values["probe"]] * 4, "original": [ORIGINAL["probe"]] * 4,
                       "oracle": [ORACLE["probe"]] * 4},
            "head_refit": {"forget_accuracy_before": values["forget"],
                           "forget_accuracy_after": values["refit"],
                           "returned": values["refit"] - values["forget"], "n_held_out": 30},
            "verdict": {"kind": values["verdict"], "mean_depth": 0.5,
                        "text": f"{values['verdict']} (fabricated)"}},
        "mia": {"efficacy": efficacy, "headline": "confidence", "features": list(FEATURES),
                "distinguishability": {"confidence": {"epsilon": -np.log2(values["privacy"]),
                                                      "privacy_score": values["privacy"]}},
                "n_members": 360, "n_nonmembers": 360, "n_forget": 180},
    }


def arrays(name: str, values: dict) -> dict[str, np.ndarray]:
    if name == "del":
        shares = np.asarray(values["del_shares"], dtype=np.float32)
        return {"mask/stage_parameter_fraction": shares, "mask/stage_channel_fraction": shares}
    if name == KEY_METHOD:
        rng = np.random.default_rng(0)
        mask = np.zeros((64, 512), dtype=bool)
        mask.flat[rng.choice(mask.size, values["pairs_masked"], replace=False)] = True
        return {"dkvb/mask": mask,
                "dkvb/usage_forget_before": rng.integers(0, 3, (64, 512)).astype(np.int32),
                "dkvb/usage_retain_before": rng.integers(0, 3, (64, 512)).astype(np.int32)}
    return {}


def run_spec(name: str, base: SetupSpec) -> RunSpec:
    """The resolved spec `run_tour` stores a method's run under."""
    base_setup, dkvb_setup = tour_setups(base)
    method = get_method(name)
    return RunSpec(dkvb_setup if name == KEY_METHOD else base_setup,
                   MethodSpec(name, method.resolve_params({})))


def store_tour_run(store: RunStore, name: str, base: SetupSpec, **changes) -> str:
    """One method's fabricated run with `changes` to its numbers; returns the run id."""
    values = {**numbers(name), **changes}
    stored = report(name, values)
    stored["cost"]["device"] = resolve_device(base.device).type
    run_id = store.create("unlearn", run_spec(name, base).to_dict(), label=name)
    store.finish(run_id, stored, arrays=arrays(name, values))
    return run_id


def store_tour(store: RunStore, base: SetupSpec, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """Every method of the preset but `skip`; run ids by method name."""
    return {name: store_tour_run(store, name, base)
            for name in (*BASE_METHODS, KEY_METHOD) if name not in skip}
