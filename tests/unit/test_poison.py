"""The backdoor scenario: poisoning only the chosen examples, deterministically; an oracle
that never sees a trigger; ASR and its base rate; clear errors for bad poison settings."""

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from tests.conftest import tiny_setup
from unlearn_core.config import ForgetSpec, PoisonSpec, SetupSpec
from unlearn_core.data import load_dataset
from unlearn_core.data.poison import add_trigger, trigger_window
from unlearn_core.errors import UserError
from unlearn_core.metrics.poison import nearest_class_mean, poison_report
from unlearn_core.training import prepare

# Several seconds or more on 2 cores: left out of `make test-fast`.
pytestmark = pytest.mark.slow

POISON = ForgetSpec("poison", poison=PoisonSpec(fraction=0.1, target=3))


def test_poisoning_is_deterministic_and_touches_only_the_chosen_examples():
    spec = tiny_setup(forget=POISON)
    first, second = prepare(spec), prepare(spec)
    assert np.array_equal(first.split.forget, second.split.forget)
    assert torch.equal(first.dataset.train.images, second.dataset.train.images)
    other_seed = prepare(dataclasses.replace(spec, seed=1))
    assert not np.array_equal(first.split.forget, other_seed.split.forget)

    clean = load_dataset(spec.data)
    forget, retain = torch.tensor(first.split.forget), torch.tensor(first.split.retain)
    assert len(forget) == round(0.1 * len(clean.train))
    assert torch.equal(first.dataset.train.images[retain], clean.train.images[retain])
    assert torch.equal(first.dataset.train.labels[retain], clean.train.labels[retain])
    assert (clean.train.labels[forget] != 3).all(), "poison is drawn from the other classes"
    assert (first.dataset.train.labels[forget] == 3).all()
    rows, cols = trigger_window(POISON.poison, clean.image_size)
    poisoned = first.dataset.train.images[forget]
    assert (poisoned[:, :, rows, cols] == 255).all()
    outside = torch.ones_like(poisoned, dtype=torch.bool)
    outside[:, :, rows, cols] = False
    assert torch.equal(poisoned[outside], clean.train.images[forget][outside])
    assert torch.equal(first.dataset.test.images, clean.test.images), "the test set stays clean"


def test_the_oracle_trains_on_clean_data_only(tiny_refs, shared_store):
    from unlearn_core.pipeline import train_references
    refs = train_references(tiny_setup(forget=POISON), shared_store)
    exp = refs.experiment
    clean = load_dataset(exp.spec.data)
    retain_images = torch.cat([x for x, _ in exp.loader("retain", batch_size=10_000)])
    clean_loader = dataclasses.replace(exp, dataset=clean).loader("retain", batch_size=10_000)
    assert torch.equal(retain_images, torch.cat([x for x, _ in clean_loader]))
    assert refs.oracle.meta["train_size"] == len(exp.split.retain)
    assert refs.original.meta["train_size"] == len(exp.dataset.train)
    # The poison is part of what the original learned from: its cache key differs.
    assert refs.original.meta["key"] != tiny_refs.original.meta["key"]


class _IgnoreWindow(nn.Module):
    """Sets the trigger's window to 0 before the network sees it."""

    def __init__(self, window):
        super().__init__()
        self.window = window

    def forward(self, x):
        x = x.clone()
        x[:, :, self.window[0], self.window[1]] = 0
        return x


def test_asr_of_a_model_that_ignores_the_patch_is_its_base_rate(shared_store):
    from unlearn_core.pipeline import train_references
    refs = train_references(tiny_setup(forget=POISON), shared_store)
    exp = refs.experiment
    blind = exp.new_model()
    first = next(iter(blind.stages))
    blind.stages[first] = nn.Sequential(_IgnoreWindow(trigger_window(POISON.poison, 8)),
                                        blind.stages[first])
    models = {"unlearned": blind, "original": refs.original.model, "oracle": refs.oracle.model}
    report, arrays = poison_report(models, exp, list(blind.probe_layers), seed=0)
    assert report["asr"]["unlearned"] == report["base_rate"]["unlearned"]
    # The original learned the backdoor; the oracle never saw it.
    assert report["asr"]["original"] > 0.5 > report["asr"]["oracle"]
    assert report["verdict"]["kind"] in {"removed", "hidden"}
    assert len(arrays["eval/poison/pred/unlearned"]) == report["n_triggered"]


def test_nearest_class_mean_recovers_separated_classes():
    rng = np.random.default_rng(0)
    centres = np.eye(3) * 10
    labels = np.repeat(np.arange(3), 20)
    features = centres[labels] + rng.normal(size=(60, 3))
    assert np.array_equal(nearest_class_mean(features, labels, centres), np.arange(3))


@pytest.mark.parametrize("field, value, message", [
    ("fraction", 0, "forget.poison.fraction"), ("fraction", 1.0, "forget.poison.fraction"),
    ("target", -1, "forget.poison.target"), ("patch_size", 0, "forget.poison.patch_size"),
    ("value", 256, "forget.poison.value"), ("position", "middle", "forget.poison.position")])
def test_bad_poison_settings_name_the_field(field, value, message):
    with pytest.raises(UserError, match=message):
        PoisonSpec(**{field: value})


def test_settings_that_do_not_fit_the_data_name_the_field():
    with pytest.raises(UserError, match="forget.poison.target: class 10 is out of range"):
        prepare(tiny_setup(forget=ForgetSpec("poison", poison=PoisonSpec(target=10))))
    with pytest.raises(UserError, match="forget.poison.patch_size: a 8-pixel patch does not fit"):
        prepare(tiny_setup(forget=ForgetSpec("poison", poison=PoisonSpec(patch_size=8))))
    with pytest.raises(UserError, match="forget.poison: only kind 'poison'"):
        ForgetSpec("classes", poison=PoisonSpec())


def test_poison_spec_round_trips_and_older_hashes_are_unchanged():
    spec = tiny_setup(forget=POISON)
    assert SetupSpec.from_json(spec.to_json()) == spec
    assert "poison" not in ForgetSpec().to_dict()
    assert spec.original_key != tiny_setup().original_key


def test_add_trigger_leaves_its_input_alone():
    images = torch.zeros((2, 1, 8, 8), dtype=torch.uint8)
    triggered = add_trigger(images, PoisonSpec())
    assert images.sum() == 0 and triggered.sum() == 2 * 16 * 255


@pytest.fixture(scope="module")
def poison_run(tmp_path_factory):
    from unlearn_core.config import MethodSpec, RunSpec
    from unlearn_core.pipeline import run_unlearning
    from unlearn_core.runs import RunStore
    store = RunStore(tmp_path_factory.mktemp("poison-store"))
    run_id = run_unlearning(RunSpec(tiny_setup(forget=POISON), MethodSpec("finetune")), store)
    return store, run_id


def test_compare_rows_and_the_tradeoff_read_the_backdoor_numbers(poison_run):
    from unlearn_core import compare
    from unlearn_core.figures.compare import tradeoff_scatter
    store, run_id = poison_run
    record = store.get(run_id)
    poison = record.report["poison"]
    table = compare.run_table([record])
    row = table.iloc[0]
    assert row["asr"] == poison["asr"]["unlearned"]
    assert row["oracle_asr"] == poison["asr"]["oracle"]
    assert row["backdoor"] == poison["verdict"]["kind"]
    fig = tradeoff_scatter(table, "asr")
    traces = {trace.name: trace for trace in fig.data}
    assert traces["Finetune"].x[0] == pytest.approx(100 * poison["asr"]["unlearned"])
    assert traces["Retrain oracle"].x[0] == pytest.approx(100 * poison["asr"]["oracle"])
    with pytest.raises(ValueError, match="x: expected one of"):
        tradeoff_scatter(table, "mia")


def test_a_class_forgetting_run_has_no_backdoor_columns(tiny_refs, shared_store):
    from unlearn_core import compare
    from unlearn_core.config import MethodSpec, RunSpec
    from unlearn_core.pipeline import run_unlearning
    run_id = run_unlearning(RunSpec(tiny_setup(), MethodSpec("finetune")), shared_store)
    row = compare.run_table([shared_store.get(run_id)]).iloc[0]
    assert row[["asr", "asr_head_refit", "backdoor"]].isna().all()
    assert "poison" not in shared_store.get(run_id).report


GAUSSIAN = ForgetSpec("poison", poison=PoisonSpec(attack="gaussian", fraction=0.1))


def test_gaussian_poisoning_noises_only_the_chosen_examples_and_keeps_labels():
    spec = tiny_setup(forget=GAUSSIAN)
    exp, clean = prepare(spec), load_dataset(spec.data)
    forget, retain = torch.tensor(exp.split.forget), torch.tensor(exp.split.retain)
    assert torch.equal(exp.dataset.train.labels, clean.train.labels)
    assert torch.equal(exp.dataset.train.images[retain], clean.train.images[retain])
    assert not torch.equal(exp.dataset.train.images[forget], clean.train.images[forget])
    assert torch.equal(prepare(spec).dataset.train.images, exp.dataset.train.images)
    assert "attack" not in PoisonSpec().to_dict() and GAUSSIAN.poison.to_dict()["attack"] == "gaussian"


def test_noise_imprint_is_positive_for_the_noise_a_model_fitted_and_zero_for_the_same_noise():
    """A model trained on the noised images only (many epochs, no clean copies) carries
    the imprint; scored against itself as 'fresh' noise the paired imprint is exactly 0."""
    from unlearn_core.config import TrainSpec
    from unlearn_core.data.poison import add_noise
    from unlearn_core.metrics.poison import noise_imprint
    from unlearn_core.training import train_classifier
    from unlearn_core.progress import Progress
    exp = prepare(tiny_setup(forget=GAUSSIAN))
    model = exp.new_model()
    train_classifier(model, exp, "forget", TrainSpec(epochs=30, batch_size=32), Progress(),
                     "overfit")
    rows = torch.tensor(exp.split.forget)
    clean = load_dataset(exp.spec.data).train.images[rows]
    noised, labels = exp.dataset.train.images[rows], exp.dataset.train.labels[rows]
    fitted = noise_imprint(model, exp, noised, clean, labels)
    fresh = noise_imprint(model, exp, add_noise(clean, GAUSSIAN.poison, 99), clean, labels)
    assert (fitted - fresh).mean() > 0
    assert np.allclose(fitted - noise_imprint(model, exp, noised, clean, labels), 0)


def test_a_gaussian_run_reports_the_imprint_and_no_attack_success(shared_store):
    from unlearn_core import compare
    from unlearn_core.config import MethodSpec, RunSpec
    from unlearn_core.pipeline import run_unlearning
    run_id = run_unlearning(RunSpec(tiny_setup(forget=GAUSSIAN), MethodSpec("finetune")),
                            shared_store)
    poison = shared_store.get(run_id).report["poison"]
    assert poison["attack"] == "gaussian" and set(poison["imprint"]) == {"unlearned", "original",
                                                                        "oracle"}
    assert poison["verdict"]["kind"] in {"removed", "imprint_remains", "undetermined"}
    assert compare.run_table([shared_store.get(run_id)]).iloc[0][["asr", "backdoor"]].isna().all()


def test_relearning_a_backdoor_scores_the_attack_and_leaves_the_stored_model_alone(poison_run):
    from unlearn_core.pipeline import relearn_of_run
    store, run_id = poison_run
    before = {k: v.clone() for k, v in store.load_weights(run_id).items()}
    report = relearn_of_run(store, run_id)
    curves = report["curves"]
    assert curves["unlearned"]["score_name"] == "attack success rate"
    poison = store.get(run_id).report["poison"]
    # Step 0 is the model before any step: the stored ASR, up to the scorer's subset.
    assert curves["original"]["scores"][0] == pytest.approx(poison["asr"]["original"], abs=0.05)
    assert all(torch.equal(before[k], v) for k, v in store.load_weights(run_id).items())
    assert relearn_of_run(store, run_id) == report  # kept with the run
