"""The backdoor scenario in the app: Setup offers it and shows the poisoned examples
beside their clean originals; Results and Layers show a poison run's backdoor numbers."""

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import tiny_setup
from unlearn_core.config import ForgetSpec, MethodSpec, PoisonSpec, RunSpec
from unlearn_core.pipeline import run_unlearning
from unlearn_core.runs import RunStore
from tests.app.helpers import TIMEOUT, texts

# Several seconds each on 2 cores: left out of `make test-fast`.
pytestmark = pytest.mark.slow

APP = str(Path(__file__).resolve().parents[2] / "app.py")


@pytest.fixture
def app(tmp_path, monkeypatch):
    monkeypatch.setenv("LENS_STORE", str(tmp_path / "store"))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    return at


def test_setup_offers_a_backdoor_and_shows_poisoned_pairs(app):
    at = app.switch_page("app_pages/setup.py").run()
    at.selectbox(key="dataset").set_value("digits").run()
    at.radio(key="forget_kind").set_value("poison").run()
    assert not at.exception
    captions = [image.caption for element in at.get("image") for image in element.proto.imgs]
    assert any(c.startswith("poisoned → 0") for c in captions), captions
    at.number_input(key="poison_patch_size").set_value(8).run()
    assert not at.exception
    assert "forget.poison.patch_size" in texts(at.error)


def test_results_and_layers_show_the_backdoor(app, tmp_path):
    store = RunStore(tmp_path / "store")
    spec = RunSpec(tiny_setup(forget=ForgetSpec("poison", poison=PoisonSpec(fraction=0.1))),
                   MethodSpec("finetune"))
    run_id = run_unlearning(spec, store)
    poison = store.get(run_id).report["poison"]

    at = app.switch_page("app_pages/results.py").run()
    assert not at.exception
    assert "The backdoor" in texts(at.subheader)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["ASR, unlearned"] == f"{100 * poison['asr']['unlearned']:.1f}%"
    verdicts = texts(at.error) + texts(at.warning) + texts(at.success) + texts(at.info)
    assert poison["verdict"]["text"] in verdicts

    at.switch_page("app_pages/layers.py").run()
    assert not at.exception
    charts = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    readout = next(c for c in charts if c["layout"]["title"]["text"].startswith("Trigger readout"))
    lines = {trace["name"]: trace["y"] for trace in readout["data"]}
    assert lines["Unlearned"] == pytest.approx(
        [None if v is None else 100 * v for v in poison["readout"]["unlearned"]])
