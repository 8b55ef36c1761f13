"""The Unlearn page's own-method and import sections through AppTest: an entry point to a
user's file runs and is stored; the stored run's weights, uploaded, come back as a run
with the same numbers; a bad entry point and weights of another architecture get one
line each and store nothing."""

import io as bytes_io

import pytest
import safetensors.torch
from streamlit.testing.v1 import AppTest

from test_app import APP, TIMEOUT, choose_tiny_digits_setup, run_until, texts
from unlearn_core.config import ModelSpec, SetupSpec
from unlearn_core.runs import RunStore
from unlearn_core.training import prepare

USER_METHOD = '''
import torch
import torch.nn.functional as F


def retain_pass(model, forget_loader, retain_loader, lr=0.02):
    """One SGD pass on the retain data."""
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    for x, y in retain_loader:
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    return model
'''


def upload(at: AppTest, name: str, data: bytes) -> None:
    at.file_uploader(key="import-weights").set_value((name, data, "application/octet-stream"))
    at.run(timeout=TIMEOUT)


@pytest.mark.slow
def test_own_method_then_its_weights_imported(tmp_path, monkeypatch):
    monkeypatch.setenv("LENS_STORE", str(tmp_path / "store"))
    module = tmp_path / "my_unlearning.py"
    module.write_text(USER_METHOD)
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    at.switch_page("app_pages/setup.py").run()
    choose_tiny_digits_setup(at)
    at.switch_page("app_pages/unlearn.py").run(timeout=TIMEOUT)
    store = RunStore(tmp_path / "store")

    at.text_input(key="own-entry").set_value("no_such_module_xyz:unlearn").run(timeout=TIMEOUT)
    assert "method.name: cannot import module 'no_such_module_xyz'" in texts(at.error)

    at.text_input(key="own-entry").set_value(f"{module}:retain_pass").run(timeout=TIMEOUT)
    assert not at.error
    assert [n.label for n in at.number_input if n.key.endswith("retain_pass-lr")] == ["lr"]
    next(b for b in at.button if b.label == "Run your method").click().run(timeout=TIMEOUT)
    run_until(at, lambda a: "is stored" in texts(a.success), "the user method's run")
    [own] = store.list(kind="unlearn", status="done")
    assert own.spec["method"]["name"] == f"{module}:retain_pass"
    assert own.report["layers"]["verdict"]["text"]

    # Weights of another architecture: one line naming the tensors, nothing recorded.
    setup = SetupSpec.from_dict(own.spec["setup"])
    other = prepare(SetupSpec.from_dict({**setup.to_dict(), "model": ModelSpec(
        "resnet18", width=0.25).to_dict()})).new_model()
    buffer = bytes_io.BytesIO(safetensors.torch.save(
        {k: v.contiguous() for k, v in other.state_dict().items()}))
    upload(at, "resnet.safetensors", buffer.getvalue())
    at.button(key="import-run").click().run(timeout=TIMEOUT)
    assert "checkpoint resnet.safetensors does not fit this model" in texts(at.error)
    assert len(store.list()) == 1

    upload(at, "mine.safetensors", safetensors.torch.save(store.load_weights(own.id)))
    at.button(key="import-run").click().run(timeout=TIMEOUT)
    run_until(at, lambda a: len(store.list(kind="unlearn", status="done")) == 2, "the import")
    imported = store.list(kind="unlearn", status="done")[0]
    assert imported.label.startswith("Imported mine.safetensors")
    for section in ("accuracy", "mia", "layers"):
        assert imported.report[section] == own.report[section], section
