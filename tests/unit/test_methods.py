import math

import pytest

from conftest import tiny_setup
from unlearn_core.config import MethodSpec, RunSpec
from unlearn_core.errors import UserError
from unlearn_core.methods import Param, get_method, list_methods
from unlearn_core.pipeline import run_unlearning

SHIPPED = {"retrain", "finetune", "neggrad_plus"}


def unlearned_accuracy(store, method, **params):
    run_id = run_unlearning(RunSpec(tiny_setup(), MethodSpec(method, params)), store)
    return store.get(run_id).report


def test_registry_has_the_shipped_methods_with_described_params():
    methods = {m.name: m for m in list_methods()}
    assert SHIPPED <= set(methods)
    for method in methods.values():
        assert method.title and method.summary
        for p in method.params:
            assert p.help and p.validate(p.default) == p.default


def test_neggrad_plus_forgets_on_held_out_forget_data_and_keeps_retain(shared_store, tiny_refs):
    report = unlearned_accuracy(shared_store, "neggrad_plus")
    acc, original = report["accuracy"]["unlearned"], report["accuracy"]["original"]
    assert original["test_forget"] > 0.9
    assert acc["forget_train"] < 0.1
    assert acc["test_forget"] < 0.1  # held-out examples of the forgotten class
    assert acc["test_retain"] > original["test_retain"] - 0.05


def test_finetune_with_a_large_step_lowers_forget_accuracy(shared_store, tiny_refs):
    report = unlearned_accuracy(shared_store, "finetune", lr=0.2, epochs=4)
    acc, original = report["accuracy"]["unlearned"], report["accuracy"]["original"]
    assert acc["test_forget"] < original["test_forget"] - 0.2
    assert acc["retain_train"] > 0.9


def test_retrain_with_offset_zero_reproduces_the_oracle(shared_store, tiny_refs):
    report = unlearned_accuracy(shared_store, "retrain")
    for key, gap in report["gap_to_oracle"].items():
        assert gap is None or math.isclose(gap, 0.0, abs_tol=1e-9), key
    assert report["cost"]["speedup"] is not None


@pytest.mark.parametrize("method, params, message", [
    ("finetune", {"lr": -0.1}, r"method\.params\.lr: expected a number in \(0, 10\]"),
    ("finetune", {"epochs": 0}, r"method\.params\.epochs: expected an integer in \[1, 500\]"),
    ("finetune", {"epochs": 1.5}, r"method\.params\.epochs"),
    ("finetune", {"lr": float("inf")}, r"method\.params\.lr"),
    ("finetune", {"lr": "fast"}, r"method\.params\.lr"),
    ("neggrad_plus", {"alpha": 1.0}, r"method\.params\.alpha: expected a number in \(0, 1\)"),
    ("finetune", {"momentum": 0.9}, r"has no parameter\(s\) \['momentum'\]"),
])
def test_invalid_hyperparameters_are_rejected_clearly(method, params, message):
    with pytest.raises(UserError, match=message):
        get_method(method).resolve_params(params)


def test_unknown_method_lists_the_allowed_ones():
    with pytest.raises(UserError, match="method.name: unknown method 'magic'; allowed"):
        get_method("magic")


def test_param_describes_its_range():
    p = Param("rho", "float", 0.5, "fraction", low=0, high=1, low_inclusive=False)
    assert p.allowed() == "a number in (0, 1]"
    with pytest.raises(UserError, match=r"method\.params\.rho: expected a number in \(0, 1\], got 0"):
        p.validate(0)
