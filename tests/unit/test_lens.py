"""The notebook API (unlearn_core.lens), a user's own method and weights unlearned
outside the lens: each gets the full report and every view; bad input is refused with a
message naming the parameter, nothing stored."""

import copy

import numpy as np
import plotly.graph_objects as go
import pytest
import safetensors.torch
import torch
import torch.nn.functional as F

from conftest import tiny_setup
from unlearn_core import Lens
from unlearn_core.config import ModelSpec
from unlearn_core.data import load_dataset
from unlearn_core.data import user as user_data
from unlearn_core.errors import UserError
from unlearn_core.methods import Method, Param
from unlearn_core.pipeline import import_run, train_references
from unlearn_core.runs import RunStore

# Several seconds or more on 2 cores: left out of `make test-fast`.
pytestmark = pytest.mark.slow

TINY = tiny_setup()


def tiny_lens(store) -> Lens:
    """tiny_setup() through the notebook API, so it reuses the session's references."""
    return Lens("small_cnn", data="digits", forget=0, train={"epochs": 3, "batch_size": 32},
                device="cpu", store=store, progress=False)


def retain_steps(model, retain_loader, lr):
    """One pass of plain SGD on the retain data: the same steps inside (as a user method)
    and outside the lens (a plain PyTorch loop)."""
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    for x, y in retain_loader:
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    return model


def finetune_on_retain(model, forget_loader, retain_loader, lr=0.02):
    """Plain SGD on the retain data, one pass."""
    return retain_steps(model, retain_loader, lr)


def returns_a_number(model, forget_loader, retain_loader):
    return 0.5


def described(model, forget_loader, retain_loader, steps=1):
    return model


described.params = (Param("steps", "int", 1, "how many", low=1, high=3),)


class ReturnsTheModel(Method):
    title = "returns the model"

    def unlearn(self, ctx):
        return ctx.model


def test_tiny_lens_is_tiny_setup(shared_store):
    assert tiny_lens(shared_store).setup == TINY


def assert_full_report(run) -> None:
    report = run.report()
    assert {"accuracy", "gap_to_oracle", "cost", "layers", "mia"} <= set(report)
    assert report["layers"]["verdict"]["kind"]
    assert report["layers"]["cka"] and report["mia"]["efficacy"]
    shown = run.figures
    for figure in (shown.accuracy(), shown.per_class(), shown.layers(), shown.depth(),
                   shown.cka_matrix(), shown.privacy(), shown.scores(),
                   shown.distinguishability(), shown.embeddings()):
        assert isinstance(figure, go.Figure) and figure.data
    assert "forget_train" in report._repr_markdown_()


def test_user_function_and_the_same_steps_outside_give_equal_full_reports(shared_store, tmp_path):
    lens = tiny_lens(shared_store)
    inside = lens.unlearn(finetune_on_retain, lr=0.02)
    assert_full_report(inside)
    method = inside.spec.method
    assert method.name == f"{__name__}:finetune_on_retain"
    assert method.params == {"lr": 0.02} and len(method.source_hash) == 16
    assert inside.id in [r.id for r in lens.runs()]

    # The same steps in a plain PyTorch loop, saved weights-only, imported.
    model = retain_steps(copy.deepcopy(lens.original), lens.loader("retain", shuffle=True), 0.02)
    path = tmp_path / "unlearned.pt"
    torch.save(model.state_dict(), path)
    outside = lens.import_checkpoint(path, seconds=1.5)
    assert_full_report(outside)
    inside_report, outside_report = inside.report(), outside.report()
    for section in ("accuracy", "gap_to_oracle", "mia", "layers"):
        assert outside_report[section] == inside_report[section], section
    assert outside_report["cost"]["seconds"] == 1.5 and outside_report["cost"]["ran_elsewhere"]
    assert outside.spec.method.name.startswith("imported:")
    # The same weights as safetensors are the same run identity (a hash of the tensors).
    again = tmp_path / "unlearned.safetensors"
    safetensors.torch.save_file(model.state_dict(), str(again))
    from unlearn_core.methods.user import state_dict_digest
    assert outside.spec.method.name == "imported:" + state_dict_digest(
        safetensors.torch.load_file(str(again)))


def test_bad_user_methods_are_refused_before_anything_is_stored(shared_store):
    lens = tiny_lens(shared_store)
    before = len(shared_store.list())
    with pytest.raises(UserError, match="method.name: cannot import module 'no_such_module_xyz'"):
        lens.unlearn("no_such_module_xyz:unlearn")
    with pytest.raises(UserError, match="method.name: .* has no attribute 'nothing_here'"):
        lens.unlearn(f"{__file__}:nothing_here")
    with pytest.raises(UserError, match="takes 1 positional argument"):
        lens.unlearn(lambda model: model)
    with pytest.raises(UserError, match=r"method.params: .* no parameter\(s\) \['lr'\]"):
        lens.unlearn(described, lr=0.1)
    with pytest.raises(UserError, match=r"method.params.steps: expected an integer in \[1, 3\]"):
        lens.unlearn(described, steps=5)
    assert len(shared_store.list()) == before


def test_a_function_returning_the_wrong_type_fails_its_run_and_stores_nothing(shared_store):
    lens = tiny_lens(shared_store)
    with pytest.raises(UserError, match="returned float; expected the unlearned model"):
        lens.unlearn(returns_a_number)
    failed = shared_store.list()[0]
    assert failed.status == "failed" and "returned float" in failed.error
    assert not failed.path.exists()
    with pytest.raises(UserError, match=r"ReturnsTheModel.unlearn returned \w+; expected an "
                                        r"unlearn_core.methods.Outcome"):
        lens.unlearn(ReturnsTheModel)


def test_an_interrupted_user_function_is_recorded_cancelled(shared_store):
    def interrupted(model, forget_loader, retain_loader):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        tiny_lens(shared_store).unlearn(interrupted)
    record = shared_store.list()[0]
    assert record.status == "cancelled" and not record.path.exists()


def test_entry_point_method_from_a_file_runs_through_the_cli(shared_store, monkeypatch, capsys):
    from conftest import TINY_CLI_ARGS, accuracy_and_mia_only
    from unlearn_core import cli, pipeline
    monkeypatch.setattr(pipeline, "evaluate", accuracy_and_mia_only)
    code = cli.main(["--store", str(shared_store.root), "--json", "unlearn", "--method",
                     f"{__file__}:finetune_on_retain", "--param", "lr=0.01", *TINY_CLI_ARGS])
    assert code == 0
    run = shared_store.list()[0]
    assert run.spec["method"]["name"] == f"{__file__}:finetune_on_retain"
    assert run.spec["method"]["params"] == {"lr": 0.01} and run.spec["method"]["source_hash"]
    code = cli.main(["--store", str(shared_store.root), "unlearn", "--method",
                     "no_such_module_xyz:fn", *TINY_CLI_ARGS])
    assert code == 2
    assert "method.name: cannot import module 'no_such_module_xyz'" in capsys.readouterr().err


def test_import_run_cli_and_checkpoints_that_do_not_fit(shared_store, tmp_path, monkeypatch,
                                                        capsys):
    from conftest import TINY_CLI_ARGS, accuracy_and_mia_only
    from unlearn_core import cli, pipeline
    monkeypatch.setattr(pipeline, "evaluate", accuracy_and_mia_only)
    refs = train_references(TINY, shared_store)
    good = tmp_path / "good.safetensors"
    safetensors.torch.save_file({k: v.contiguous() for k, v in
                                 refs.oracle.model.state_dict().items()}, str(good))
    assert cli.main(["--store", str(shared_store.root), "import-run", "--checkpoint", str(good),
                     *TINY_CLI_ARGS]) == 0
    assert "Imported good.safetensors" in capsys.readouterr().out
    # Weights of another architecture: refused naming the tensors, nothing recorded.
    before = len(shared_store.list())
    other = tiny_setup(model=ModelSpec("resnet18", width=0.25))
    foreign = tmp_path / "resnet.safetensors"
    from unlearn_core.training import prepare
    safetensors.torch.save_file(prepare(other).new_model().state_dict(), str(foreign))
    assert cli.main(["--store", str(shared_store.root), "import-run", "--checkpoint", str(foreign),
                     *TINY_CLI_ARGS]) == 2
    err = capsys.readouterr().err
    assert "does not fit this model: missing keys" in err and "Traceback" not in err
    with pytest.raises(UserError, match="shape mismatch at"):
        wrong = dict(refs.oracle.model.state_dict())
        key = next(k for k, v in wrong.items() if v.dim() == 4)
        wrong[key] = torch.zeros(1, *wrong[key].shape[1:])
        import_run(TINY, wrong, shared_store)
    pickled = tmp_path / "pickled.pt"
    torch.save({"model": refs.oracle.model}, pickled)  # a whole module: needs unpickling
    assert cli.main(["--store", str(shared_store.root), "import-run", "--checkpoint", str(pickled),
                     *TINY_CLI_ARGS]) == 2
    assert "only weights-only checkpoints are accepted" in capsys.readouterr().err
    assert cli.main(["--store", str(shared_store.root), "import-run", "--checkpoint", str(good),
                     "--seconds", "-1", *TINY_CLI_ARGS]) == 2
    assert "seconds: expected" in capsys.readouterr().err
    assert len(shared_store.list()) == before


class Pairs(torch.utils.data.Dataset):
    """A plain torch Dataset of (float image in [0, 1], int label)."""

    def __init__(self, images, labels, scale=255.0):
        self.images, self.labels, self.scale = images, labels, scale

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        return self.images[index].float() / self.scale, int(self.labels[index])


def test_a_users_torch_dataset_is_fingerprinted_kept_and_restored(tmp_path):
    digits = load_dataset(TINY.data)
    train = Pairs(digits.train.images, digits.train.labels)
    test = Pairs(digits.test.images, digits.test.labels)
    store = RunStore(tmp_path / "store")
    lens = Lens("small_cnn", train, test, forget=[1], epochs=1, device="cpu", store=store,
                progress=False)
    name = lens.setup.data.name
    assert name.startswith("user-") and len(name) == len("user-") + 16
    # Same content, same name; other content, another one.
    assert Lens("small_cnn", train, test, store=store, progress=False).setup.data.name == name
    fewer = Pairs(digits.train.images[:-1], digits.train.labels[:-1])
    assert Lens("small_cnn", fewer, test, store=store, progress=False).setup.data.name != name
    given = load_dataset(lens.setup.data)
    assert torch.equal(given.train.images, digits.train.images)
    assert given.classes == tuple(str(c) for c in range(10))
    # Another process (the app) has not got it in memory: it comes from the store's cache.
    user_data._GIVEN.pop(name)
    with pytest.raises(UserError, match=f"data.name: {name} is a dataset given from Python"):
        load_dataset(lens.setup.data)
    refs = train_references(lens.setup, store)
    assert torch.equal(refs.experiment.dataset.train.images, digits.train.images)
    # The app registers its store as a source, so its pages' own data loads find it too.
    user_data._GIVEN.pop(name)
    user_data.add_source(store)
    try:
        assert torch.equal(load_dataset(lens.setup.data).test.labels, digits.test.labels)
    finally:
        user_data._SOURCES.remove(store)


def test_bad_user_datasets_say_what_is_wrong():
    images = torch.randint(1, 256, (4, 1, 8, 8), dtype=torch.uint8)
    labels = torch.tensor([0, 1, 0, 1])
    good = Pairs(images, labels)
    with pytest.raises(UserError, match=r"train_set\[0\]: float pixel values span .*drop a "
                                        r"Normalize transform"):
        user_data.from_torch(Pairs(images, labels, scale=-1.0), good)
    with pytest.raises(UserError, match="square images"):
        user_data.from_torch(Pairs(torch.zeros(4, 1, 8, 6, dtype=torch.uint8), labels), good)
    with pytest.raises(UserError, match=r"test_set\[1\]: the label is -1"):
        user_data.from_torch(good, Pairs(images, torch.tensor([0, -1, 0, 1])))
    with pytest.raises(UserError, match="classes: 1 class name"):
        user_data.from_torch(good, good, classes=["only one"])
    with pytest.raises(UserError, match="test_set: give both"):
        Lens("small_cnn", good, progress=False)
    with pytest.raises(UserError, match="forget: expected a class index"):
        Lens("small_cnn", forget="zero", progress=False)
    assert np.array_equal(load_dataset(user_data.from_torch(good, good)).train.labels, labels)


class TinyNet(torch.nn.Module):
    """A user's classifier, defined at the top level (so it can be built again)."""

    def __init__(self, num_classes=10, in_channels=1):
        super().__init__()
        self.features = torch.nn.Sequential(torch.nn.Conv2d(in_channels, 8, 3, padding=1),
                                            torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(2))
        self.head = torch.nn.Linear(32, num_classes)

    def forward(self, x):
        return self.head(self.features(x).flatten(1))


def test_an_nn_module_goes_through_the_adapter_and_runs(tmp_path, monkeypatch):
    from conftest import accuracy_and_mia_only
    from unlearn_core import pipeline
    monkeypatch.setattr(pipeline, "evaluate", accuracy_and_mia_only)
    store = RunStore(tmp_path / "store")
    lens = Lens(TinyNet(), data="digits", forget=0, epochs=1, device="cpu", store=store,
                progress=False)
    model = lens.setup.model
    assert model.name == "user_module" and model.entry_point == f"{__name__}:TinyNet"
    assert len(model.source_hash) == 16
    assert lens.original.probe_layers  # adapted: probe layers and a head
    run = lens.unlearn(finetune_on_retain)
    assert run.record.status == "done" and run.spec.setup.model == model

    class Local(TinyNet):
        pass

    with pytest.raises(UserError, match="model: class .*Local is defined inside a function"):
        Lens(Local(), data="digits", store=store, progress=False)
