"""Bad inputs through the app (Streamlit AppTest): each shows st.error (or a warning with a
count, for skipped images), never an exception, and the run stored before still loads.
Also: a whole Setup -> train -> Unlearn on a typed ImageFolder path writes nothing outside
the run store. See docs/robustness.md for the whole catalogue."""

import os
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from conftest import (accuracy_and_mia_only, assert_run_intact, imagefolder_with_corrupt_images,
                      store_with_one_run)
from test_app import TIMEOUT, choose_tiny_digits_setup, run_until, texts
from tests.app.helpers import open_setup_page
from unlearn_core import pipeline, runs
from unlearn_core.runs import RunStore

# Several seconds or more on 2 cores: left out of `make test-fast`.
pytestmark = pytest.mark.slow

APP = str(Path(__file__).resolve().parents[2] / "app.py")


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    return store_with_one_run(tmp_path_factory.mktemp("app-bad-inputs") / "store")


@pytest.fixture
def app(stored, monkeypatch):
    return open_setup_page(stored[0].root, monkeypatch)


def assert_nothing_lost(stored) -> None:
    assert [r.id for r in stored[0].list()] == [stored[1]]
    assert_run_intact(*stored)


def assert_error(at: AppTest, message: str) -> None:
    assert not at.exception, at.exception
    assert message in texts(at.error), texts(at.error)


def test_typed_dataset_roots_that_are_missing_or_a_file(app, stored, tmp_path):
    at = app
    at.selectbox(key="dataset").set_value("imagefolder").run(timeout=TIMEOUT)
    at.text_input(key="root").input(str(tmp_path / "nowhere")).run(timeout=TIMEOUT)
    assert_error(at, f"data.root: '{tmp_path / 'nowhere'}' is not a folder")
    (tmp_path / "a-file").write_text("not a folder")
    at.text_input(key="root").input(str(tmp_path / "a-file")).run(timeout=TIMEOUT)
    assert_error(at, "is not a folder")
    at.selectbox(key="dataset").set_value("cifar10").run(timeout=TIMEOUT)
    at.text_input(key="root").input(str(tmp_path / "a-file")).run(timeout=TIMEOUT)
    assert_error(at, "is a file, not a folder")
    assert not [b for b in at.button if b.key == "train"]  # nothing to train on
    assert_nothing_lost(stored)


def test_imagefolder_with_corrupt_images_shows_the_skipped_count(app, stored, tmp_path):
    root = imagefolder_with_corrupt_images(tmp_path / "images")
    at = app
    at.selectbox(key="dataset").set_value("imagefolder").run(timeout=TIMEOUT)
    at.number_input(key="image_size").set_value(8)
    at.text_input(key="root").input(str(root)).run(timeout=TIMEOUT)
    assert not at.exception and not at.error
    warnings = texts(at.warning)
    assert "skipped 3 unreadable image(s)" in warnings and "['broken']" in warnings
    assert_nothing_lost(stored)


@pytest.mark.parametrize("csv, message", [
    (b"3\nfive\n", "forget.indices: line 2"),
    (b"3\n99999\n", "forget.indices: index 99999 is out of range"),
    (b"", "forget.indices: the file holds no indices"),
    (b"\xff\xfe\x00garbage", "forget.indices"),
])
def test_malformed_index_csv_upload(app, stored, csv, message):
    at = app
    choose_tiny_digits_setup(at)
    at.radio(key="forget_kind").set_value("indices").run(timeout=TIMEOUT)
    at.file_uploader(key="forget_csv").set_value(("forget.csv", csv, "text/csv")).run(
        timeout=TIMEOUT)
    assert_error(at, message)
    assert_nothing_lost(stored)


def test_empty_and_all_class_forget_sets(app, stored):
    at = app
    choose_tiny_digits_setup(at)
    at.multiselect(key="forget_classes").set_value([]).run(timeout=TIMEOUT)
    assert_error(at, "forget.classes: kind 'classes' needs at least one class")
    at.multiselect(key="forget_classes").set_value(list(range(10))).run(timeout=TIMEOUT)
    assert_error(at, "retain set would be empty")
    assert_nothing_lost(stored)


def test_non_finite_hyperparameters_in_the_method_form(app, stored):
    at = app
    choose_tiny_digits_setup(at)
    at.switch_page("app_pages/unlearn.py").run(timeout=TIMEOUT)
    at.selectbox(key="method").set_value("ec").run(timeout=TIMEOUT)
    at.text_input(key="param-ec-layer_weights").input("nan, 1")
    at.button[0].click().run(timeout=TIMEOUT)  # the form's Run button
    assert_error(at, "method.params.layer_weights: expected a list of numbers >= 0")
    # A number field cannot hold one at all: Streamlit keeps its last finite value.
    at.selectbox(key="method").set_value("finetune").run(timeout=TIMEOUT)
    default = at.number_input(key="param-finetune-lr").value
    for value in (float("inf"), float("nan")):
        at.number_input(key="param-finetune-lr").set_value(value).run(timeout=TIMEOUT)
        assert at.number_input(key="param-finetune-lr").value == default
    assert not at.exception and "unlearn_job" not in at.session_state
    assert_nothing_lost(stored)


def test_run_store_on_a_read_only_path(monkeypatch, tmp_path):
    # Root ignores permission bits, so read-only is what os.access reports.
    monkeypatch.setattr(runs.os, "access", lambda path, mode: False)
    monkeypatch.setenv("LENS_STORE", str(tmp_path / "read-only"))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    assert_error(at, "not writable; choose a writable folder with LENS_STORE")


def _files(folder: Path, skip: Path) -> dict[str, float]:
    """Every file under `folder` outside `skip`, with its modification time."""
    found = {}
    for parent, subfolders, names in os.walk(folder):
        subfolders[:] = [s for s in subfolders if Path(parent, s) != skip]
        for name in names:
            path = Path(parent, name)
            found[str(path)] = path.stat().st_mtime
    return found


def test_a_typed_dataset_path_is_only_read_and_runs_stay_in_the_store(tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline, "evaluate", accuracy_and_mia_only)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("LENS_STORE", str(tmp_path / "store"))
    imagefolder_with_corrupt_images(tmp_path / "images")
    before = _files(tmp_path, tmp_path / "store")

    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    at.switch_page("app_pages/setup.py").run()
    at.selectbox(key="dataset").set_value("imagefolder").run(timeout=TIMEOUT)
    at.selectbox(key="device").set_value("cpu")
    at.number_input(key="image_size").set_value(8)
    at.number_input(key="epochs").set_value(1)
    at.number_input(key="batch_size").set_value(8)
    at.text_input(key="root").input("~/images/../images").run(timeout=TIMEOUT)
    assert not at.exception and not at.error
    at.button(key="train").click().run(timeout=TIMEOUT)
    run_until(at, lambda a: "Both models are ready" in texts(a.success), "training")
    at.switch_page("app_pages/unlearn.py").run(timeout=TIMEOUT)
    at.selectbox(key="method").set_value("finetune").run(timeout=TIMEOUT)
    at.number_input(key="param-finetune-epochs").set_value(1)
    at.button[0].click().run(timeout=TIMEOUT)
    run_until(at, lambda a: "is stored" in texts(a.success), "unlearning")

    [record] = RunStore(tmp_path / "store").list(status="done")
    # The typed path was resolved before it reached the spec (and its hash).
    assert record.spec["setup"]["data"]["root"] == str((tmp_path / "images").resolve())
    assert _files(tmp_path, tmp_path / "store") == before
