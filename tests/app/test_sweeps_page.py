"""The Sweeps page through AppTest on the tiny digits setup: a bad grid value is an
error naming the parameter; a 2-setting x 2-seed sweep runs in the background and shows
the grouped table (best marked, intervals) and the trade-off plot from the stored runs."""

import json
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from conftest import accuracy_and_mia_only, tiny_setup
from ui import state
from unlearn_core import pipeline
from unlearn_core.runs import RunStore
from tests.app.helpers import TIMEOUT, texts

# Several seconds or more on 2 cores: left out of `make test-fast`.
pytestmark = pytest.mark.slow

PAGE = str(Path(__file__).resolve().parents[2] / "app_pages" / "sweeps.py")


@pytest.fixture
def page(tmp_path, monkeypatch):
    # The sweep reads accuracies and MIA only; the full evaluate is tested elsewhere.
    monkeypatch.setattr(pipeline, "evaluate", accuracy_and_mia_only)
    monkeypatch.setenv("LENS_STORE", str(tmp_path / "store"))
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    at.session_state[state.SETUP_KEY] = tiny_setup().to_dict()
    at.run()
    assert not at.exception, at.exception
    at.selectbox(key="sweep_method").set_value("finetune").run()
    return at


def test_bad_grid_value_is_an_error_naming_the_parameter(page, tmp_path):
    at = page
    at.text_input(key="sweep-finetune-lr").input("0.1, fast")
    at.button[0].click().run()
    assert not at.exception
    assert "grid.lr: lr expects a number in (0, 10], got 'fast'" in texts(at.error)
    assert RunStore(tmp_path / "store").list() == []


def test_sweep_runs_in_the_background_and_shows_the_grouped_table_and_plot(page, tmp_path):
    at = page
    at.text_input(key="sweep-finetune-lr").input("0.05, 0.2")
    at.text_input(key="sweep-finetune-epochs").input("1")
    at.number_input(key="sweep_seeds").set_value(2)
    at.button[0].click().run()
    deadline = time.monotonic() + 300
    while not at.dataframe and time.monotonic() < deadline:
        assert not at.exception and not at.error, (at.exception, texts(at.error))
        time.sleep(1)
        at.run()
    assert at.dataframe, "the sweep did not finish in time"

    runs = RunStore(tmp_path / "store").list(kind="unlearn", status="done")
    assert len(runs) == 4
    table = at.dataframe[0].value
    assert list(table["setting"])[:2] == ["original (reference)", "oracle (reference)"]
    settings = table[table["rank"] != ""]
    assert sorted(settings["setting"]) == ["epochs=1, lr=0.05", "epochs=1, lr=0.2"]
    assert list(settings["rank"]) == ["1 (best)", "2"] and set(settings["seeds ok"]) == {"2/2"}
    assert all(ci.startswith("[") for ci in settings["avg gap 95% CI (pp)"])

    chart = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert chart["layout"]["title"]["text"].startswith("Sweep trade-off")
    traces = {t["name"]: t for t in chart["data"]}
    assert {"Original", "Retrain oracle", "settings (mean over seeds)"} <= set(traces)
    assert traces["Retrain oracle"]["x"] == [0.0]  # the oracle's gap to itself
    # the settings' points are their mean test accuracy over the stored runs
    points = dict(zip(traces["settings (mean over seeds)"]["text"],
                      traces["settings (mean over seeds)"]["y"]))
    for label, y in points.items():
        lr = float(label.split("lr=")[1])
        tests = [r.report["accuracy"]["unlearned"]["test"] for r in runs
                 if r.spec["method"]["params"]["lr"] == lr]
        assert y == pytest.approx(100 * sum(tests) / len(tests))

    at.radio(key="sweep_x").set_value("forget_gap").run()
    chart = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert chart["layout"]["xaxis"]["title"]["text"].startswith("forget-accuracy gap")


def test_an_unreachable_ray_address_fails_the_sweep_in_one_line_naming_the_field(
        page, tmp_path, monkeypatch):
    ray = pytest.importorskip("ray")  # the optional extra (requirements-ray.txt)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)  # as in a fresh app process
    at = page
    at.text_input(key="sweep-finetune-epochs").input("1")
    at.number_input(key="sweep_seeds").set_value(1)
    at.text_input(key="sweep_ray_address").input("127.0.0.1:1")
    at.button[0].click().run()
    deadline = time.monotonic() + TIMEOUT
    while not at.error and time.monotonic() < deadline:
        time.sleep(0.5)
        at.run()
    assert not at.exception, at.exception
    assert texts(at.error).startswith(
        "The sweep failed: --ray (Ray cluster address) '127.0.0.1:1': no answer at "
        "127.0.0.1:1: "), texts(at.error)


def test_a_sweep_of_more_than_200_runs_waits_for_the_box(page, tmp_path):
    at = page
    at.text_input(key="sweep-finetune-lr").input(
        ", ".join(str(round(0.001 * (i + 1), 4)) for i in range(101)))
    at.number_input(key="sweep_seeds").set_value(2)
    at.button[0].click().run()
    assert not at.exception, at.exception
    assert "This sweep has 202 runs (101 settings x 2 seeds; 0 already in the store)" in \
        texts(at.warning)
    assert "sweep_job" not in at.session_state  # nothing was submitted
    assert RunStore(tmp_path / "store").list() == []
