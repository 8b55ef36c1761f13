import pytest
import torch

from conftest import tiny_setup
from unlearn_core import training
from unlearn_core.errors import Cancelled, DivergedError, UserError
from unlearn_core.io import save_state_dict
from unlearn_core.progress import Progress
from unlearn_core.runs import RunStore
from unlearn_core.training import (get_oracle, get_original, import_original, prepare,
                                   reference_key, resolve_device)


def test_auto_device_is_cpu_here_and_missing_devices_are_refused():
    if not torch.cuda.is_available():
        assert resolve_device("auto").type == "cpu"
        with pytest.raises(UserError, match="device: cuda is not available"):
            resolve_device("cuda")


def test_original_learns_and_the_oracle_never_sees_the_forget_set(tiny_refs):
    assert tiny_refs.original.meta["test_accuracy"] > 0.9
    split = tiny_refs.experiment.split
    assert tiny_refs.oracle.meta["train_size"] == len(split.retain)
    assert tiny_refs.original.meta["train_size"] == len(split.retain) + len(split.forget)


def test_second_call_loads_from_the_cache_without_training(tmp_path, monkeypatch):
    store = RunStore(tmp_path)
    exp = prepare(tiny_setup(train=training.TrainSpec(epochs=1, batch_size=64)))
    first = get_original(exp, store, Progress())
    calls = []
    monkeypatch.setattr(training, "train_classifier", lambda *a, **k: calls.append(a))
    second = get_original(exp, store, Progress())
    assert calls == []
    assert second.meta == first.meta
    for a, b in zip(first.model.state_dict().values(), second.model.state_dict().values()):
        assert torch.equal(a.cpu(), b.cpu())


def test_divergence_raises_instead_of_returning_a_nan_model():
    exp = prepare(tiny_setup())
    model = exp.new_model()
    loader = exp.loader("train", shuffle=True)
    steps = []

    def exploding_loss(batch):
        steps.append(1)
        loss = torch.nn.functional.cross_entropy(model(batch[0]), batch[1])
        return loss * float("inf") if len(steps) == 3 else loss

    optimizer = training.sgd(model.parameters(), lr=0.01)
    with pytest.raises(DivergedError, match="epoch 1; lower the learning rate"):
        training.fit(model, lambda: loader, exploding_loss, optimizer, epochs=2, progress=Progress())
    assert len(steps) == 3


def test_cancel_stops_training_at_the_next_step(tmp_path):
    exp = prepare(tiny_setup())
    progress = Progress()
    progress.cancel()
    with pytest.raises(Cancelled):
        get_oracle(exp, RunStore(tmp_path), progress)
    assert not RunStore(tmp_path).cache_has(reference_key(exp.spec, "oracle"))


def test_import_original_accepts_matching_weights(tmp_path, tiny_refs):
    path = tmp_path / "mine.safetensors"
    save_state_dict(path, tiny_refs.original.model.state_dict())
    store = RunStore(tmp_path / "store")
    spec = import_original(tiny_setup(), store, str(path))
    assert spec.original.startswith("imported:")
    loaded = get_original(prepare(spec), store, Progress())
    assert loaded.meta["imported_from"] == str(path)
    assert loaded.meta["test_accuracy"] == pytest.approx(tiny_refs.original.meta["test_accuracy"])


def test_import_original_refuses_corrupt_and_foreign_checkpoints(tmp_path):
    store = RunStore(tmp_path / "store")
    corrupt = tmp_path / "notes.safetensors"
    corrupt.write_text("these are not weights")
    with pytest.raises(UserError, match="not a valid safetensors file"):
        import_original(tiny_setup(), store, str(corrupt))
    foreign = tmp_path / "other.safetensors"
    save_state_dict(foreign, {"fc.weight": torch.zeros(3, 3)})
    with pytest.raises(UserError, match="does not fit this model"):
        import_original(tiny_setup(), store, str(foreign))
    assert list((tmp_path / "store" / "cache").iterdir()) == []


def test_an_imported_original_missing_from_the_cache_is_a_clear_error(tmp_path):
    spec = tiny_setup(original="imported:" + "0" * 16)
    with pytest.raises(UserError, match="import it again"):
        get_original(prepare(spec), RunStore(tmp_path), Progress())


def test_models_follow_their_seed_while_other_threads_build_models():
    import threading

    exp = prepare(tiny_setup())
    expected = {seed: exp.new_model(seed=seed).state_dict() for seed in (1, 2)}
    built: dict[int, list] = {1: [], 2: []}

    def build(seed):
        for _ in range(20):
            built[seed].append(exp.new_model(seed=seed).state_dict())

    threads = [threading.Thread(target=build, args=(seed,)) for seed in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for seed, states in built.items():
        assert all(torch.equal(state[name], expected[seed][name])
                   for state in states for name in state), seed
    # and a build leaves the global stream where it was
    torch.manual_seed(7)
    before = torch.rand(3)
    torch.manual_seed(7)
    exp.new_model(seed=1)
    assert torch.equal(torch.rand(3), before)
