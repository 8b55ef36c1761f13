"""Setup and Unlearn pages with an adapted model: a user's module by entry point checked
before anything trains, and methods that do not apply saying why, Run disabled."""

import pytest

from tests.app.helpers import TIMEOUT, open_setup_page, texts
from ui.state import SETUP_KEY

# Several seconds or more on 2 cores: left out of `make test-fast`.
pytestmark = pytest.mark.slow

MODULE = """
from torch import nn


def build(num_classes, in_channels):
    return nn.Sequential(nn.Conv2d(in_channels, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 8 * 8, num_classes))


def three_classes():
    return build(3, 1)
"""


@pytest.fixture
def app(tmp_path, monkeypatch):
    at = open_setup_page(tmp_path / "store", monkeypatch)
    at.selectbox(key="dataset").set_value("digits").run(timeout=TIMEOUT)
    at.selectbox(key="device").set_value("cpu").run(timeout=TIMEOUT)
    assert not at.exception
    return at


def errors(at) -> str:
    return texts(at.error)


def test_user_module_is_checked_on_the_setup_page(app, tmp_path):
    path = tmp_path / "lens_user_models.py"
    path.write_text(MODULE)
    at = app
    at.selectbox(key="model").set_value("user_module").run(timeout=TIMEOUT)
    assert not any(n.key == "width" for n in at.number_input)
    assert "model.entry_point: model 'user_module' needs 'module:function'" in errors(at)
    at.text_input(key="entry_point").input(f"{path}:three_classes").run(timeout=TIMEOUT)
    assert "model.entry_point: the model's output on a batch of 2 is (2, 3)" in errors(at)
    at.text_input(key="entry_point").input(f"{path}:build").run(timeout=TIMEOUT)
    at.text_input(key="probe_layers").input("nope").run(timeout=TIMEOUT)
    assert "model.probe_layers: the model has no module 'nope'" in errors(at)
    at.text_input(key="probe_layers").input("1").run(timeout=TIMEOUT)
    assert not at.exception and not at.error
    model = at.session_state[SETUP_KEY]["model"]
    assert model["entry_point"] == f"{path}:build" and list(model["probe_layers"]) == ["1"]
    assert len(model["source_hash"]) == 16

    at.switch_page("app_pages/unlearn.py").run(timeout=TIMEOUT)
    at.selectbox(key="method").set_value("dkvb_examples").run(timeout=TIMEOUT)
    assert not at.exception
    warning = "\n".join(str(w.value) for w in at.warning)
    assert "Does not apply to this setup's model: dkvb_examples unlearns a DKVB model" in warning
    assert at.button[0].disabled  # the form's Run button
    at.selectbox(key="method").set_value("lau").run(timeout=TIMEOUT)
    assert not at.warning and not at.button[0].disabled


def test_torchvision_model_options_on_the_setup_page(app):
    at = app
    at.selectbox(key="model").set_value("torchvision/resnet18").run(timeout=TIMEOUT)
    at.number_input(key="width").set_value(0.125)
    at.checkbox(key="small_stem").check().run(timeout=TIMEOUT)
    assert not at.exception and not at.error
    model = at.session_state[SETUP_KEY]["model"]
    assert (model["name"], model["width"], model["small_stem"]) == \
        ("torchvision/resnet18", 0.125, True)
    at.text_input(key="weights").input("/no/such/weights.safetensors").run(timeout=TIMEOUT)
    assert "model.weights: file not found" in errors(at)
    at.text_input(key="weights").input("").run(timeout=TIMEOUT)
    at.selectbox(key="precision").set_value("bf16").run(timeout=TIMEOUT)
    assert not at.exception
