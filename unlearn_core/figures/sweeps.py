"""The trade-off plot of a sweep: each hyperparameter setting's mean over seeds, with the
original and the retrain oracle marked."""

from __future__ import annotations

import plotly.graph_objects as go

from ..vocabulary import format_params
from . import LEGEND_BELOW, ROLE_COLORS, ROLE_LABELS

TRADEOFF_AXES = {"avg_gap": "avg gap to the oracle (pp)",
                 "forget_gap": "forget-accuracy gap to the oracle (pp, unlearned − oracle)"}
_SIZE_RANGE = (10.0, 40.0)  # marker diameters in px, smallest and largest time


def _half_width(stat: dict) -> float | None:
    return None if stat["ci"] is None else 100 * (stat["ci"][1] - stat["ci"][0]) / 2


def tradeoff_scatter(rows: list[dict], x: str = "avg_gap") -> go.Figure:
    """Test accuracy against `x` ("avg_gap" or "forget_gap") for the rows of one sweep
    (`sweeps.tabulate`): one point per setting at its mean over seeds, error bars = the
    95% intervals where there are two or more seeds, point area growing with the mean
    unlearning time; the oracle (sized by its training time) and the original marked;
    the best setting (lowest mean avg gap) outlined."""
    if x not in TRADEOFF_AXES:
        raise ValueError(f"x: expected one of {list(TRADEOFF_AXES)}, got {x!r}")
    points = [r for r in rows if r["metrics"][x]["mean"] is not None
              and r["metrics"]["test"]["mean"] is not None]
    times = [r["metrics"]["seconds"]["mean"] for r in points
             if r["metrics"]["seconds"]["mean"] is not None]
    longest = max(times, default=1.0) or 1.0

    def size(row) -> float:
        seconds = row["metrics"]["seconds"]["mean"]
        if seconds is None:  # the original: no time of its own
            return _SIZE_RANGE[0]
        low, high = _SIZE_RANGE
        return low + (high - low) * (seconds / longest) ** 0.5  # area ∝ time

    fig = go.Figure()
    for kind in ("original", "oracle", "method"):  # the settings drawn on top
        mine = [r for r in points if r["kind"] == kind]
        if not mine:
            continue
        xs = [100 * r["metrics"][x]["mean"] for r in mine]
        ys = [100 * r["metrics"]["test"]["mean"] for r in mine]
        x_err = [_half_width(r["metrics"][x]) for r in mine]
        y_err = [_half_width(r["metrics"]["test"]) for r in mine]
        labels = [format_params(r["params"]) or r["label"]
                  if kind == "method" else ROLE_LABELS[kind] for r in mine]
        hover = [f"{label}<br>{x}: {px:.2f} pp<br>test: {py:.1f}%<br>time: "
                 + ("n/a" if r["metrics"]["seconds"]["mean"] is None
                    else f"{r['metrics']['seconds']['mean']:.2f} s")
                 + f"<br>seeds ok: {r['n_ok']}/{len(r['seeds'])}"
                 for label, px, py, r in zip(labels, xs, ys, mine)]
        fig.add_scatter(
            x=xs, y=ys, mode="markers+text" if kind == "method" else "markers",
            name="settings (mean over seeds)" if kind == "method" else ROLE_LABELS[kind],
            text=labels if kind == "method" else None, textposition="top center",
            hovertext=hover, hoverinfo="text",
            error_x={"type": "data", "array": [e or 0 for e in x_err],
                     "visible": any(e is not None for e in x_err)},
            error_y={"type": "data", "array": [e or 0 for e in y_err],
                     "visible": any(e is not None for e in y_err)},
            marker={"size": [size(r) for r in mine],
                    "color": ROLE_COLORS["unlearned" if kind == "method" else kind],
                    "symbol": {"method": "circle", "original": "x", "oracle": "star"}[kind],
                    "line": {"width": [3 if r.get("best") else 0 for r in mine],
                             "color": "black"},
                    "opacity": 0.85 if kind == "method" else 0.6})
    best = next((r for r in points if r.get("best")), None)
    if best is not None:
        fig.add_annotation(x=100 * best["metrics"][x]["mean"],
                           y=100 * best["metrics"]["test"]["mean"], text="best (avg gap)",
                           showarrow=True, arrowhead=2, ax=50, ay=40)
    fig.update_layout(title="Sweep trade-off: test accuracy against the gap to the oracle "
                            "(point area = unlearning time)",
                      xaxis_title=TRADEOFF_AXES[x], yaxis_title="test accuracy (%)",
                      legend=LEGEND_BELOW)
    return fig
