"""The comparison table: rows from stored reports, filters, the A/B numbers, the
trade-off scatter, and the instance drill-down on a real tiny run."""

import numpy as np
import pytest

from conftest import tiny_setup
from unlearn_core import compare, figures
from unlearn_core.config import ForgetSpec, MethodSpec, RunSpec
from unlearn_core.errors import UserError
from unlearn_core.metrics.report import average_gap
from unlearn_core.figures.compare import instance_margins, tradeoff_scatter
from unlearn_core.metrics.probes import fit_linear_probe, probe_margins
from unlearn_core.runs import RunStore


def _report(forget, test, mia, oracle_forget=0.0, oracle_test=0.9, oracle_mia=0.8,
            seconds=2.0, method="NegGrad+", params=None):
    """A report with just the sections a table row reads (docs/report-schema.md)."""
    def acc(f, t):
        return {"forget_train": f, "retain_train": 0.99, "test_forget": f, "test_retain": t,
                "test": t, "per_class_test": [f, t]}

    def efficacy(value):
        return {"confidence": value, "correctness": value, "entropy": value, "m_entropy": value}

    report = {"accuracy": {"unlearned": acc(forget, test), "oracle": acc(oracle_forget, oracle_test),
                           "original": acc(1.0, 0.95)},
              "mia": {"efficacy": {"unlearned": efficacy(mia), "oracle": efficacy(oracle_mia),
                                   "original": efficacy(0.02)}, "headline": "confidence"},
              "cost": {"seconds": seconds, "oracle_seconds": 8.0,
                       "speedup": None if seconds == 0 else 8.0 / seconds, "device": "cpu"},
              "method": {"name": "x", "title": method, "params": params or {"lr": 0.1, "epochs": 3}},
              "layers": {"verdict": {"kind": "core", "mean_depth": 0.75, "text": "core"}}}
    # Stored by evaluate() as report["average_gap"]; the table reads it from the summary.
    report["average_gap"] = {role: average_gap(report, role) for role in ("unlearned", "original")}
    return report


def _spec(dataset="digits", forget=None, seed=0):
    forget = forget or ForgetSpec()
    return {"setup": {**tiny_setup(seed=seed).to_dict(), "forget": forget.to_dict(),
                      "data": {**tiny_setup().to_dict()["data"], "name": dataset}},
            "method": {"name": "x", "params": {}}}


@pytest.fixture
def store(tmp_path):
    return RunStore(tmp_path / "store")


def _stored(store, report, spec=None, label="run"):
    run_id = store.create("unlearn", spec or _spec(), label)
    store.finish(run_id, report)
    return run_id


def test_a_row_holds_the_stored_numbers_and_the_avg_gap_computed_by_hand(store):
    run_id = _stored(store, _report(forget=0.1, test=0.85, mia=0.6,
                                    params={"lr": 0.02, "epochs": 5}))
    row = compare.run_row(store.get(run_id))
    assert row["id"] == run_id
    assert (row["dataset"], row["model"], row["forget_set"], row["seed"]) == (
        "digits", "small_cnn", "class 0", 0)
    assert row["method"] == "NegGrad+" and row["params"] == "epochs=5, lr=0.02"
    assert (row["forget_acc"], row["retain_acc"], row["test_acc"], row["mia"]) == (
        0.1, 0.99, 0.85, 0.6)
    # mean |unlearned - oracle| over forget 0.1-0, retain 0.99-0.99, test 0.85-0.9, MIA 0.6-0.8
    assert row["avg_gap"] == pytest.approx((0.1 + 0.0 + 0.05 + 0.2) / 4)
    # The original: forget 1-0, retain 0, test 0.95-0.9, MIA 0.02-0.8.
    assert row["original_avg_gap"] == pytest.approx((1.0 + 0.0 + 0.05 + 0.78) / 4)
    assert (row["mean_depth"], row["verdict"], row["seconds"], row["speedup"]) == (
        0.75, "core", 2.0, 4.0)
    assert (row["oracle_test_acc"], row["original_test_acc"], row["oracle_seconds"]) == (
        0.9, 0.95, 8.0)


def test_the_table_keeps_finished_unlearning_runs_only_with_every_column(store):
    done = _stored(store, _report(0.0, 0.9, 0.8))
    failed = store.create("unlearn", _spec(), "failed")
    store.fail(failed, "boom")
    store.create("unlearn", _spec(), "still running")
    table = compare.run_table(store.list())
    assert table["id"].tolist() == [done]
    assert list(table.columns) == list(compare.COLUMNS)
    assert compare.run_table([]).empty and list(compare.run_table([]).columns) == list(
        compare.COLUMNS)
    with pytest.raises(UserError, match="only a finished run has a row"):
        compare.run_row(store.get(failed))


def test_missing_values_stay_missing_instead_of_zero(store):
    report = _report(0.0, 0.9, None)  # an MIA that could not be computed
    report["layers"]["verdict"]["mean_depth"] = None
    del report["average_gap"]  # stored before reports held it
    row = compare.run_row(store.get(_stored(store, report)))
    assert row["mia"] is None and row["avg_gap"] is None and row["mean_depth"] is None


def test_filters_keep_matching_rows_and_an_empty_choice_keeps_all(store):
    a = _stored(store, _report(0.0, 0.9, 0.8, method="NegGrad+"))
    b = _stored(store, _report(0.0, 0.9, 0.8, method="SCRUB"),
                _spec(forget=ForgetSpec("random", fraction=0.1)))
    c = _stored(store, _report(0.0, 0.9, 0.8, method="SCRUB"), _spec(dataset="mnist5k"))
    table = compare.run_table(store.list())
    assert set(compare.filter_table(table, method=["SCRUB"])["id"]) == {b, c}
    assert set(compare.filter_table(table, method=["SCRUB"], dataset=["digits"])["id"]) == {b}
    assert set(compare.filter_table(table, forget_set=["class 0"])["id"]) == {a, c}
    assert set(compare.filter_table(table, method=[], model=[])["id"]) == {a, b, c}
    with pytest.raises(UserError, match="seed: not a filter"):
        compare.filter_table(table, seed=[0])


def test_sorting_the_table_orders_runs_by_the_stored_numbers(store):
    for gap in (0.3, 0.1, 0.2):
        _stored(store, _report(gap, 0.9, 0.8))
    table = compare.run_table(store.list())
    ordered = table.sort_values("avg_gap")["forget_acc"].tolist()
    assert ordered == [0.1, 0.2, 0.3]


def test_pair_table_puts_a_and_b_side_by_side_with_the_difference(store):
    a = _stored(store, _report(0.2, 0.9, 0.8, seconds=1.0))
    b = _stored(store, _report(0.05, 0.8, 0.7, seconds=4.0))
    pair = compare.pair_table(compare.run_table(store.list()), a, b).set_index("metric")
    assert pair.loc["Forget acc.", "A"] == 0.2 and pair.loc["Forget acc.", "B"] == 0.05
    assert pair.loc["Forget acc.", "B − A"] == pytest.approx(-0.15)
    assert pair.loc["Time (s)", "B − A"] == pytest.approx(3.0)
    with pytest.raises(UserError, match="run b: 'nope' is not in the table"):
        compare.pair_table(compare.run_table(store.list()), a, "nope")
    shown = compare.pair_table_text(pair.reset_index()).set_index("metric")
    assert list(shown.loc["Forget acc."]) == ["20.0%", "5.0%", "-15.0 pp"]
    assert list(shown.loc["Time (s)"]) == ["1.0 s", "4.0 s", "+3.0 s"]
    assert shown.loc["Speed-up ×", "A"].endswith("×")


def test_tradeoff_scatter_plots_each_run_and_marks_oracle_and_original(store):
    fast = _stored(store, _report(0.2, 0.9, 0.8, seconds=1.0, method="SSD"))
    slow = _stored(store, _report(0.0, 0.85, 0.8, seconds=4.0, method="SCRUB"))
    _stored(store, _report(0.0, 0.85, None, method="Broken"))  # no avg gap: not plotted
    table = compare.run_table(store.list())
    fig = tradeoff_scatter(table)
    traces = {t.name: t for t in fig.data}
    assert set(traces) == {"SCRUB", "SSD", "Retrain oracle (gap 0 by definition)",
                           "Original (nothing unlearned)"}
    row = table.set_index("id")
    assert traces["SSD"].x == pytest.approx((100 * row.loc[fast, "avg_gap"],))
    assert traces["SCRUB"].y == pytest.approx((85.0,))
    # Marker area grows with time: 4x the time, twice the diameter.
    assert traces["SCRUB"].marker.size[0] == pytest.approx(2 * traces["SSD"].marker.size[0])
    # One oracle and one original for the one setup; the oracle's gap is 0 by definition.
    assert traces["Retrain oracle (gap 0 by definition)"].x == (0.0,)
    assert traces["Retrain oracle (gap 0 by definition)"].y == pytest.approx((90.0,))
    assert traces["Original (nothing unlearned)"].x == pytest.approx(
        (100 * row.loc[slow, "original_avg_gap"],))
    # The runs are drawn over the references, in colours none of the roles has.
    assert [t.name for t in fig.data][-2:] == ["SCRUB", "SSD"]
    run_colors = {traces[name].marker.color for name in ("SCRUB", "SSD")}
    assert len(run_colors) == 2 and not run_colors & set(figures.ROLE_COLORS.values())


def test_probe_margins_come_from_the_same_probe_as_its_accuracy():
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(3, 20))
    train_y, test_y = rng.integers(0, 3, 300), rng.integers(0, 3, 100)
    train_X = centers[train_y] + rng.normal(scale=1.5, size=(300, 20))
    test_X = centers[test_y] + rng.normal(scale=1.5, size=(100, 20))
    margins = probe_margins(train_X, train_y, test_X, test_y, seed=0)
    accuracy = fit_linear_probe(train_X, train_y, test_X, test_y, seed=0).accuracy
    assert 0.4 < accuracy < 1.0  # some right, some wrong: the test can tell
    assert (margins > 0).mean() == pytest.approx(accuracy)
    # A class the probe never saw cannot be read: no margin rather than a made-up one.
    unseen = probe_margins(train_X, train_y, test_X[:2], np.array([0, 7]), seed=0)
    assert np.isfinite(unseen[0]) and np.isnan(unseen[1])
    binary = train_y % 2
    two = probe_margins(train_X, binary, test_X, test_y % 2, seed=0)
    assert (two > 0).mean() == pytest.approx(
        fit_linear_probe(train_X, binary, test_X, test_y % 2, seed=0).accuracy)


@pytest.fixture(scope="module")
def tiny_run(shared_store, tiny_refs):
    from unlearn_core.pipeline import run_unlearning
    run_id = run_unlearning(RunSpec(tiny_setup(), MethodSpec("neggrad_plus", {"epochs": 1})),
                            shared_store)
    return shared_store, shared_store.get(run_id)


def test_drill_down_agrees_with_the_stored_arrays_and_says_what_is_missing(tiny_run):
    from unlearn_core.instance import describe_instance, forget_examples, instance_results
    store, record = tiny_run
    arrays = store.load_arrays(record.id)
    dataset, forget = forget_examples(record.spec)
    assert len(forget) == record.report["split"]["forget"]
    index = int(forget[0])
    label = int(dataset.train.labels[index])

    before = describe_instance(record.report, arrays, forget, label, index)
    for role in ("original", "unlearned", "oracle"):
        assert before["roles"][role]["p_label"] == arrays[f"eval/conf/{role}/forget"][0]
    assert before["mia_score"] == arrays["eval/mia_score/unlearned"][0]
    assert before["margins"] is None
    assert any("probe margins" in note for note in before["missing"])

    derived = instance_results(store, record.id)
    assert store.get_derived(record.id, "instance").keys() == derived.keys()
    # Predictions on the forget set agree with the stored ones on the probe subset.
    parts = record.report["layers"]["parts"]
    rows = derived["probe/rows"]
    assert (arrays["eval/probe_part"][rows] == parts.index("forget_train")).all()
    positions = np.searchsorted(forget, arrays["eval/probe_index"][rows])
    for role in ("original", "unlearned", "oracle"):
        assert (derived[f"pred/{role}"][positions] == arrays[f"eval/pred/{role}"][rows]).all()
        right = derived[f"pred/{role}"] == dataset.train.labels.numpy()[forget]
        assert derived[f"pred_prob/{role}"][right] == pytest.approx(
            arrays[f"eval/conf/{role}/forget"][right], abs=1e-6)
        assert derived[f"margin/{role}"].shape == (len(rows), len(
            record.report["layers"]["probe_layers"]))
    # The forget rows the probes were fit on are exactly probe_rows' (class-balanced).
    from unlearn_core.metrics.activations import ProbeSubset
    from unlearn_core.metrics.layers import probe_rows
    labels = arrays["eval/probe_label"]
    subset = ProbeSubset(tuple(parts), arrays["eval/probe_part"], arrays["eval/probe_index"],
                         labels, "key")
    fit, _ = probe_rows(subset, record.spec["setup"]["seed"])
    assert derived["probe/fit_on"].sum() == len(set(fit) & set(rows)) > 0

    in_subset = int(arrays["eval/probe_index"][rows[0]])
    after = describe_instance(record.report, arrays, forget, int(dataset.train.labels[in_subset]),
                              in_subset, derived)
    assert after["missing"] == []
    assert after["margins"]["unlearned"] == pytest.approx(derived["margin/unlearned"][0].tolist())
    assert after["probe_fit_on"] == bool(derived["probe/fit_on"][0])
    fig = instance_margins(after)
    assert [t.name for t in fig.data] == ["Original", "Unlearned", "Retrain oracle"]
    assert list(fig.data[1].y) == pytest.approx(after["margins"]["unlearned"])
    assert instance_margins(before) is None

    retained = int(np.setdiff1d(np.arange(len(dataset.train.labels)), forget)[0])
    with pytest.raises(UserError, match=f"index: {retained} is not in this run's forget set"):
        describe_instance(record.report, arrays, forget, 0, retained)
    with pytest.raises(UserError, match="index: '3' is not"):
        describe_instance(record.report, arrays, forget, 0, "3")


def test_drill_down_of_a_run_that_is_not_finished_names_the_run(store):
    from unlearn_core.instance import instance_results
    failed = store.create("unlearn", {"setup": tiny_setup().to_dict()}, "failed")
    store.fail(failed, "boom")
    with pytest.raises(UserError, match=f"run {failed}: only a finished run"):
        instance_results(store, failed)
