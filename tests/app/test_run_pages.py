"""The run picker past RUNS_PER_PAGE runs: a page-number input chooses the page (newest
first) and the selected run stays selected, first in the box, on every page."""

from streamlit.testing.v1 import AppTest

from tests.app.helpers import TIMEOUT
from ui import widgets
from unlearn_core.runs import RunStore


def _picker_page():
    from ui import widgets
    record = widgets.run_picker()
    import streamlit as st
    st.write(f"picked {record.id}")


def _store_with_runs(root, n):
    store = RunStore(root)
    ids = []
    for i in range(n):
        run_id = store.create("unlearn", {"method": {"name": "finetune"}}, label=f"run {i}")
        store.finish(run_id, {"method": {"title": "Finetune", "params": {}}})
        ids.append(run_id)
    return ids[::-1]  # newest first, as the picker lists them


def test_the_picker_pages_past_runs_per_page_and_keeps_the_selected_run(tmp_path, monkeypatch):
    monkeypatch.setattr(widgets, "RUNS_PER_PAGE", 3)
    newest_first = _store_with_runs(tmp_path / "store", 7)
    monkeypatch.setenv("LENS_STORE", str(tmp_path / "store"))
    at = AppTest.from_function(_picker_page, default_timeout=TIMEOUT)
    at.run()
    assert not at.exception, at.exception
    assert at.selectbox(key=widgets.RUN_PICKER_KEY).options == [
        f"run {6 - i} · {run_id}" for i, run_id in enumerate(newest_first[:3])]
    page = at.number_input(key="run-picker-page")
    assert (page.min, page.max) == (1, 3)

    at.selectbox(key=widgets.RUN_PICKER_KEY).set_value(newest_first[1]).run()
    at.number_input(key="run-picker-page").set_value(3).run()
    options = at.selectbox(key=widgets.RUN_PICKER_KEY).options
    assert options == [f"run 5 · {newest_first[1]}", f"run 0 · {newest_first[6]}"]
    assert at.selectbox(key=widgets.RUN_PICKER_KEY).value == newest_first[1]
    assert f"picked {newest_first[1]}" in [m.value for m in at.markdown]


def test_up_to_runs_per_page_there_is_no_page_input(tmp_path, monkeypatch):
    monkeypatch.setattr(widgets, "RUNS_PER_PAGE", 3)
    _store_with_runs(tmp_path / "store", 3)
    monkeypatch.setenv("LENS_STORE", str(tmp_path / "store"))
    at = AppTest.from_function(_picker_page, default_timeout=TIMEOUT)
    at.run()
    assert not at.exception, at.exception
    assert len(at.selectbox(key=widgets.RUN_PICKER_KEY).options) == 3
    assert not at.number_input
