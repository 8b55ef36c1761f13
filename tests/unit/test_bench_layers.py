"""The ec suite's layer tables: mean ± std per layer over seeds, straight from the runs'
reports (synthetic reports here, so the expected numbers are known)."""

import statistics

import pytest

from unlearn_core.bench import RunResult, ec_method_names, layer_markdown, layer_rows
from unlearn_core.config import MethodSpec

NAMES = ["block1", "block2", "logits"]


def report(cka, excess, oracle_cka, probes, verdict="superficial"):
    return {"layers": {
        "names": NAMES, "probe_layers": NAMES[:-1],
        "cka": {"unlearned_vs_original": {"forget_train": cka},
                "oracle_vs_original": {"forget_train": oracle_cka}},
        "cka_excess": {"forget_train": {"value": excess, "low": excess, "high": excess}},
        "depth": {"forget_train": [None, None, 1.0]},
        "probes": {"unlearned": probes, "oracle": [0.5, 0.25]},
        "verdict": {"kind": verdict, "text": ""}}}


def result(name, seed, rep):
    return RunResult("class", seed, MethodSpec(name), f"run-{name}-{seed}", rep, None,
                     reused=False, wall_seconds=0.0)


def test_layer_rows_average_each_layer_over_seeds():
    results = [
        result("finetune", 0, report([1.0, 0.9, 0.2], [0.01, 0.02, 0.0], [0.99, 0.8, 0.1],
                                     [1.0, 0.9])),
        result("finetune", 1, report([0.8, 0.7, 0.2], [0.03, 0.04, 0.0], [0.99, 0.8, 0.1],
                                     [0.8, 0.7], verdict="core")),
    ]
    oracle, finetune = layer_rows(results)
    assert oracle["label"] == "oracle (reference)"
    assert [s["mean"] for s in oracle["cka"]] == pytest.approx([0.99, 0.8])  # no logits
    assert [s["mean"] for s in finetune["cka"]] == pytest.approx([0.9, 0.8])
    assert finetune["cka"][0]["std"] == pytest.approx(statistics.stdev([1.0, 0.8]))
    assert [s["mean"] for s in finetune["excess"]] == pytest.approx([0.02, 0.03])
    assert [s["n"] for s in finetune["depth"]] == [0, 0]  # undefined depth is not averaged
    assert [s["mean"] for s in finetune["probes"]] == pytest.approx([0.9, 0.8])
    assert finetune["verdicts"] == {"superficial": 1, "core": 1}
    table = layer_markdown([oracle, finetune])
    assert "| finetune | 0.9000 ± 0.1414 | 0.8000 ± 0.1414 |" in table
    assert "| finetune | n/a | n/a |" in table  # depth
    assert "core 1, superficial 1" in table


def test_failed_runs_are_left_out_of_the_layer_rows():
    failed = RunResult("class", 0, MethodSpec("ec"), None, None, "DivergedError: x",
                       reused=False, wall_seconds=0.0)
    assert layer_rows([failed]) == []


def test_ec_suite_pairs_each_base_with_its_plugged_version():
    assert ec_method_names(("finetune", "scrub")) == \
        ["ec", "finetune", "finetune+ec", "scrub", "scrub+ec"]
