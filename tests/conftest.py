"""Shared fixtures: a tiny `digits` setup (trains in about 2 s) and a run store in a
temporary folder, so tests never touch the user's store; a light evaluation for tests
that run many runs."""

import pytest

from unlearn_core.config import DataSpec, ModelSpec, SetupSpec, TrainSpec
from unlearn_core.runs import RunStore


def tiny_setup(**changes) -> SetupSpec:
    base = dict(data=DataSpec("digits"), model=ModelSpec("small_cnn"),
                train=TrainSpec(epochs=3, batch_size=32), seed=0, device="cpu")
    base.update(changes)
    return SetupSpec(**base)


@pytest.fixture(autouse=True)
def isolated_store_env(tmp_path, monkeypatch):
    """Anything that opens the default store gets a fresh one."""
    monkeypatch.setenv("LENS_STORE", str(tmp_path / "default-store"))


@pytest.fixture(scope="session")
def shared_store(tmp_path_factory) -> RunStore:
    """One store for the whole session, so the tiny references train once."""
    return RunStore(tmp_path_factory.mktemp("shared-store"))


@pytest.fixture(scope="session")
def tiny_refs(shared_store):
    from unlearn_core.pipeline import train_references
    return train_references(tiny_setup(), shared_store)


def tiny_context(refs, method_name: str, progress=None, **params):
    """An UnlearnContext on the tiny references, as the pipeline builds it, with the
    method's params resolved and checked."""
    import copy

    from unlearn_core.methods import UnlearnContext, get_method
    from unlearn_core.pipeline import _frozen
    from unlearn_core.progress import Progress

    method = get_method(method_name)
    exp = refs.experiment
    resolved = method.resolve_params(params)
    method.accept(resolved, refs.original.model)
    return UnlearnContext(model=copy.deepcopy(refs.original.model),
                          original=_frozen(copy.deepcopy(refs.original.model)),
                          experiment=exp, params=resolved, progress=progress or Progress(),
                          seed=exp.spec.seed)


def unlearn_tiny(refs, method_name: str, **params):
    """Run a method straight on the tiny references (no evaluation, no store) and return
    its Outcome with the unlearned model's accuracies (forget_train, retain_train,
    test_forget, test_retain, ...). Method tests use this to stay fast."""
    from unlearn_core.methods import get_method
    from unlearn_core.metrics.accuracy import accuracies, predictions

    exp = refs.experiment
    outcome = get_method(method_name).unlearn(tiny_context(refs, method_name, **params))
    acc = accuracies(predictions(outcome.model, exp), exp.split, exp.dataset.num_classes)
    return outcome, acc


def accuracy_and_mia_only(models, exp, *, seconds, oracle_seconds, reference_keys=None,
                          progress=None):
    """A stand-in for `evaluate()` with the real accuracies and the real MIA and nothing
    else: the full report (CKA with bootstrap bands, probes, PCA) costs about 15 s of CPU
    per run on digits; bench and sweep tests read only accuracy, gaps, MIA and cost
    (evaluate itself is tested in test_report.py)."""
    from unlearn_core.metrics.accuracy import accuracies, predictions
    from unlearn_core.metrics.privacy import privacy_report
    from unlearn_core.metrics.report import gaps_to_oracle
    from unlearn_core.training import speedup

    preds = {role: predictions(model, exp) for role, model in models.items()}
    acc = {role: accuracies(p, exp.split, exp.dataset.num_classes) for role, p in preds.items()}
    mia, arrays = privacy_report(preds, exp.split, exp.spec.seed)
    return {"accuracy": acc, "gap_to_oracle": gaps_to_oracle(acc["unlearned"], acc["oracle"]),
            "cost": {"seconds": seconds, "oracle_seconds": oracle_seconds,
                     "speedup": speedup(oracle_seconds, seconds), "device": str(exp.device)},
            "forget_classes": list(exp.split.forget_classes), "mia": mia}, arrays


def use_light_evaluate() -> None:
    """Swap `accuracy_and_mia_only` in for the pipeline's evaluate in this process (a Ray
    worker's setup hook; in-process tests use monkeypatch instead)."""
    from unlearn_core import pipeline
    pipeline.evaluate = accuracy_and_mia_only
