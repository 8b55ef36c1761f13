from unlearn_core import figures


def report(forget_classes=(0,)):
    def acc(forget, per_class):
        return {"forget_train": forget, "retain_train": 0.99, "test_forget": forget,
                "test_retain": 0.97, "test": 0.9, "per_class_test": per_class}
    return {"classes": ["0", "1", "2"], "forget_classes": list(forget_classes),
            "accuracy": {"unlearned": acc(0.0, [0.0, 0.9, 0.95]),
                         "original": acc(1.0, [0.98, 0.97, 0.96]),
                         "oracle": acc(0.0, [0.0, 0.96, 0.97])},
            "method": {"curves": {"retain_loss": [0.5, 0.3], "forget_loss_per_step": [1, 2, 3]}}}


def test_per_class_keeps_every_class_on_a_category_axis():
    fig = figures.per_class_accuracy(report())
    assert fig.layout.xaxis.type == "category"
    assert list(fig.data[0].x) == ["0 ✕", "1", "2"]
    unlearned = next(t for t in fig.data if t.name == "Unlearned")
    assert list(unlearned.y) == [0.0, 90.0, 95.0]


def test_overview_plots_the_reported_accuracies():
    fig = figures.accuracy_overview(report())
    original = next(t for t in fig.data if t.name == "Original")
    assert list(original.y) == [100.0, 99.0, 100.0, 97.0, 90.0]


def test_training_curves_show_epoch_curves_only():
    fig = figures.training_curves(report())
    assert [t.name for t in fig.data] == ["retain_loss"]
    assert figures.training_curves({"method": {"curves": {}}}) is None


def test_forget_set_by_class_counts_each_class_forget_and_kept_parts():
    import numpy as np
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    fig = figures.forget_set_by_class(labels, np.array([0, 1, 2, 6]), ["zero", "one", "two",
                                                                       "three"])
    forget, kept = fig.data
    assert forget.name == "Forget (train)" and kept.name == "Retain (train)"
    assert list(forget.x) == ["zero", "one", "two", "three"]  # a class absent from train too
    assert list(forget.y) == [3, 0, 1, 0] and list(kept.y) == [0, 2, 3, 0]
    assert fig.layout.title.text == "Training examples per class<br>4 to forget, 5 to keep"


def test_speedup_reads_as_faster_or_slower_and_unknown_as_nothing():
    assert figures.format_speedup(4.0) == "4.0× faster than retraining"
    assert figures.format_speedup(0.4) == "2.5× slower than retraining"
    assert figures.format_speedup(None) is None and figures.format_speedup(0.0) is None
    assert figures.format_speedup(float("inf")) is None


def test_runs_side_by_side_never_take_a_reference_colour():
    from unlearn_core.figures.ec import cka_overlay

    def layers(values):
        return {"layers": {"names": ["a", "b"], "cka": {
            "unlearned_vs_original": {"forget_train": values},
            "oracle_vs_original": {"forget_train": [1.0, 0.5]}}}}
    fig = cka_overlay({f"run {i}": layers([1.0, i / 10]) for i in range(5)})
    runs = [t for t in fig.data if t.name.startswith("run ")]
    colors = [t.line.color for t in runs]
    assert len(set(colors)) == 5 and not set(colors) & set(figures.ROLE_COLORS.values())
    oracle, = (t for t in fig.data if not t.name.startswith("run "))
    assert oracle.line.color == figures.ROLE_COLORS["oracle"]
