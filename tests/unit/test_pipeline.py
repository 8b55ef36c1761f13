import pytest

from conftest import tiny_setup
from unlearn_core import pipeline
from unlearn_core.config import MethodSpec, RunSpec
from unlearn_core.errors import Cancelled, DivergedError, UserError
from unlearn_core.methods import get_method
from unlearn_core.progress import Progress
from unlearn_core.runs import RunStore


def test_a_run_is_stored_with_report_weights_and_resolved_params(shared_store, tiny_refs):
    spec = RunSpec(tiny_setup(), MethodSpec("finetune", {"epochs": 1}))
    run_id = pipeline.run_unlearning(spec, shared_store)
    record = shared_store.get(run_id)
    assert record.status == "done"
    assert record.spec["method"]["params"] == {"batch_size": 64, "epochs": 1, "lr": 0.2}
    assert set(record.report["accuracy"]) == {"unlearned", "original", "oracle"}
    assert record.report["split"] == tiny_refs.experiment.split.sizes()
    weights = shared_store.load_weights(run_id)
    assert set(weights) == set(tiny_refs.original.model.state_dict())


def test_bad_hyperparameters_fail_before_anything_is_stored(tmp_path):
    store = RunStore(tmp_path)
    with pytest.raises(UserError, match="method.params.lr"):
        pipeline.run_unlearning(RunSpec(tiny_setup(), MethodSpec("finetune", {"lr": -1})), store)
    assert store.list() == []


def test_a_diverging_method_is_recorded_failed_not_presented(shared_store, tiny_refs, monkeypatch):
    method = get_method("finetune")

    def diverge(self, ctx):
        raise DivergedError("Finetune: the loss became nan in epoch 1; lower the learning rate")

    monkeypatch.setattr(type(method), "unlearn", diverge)
    before = {r.id for r in shared_store.list(status="done")}
    with pytest.raises(DivergedError):
        pipeline.run_unlearning(RunSpec(tiny_setup(), MethodSpec("finetune", {"epochs": 2})),
                                shared_store)
    failed = [r for r in shared_store.list(status="failed") if "loss became nan" in r.error]
    assert failed and not failed[0].path.exists()
    assert {r.id for r in shared_store.list(status="done")} == before


def test_a_cancelled_run_is_recorded_cancelled(shared_store, tiny_refs):
    progress = Progress()
    calls = []

    def cancel_after_a_few_steps(fraction, message):
        calls.append(fraction)
        if len(calls) == 5:
            progress.cancel()

    progress = Progress(cancel_after_a_few_steps)
    with pytest.raises(Cancelled):
        pipeline.run_unlearning(RunSpec(tiny_setup(), MethodSpec("finetune", {"epochs": 3})),
                                shared_store, progress)
    assert shared_store.list(status="cancelled")


@pytest.mark.parametrize("method, params, message", [
    ("cf_k", {"k": 9}, r"method\.params\.k: expected an integer in \[1, 5\]"),
    ("scrub", {"epochs": 2, "max_epochs": 3}, r"method\.params\.max_epochs"),
])
def test_model_dependent_bad_params_fail_before_a_run_is_recorded(shared_store, tiny_refs,
                                                                   method, params, message):
    before = {r.id for r in shared_store.list()}
    with pytest.raises(UserError, match=message):
        pipeline.run_unlearning(RunSpec(tiny_setup(), MethodSpec(method, params)), shared_store)
    assert {r.id for r in shared_store.list()} == before


def test_a_run_spec_gives_the_same_weights_whatever_the_global_generator_holds(tiny_refs):
    """EC draws its auxiliary heads from torch's global generator; the pipeline seeds it
    from the setup, so what ran before (here: the generator left at two other states)
    does not change the unlearned weights. Before the fix two fresh processes gave EC
    three different sets of weights on mnist5k."""
    import torch
    _, resolved = pipeline.resolve_run(RunSpec(tiny_setup(), MethodSpec("ec", {"epochs": 1})))
    weights = []
    for state in (1, 2):
        torch.manual_seed(state)
        outcome, _ = pipeline.unlearn_only(resolved, tiny_refs)
        weights.append(outcome.model.state_dict())
    for name, value in weights[0].items():
        assert torch.equal(value, weights[1][name]), name
