"""Shared fixtures: a tiny `digits` setup (trains in about 2 s) and a run store in a
temporary folder, so tests never touch the user's store; a light evaluation for tests
that run many runs; an ImageFolder with corrupt images."""

import pytest
from PIL import Image

from unlearn_core.config import DataSpec, ModelSpec, SetupSpec, TrainSpec
from unlearn_core.runs import RunStore

# Tests under these folders carry the marker of the same name (pytest.ini), so
# `-m "not e2e and not claims"` leaves them out without each file saying so.
FOLDER_MARKERS = ("e2e", "claims")


def pytest_collection_modifyitems(items):
    for item in items:
        for folder in FOLDER_MARKERS:
            if f"/tests/{folder}/" in str(item.path):
                item.add_marker(getattr(pytest.mark, folder))


def tiny_setup(**changes) -> SetupSpec:
    base = dict(data=DataSpec("digits"), model=ModelSpec("small_cnn"),
                train=TrainSpec(epochs=3, batch_size=32), seed=0, device="cpu")
    base.update(changes)
    return SetupSpec(**base)


# tiny_setup() as CLI options, so a CLI run finds the models tiny_setup() cached.
TINY_CLI_ARGS = ["--dataset", "digits", "--epochs", "3", "--batch-size", "32", "--device", "cpu"]


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
                          parts_cache=None, progress=None):
    """A stand-in for `evaluate()` with the real accuracies and the real MIA and nothing
    else: the full report (CKA with bootstrap bands, probes, PCA) costs about 15 s of CPU
    per run on digits; bench and sweep tests read only accuracy, gaps, MIA and cost
    (evaluate itself is tested in test_report.py)."""
    from unlearn_core.metrics.accuracy import accuracies, predictions
    from unlearn_core.metrics.privacy import privacy_report
    from unlearn_core.metrics.report import cost_section, gaps_to_oracle

    preds = {role: predictions(model, exp) for role, model in models.items()}
    acc = {role: accuracies(p, exp.split, exp.dataset.num_classes) for role, p in preds.items()}
    mia, arrays = privacy_report(preds, exp.split, exp.spec.seed)
    return {"accuracy": acc, "gap_to_oracle": gaps_to_oracle(acc["unlearned"], acc["oracle"]),
            "cost": cost_section(exp, seconds, oracle_seconds),
            "forget_classes": list(exp.split.forget_classes), "mia": mia}, arrays


def use_light_evaluate() -> None:
    """Swap `accuracy_and_mia_only` in for the pipeline's evaluate in this process (a Ray
    worker's setup hook; in-process tests use monkeypatch instead)."""
    from unlearn_core import pipeline
    pipeline.evaluate = accuracy_and_mia_only


def imagefolder_with_corrupt_images(root):
    """An ImageFolder under `root` (a Path) of 8x8 grayscale images: two readable classes
    with a text file renamed .png and a truncated PNG among them, and a third class whose
    only image is corrupt."""
    for name, value in (("dark", 20), ("light", 230)):
        for i in range(12):
            (root / name).mkdir(parents=True, exist_ok=True)
            Image.new("L", (8, 8), value + i).save(root / name / f"{i:02d}.png")
    (root / "dark" / "notes.png").write_text("a text file renamed .png")
    whole = (root / "light" / "00.png").read_bytes()
    (root / "light" / "truncated.png").write_bytes(whole[: len(whole) // 2])
    (root / "broken").mkdir()
    (root / "broken" / "only.jpg").write_bytes(b"\xff\xd8\xff garbage")
    return root


def store_with_one_run(root) -> tuple[RunStore, str, dict]:
    """A store at `root` with the tiny references and one finished Finetune run (light
    evaluation): (store, run id, report). Robustness tests check it survives each fault."""
    from unlearn_core import pipeline
    from unlearn_core.config import MethodSpec, RunSpec
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pipeline, "evaluate", accuracy_and_mia_only)
        store = RunStore(root)
        run_id = pipeline.run_unlearning(
            RunSpec(tiny_setup(), MethodSpec("finetune", {"epochs": 1})), store)
    return store, run_id, store.get(run_id).report


def assert_run_intact(store: RunStore, run_id: str, report: dict) -> None:
    """The run loads from a fresh open as it was stored (report, finite weights), and the
    store holds no half-written run folder."""
    import torch

    from unlearn_core.runs import TEMP_PREFIX
    reopened = RunStore(store.root)
    assert reopened.get(run_id).status == "done" and reopened.get(run_id).report == report
    assert all(torch.isfinite(t).all() for t in reopened.load_weights(run_id).values())
    assert not [p.name for p in reopened.runs_dir.iterdir() if p.name.startswith(TEMP_PREFIX)]
