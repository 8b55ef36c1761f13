"""The Setup page imports an original or an oracle trained elsewhere (the CLI's
--original-checkpoint / --oracle-checkpoint, in the app): weights of the setup's
architecture become that reference of the setup; weights of another architecture, or an
oracle for a setup that asks for an independent one, get one line and import nothing."""


import pytest
import safetensors.torch
import torch
from streamlit.testing.v1 import AppTest

from test_app import APP, TIMEOUT, choose_tiny_digits_setup, run_until, texts
from ui import state
from unlearn_core.config import ModelSpec, SetupSpec
from unlearn_core.runs import RunStore
from unlearn_core.training import prepare, reference_key

pytestmark = pytest.mark.slow  # a few seconds of AppTest reruns and one import


def weights_bytes(model: torch.nn.Module) -> bytes:
    return safetensors.torch.save({k: v.contiguous() for k, v in model.state_dict().items()})


def upload(at: AppTest, role: str, name: str, data: bytes) -> None:
    at.file_uploader(key=f"reference-upload-{role}").set_value(
        (name, data, "application/octet-stream"))
    at.run(timeout=TIMEOUT)


def current_setup(at: AppTest) -> SetupSpec:
    return SetupSpec.from_dict(at.session_state[state.SETUP_KEY])


def test_an_oracle_trained_elsewhere_becomes_the_setups_oracle(tmp_path, monkeypatch):
    monkeypatch.setenv("LENS_STORE", str(tmp_path / "store"))
    store = RunStore(tmp_path / "store")
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    at.switch_page("app_pages/setup.py").run()
    choose_tiny_digits_setup(at)
    setup = current_setup(at)
    assert setup.oracle == "trained"

    # Another architecture: one line naming the upload; nothing cached, nothing submitted.
    other = prepare(SetupSpec.from_dict({**setup.to_dict(), "model": ModelSpec(
        "resnet18", width=0.25).to_dict()})).new_model()
    upload(at, "oracle", "resnet.safetensors", weights_bytes(other))
    at.button(key="reference-import-oracle").click().run(timeout=TIMEOUT)
    assert "checkpoint resnet.safetensors does not fit this model" in texts(at.error)
    assert "reference_import_job" not in at.session_state
    assert not list((tmp_path / "store").glob("cache/*"))

    # The setup's architecture, trained "elsewhere" (here: a model of it, seeded).
    torch.manual_seed(3)
    mine = prepare(setup).new_model()
    upload(at, "oracle", "my-oracle.safetensors", weights_bytes(mine))
    at.button(key="reference-import-oracle").click().run(timeout=TIMEOUT)
    run_until(at, lambda a: "imported from `my-oracle.safetensors`" in texts(a.markdown),
              "the oracle's import")
    imported = current_setup(at)
    assert imported.oracle.startswith("imported:") and imported.original == "trained"
    assert store.cache_has(reference_key(imported, "oracle"))
    state_dict, meta = store.cache_get(reference_key(imported, "oracle"))
    assert meta["imported_from"] == "my-oracle.safetensors"
    for name, value in mine.state_dict().items():
        assert torch.equal(state_dict[name], value), name
    assert "**Original**: not trained yet" in texts(at.markdown)

    # Another forget set: the oracle was imported for class 0 only, so it does not apply.
    at.multiselect(key="forget_classes").set_value([1]).run(timeout=TIMEOUT)
    assert current_setup(at).oracle == "trained"
    at.multiselect(key="forget_classes").set_value([0]).run(timeout=TIMEOUT)
    assert current_setup(at).oracle == imported.oracle

    at.button(key="reference-drop-oracle").click().run(timeout=TIMEOUT)
    at.run(timeout=TIMEOUT)
    assert current_setup(at).oracle == "trained"


def test_an_oracle_for_an_independent_initialisation_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("LENS_STORE", str(tmp_path / "store"))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    at.switch_page("app_pages/setup.py").run()
    choose_tiny_digits_setup(at)
    at.selectbox(key="oracle_init").set_value("independent").run(timeout=TIMEOUT)
    upload(at, "oracle", "oracle.safetensors",
           weights_bytes(prepare(current_setup(at)).new_model()))
    at.button(key="reference-import-oracle").click().run(timeout=TIMEOUT)
    assert "Oracle weights: an imported oracle has its own initialisation" in texts(at.error)
    assert "reference_import_job" not in at.session_state
