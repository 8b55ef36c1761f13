"""Exports: a run or a comparison table as CSV/JSON, a figure as standalone HTML, and a
self-contained HTML report of a run (spec, every number, every figure, the verdict).

Everything written here opens offline: plotly.js is inlined (once per document) and
images are data: URIs. Static PNG/SVG files are not produced here: plotly 7 renders them
only through kaleido >= 1, which drives a Chrome browser that this project neither ships
nor may download at run time. The exported HTML's camera button saves an SVG instead
(and the app's charts save a PNG), drawn by the bundled plotly.js in the browser.
"""

from __future__ import annotations

import base64
import html
import io as _io
import json
import math
import time
from typing import Any, Iterator

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.offline

from . import array_keys, figures
from .compare import COLUMNS, run_row
from .errors import UserError
from .figures import ec as ec_figures
from .figures import lau as lau_figures
from .runs import RunRecord

# The modebar's camera button of an exported chart saves an SVG, drawn in the browser.
EXPORT_CONFIG = {"toImageButtonOptions": {"format": "svg"}, "displaylogo": False}
# The report's number sections, in this order; "method" holds params, info and curves.
SECTIONS = {"accuracy": "Accuracy", "gap_to_oracle": "Gap to the oracle (unlearned − oracle)",
            "mia": "Membership inference", "layers": "Inside the layers", "cost": "Cost",
            "split": "Split sizes", "method": "Method"}
FORGET_IMAGES = 16  # thumbnails of forget examples in the report: what was forgotten


# --- tables and runs ------------------------------------------------------------------


def table_csv(table: pd.DataFrame) -> str:
    return table.to_csv(index=False)


def table_json(table: pd.DataFrame) -> str:
    """Records, one per row; missing values are null (pandas writes NaN as null)."""
    return table.to_json(orient="records", indent=2)


def run_json(record: RunRecord) -> str:
    """The run as stored: id, label, status, spec and report."""
    return json.dumps({"id": record.id, "label": record.label, "status": record.status,
                       "created": record.created, "spec": record.spec,
                       "report": record.report}, indent=2, sort_keys=True)


def _labels_for(path: tuple[str, ...], report: dict, length: int) -> list[str] | None:
    """Names for the items of a list of numbers at `path`: classes, layers or probe layers
    where the list runs over them, else None (its items are then numbered)."""
    layers = report.get("layers", {})
    if path[-1] == "per_class_test" and length == len(report.get("classes", [])):
        return list(report["classes"])
    if path[0] == "layers" and "probes" in path and length == len(layers.get("probe_layers", [])):
        return list(layers["probe_layers"])
    if path[0] == "layers" and length == len(layers.get("names", [])):
        return list(layers["names"])
    return None


def _numbers(value: Any, path: tuple[str, ...], report: dict) -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for key in sorted(value):
            yield from _numbers(value[key], (*path, str(key)), report)
    elif isinstance(value, list):
        names = _labels_for(path, report, len(value))
        for i, item in enumerate(value):
            yield from _numbers(item, (*path, names[i] if names else str(i)), report)
    elif value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
        yield ".".join(path), value


def report_numbers(report: dict) -> dict[str, list[tuple[str, Any]]]:
    """Every number of a report (None where a value does not exist), by SECTIONS key:
    [(dotted name, value)], list items named by class or layer where they run over them."""
    return {section: list(_numbers(report[section], (section,), report))
            for section in SECTIONS if section in report}


def run_csv(record: RunRecord) -> str:
    """Every number of the run's report, one per line: section, name, value."""
    rows = [(section, name, value) for section, items in report_numbers(record.report).items()
            for name, value in items]
    return pd.DataFrame(rows, columns=["section", "name", "value"]).to_csv(index=False)


# --- figures --------------------------------------------------------------------------


def figure_html(fig: go.Figure) -> str:
    """A standalone page with plotly.js inlined: opens offline, interactive."""
    return fig.to_html(include_plotlyjs=True, full_html=True, config=EXPORT_CONFIG)


def run_figures(report: dict, arrays: dict) -> list[tuple[str, go.Figure]]:
    """The figures of the Results, Layers and Privacy pages for one run, and its
    embeddings at the deepest feature layer, as (title, figure); views whose data the run
    lacks are skipped, as the pages skip them."""
    shown: list[tuple[str, go.Figure | None]] = [
        ("Accuracy", figures.accuracy_overview(report)),
        ("Accuracy per class", figures.per_class_accuracy(report)),
        ("Training curves", figures.training_curves(report))]
    if lau_figures.has_lau_arrays(arrays):
        shown += [("LAU: forget samples still correct", lau_figures.still_correct_curve(arrays)),
                  ("LAU: perturbation norms", lau_figures.perturbation_norms(arrays))]
    if "layers" in report:
        layers = report["layers"]
        forget_parts = [p for p in layers["parts"] if p in layers["depth"]]
        if forget_parts:
            shown.append(("CKA per layer", figures.cka_per_layer(report, forget_parts)))
        for part in forget_parts:
            shown += [(f"Forgetting depth, {figures.PART_LABELS[part]}",
                       figures.forgetting_depth_bars(report, part)),
                      (f"CKA excess, {figures.PART_LABELS[part]}",
                       figures.cka_excess_bars(report, part))]
        shown += [("Linear probes", figures.probe_accuracy_per_layer(report)),
                  ("EC losses per layer", ec_figures.ec_layer_losses(report))]
        shown += [(f"Layer × layer CKA, {pair}", figures.cka_heatmap(report, pair))
                  for pair in figures.PAIR_NAMES if layers["cka_matrix"].get(pair)]
    if "mia" in report:
        shown.append(("MIA efficacy", figures.mia_efficacy_bars(report)))
        for feature in array_keys.SCORE_ARRAY_NAMES:
            if array_keys.distinguishability(feature, "thresholds") in arrays:
                short = array_keys.SCORE_ARRAY_NAMES[feature]
                shown += [(f"{figures.SCORE_NAMES[short]} histograms",
                           figures.score_histograms(arrays, short)),
                          (f"Distinguishability by {feature}",
                           figures.distinguishability_curve(
                               arrays, feature, figures.most_telling_threshold(arrays, feature)))]
    embedded = figures.embedded_layers(report, arrays) if "layers" in report else []
    if embedded:
        layer = figures.opening_layer(embedded)
        shown.append((f"Embeddings at {layer} (PCA)",
                      figures.embedding_panels(report, arrays, layer)))
    return [(title, fig) for title, fig in shown if fig is not None]


# --- the HTML report ------------------------------------------------------------------


def image_data_uri(image: np.ndarray) -> str:
    """A uint8 (C, H, W) image as a PNG data: URI, so the report needs no image files."""
    from PIL import Image
    pixels = image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0)
    buffer = _io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def format_number(value: Any) -> str:
    """Exactly the stored value (repr keeps every digit of a float), "n/a" for None."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return repr(value)


_STYLE = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ddd;padding:2px 8px}
td.v{text-align:right;font-variant-numeric:tabular-nums}pre{background:#f6f6f6;padding:1em;
overflow:auto}.verdict{padding:1em;border-left:5px solid #d62728;background:#fff4f4}
.thumbs img{width:56px;height:56px;image-rendering:pixelated;margin:2px;border:1px solid #ccc}
details{margin:.3em 0}
"""


def _table(rows: list[tuple[str, Any]], key_attr: bool) -> str:
    def row(name: str, value: Any) -> str:
        key = f' data-key="{html.escape(name)}"' if key_attr else ""
        return (f"<tr{key}><td>{html.escape(name)}</td>"
                f'<td class="v">{html.escape(format_number(value))}</td></tr>')

    body = "".join(row(name, value) for name, value in rows)
    return f"<table><tr><th>name</th><th>value</th></tr>{body}</table>"


def forget_thumbnails(spec: dict) -> list[tuple[int, np.ndarray]]:
    """(training index, uint8 CHW image) of the first FORGET_IMAGES forget examples."""
    from .instance import forget_examples  # loads the data: only when images are wanted
    dataset, forget = forget_examples(spec)
    return [(int(i), dataset.train.images[int(i)].numpy()) for i in forget[:FORGET_IMAGES]]


def run_report_html(record: RunRecord, arrays: dict, with_images: bool = True) -> str:
    """One HTML file with the run's spec, every number of its report (each table row
    carries its dotted name in data-key), every figure of `run_figures`, the verdict and,
    `with_images`, the first forget examples (a note says why if the data cannot be
    loaded). plotly.js is inlined once; nothing is loaded from the network."""
    report = record.report
    if record.status != "done" or report is None:
        raise UserError(f"run {record.id} is {record.status}: only a finished run has a report")
    title = f"Unlearning report: {record.label}"
    parts = [f"<h1>{html.escape(title)}</h1>",
             f"<p>Run <code>{html.escape(record.id)}</code>, created "
             f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(record.created))}; report "
             f"written {time.strftime('%Y-%m-%d %H:%M:%S')}.</p>"]
    verdict = report.get("layers", {}).get("verdict")
    if verdict:
        parts.append(f'<section id="verdict"><h2>Verdict</h2><div class="verdict">'
                     f"<b>{html.escape(verdict['kind'])}</b>: {html.escape(verdict['text'])}"
                     "</div></section>")
    summary = run_row(record)
    parts.append('<section id="summary"><h2>Summary</h2>'
                 + _table([(COLUMNS[key], value) for key, value in summary.items()
                           if not isinstance(value, str)], key_attr=False)
                 + "<p>Accuracies, MIA and gaps are fractions in [0, 1]; avg gap = mean "
                   "|unlearned − oracle| over forget, retain and test accuracy and MIA "
                   "efficacy (confidence).</p></section>")
    parts.append('<section id="spec"><h2>Specification</h2><pre>'
                 + html.escape(json.dumps(record.spec, indent=2, sort_keys=True))
                 + "</pre></section>")
    if with_images:
        try:
            thumbs = "".join(f'<img src="{image_data_uri(image)}" alt="forget example {index}" '
                             f'title="training example {index}">'
                             for index, image in forget_thumbnails(record.spec))
        except UserError as exc:  # e.g. a dataset folder that is gone: the numbers stand
            thumbs = f"<p>Not shown: the data cannot be loaded ({html.escape(str(exc))}).</p>"
        parts.append(f'<section id="forget-examples"><h2>Forget examples</h2>'
                     f'<div class="thumbs">{thumbs}</div></section>')
    parts.append('<section id="numbers"><h2>All numbers</h2>')
    for section, rows in report_numbers(report).items():
        parts.append(f'<section id="numbers-{section}"><h3>{html.escape(SECTIONS[section])}'
                     f" ({len(rows)})</h3><details open><summary>table</summary>"
                     f"{_table(rows, key_attr=True)}</details></section>")
    parts.append("</section>")
    parts.append('<section id="figures"><h2>Figures</h2>')
    for name, fig in run_figures(report, arrays):
        parts.append(f"<h3>{html.escape(name)}</h3>"
                     + fig.to_html(include_plotlyjs=False, full_html=False, config=EXPORT_CONFIG))
    parts.append("</section>")
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>'
            f"{html.escape(title)}</title><style>{_STYLE}</style>"
            f'<script type="text/javascript">{plotly.offline.get_plotlyjs()}</script>'
            f"</head><body>{''.join(parts)}</body></html>")
