"""Download buttons for the exports of `unlearn_core.export`. Files are built only when
a button is clicked (a callable as data), so a page with many charts stays fast."""

from __future__ import annotations

import re

import plotly.graph_objects as go
import streamlit as st

from unlearn_core import export
from unlearn_core.runs import RunRecord
from . import presenter

STATIC_IMAGE_NOTE = (
    "Charts: the camera button in a chart's toolbar saves it as PNG; the HTML download "
    "is the interactive chart, offline, and its camera button saves an SVG. Server-side "
    "PNG/SVG export needs kaleido with a Chrome browser, which this app does not ship.")


def _file_stem(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-").lower() or "figure"


def chart(fig: go.Figure, name: str, key: str, container=st, beside: int = 1) -> None:
    """A plotly chart with a button that downloads it as a standalone HTML file;
    `beside`: how many charts share its row (presenter.figure)."""
    presenter.chart(fig, container, beside=beside, key=f"{key}-chart")
    container.download_button("Download chart (HTML)", data=lambda: export.figure_html(fig),
                               file_name=f"{_file_stem(name)}.html", mime="text/html",
                               key=f"{key}-html", on_click="ignore",
                               icon=":material/download:")


def run_downloads(record: RunRecord, arrays: dict, key: str, container=st) -> None:
    """JSON, CSV and the self-contained HTML report of one run."""
    json_column, csv_column, html_column = container.columns(3)
    json_column.download_button("Run (JSON)", data=lambda: export.run_json(record),
                                file_name=f"run-{record.id}.json", mime="application/json",
                                key=f"{key}-json", on_click="ignore")
    csv_column.download_button("Numbers (CSV)", data=lambda: export.run_csv(record),
                               file_name=f"run-{record.id}.csv", mime="text/csv",
                               key=f"{key}-csv", on_click="ignore")
    html_column.download_button("Report (HTML)",
                                data=lambda: export.run_report_html(record, arrays),
                                file_name=f"report-{record.id}.html", mime="text/html",
                                key=f"{key}-report", on_click="ignore",
                                help="Spec, every number, every figure and the verdict in "
                                     "one file that opens offline.")
