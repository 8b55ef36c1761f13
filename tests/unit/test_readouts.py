"""Feature readouts (metrics/readouts.py) on synthetic features: perfectly separated
classes are read perfectly, random features at chance or below, and the rows that are
scored are never the ones the readout was fit on."""

import numpy as np
import pytest

from unlearn_core.metrics.activations import ProbeSubset
from unlearn_core.metrics.readouts import (READOUTS, few_shot_ncm, held_out_rows,
                                           knn_readout, layer_readouts, linear_probe_readout,
                                           model_readouts, nearest_class_mean,
                                           nearest_neighbours)

PARTS = ("forget_train", "retain_train", "forget_test", "retain_test")
CLASSES = 10


def class_forgetting_subset(per_part: int = 90, seed: int = 0) -> ProbeSubset:
    """Class 0 forgotten: the forget parts hold class 0 only, the retain parts 1-9."""
    rng = np.random.default_rng(seed)
    part, labels = [], []
    for i, name in enumerate(PARTS):
        part.append(np.full(per_part, i))
        labels.append(np.zeros(per_part, int) if name.startswith("forget")
                      else rng.integers(1, CLASSES, per_part))
    n = per_part * len(PARTS)
    return ProbeSubset(PARTS, np.concatenate(part), np.arange(n), np.concatenate(labels),
                       key="synthetic")


def separated_features(labels: np.ndarray, seed: int = 0, dim: int = 32) -> np.ndarray:
    """Each class a tight cluster around its own far-apart centre."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(CLASSES, dim)) * 10
    return (centres[labels] + 0.01 * rng.normal(size=(len(labels), dim))).astype(np.float32)


def random_features(n: int, seed: int = 0, dim: int = 64) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)


@pytest.mark.parametrize("k", [1, 5, 20])
def test_few_shot_ncm_reads_perfectly_separated_classes_perfectly(k):
    subset = class_forgetting_subset()
    result = few_shot_ncm(separated_features(subset.labels), subset, k, seed=3)
    assert result["forget"] == 1.0 and result["retain"] == 1.0
    assert result["k"] == k and result["forget_std"] == 0.0


@pytest.mark.parametrize("k", [1, 5, 20])
def test_few_shot_ncm_on_random_features_is_at_chance_or_below(k):
    subset = class_forgetting_subset(per_part=400)
    result = few_shot_ncm(random_features(len(subset.labels)), subset, k, seed=0)
    # Nine retain classes: chance is 1/9 on retain examples; the forget class, one of ten,
    # is found no more often than chance allows.
    assert 0.04 <= result["retain"] <= 0.2
    assert result["forget"] <= 0.25


def test_knn_and_the_linear_probe_read_separated_classes_and_not_random_ones():
    subset = class_forgetting_subset(per_part=200)
    separated = separated_features(subset.labels)
    assert knn_readout(separated, subset) == {"forget": 1.0, "retain": 1.0}
    assert linear_probe_readout(separated, subset) == {"forget": 1.0, "retain": 1.0}
    noise = random_features(len(subset.labels), seed=1)
    assert knn_readout(noise, subset)["retain"] <= 0.25
    assert linear_probe_readout(noise, subset)["retain"] <= 0.25


def test_nearest_class_mean_and_neighbours_on_a_small_example():
    support = np.array([[0.0, 0.0], [0.0, 1.0], [10.0, 0.0], [10.0, 1.0], [10.0, 2.0]])
    labels = np.array([0, 0, 1, 1, 1])
    query = np.array([[1.0, 0.5], [9.0, 0.5]])
    assert nearest_class_mean(support, labels, query).tolist() == [0, 1]
    unit = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    # Two neighbours tie one vote each: the nearer one (most similar) wins.
    assert nearest_neighbours(unit, np.array([0, 1, 2]), np.array([[0.1, 1.0]]),
                              neighbours=2).tolist() == [1]
    # A majority beats the single nearest.
    assert nearest_neighbours(unit, np.array([0, 1, 0]), np.array([[0.0, 1.0]]),
                              neighbours=3).tolist() == [0]


def test_without_a_forget_test_part_the_shots_are_never_scored():
    full = class_forgetting_subset()
    keep = np.isin(full.part, [0, 1, 3])  # no forget_test part (e.g. random forgetting)
    parts = ("forget_train", "retain_train", "retain_test")
    part = np.searchsorted([0, 1, 3], full.part[keep])
    subset = ProbeSubset(parts, part, full.index[keep], full.labels[keep], key="no-test")
    forget_train = np.flatnonzero(subset.mask("forget_train"))
    rows = held_out_rows(subset, exclude=forget_train[:5])
    assert set(rows["forget"]) == set(forget_train[5:])
    result = few_shot_ncm(separated_features(subset.labels), subset, 5)
    assert result["forget"] == 1.0


def test_model_readouts_has_every_readout_per_layer():
    subset = class_forgetting_subset(per_part=60)
    acts = {"a": separated_features(subset.labels), "b": random_features(len(subset.labels))}
    result = model_readouts(acts, subset, ["a", "b"])
    assert result["layers"] == ["a", "b"]
    assert list(result["readouts"]) == list(READOUTS)
    for values in result["readouts"].values():
        assert len(values["forget"]) == len(values["retain"]) == 2
        assert values["forget"][0] == 1.0
    assert layer_readouts(acts["a"], subset, readouts=["knn"]).keys() == {"knn"}


def test_bad_arguments_are_named():
    subset = class_forgetting_subset(per_part=20)
    features = separated_features(subset.labels)
    with pytest.raises(ValueError, match="k: expected an integer >= 1"):
        few_shot_ncm(features, subset, 0)
    with pytest.raises(ValueError, match="draws"):
        few_shot_ncm(features, subset, 1, draws=0)
    with pytest.raises(ValueError, match="readouts: unknown"):
        layer_readouts(features, subset, readouts=["svm"])


def synthetic_seed(seed: int, original: float, oracle: float) -> dict:
    """A `bench_readouts.measure_seed` result with one layer: every readout of the
    original scores `original`, of the oracle `oracle`, except the k-NN (equal)."""
    def role(value):
        return {"layers": ["block1"], "readouts": {
            name: {"forget": [0.9 if name == "knn" else value], "retain": [0.95]}
            for name in READOUTS}}
    curve = {"scores": [original, original, original], "steps": 2}
    return {"seed": seed, "layers": ["block1"],
            "readouts": {"original": role(original), "oracle": role(oracle)},
            "relearn": {"original": curve, "oracle": {**curve, "scores": [0.0, 0.2, 0.6]}}}


def test_the_bench_names_the_readout_that_separates_the_references_by_its_rule():
    from unlearn_core.bench_readouts import (best_readout, conclusion, layer_rows,
                                             relearn_rows)
    rows = layer_rows([synthetic_seed(0, 0.9, 0.6), synthetic_seed(1, 0.95, 0.7)])
    knn = next(r for r in rows if r["readout"] == "knn")
    assert knn["difference"]["mean"] == 0 and knn["original_higher"] == 0
    probe = next(r for r in rows if r["readout"] == "linear_probe")
    assert probe["difference"]["mean"] == pytest.approx(0.275)
    assert probe["original_higher"] == 2
    assert best_readout(rows)["difference"]["mean"] == pytest.approx(0.275)
    # 2 points apart on average: below the rule's 5, so nothing separates.
    close = layer_rows([synthetic_seed(0, 0.9, 0.88), synthetic_seed(1, 0.9, 0.88)])
    assert best_readout(close) is None
    assert conclusion(close).startswith("No feature readout separates")
    # Higher on one seed only: not a separation either, however large on average.
    mixed = layer_rows([synthetic_seed(0, 0.9, 0.1), synthetic_seed(1, 0.5, 0.6)])
    assert best_readout(mixed) is None
    relearn = relearn_rows([synthetic_seed(0, 0.9, 0.6)])
    assert relearn[-1]["reach"] == {"original": [0], "oracle": [2]}


def test_the_readouts_suite_runs_from_the_cli_on_the_given_store(monkeypatch, tmp_path, capsys):
    from unlearn_core import bench_readouts
    from unlearn_core.cli import main
    calls = []
    monkeypatch.setattr(bench_readouts, "readouts_suite", lambda store, **kw: calls.append(
        (store.root, kw)) or {"table": "the readouts table"})
    assert main(["--store", str(tmp_path / "s"), "bench", "--suite", "readouts", "--seeds",
                 "2", "--device", "cpu"]) == 0
    (root, kw), = calls
    assert root == (tmp_path / "s").resolve() and list(kw["seeds"]) == [0, 1]
    assert kw["base"].device == "cpu" and kw["base"].data.name == "mnist5k"
    assert "--suite readouts --seeds 2 --device cpu" in kw["command"]
    assert "the readouts table" in capsys.readouterr().out
    assert main(["bench", "--suite", "readouts", "--seeds", "0"]) == 2
    assert "--seeds: expected an integer >= 1" in capsys.readouterr().err
    assert main(["bench", "--suite", "readouts", "--methods", "finetune"]) == 2
    assert "--methods: not an option of --suite readouts" in capsys.readouterr().err
