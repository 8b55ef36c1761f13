"""The probes' rows (issue 19): class-balanced training rows, held-out forget rows never
fit on, and a retain baseline scored beside the forget accuracy."""

import numpy as np

from unlearn_core.metrics.activations import ProbeSubset
from unlearn_core.metrics.layers import probe_report, probe_rows


def subset(forget_train=300, retain_per_class=40, forget_test=0, retain_test=30):
    """Class 0 forgotten; classes 1..9 retained."""
    parts, part, labels = [], [], []
    for name, rows in (("forget_train", [0] * forget_train),
                       ("retain_train", [c for c in range(1, 10) for _ in range(retain_per_class)]),
                       ("forget_test", [0] * forget_test),
                       ("retain_test", [c % 9 + 1 for c in range(retain_test)])):
        if rows:
            part += [len(parts)] * len(rows)
            parts.append(name)
            labels += rows
    n = len(labels)
    return ProbeSubset(tuple(parts), np.array(part), np.arange(n), np.array(labels), "key")


def test_training_rows_are_class_balanced():
    s = subset()
    train, test = probe_rows(s, seed=0)
    counts = np.bincount(s.labels[train])
    assert counts[0] == 40 and set(counts[1:]) == {40}  # was 150 forget rows (half)
    assert not set(train) & set(test)
    assert len(test) == 300 - 40  # without a forget test part: the forget rows not fit on


def test_a_forget_test_part_is_the_held_out_set_and_caps_follow_small_classes():
    s = subset(forget_train=30, forget_test=20)
    train, test = probe_rows(s, seed=0)
    assert np.bincount(s.labels[train])[0] == 15  # at most half the forget rows
    assert set(s.part[test]) == {s.parts.index("forget_test")}


def test_the_report_scores_forget_and_retain_held_out_rows():
    s = subset(forget_test=40)
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(10, 16)) * 5
    features = centres[s.labels] + rng.normal(size=(len(s.labels), 16))
    acts = {role: {"block": features} for role in ("unlearned", "original", "oracle")}
    report = probe_report(acts, s, ["block"], s.labels, seed=0)
    assert report["probes"]["original"] == [1.0]
    assert report["probes_retain"]["oracle"] == [1.0]


def test_the_probe_chart_draws_the_retain_baseline_where_stored():
    from unlearn_core.figures import probe_accuracy_per_layer
    roles = ("unlearned", "original", "oracle")
    layers = {"probe_layers": ["block"], "probes": {r: [0.5] for r in roles}}
    without = probe_accuracy_per_layer({"layers": layers})
    assert [t.name for t in without.data] == ["Original", "Unlearned", "Retrain oracle"]
    layers["probes_retain"] = {r: [0.9] for r in roles}
    baseline = {t.name: list(t.y) for t in probe_accuracy_per_layer({"layers": layers}).data}
    assert baseline["Retrain oracle, retain examples (baseline)"] == [90.0]
