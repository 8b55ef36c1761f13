"""The Compare page through AppTest on two real tiny runs (digits): the table and its
filters, the trade-off scatter, runs A and B side by side, the drill-down of one forget
example (computed in the background) and deleting a run with a confirmation.

The page is opened on its own file, so the test does not depend on where app.py lists it."""

import time
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from conftest import tiny_setup
from unlearn_core import compare
from unlearn_core.config import MethodSpec, RunSpec
from unlearn_core.instance import forget_examples
from unlearn_core.runs import RunStore
from tests.app.helpers import TIMEOUT, chart, chart_specs, texts

# Several seconds each on 2 cores: left out of `make test-fast`.
pytestmark = pytest.mark.slow

PAGE = str(Path(__file__).resolve().parents[2] / "app_pages" / "compare.py")


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """A store with a NegGrad+ and a Finetune run of the tiny setup."""
    from unlearn_core.pipeline import run_unlearning
    store = RunStore(tmp_path_factory.mktemp("compare-store"))
    ids = {name: run_unlearning(RunSpec(tiny_setup(), MethodSpec(name, {"epochs": 1})), store)
           for name in ("neggrad_plus", "finetune")}
    return store, ids


@pytest.fixture
def page(two_runs, monkeypatch):
    store, ids = two_runs
    monkeypatch.setenv("LENS_STORE", str(store.root))
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    at.run()
    assert not at.exception, at.exception
    return at, store, ids


def derived_once_computed(at: AppTest, store: RunStore, run_id: str, name: str) -> dict:
    """The derived result `name` of the run once its background job has stored it; the
    page rerun after it."""
    deadline = time.monotonic() + 120
    while store.get_derived(run_id, name) is None:
        assert time.monotonic() < deadline, f"the job computing {name} did not finish"
        time.sleep(0.5)
    at.run()
    assert not at.exception
    return store.get_derived(run_id, name)


def test_table_filters_and_tradeoff_show_the_stored_numbers(page):
    at, store, ids = page
    table = at.dataframe[0].value
    assert set(table["id"]) == set(ids.values())
    for run_id in ids.values():
        expected = compare.run_row(store.get(run_id))
        row = table[table["id"] == run_id].iloc[0]
        for column in ("method", "params", "forget_acc", "test_acc", "mia", "avg_gap",
                       "mean_depth", "seconds"):
            assert row[column] == pytest.approx(expected[column]) if isinstance(
                expected[column], float) else row[column] == expected[column]

    tradeoff = chart(at, "Trade-off")
    traces = {t["name"]: t for t in tradeoff["data"]}
    gap = compare.run_row(store.get(ids["finetune"]))["avg_gap"]
    assert traces["Finetune"]["x"] == pytest.approx([100 * gap])
    assert traces["Retrain oracle (gap 0 by definition)"]["x"] == [0.0]

    at.multiselect(key="compare-filter-method").set_value(["Finetune"]).run()
    assert not at.exception
    assert at.dataframe[0].value["id"].tolist() == [ids["finetune"]]
    # the references first (drawn below), then the one run left
    assert [t["name"] for t in chart(at, "Trade-off")["data"]][-1:] == ["Finetune"]
    assert len(chart(at, "Trade-off")["data"]) == 3
    at.multiselect(key="compare-filter-dataset").set_value(["digits"]).run()
    assert at.dataframe[0].value["id"].tolist() == [ids["finetune"]]


def test_runs_a_and_b_side_by_side_on_every_view(page):
    at, store, ids = page
    at.selectbox(key="compare-a").set_value(ids["neggrad_plus"])
    at.selectbox(key="compare-b").set_value(ids["finetune"]).run()
    assert not at.exception
    pair = at.dataframe[1].value.set_index("metric")
    a, b = (compare.run_row(store.get(ids[name])) for name in ("neggrad_plus", "finetune"))
    assert pair.loc["Forget acc.", "A"] == f"{100 * a['forget_acc']:.1f}%"
    assert pair.loc["Forget acc.", "B"] == f"{100 * b['forget_acc']:.1f}%"
    assert pair.loc["Avg gap to oracle", "B − A"] == \
        f"{100 * (b['avg_gap'] - a['avg_gap']):+.1f} pp"

    per_class = [c for c in chart_specs(at)
                 if c["layout"]["title"]["text"].startswith("Test accuracy per class")]
    unlearned = [next(t for t in c["data"] if t["name"] == "Unlearned")["y"] for c in per_class]
    assert unlearned == [pytest.approx([100 * v for v in store.get(ids[name]).report[
        "accuracy"]["unlearned"]["per_class_test"]]) for name in ("neggrad_plus", "finetune")]
    # Only the open tab is drawn: the first one until another is chosen.
    titles = [c["layout"]["title"]["text"] for c in chart_specs(at)]
    assert not any(title.startswith("Linear CKA per layer") for title in titles)
    for tab, views in (("CKA per layer", ["Linear CKA per layer"]),
                       ("Probes", ["Linear probe accuracy"]),
                       ("MIA", ["MIA efficacy", "Confidence: forget vs test"]),
                       ("Embeddings", ["embedding: one joint PCA"])):
        at.session_state["compare-tab"] = tab
        at.run()
        assert not at.exception
        titles = [c["layout"]["title"]["text"] for c in chart_specs(at)]
        for view in views:
            assert sum(title.startswith(view) for title in titles) == 2, view
        assert not any(title.startswith("Test accuracy per class") for title in titles), tab


def test_a_layer_evaluate_did_not_map_is_fitted_in_the_background_and_kept(page):
    at, store, ids = page
    run_id = at.selectbox(key="compare-a").value
    assert "eval/pca/block1/original" not in store.load_arrays(run_id)
    at.session_state["compare-tab"] = "Embeddings"
    at.run()
    at.selectbox(key="compare-embedding-layer-A").set_value("block1").run()
    assert not at.exception
    assert "Fitting the PCA of block1" in texts(at.info)
    derived = derived_once_computed(at, store, run_id, "pca-block1")
    panels = chart(at, "block1: one joint PCA map")
    forget = [t for t in panels["data"] if t["name"] == "Forget examples"]
    parts = store.get(run_id).report["layers"]["parts"]
    arrays = store.load_arrays(run_id)
    is_forget = np.array([parts[p].startswith("forget") for p in arrays["eval/probe_part"]])
    assert forget[1]["x"] == pytest.approx(derived["eval/pca/block1/unlearned"][is_forget, 0])


def test_drill_down_shows_stored_values_then_computes_margins_in_the_background(page):
    at, store, ids = page
    assert at.radio(key="compare-drill-run").value == "A"
    record = store.get(at.selectbox(key="compare-a").value)
    run_id = record.id
    dataset, forget = forget_examples(record.spec)
    index = int(forget[2])
    at.selectbox(key=f"drilldown-compare-{run_id}-index").set_value(index).run()
    assert not at.exception
    arrays = store.load_arrays(run_id)
    roles = at.dataframe[2].value
    assert roles.loc["Unlearned", f"p(label {record.report['classes'][int(dataset.train.labels[index])]})"] \
        == f"{100 * arrays['eval/conf/unlearned/forget'][2]:.1f}%"
    score = next(m for m in at.metric if m.label.startswith("MIA membership score"))
    assert score.value == f"{arrays['eval/mia_score/unlearned'][2]:.3f}"
    assert "probe margins" in texts(at.caption)  # said, not hidden

    at.button(key=f"drilldown-compare-{run_id}-compute").click().run()
    derived = derived_once_computed(at, store, run_id, "instance")
    margins = chart(at, "Probe margin per layer")
    unlearned = next(t for t in margins["data"] if t["name"] == "Unlearned")["y"]
    rows = np.flatnonzero(derived["probe/rows"] == np.flatnonzero(
        (arrays["eval/probe_index"] == index)
        & (arrays["eval/probe_part"] == record.report["layers"]["parts"].index("forget_train")))[0])
    assert unlearned == pytest.approx(derived["margin/unlearned"][rows[0]].tolist())


def test_deleting_a_run_needs_a_confirmation(page):
    from unlearn_core.pipeline import run_unlearning
    at, store, ids = page
    # A run of its own to delete, so the other tests keep theirs whatever the order.
    victim = run_unlearning(RunSpec(tiny_setup(), MethodSpec("finetune", {"epochs": 1})), store)
    at.run()
    at.multiselect(key="compare-delete").set_value([victim]).run()
    assert at.button(key="compare-delete-button").disabled
    at.checkbox(key="compare-delete-confirm").check().run()
    assert not at.button(key="compare-delete-button").disabled
    at.button(key="compare-delete-button").click().run()
    assert not at.exception
    assert "Deleted 1 run(s)." in texts(at.success)
    assert {r.id for r in store.list()} == set(ids.values())
    assert set(at.dataframe[0].value["id"]) == set(ids.values())


def test_privacy_drilldown_lists_forget_examples_most_member_like_first(two_runs, monkeypatch):
    from ui import state
    store, ids = two_runs
    monkeypatch.setenv("LENS_STORE", str(store.root))
    record = store.get(ids["finetune"])
    scores = store.load_arrays(record.id)["eval/mia_score/unlearned"]
    _, forget = forget_examples(record.spec)
    at = AppTest.from_file(str(Path(PAGE).parent / "privacy.py"), default_timeout=TIMEOUT)
    at.session_state[state.SELECTED_RUN_KEY] = record.id
    at.run()
    assert not at.exception, at.exception
    box = next(s for s in at.selectbox if s.key == f"drilldown-privacy-{record.id}-index")
    listed = np.array(box.options, dtype=int)
    assert sorted(listed) == sorted(forget)
    by_index = dict(zip(forget.tolist(), scores))
    assert all(np.diff([by_index[i] for i in listed]) <= 0)


def test_past_runs_per_page_a_and_b_are_picked_from_one_page_and_stay_selected(
        two_runs, monkeypatch):
    from ui import widgets
    store, ids = two_runs
    monkeypatch.setattr(widgets, "RUNS_PER_PAGE", 1)
    monkeypatch.setenv("LENS_STORE", str(store.root))
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    at.run()
    assert not at.exception, at.exception
    newest, oldest = ids["finetune"], ids["neggrad_plus"]  # stored in that order
    assert [o.rsplit(" · ", 1)[1] for o in at.selectbox(key="compare-a").options] == [newest]
    assert len(at.dataframe[0].value) == 2  # the table still holds every run

    at.number_input(key="compare-page").set_value(2).run()
    assert not at.exception, at.exception
    options = [o.rsplit(" · ", 1)[1] for o in at.selectbox(key="compare-a").options]
    assert options == [newest, oldest] and at.selectbox(key="compare-a").value == newest
