"""A run stored by older code (report schema 1, tests/data/store-report-schema-1, written
by main at 07ef928) opens on the analysis pages, upgraded in memory; Compare and Privacy
show the gaps the report stores."""

import json
import shutil

import pytest
from streamlit.testing.v1 import AppTest

from unlearn_core.runs import RunStore
from tests.app.helpers import ROOT, TIMEOUT

OLD_STORE = ROOT / "tests" / "data" / "store-report-schema-1"
PAGES = ROOT / "app_pages"


@pytest.fixture
def old_store(tmp_path, monkeypatch) -> RunStore:
    shutil.copytree(OLD_STORE, tmp_path / "store")
    monkeypatch.setenv("LENS_STORE", str(tmp_path / "store"))
    return RunStore(tmp_path / "store")


def open_page(name: str) -> AppTest:
    at = AppTest.from_file(str(PAGES / name), default_timeout=TIMEOUT)
    at.run()
    assert not at.exception, (name, at.exception)
    return at


@pytest.mark.parametrize("page", ["results.py", "compare.py", "layers.py", "privacy.py"])
def test_a_schema_1_run_opens_on_the_page(old_store, page):
    at = open_page(page)
    assert not at.error, [e.value for e in at.error]
    # Not stopped with "stored before ... existed": the page drew its figures.
    assert at.get("plotly_chart")


def test_compare_shows_the_stored_average_gaps(old_store):
    (record,) = old_store.list(kind="unlearn", status="done")
    row = open_page("compare.py").dataframe[0].value.iloc[0]
    assert row["avg_gap"] == pytest.approx(record.report["average_gap"]["unlearned"])
    assert row["original_avg_gap"] == pytest.approx(record.report["average_gap"]["original"])


def test_privacy_shows_the_stored_mia_gap(old_store):
    (record,) = old_store.list(kind="unlearn", status="done")
    mia = record.report["mia"]
    gap = mia["gap_to_oracle"][mia["headline"]]
    efficacy = next(m for m in open_page("privacy.py").metric if m.label.startswith("MIA efficacy"))
    assert efficacy.delta == f"{100 * gap:+.1f} vs oracle"


def test_the_pages_read_the_stored_gaps_not_their_own(old_store):
    """A version-2 report whose stored gaps differ from what its accuracies give: the
    pages show the stored ones (nothing recomputes them)."""
    (record,) = old_store.list(kind="unlearn", status="done")
    marked = {**record.report, "average_gap": {"unlearned": 0.123, "original": 0.456},
              "mia": {**record.report["mia"], "gap_to_oracle": {
                  attack: -0.0789 for attack in record.report["mia"]["gap_to_oracle"]}}}
    (record.path / "report.json").write_text(json.dumps(marked))
    row = open_page("compare.py").dataframe[0].value.iloc[0]
    assert (row["avg_gap"], row["original_avg_gap"]) == (0.123, 0.456)
    efficacy = next(m for m in open_page("privacy.py").metric if m.label.startswith("MIA efficacy"))
    assert efficacy.delta == "-7.9 vs oracle"
