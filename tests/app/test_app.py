"""The Setup -> Unlearn -> Results path through Streamlit's AppTest, on `digits` with a
tiny budget. Figures are checked by their data, not only for the absence of errors."""

import json
import time
import tomllib
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from unlearn_core.config import DataSpec, ForgetSpec
from unlearn_core.data import load_dataset, make_split
from unlearn_core.runs import RunStore
from tests.app.helpers import TIMEOUT, chart, open_setup_page, texts, trace

APP = str(Path(__file__).resolve().parents[2] / "app.py")


def run_until(at: AppTest, done, what: str, limit: float = 180) -> AppTest:
    """Rerun (as the page's polling fragment would) until `done(at)` holds."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        at.run(timeout=TIMEOUT)
        assert not at.exception, at.exception
        if done(at):
            return at
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def choose_tiny_digits_setup(at: AppTest) -> None:
    at.selectbox(key="dataset").set_value("digits").run(timeout=TIMEOUT)
    at.selectbox(key="device").set_value("cpu")
    at.number_input(key="epochs").set_value(2)
    at.number_input(key="batch_size").set_value(32).run(timeout=TIMEOUT)


@pytest.fixture
def app(tmp_path, monkeypatch):
    return open_setup_page(tmp_path / "store", monkeypatch)


def test_setup_unlearn_results_path(app, tmp_path):
    at = app
    choose_tiny_digits_setup(at)
    assert "not trained yet" in texts(at.markdown)
    split = make_split(load_dataset(DataSpec("digits")), ForgetSpec(), seed=0).sizes()
    sizes = {m.label: m.value for m in at.metric}
    assert sizes["Forget (train)"] == f"{split['forget']:,}"
    assert sizes["Test, forget classes"] == f"{split['test_forget']:,}"

    at.button(key="train").click().run(timeout=TIMEOUT)
    run_until(at, lambda a: "Both models are ready" in texts(a.success), "training")

    at.switch_page("app_pages/unlearn.py").run(timeout=TIMEOUT)
    at.selectbox(key="method").set_value("neggrad_plus").run(timeout=TIMEOUT)
    at.number_input(key="param-neggrad_plus-epochs").set_value(3)
    at.button[0].click().run(timeout=TIMEOUT)  # the form's Run button
    run_until(at, lambda a: "is stored" in texts(a.success), "unlearning")

    store = RunStore(tmp_path / "store")
    [record] = store.list(kind="unlearn")
    assert record.status == "done" and record.spec["method"]["params"]["epochs"] == 3
    report = record.report

    at.switch_page("app_pages/results.py").run(timeout=TIMEOUT)
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    forget = report["accuracy"]["unlearned"]["forget_train"]
    assert metrics["Forget (train)"] == f"{100 * forget:.1f}%"
    speed = report["cost"]["speedup"]
    assert next(m for m in at.metric if m.label == "Time").delta == (
        f"{speed:.1f}× faster than retraining" if speed >= 1
        else f"{1 / speed:.1f}× slower than retraining")
    charts = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    per_class = next(c for c in charts if "per class" in c["layout"]["title"]["text"])
    bars = {trace["name"]: trace["y"] for trace in per_class["data"]}
    expected = [100 * v for v in report["accuracy"]["unlearned"]["per_class_test"]]
    assert bars["Unlearned"] == pytest.approx(expected)


def test_setup_shows_how_a_random_forget_set_falls_across_the_classes(app):
    at = app
    at.radio(key="forget_kind").set_value("random").run(timeout=TIMEOUT)
    at.slider(key="forget_fraction").set_value(0.2).run(timeout=TIMEOUT)
    assert not at.exception, at.exception
    spec = chart(at, "Training examples per class")
    split = make_split(load_dataset(DataSpec()), ForgetSpec("random", fraction=0.2), seed=0)
    forget = trace(spec, "Forget (train)")["y"]
    assert sum(forget) == len(split.forget)
    assert sum(count > 0 for count in forget) == 10  # spread over every class


def test_bad_setup_input_shows_an_error_not_a_traceback(app, tmp_path):
    at = app
    at.selectbox(key="dataset").set_value("digits").run(timeout=TIMEOUT)
    at.multiselect(key="forget_classes").set_value(list(range(10))).run(timeout=TIMEOUT)
    assert not at.exception
    assert "retain set would be empty" in texts(at.error)

    at.multiselect(key="forget_classes").set_value([]).run(timeout=TIMEOUT)
    assert "forget.classes" in texts(at.error)

    (tmp_path / "empty" / "cats").mkdir(parents=True)
    at.selectbox(key="dataset").set_value("imagefolder").run(timeout=TIMEOUT)
    at.text_input(key="root").input(str(tmp_path / "empty")).run(timeout=TIMEOUT)
    assert not at.exception
    assert "data.root" in texts(at.error)


def test_setup_offers_the_encoder_and_bottleneck_of_a_dkvb_model(app):
    from ui.state import SETUP_KEY
    at = app
    assert not any(s.key == "encoder" for s in at.selectbox)
    at.selectbox(key="model").set_value("dkvb").run(timeout=TIMEOUT)
    assert not at.exception
    assert at.selectbox(key="encoder").value == "small_cnn"
    at.number_input(key="keys").set_value(64).run(timeout=TIMEOUT)
    model = at.session_state[SETUP_KEY]["model"]
    assert (model["name"], model["encoder"], model["bottleneck"]["keys"]) == ("dkvb", "small_cnn", 64)
    at.checkbox(key="paper_scale").check().run(timeout=TIMEOUT)
    assert not any(n.key == "keys" for n in at.number_input)
    assert at.session_state[SETUP_KEY]["model"]["bottleneck"]["keys"] == 4096
    at.selectbox(key="model").set_value("small_cnn").run(timeout=TIMEOUT)
    assert not at.exception and not any(s.key == "encoder" for s in at.selectbox)
    assert "bottleneck" not in at.session_state[SETUP_KEY]["model"]


def test_the_shipped_config_keeps_the_script_thread_off_the_jobs():
    """A file watcher walking .venv, or a full garbage collection after each rerun of the
    twice-a-second progress fragment, each slowed app jobs 2-3x (the Tour: 853 s with the
    watcher, 233 s with the collections, 115 s without either, on 2 cores)."""
    config = tomllib.loads((Path(APP).parent / ".streamlit" / "config.toml").read_text())
    assert config["server"]["fileWatcherType"] == "none"
    assert config["runner"]["postScriptGC"] is False
