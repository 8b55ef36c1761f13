"""Charts of the relearning test and of the feature readouts (metrics/relearn.py,
metrics/readouts.py), drawn from the results kept with a run."""

from __future__ import annotations

import plotly.graph_objects as go

from ..metrics.readouts import READOUT_LABELS
from ..vocabulary import ROLES_BEFORE_AFTER
from . import LEGEND_BELOW, ROLE_COLORS, ROLE_LABELS, _percent



def relearn_curves(report: dict) -> go.Figure:
    """Held-out forget score against fine-tuning step for each model of a
    `relearn_report`, with the level that counts as relearned as a dotted line."""
    fig = go.Figure()
    for role in ROLES_BEFORE_AFTER:
        curve = report["curves"].get(role)
        if curve is None:
            continue
        scores = curve["scores"]
        fig.add_scatter(x=list(range(len(scores))), y=_percent(scores), mode="lines+markers",
                        name=ROLE_LABELS[role], line_color=ROLE_COLORS[role],
                        line_dash="dot" if role == "original" else "solid")
    fig.add_hline(y=100 * report["target"], line_dash="dot", line_color="#9e9e9e",
                  annotation_text=f"relearned: {100 * report['target']:.0f}%",
                  annotation_position="bottom right")
    p = report["params"]
    first = next(iter(report["curves"].values()))
    fig.update_layout(
        title=f"Relearning: {p['steps']} fine-tuning steps on {p['k']} forget examples "
              f"(lr {p['lr']:g})",
        xaxis_title="fine-tuning step", xaxis_dtick=1,
        yaxis_title=f"{first['score_name']} (%)", yaxis_range=[0, 105],
        legend=LEGEND_BELOW)
    return fig


def readout_per_layer(readouts: dict, name: str) -> go.Figure:
    """One readout (`readouts_of_run`'s result) per feature layer: held-out forget score
    of each model as solid lines, the retain baseline of each as dotted lines."""
    layers = readouts["layers"]
    fig = go.Figure()
    for role in ROLES_BEFORE_AFTER:
        values = readouts["roles"].get(role)
        if values is None:
            continue
        scores = values["readouts"][name]
        fig.add_scatter(x=layers, y=_percent(scores["forget"]), mode="lines+markers",
                        name=f"{ROLE_LABELS[role]}: forget", line_color=ROLE_COLORS[role])
        fig.add_scatter(x=layers, y=_percent(scores["retain"]), mode="lines",
                        name=f"{ROLE_LABELS[role]}: retain (baseline)",
                        line_color=ROLE_COLORS[role], line_dash="dot", opacity=0.5)
    fig.update_layout(title=f"{READOUT_LABELS[name]}: accuracy on held-out examples",
                      xaxis_title="layer (shallow → deep)", xaxis_type="category",
                      yaxis_title="accuracy (%)", yaxis_range=[0, 105],
                      legend=LEGEND_BELOW)
    return fig
