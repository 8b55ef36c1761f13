"""Exports: CSV/JSON of runs and tables, standalone figure HTML, and the self-contained
HTML report of a run, parsed with the standard library: no external resource, every
number section present, every number equal to the stored report's."""

import json
import math
from html.parser import HTMLParser
from io import StringIO

import pandas as pd
import plotly.graph_objects as go
import pytest

from conftest import tiny_setup
from unlearn_core import compare, export
from unlearn_core.cli import main
from unlearn_core.config import MethodSpec, RunSpec
from unlearn_core.errors import UserError
from unlearn_core.runs import RunStore

# Attributes through which a page loads something: any of these pointing at the network
# (or anywhere but a data: URI or an in-page anchor) would break the report offline.
LOADING_ATTRIBUTES = {"src", "href", "data", "poster", "srcset", "action", "formaction"}


class ReportParser(HTMLParser):
    """Collects what loads, the sections, the number rows and the scripts of a page."""

    def __init__(self):
        super().__init__()
        self.loads: list[tuple[str, str, str]] = []
        self.sections: list[str] = []
        self.numbers: dict[str, str] = {}
        self.inline_scripts = 0
        self._row_key = None
        self._cells: list[str] = []
        self._in_cell = False
        self._in_script = False
        self._script_text: list[str] = []
        self.plotlyjs_copies = 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for name, value in attrs.items():
            if name in LOADING_ATTRIBUTES and value is not None:
                self.loads.append((tag, name, value))
        if tag == "section" and "id" in attrs:
            self.sections.append(attrs["id"])
        if tag == "tr" and "data-key" in attrs:
            self._row_key, self._cells = attrs["data-key"], []
        if tag == "td" and self._row_key is not None:
            self._in_cell = True
            self._cells.append("")
        if tag == "script":
            self._in_script, self._script_text = True, []
        if tag == "link" or tag == "base" or tag == "iframe":
            self.loads.append((tag, "tag", str(attrs)))

    def handle_endtag(self, tag):
        if tag == "td":
            self._in_cell = False
        if tag == "tr" and self._row_key is not None:
            self.numbers[self._row_key] = self._cells[1]
            self._row_key = None
        if tag == "script" and self._in_script:
            self._in_script = False
            text = "".join(self._script_text)
            self.inline_scripts += 1
            # plotly.js announces itself in its banner comment.
            self.plotlyjs_copies += text.lstrip().startswith("/**\n* plotly.js v")

    def handle_data(self, data):
        if self._in_cell:
            self._cells[-1] += data
        if self._in_script:
            self._script_text.append(data)


def parse(text: str) -> ReportParser:
    parser = ReportParser()
    parser.feed(text)
    parser.close()
    return parser


def external(loads):
    return [(tag, name, value) for tag, name, value in loads
            if not (value.startswith("data:") or value.startswith("#"))]


@pytest.fixture(scope="module")
def stored_run(shared_store, tiny_refs):
    from unlearn_core.pipeline import run_unlearning
    run_id = run_unlearning(RunSpec(tiny_setup(), MethodSpec("finetune", {"epochs": 1})),
                            shared_store)
    return shared_store, shared_store.get(run_id)


def test_report_opens_offline_and_holds_every_stored_number(stored_run):
    store, record = stored_run
    text = export.run_report_html(record, store.load_arrays(record.id))
    page = parse(text)
    assert external(page.loads) == []
    assert page.plotlyjs_copies == 1  # inlined once, not once per figure
    images = [value for tag, name, value in page.loads if tag == "img"]
    assert len(images) == min(export.FORGET_IMAGES, record.report["split"]["forget"])
    assert all(src.startswith("data:image/png;base64,") for src in images)

    report = record.report
    assert {"verdict", "summary", "spec", "numbers", "figures"} <= set(page.sections)
    assert {f"numbers-{s}" for s in export.SECTIONS} <= set(page.sections)
    expected = {name: value for rows in export.report_numbers(report).values()
                for name, value in rows}
    assert page.numbers.keys() == expected.keys()
    for name, value in expected.items():
        shown = page.numbers[name]
        if value is None:
            assert shown == "n/a", name
        else:
            assert float(shown) == value, name  # repr: exactly the stored float
    # Spot checks that the flattening names the report's values as the schema does.
    assert float(page.numbers["accuracy.unlearned.forget_train"]) == \
        report["accuracy"]["unlearned"]["forget_train"]
    first_layer = report["layers"]["names"][0]
    assert float(page.numbers[f"layers.cka.unlearned_vs_original.forget_train.{first_layer}"]) \
        == report["layers"]["cka"]["unlearned_vs_original"]["forget_train"][0]
    assert float(page.numbers["mia.efficacy.unlearned.confidence"]) == \
        report["mia"]["efficacy"]["unlearned"]["confidence"]
    assert report["layers"]["verdict"]["text"] in text
    # Every figure of the run is drawn, each into its own div.
    assert text.count('class="plotly-graph-div"') == len(
        export.run_figures(report, store.load_arrays(record.id)))


def test_report_numbers_cover_every_number_of_the_report(stored_run):
    _, record = stored_run
    report = record.report
    flat = dict(pair for rows in export.report_numbers(report).values() for pair in rows)

    def count(value):
        if isinstance(value, dict):
            return sum(count(v) for v in value.values())
        if isinstance(value, list):
            return sum(count(v) for v in value)
        return int(value is None or (isinstance(value, (int, float))
                                     and not isinstance(value, bool)))

    assert len(flat) == sum(count(report[s]) for s in export.SECTIONS if s in report)
    classes = report["classes"]
    assert flat[f"accuracy.oracle.per_class_test.{classes[-1]}"] == \
        report["accuracy"]["oracle"]["per_class_test"][-1]


def test_run_csv_and_json_round_trip_the_stored_report(stored_run):
    _, record = stored_run
    table = pd.read_csv(StringIO(export.run_csv(record)))
    assert list(table.columns) == ["section", "name", "value"]
    flat = dict(pair for rows in export.report_numbers(record.report).values() for pair in rows)
    read = dict(zip(table["name"], table["value"]))
    assert read.keys() == flat.keys()
    for name, value in flat.items():
        assert (math.isnan(read[name]) if value is None else read[name] == pytest.approx(value))
    loaded = json.loads(export.run_json(record))
    assert loaded["report"] == record.report and loaded["spec"] == record.spec
    assert loaded["id"] == record.id


def test_table_exports_keep_rows_columns_and_missing_values(stored_run):
    store, _ = stored_run
    table = compare.run_table(store.list())
    table.loc[table.index[0], "mia"] = None
    from_csv = pd.read_csv(StringIO(export.table_csv(table)))
    assert list(from_csv.columns) == list(compare.COLUMNS)
    assert from_csv["id"].tolist() == table["id"].tolist()
    assert from_csv["avg_gap"].tolist() == pytest.approx(table["avg_gap"].tolist())
    records = json.loads(export.table_json(table))
    assert [r["id"] for r in records] == table["id"].tolist()
    assert records[0]["mia"] is None
    assert records[0]["test_acc"] == pytest.approx(table["test_acc"].iloc[0])


def test_figure_html_is_standalone_and_saves_svg_from_the_browser():
    fig = go.Figure(go.Bar(x=["a", "b"], y=[1, 2]))
    text = export.figure_html(fig)
    page = parse(text)
    assert external(page.loads) == [] and page.plotlyjs_copies == 1
    assert '"format": "svg"' in text


def test_cli_report_writes_the_file_and_bad_input_exits_2(stored_run, tmp_path, capsys):
    store, record = stored_run
    out = tmp_path / "report.html"
    assert main(["--store", str(store.root), "report", record.id, "--out", str(out)]) == 0
    assert external(parse(out.read_text()).loads) == []
    assert str(out) in capsys.readouterr().out
    assert main(["--store", str(store.root), "report", "no-such-run"]) == 2
    assert "no run with id 'no-such-run'" in capsys.readouterr().err
    assert main(["--store", str(store.root), "report", record.id,
                 "--out", str(tmp_path / "missing" / "r.html")]) == 2
    assert "--out: cannot write" in capsys.readouterr().err
    other = RunStore(tmp_path / "other")  # the shared store stays as other tests expect
    failed = other.create("unlearn", record.spec, "failed")
    other.fail(failed, "boom")
    assert main(["--store", str(other.root), "report", failed]) == 2
    assert f"run_id: run {failed} is failed" in capsys.readouterr().err
    with pytest.raises(UserError, match="only a finished run has a report"):
        export.run_report_html(other.get(failed), {})
