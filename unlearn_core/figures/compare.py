"""Figures over many runs: the trade-off between closeness to the oracle and utility."""

from __future__ import annotations

import math

import pandas as pd
import plotly.graph_objects as go

from ..vocabulary import ROLES_BEFORE_AFTER
from . import LEGEND_BELOW, ROLE_COLORS, ROLE_LABELS, RUN_COLORS

# Marker diameters (px) for the shortest and the longest time in the chart.
_SMALLEST, _LARGEST = 8, 40


def _known(seconds) -> list[float]:
    """The times that are known: an imported oracle has none."""
    return [s for s in seconds if s is not None and math.isfinite(s)]


def _sizes(seconds: list[float | None], longest: float) -> list[float]:
    """Marker diameter with area proportional to time, so a run twice as slow covers
    twice the ink; the longest time in the chart gets the largest marker, an unknown
    time the smallest."""
    return [_SMALLEST if s is None or not math.isfinite(s)
            else max(_SMALLEST, _LARGEST * math.sqrt(max(s, 0.0) / longest)) for s in seconds]


# What the trade-off's x axis can show: (axis title, hover name, table column of the
# oracle's value (None: 0 by definition), of the original's).
TRADEOFF_X = {
    "avg_gap": ("avg gap to the oracle (pp, lower is better)", "avg gap", None, "original_avg_gap"),
    "asr": ("attack success rate (%, lower is better; poison runs)", "ASR", "oracle_asr",
            "original_asr"),
}


def tradeoff_scatter(table: pd.DataFrame, x: str = "avg_gap") -> go.Figure:
    """Avg gap to the oracle, or the backdoor's attack success rate (`x`, lower is better)
    against test accuracy (y) for each run of a `compare.run_table`, marker area =
    unlearning time; each setup's retrain oracle (gap 0 by definition, its retraining
    time) and original (never unlearned, no time in the report: a fixed diamond) are
    marked. Runs without a value on the x axis are left out."""
    if x not in TRADEOFF_X:
        raise ValueError(f"x: expected one of {list(TRADEOFF_X)}, got {x!r}")
    axis_title, short, oracle_column, original_column = TRADEOFF_X[x]
    runs = table[table[x].notna()]
    references = runs.drop_duplicates("setup")
    longest = max([*_known(runs["seconds"]), *_known(references["oracle_seconds"]), 1e-9])
    fig = go.Figure()
    oracle_x = [0.0] * len(references) if oracle_column is None else \
        (100 * references[oracle_column]).tolist()
    fig.add_scatter(
        x=oracle_x, y=(100 * references["oracle_test_acc"]).tolist(),
        mode="markers", name=ROLE_LABELS["oracle"] + (" (gap 0 by definition)"
                                                     if oracle_column is None else ""),
        marker={"size": _sizes(references["oracle_seconds"].tolist(), longest),
                "symbol": "star", "color": ROLE_COLORS["oracle"],
                "line": {"width": 1, "color": "black"}},
        customdata=references[["setup", "oracle_seconds"]].values.tolist(),
        hovertemplate="oracle · %{customdata[0]}<br>test %{y:.1f}% · retrained in "
                      "%{customdata[1]:.1f} s<extra></extra>")
    with_original = references[references[original_column].notna()]
    fig.add_scatter(
        x=(100 * with_original[original_column]).tolist(),
        y=(100 * with_original["original_test_acc"]).tolist(),
        mode="markers", name=f"{ROLE_LABELS['original']} (nothing unlearned)",
        marker={"size": 14, "symbol": "diamond", "color": ROLE_COLORS["original"],
                "line": {"width": 1, "color": "black"}},
        customdata=with_original[["setup"]].values.tolist(),
        hovertemplate=f"original · %{{customdata[0]}}<br>{short} %{{x:.2f}} · "
                      "test %{y:.1f}%<extra></extra>")
    # The runs after the references: drawn on top, so a run close to the oracle is not
    # hidden under its (often largest) marker.
    for index, (method, group) in enumerate(runs.groupby("method", sort=True)):
        fig.add_scatter(
            x=(100 * group[x]).tolist(), y=(100 * group["test_acc"]).tolist(),
            mode="markers", name=method,
            marker={"size": _sizes(group["seconds"].tolist(), longest), "opacity": 0.75,
                    "color": RUN_COLORS[index % len(RUN_COLORS)],
                    "line": {"width": 1, "color": "white"}},
            customdata=group[["id", "params", "setup", "seconds"]].values.tolist(),
            hovertemplate=("%{customdata[0]}<br>%{customdata[1]}<br>%{customdata[2]}<br>"
                           f"{short} %{{x:.2f}} · test %{{y:.1f}}% · %{{customdata[3]:.1f}} s"
                           f"<extra>{method}</extra>"))
    fig.update_layout(title=f"Trade-off: {short} vs test accuracy (marker area = time)"
                      if x != "avg_gap" else "Trade-off: closeness to the oracle vs test "
                                             "accuracy (marker area = time)",
                      xaxis_title=axis_title, yaxis_title="test accuracy (%)",
                      legend=LEGEND_BELOW)
    return fig


def instance_margins(info: dict) -> go.Figure | None:
    """The linear probes' margin per layer for one forget example (`instance.
    describe_instance`) under the three models: above 0 the probe on that layer still
    reads the example's label. None when the margins are not available."""
    if info["margins"] is None:
        return None
    fig = go.Figure()
    for role in ROLES_BEFORE_AFTER:
        fig.add_scatter(x=info["probe_layers"], y=info["margins"][role], mode="lines+markers",
                        name=ROLE_LABELS[role], line_color=ROLE_COLORS[role])
    fig.add_hline(y=0, line_width=1, line_color="grey")
    fig.update_layout(title=f"Probe margin per layer, training example #{info['index']} "
                            "(> 0: the probe reads its label)",
                      xaxis_title="layer (shallow → deep)", xaxis_type="category",
                      yaxis_title="logit of the label − best other logit",
                      legend=LEGEND_BELOW)
    return fig
