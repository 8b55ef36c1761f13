"""The Tour page through AppTest, opened through app.py (which lists it first, with the
presenter toggle in the sidebar), on a store of fabricated tour runs
(tests/tour_fixtures.py): the story shows the stored numbers, a missing method's step says
it is not available, the step links open the full page on the step's run, and
`?present=1` turns presenter mode on."""

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tour_fixtures import ORACLE, numbers, store_tour
from ui import presenter, state
from unlearn_core import tour, tour_backdoor
from unlearn_core.config import SetupSpec
from unlearn_core.data import load_dataset, make_split
from unlearn_core.figures import format_percent as pct
from unlearn_core.runs import RunStore
from tests.app.helpers import TIMEOUT, chart_specs, texts, trace

APP = str(Path(__file__).resolve().parents[2] / "app.py")
PAGE = "app_pages/tour.py"
BASE = SetupSpec()  # the preset the page shows: the embedded default


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("LENS_STORE", str(tmp_path / "store"))
    return RunStore(tmp_path / "store")


def open_tour(present: bool = False) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    if present:
        at.query_params[presenter.QUERY_PARAMETER] = "1"
    at.run()
    at.switch_page(PAGE).run()
    assert not at.exception, at.exception
    return at


def test_the_story_shows_the_stored_numbers(store):
    ids = store_tour(store, BASE)
    at = open_tour()
    assert [h.value for h in at.subheader] == [
        f"{step.number}. {step.title}" for step in tour.tour_story(store, BASE)] + [
        f"{tour_backdoor.NUMBER}. {tour_backdoor.TITLE}"]
    story = texts(at.markdown)
    for name in (*tour.BASE_METHODS, tour.KEY_METHOD):
        assert f"{tour.SHORT_NAMES[name]} {pct(numbers(name)['forget'])}" in story
    assert f"The target is what the retrain oracle scores, {pct(ORACLE['mia'])}" in story
    assert "with 0 gradient steps" in story
    # Every step is there; the backdoor chapter has its own button and has not run.
    assert [i.value for i in at.info] == [tour_backdoor.backdoor_step(store).text]
    assert at.button(key="tour-backdoor-start").label == "Start the backdoor chapter"
    assert len(at.get("plotly_chart")) == 7  # one per step, two for DEL and DKVB
    assert not [b for b in at.button if b.key == "tour-start"]  # nothing left to run

    at.button(key="tour-open-2-Layers").click().run()
    assert not at.exception, at.exception
    assert at.session_state[state.SELECTED_RUN_KEY] == ids["finetune"]
    assert at.title[0].value == "Inside the layers"


def test_a_missing_method_says_it_is_not_available(store):
    store_tour(store, BASE, skip=(tour.KEY_METHOD, "ec"))
    at = open_tour()
    assert not at.exception
    assert "DKVB: not available yet: DKVB has not run yet: start the tour." in texts(at.markdown)
    assert "Not available yet: EC has not run yet: start the tour." in texts(at.info)
    assert at.button(key="tour-start").label == "Run the rest of the tour"


def test_an_empty_store_offers_the_one_button(store):
    at = open_tour()
    assert at.button(key="tour-start").label == "Start the tour"
    # the six steps are previewed by their titles, not six "not available" boxes; only
    # the backdoor chapter, which has its own button, says it has not run
    preview = next(m.value for m in at.markdown if "The story, once the tour has run" in m.value)
    assert "1. Every method forgets the class" in preview
    assert "6. What an attacker still sees" in preview
    runs = at.dataframe[0].value  # the tour's runs, in the expander
    assert list(runs["method"]) == [run.label for run in tour.tour_runs(store).values()]
    assert set(runs["status"]) == {"not_run"}
    assert len(at.info) == 1 and "Not available yet" in at.info[0].value


def test_presenter_mode_from_the_query_parameter(store):
    store_tour(store, BASE)
    at = open_tour(present=True)
    assert at.toggle(key=presenter.KEY).value is True
    assert any("<style>" in str(m.value) for m in at.markdown)
    assert not at.expander  # the optional run list and the explainers are left out
    # Charts get larger text; a long title of two charts side by side is broken into
    # lines that fit half the row, with a top margin that holds them.
    specs = chart_specs(at)
    assert all(spec["layout"]["font"]["size"] == presenter.FIGURE_FONT_SIZE for spec in specs)
    wrapped = [spec["layout"] for spec in specs if "<br>" in spec["layout"]["title"]["text"]]
    assert wrapped  # step 5's two charts
    half = presenter.ROW_TITLE_CHARS_PRESENTING // 2
    for layout in wrapped:
        lines = layout["title"]["text"].split("<br>")
        assert all(len(line) <= half for line in lines)
        assert layout["margin"]["t"] >= presenter.TITLE_LINE_PX_PRESENTING * len(lines)
    # Every page's charts, not only the Tour's (they all draw through presenter.chart).
    for page in ("app_pages/results.py", "app_pages/layers.py", "app_pages/privacy.py"):
        at.switch_page(page).run()
        assert not at.exception, at.exception
        assert chart_specs(at) and all(spec["layout"]["font"]["size"] ==
                                       presenter.FIGURE_FONT_SIZE for spec in chart_specs(at))
    # The fabricated runs store no per-example scores: said, not a KeyError.
    assert "hold no per-example scores" in texts(at.info)
    at.switch_page(PAGE).run()
    at.toggle(key=presenter.KEY).set_value(False).run()
    assert not any("<style>" in str(m.value) for m in at.markdown)
    assert [e.label for e in at.expander] == ["The tour's runs"]


def test_before_the_first_run_the_tour_shows_the_data_it_will_use(store):
    at = open_tour()
    [spec] = chart_specs(at)  # the only figure before the tour runs
    dataset = load_dataset(BASE.data)
    split = make_split(dataset, BASE.forget, BASE.seed)
    assert spec["layout"]["title"]["text"] == (f"Training examples per class<br>"
                                               f"{len(split.forget):,} to forget, "
                                               f"{len(split.retain):,} to keep")
    forget, kept = (trace(spec, name)["y"] for name in ("Forget (train)", "Retain (train)"))
    forgotten_class, = BASE.forget.classes
    assert forget[forgotten_class] == len(split.forget) and kept[forgotten_class] == 0
    assert sum(forget) == len(split.forget) and sum(kept) == len(split.retain)
