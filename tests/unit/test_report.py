"""The full report on the tiny setup, with known answers: a model compared with itself
has CKA 1, an MIA on the oracle reproduces the oracle's reference."""

import math

import numpy as np
import pytest

from conftest import tiny_setup
from unlearn_core.config import MethodSpec, RunSpec
from unlearn_core.errors import UserError
from unlearn_core.metrics.activations import probe_subset
from unlearn_core.metrics.privacy import balanced_members
from unlearn_core.pipeline import run_unlearning

# Several seconds or more on 2 cores: left out of `make test-fast`.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def retrain_run(shared_store, tiny_refs):
    """Retrain with seed offset 0 reproduces the cached oracle exactly."""
    run_id = run_unlearning(RunSpec(tiny_setup(), MethodSpec("retrain")), shared_store)
    return shared_store.get(run_id).report, shared_store.load_arrays(run_id)


def test_report_has_every_section_of_the_schema(retrain_run):
    report, arrays = retrain_run
    layers = report["layers"]
    assert layers["names"][-1] == "logits"
    assert set(layers["parts"]) == {"forget_train", "retain_train", "forget_test", "retain_test"}
    for pair in ("unlearned_vs_original", "unlearned_vs_oracle", "oracle_vs_original"):
        for part in layers["parts"]:
            assert len(layers["cka"][pair][part]) == len(layers["names"])
            band = layers["cka_band"][pair][part]
            assert len(band["low"]) == len(band["high"]) == len(layers["names"])
    assert set(layers["depth"]) == {"forget_train", "forget_test"}
    assert layers["verdict"]["kind"] in {"core", "superficial", "partial", "not_forgotten",
                                         "undetermined"}
    assert layers["verdict"]["text"]
    assert set(report["mia"]["efficacy"]) == {"unlearned", "original", "oracle"}
    n = len(arrays["eval/probe_index"])
    # The PCA of the layers every view opens on; the others are fitted when first viewed.
    mapped = [layer for layer in layers["names"] if f"eval/pca/{layer}/unlearned" in arrays]
    assert mapped == layers["names"][-2:]
    for layer in mapped:
        assert arrays[f"eval/pca/{layer}/unlearned"].shape == (n, 2)


def test_a_model_compared_with_itself_has_cka_one_everywhere(retrain_run):
    report, _ = retrain_run
    for part, values in report["layers"]["cka"]["unlearned_vs_oracle"].items():
        assert values == pytest.approx([1.0] * len(values), abs=1e-6), part


def test_mia_on_the_oracle_matches_the_oracle_reference(retrain_run):
    efficacy = retrain_run[0]["mia"]["efficacy"]
    assert efficacy["unlearned"] == pytest.approx(efficacy["oracle"])
    # and the original, which trained on the forget set, looks like a member
    assert efficacy["original"]["confidence"] < efficacy["oracle"]["confidence"]


def test_identical_models_are_indistinguishable(retrain_run):
    for feature, values in retrain_run[0]["mia"]["distinguishability"].items():
        assert values["epsilon"] == pytest.approx(0.0, abs=1e-9), feature
        assert values["privacy_score"] == pytest.approx(1.0)


def test_head_refit_measures_what_returns_on_held_out_forget_data(shared_store, tiny_refs):
    run_id = run_unlearning(RunSpec(tiny_setup(), MethodSpec("neggrad_plus")), shared_store)
    head = shared_store.get(run_id).report["layers"]["head_refit"]
    assert head["forget_accuracy_before"] < 0.1
    assert head["returned"] == pytest.approx(head["forget_accuracy_after"] - head["forget_accuracy_before"])
    assert head["n_held_out"] == tiny_refs.experiment.split.sizes()["test_forget"]


def test_probe_subset_is_seeded_and_capped(tiny_refs):
    exp = tiny_refs.experiment
    a, b = probe_subset(exp, per_part=50, seed=1), probe_subset(exp, per_part=50, seed=1)
    assert np.array_equal(a.index, b.index)
    assert all(a.mask(p).sum() <= 50 for p in a.parts)
    assert not np.array_equal(a.index, probe_subset(exp, per_part=50, seed=2).index)


def test_members_are_class_balanced():
    labels = np.array([0] * 100 + [1] * 10 + [2] * 100)
    retain = np.arange(len(labels))
    members = balanced_members(labels, retain, 30, seed=0)
    assert len(members) == 30
    assert np.bincount(labels[members]).tolist() == [10, 10, 10]
    assert math.isclose(len(balanced_members(labels, retain, 500, seed=0)), len(labels))


def _run_id(store, report):
    return next(r.id for r in store.list(kind="unlearn", status="done")
                if r.report["run_spec_hash"] == report["run_spec_hash"])


def test_umap_of_a_run_is_joint_over_the_probe_subset_and_kept_with_the_run(shared_store,
                                                                               retrain_run):
    from unlearn_core.pipeline import embedding_of_run
    report, arrays = retrain_run
    run_id = _run_id(shared_store, report)
    coords = embedding_of_run(shared_store, run_id, "block3", "umap")
    n = len(arrays["eval/probe_index"])
    assert sorted(coords) == [f"eval/umap/block3/{role}"
                              for role in ("oracle", "original", "unlearned")]
    assert all(c.shape == (n, 2) and np.isfinite(c).all() for c in coords.values())
    # Retrain with offset 0 is the oracle itself: in one joint fit each of its points lands
    # next to its oracle twin (UMAP's stochastic layout keeps them near, not identical).
    unlearned, oracle = coords["eval/umap/block3/unlearned"], coords["eval/umap/block3/oracle"]
    spread = np.ptp(np.concatenate([unlearned, oracle]), axis=0).max()
    assert np.median(np.linalg.norm(unlearned - oracle, axis=1)) < 0.02 * spread
    assert shared_store.get_derived(run_id, "umap-block3").keys() == coords.keys()
    with pytest.raises(UserError, match="layer: expected one of"):
        embedding_of_run(shared_store, run_id, "no_such_layer", "umap")
    with pytest.raises(UserError, match="method: expected one of"):
        embedding_of_run(shared_store, run_id, "block3", "tsne")


def test_a_layers_pca_fitted_on_first_view_is_the_fit_evaluate_makes(shared_store, retrain_run,
                                                                     tiny_refs, monkeypatch):
    from unlearn_core import pipeline
    from unlearn_core.metrics.activations import activations
    from unlearn_core.metrics.report import joint_pca_arrays
    report, arrays = retrain_run
    run_id = _run_id(shared_store, report)
    assert "eval/pca/block1/original" not in arrays
    coords = pipeline.embedding_of_run(shared_store, run_id, "block1")
    # The same fit evaluate() makes, on the three models' activations of the run's probe
    # subset (the retrain is the oracle here, so it is the oracle's activations twice).
    exp = tiny_refs.experiment
    subset = probe_subset(exp, seed=tiny_setup().seed)
    features = {role: activations(tiny_refs.models()[reference], exp, subset)["block1"]
                for role, reference in (("unlearned", "oracle"), ("original", "original"),
                                        ("oracle", "oracle"))}
    expected = joint_pca_arrays(features, "block1", tiny_setup().seed)
    assert coords.keys() == expected.keys()
    for key, value in expected.items():
        np.testing.assert_allclose(coords[key], value, rtol=1e-4, atol=1e-4, err_msg=key)
    # The retrain is the oracle: identical features, identical points in one joint fit.
    np.testing.assert_array_equal(coords["eval/pca/block1/unlearned"],
                                  coords["eval/pca/block1/oracle"])
    # Kept with the run: the next call rebuilds nothing.
    monkeypatch.setattr(pipeline, "rebuild_run", lambda *a, **k: pytest.fail("rebuilt"))
    again = pipeline.embedding_of_run(shared_store, run_id, "block1")
    assert all(np.array_equal(again[key], coords[key]) for key in coords)
    # A layer evaluate() mapped comes from the run's arrays.
    stored = pipeline.embedding_of_run(shared_store, run_id, "embedding")
    np.testing.assert_array_equal(stored["eval/pca/embedding/original"],
                                  arrays["eval/pca/embedding/original"])


def _layers(depth, excess):
    names = ["block1", "block2", "block3", "embedding", "logits"]
    return {"names": names, "probe_layers": names[:-1], "probes": None,
            "depth": {"forget_train": depth},
            "cka_excess": {"forget_train": {key: [None, None, v, None, None]
                                            for key, v in zip(("value", "low", "high"), excess)}},
            "cka": {"unlearned_vs_original": {"forget_train": [0.99, 0.99, 0.98, 0.95, 0.2]},
                    "oracle_vs_original": {"forget_train": [0.999, 0.995, 0.99, 0.85, 0.1]}}}


@pytest.mark.parametrize("forget_acc, depth, excess, kind, says", [
    # The oracle moved at block3: depth decides.
    (0.0, [None, None, 0.1, 0.2, 0.9], (0.007, 0.005, 0.009), "superficial", "depth at block3 0.10"),
    (0.0, [None, None, 0.8, 0.9, 1.0], (0.001, -0.001, 0.003), "core", "depth at block3 0.80"),
    # It did not: the paired CKA difference decides.
    (0.0, [None, None, None, 1.0, 1.0], (0.007, 0.006, 0.008), "superficial",
     "stayed closer to the original than the oracle's"),
    (0.0, [None, None, None, 1.0, 1.0], (-0.012, -0.014, -0.010), "core", "moved further from"),
    (0.0, [None, None, None, 1.0, 1.0], (0.001, -0.002, 0.004), "core", "stayed no closer to"),
    (0.0, [None, None, None, 1.0, 1.0], (None, None, None), "undetermined", "barely moved"),
    (0.6, [None, None, 0.1, 0.2, 0.9], (0.007, 0.005, 0.009), "not_forgotten", "not forgotten"),
])
def test_verdict_follows_the_numbers_at_the_middle_layer(forget_acc, depth, excess, kind, says):
    from unlearn_core.metrics.layers import verdict
    accuracy = {"unlearned": {"test_forget": forget_acc}, "oracle": {"test_forget": 0.0}}
    result = verdict(accuracy, _layers(depth, excess))
    assert result["kind"] == kind
    assert says in result["text"]
    assert result["text"].startswith(f"forget accuracy {forget_acc:.0%} (oracle 0%), block3 CKA "
                                     "to the original 0.98 (oracle 0.99)")


def test_a_collapsed_model_is_evaluated_not_crashed(tiny_refs):
    """A model whose every layer is constant (e.g. weights driven to zero) still gets a
    report: CKA and probes are undefined (null) there, accuracies are what they are."""
    import copy

    import torch

    from unlearn_core.metrics.report import evaluate
    collapsed = copy.deepcopy(tiny_refs.original.model)
    with torch.no_grad():
        for parameter in collapsed.parameters():
            parameter.zero_()
    report, _ = evaluate({"unlearned": collapsed, "original": tiny_refs.original.model,
                          "oracle": tiny_refs.oracle.model}, tiny_refs.experiment,
                         seconds=1.0, oracle_seconds=2.0)
    layers = report["layers"]
    assert layers["probes"]["unlearned"] == [None] * len(layers["probe_layers"])
    assert layers["head_refit"]["returned"] is None
    assert layers["cka"]["unlearned_vs_original"]["forget_train"][0] is None
    assert "n/a" in layers["verdict"]["text"]
