"""Shared fixtures: a tiny `digits` setup (trains in about 2 s) and a run store in a
temporary folder, so tests never touch the user's store."""

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
