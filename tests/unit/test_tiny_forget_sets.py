"""Tiny forget and retain sets: evaluate() computes what is defined and marks the rest
"not estimable" (report["not_estimable"], docs/report-schema.md) instead of failing."""

import numpy as np
import pytest

from conftest import tiny_setup
from unlearn_core.config import ForgetSpec
from unlearn_core.metrics.report import evaluate
from unlearn_core.training import prepare

# Several seconds each on 2 cores: left out of `make test-fast`.
pytestmark = pytest.mark.slow


CASES = ["one", "two", "three", "retain_three", "class_but_one"]


def _forget(case, exp):
    labels = exp.dataset.train.labels.numpy()
    if case == "one":
        return ForgetSpec("indices", indices=(5,))
    if case == "two":
        return ForgetSpec("indices", indices=(5, 17))
    if case == "three":
        return ForgetSpec("indices", indices=(5, 17, 400))
    if case == "retain_three":
        return ForgetSpec("indices", indices=tuple(range(3, len(labels))))
    zeros = np.flatnonzero(labels == 0)  # a whole class but one example
    return ForgetSpec("indices", indices=tuple(int(i) for i in zeros[1:]))


@pytest.mark.parametrize("case", CASES)
def test_evaluate_on_tiny_sets_reports_what_is_defined(tiny_refs, case):
    base = tiny_refs.experiment
    spec = tiny_setup(forget=_forget(case, base))
    exp = prepare(spec)
    model = tiny_refs.original.model
    report, arrays = evaluate({"unlearned": model, "original": model, "oracle": model}, exp,
                              seconds=1.0, oracle_seconds=2.0)
    sizes = report["split"]
    n_forget, n_retain = sizes["forget"], sizes["retain"]
    assert {"one": 1, "two": 2, "three": 3}.get(case, n_forget) == n_forget
    if case == "retain_three":
        assert n_retain == 3
    # Accuracies are always defined for non-empty parts.
    for role in ("unlearned", "original", "oracle"):
        assert report["accuracy"][role]["forget_train"] is not None
        assert report["accuracy"][role]["retain_train"] is not None
    notes = report["not_estimable"]
    assert all(isinstance(v, str) and v.startswith("needs at least ") for v in notes.values())
    if n_forget < 4:  # the debiased CKA needs 4 examples
        assert notes["layers.cka.forget_train"] == f"needs at least 4 examples, has {n_forget}"
        assert all(v is None for v in report["layers"]["cka"]["unlearned_vs_original"]["forget_train"])
    else:
        assert "layers.cka.forget_train" not in notes
        assert any(v is not None for v in report["layers"]["cka"]["unlearned_vs_original"]["forget_train"])
    if n_forget < 10:
        assert notes["mia.distinguishability"] == f"needs at least 10 examples, has {n_forget}"
        assert report["mia"]["distinguishability"]["confidence"]["epsilon"] is None
    # Per-example attack scores and predictions exist for every forget example and model.
    for role in ("unlearned", "original", "oracle"):
        assert arrays[f"eval/mia_score/{role}"].shape == (n_forget,)
        assert arrays[f"eval/forget_pred/{role}"].shape == (n_forget,)
        assert np.isfinite(arrays[f"eval/conf/{role}/forget"]).all()
    np.testing.assert_array_equal(arrays["eval/forget_index"], exp.split.forget)
    assert report["layers"]["verdict"]["text"]
