"""Figures of a poison run's backdoor section (report["poison"])."""

from __future__ import annotations

import plotly.graph_objects as go

from ..vocabulary import REFERENCE_ROLES, ROLES_BEFORE_AFTER
from . import LEGEND_BELOW, ROLE_COLORS, ROLE_LABELS, _percent, layer_axes



def asr_bars(report: dict) -> go.Figure:
    """ASR and ASR after a head refit for the three models, the clean base rate marked."""
    poison = report["poison"]
    measures = {"ASR": poison["asr"], "ASR after a head refit": poison["asr_head_refit"],
                "base rate (clean images)": poison["base_rate"]}
    fig = go.Figure()
    for role in ROLES_BEFORE_AFTER:
        values = _percent(measures[label][role] for label in measures)
        fig.add_bar(name=ROLE_LABELS[role], x=list(measures), y=values,
                    marker_color=ROLE_COLORS[role],
                    text=[None if v is None else f"{v:.1f}" for v in values],
                    textposition="outside")
    fig.update_layout(title=f"Triggered test images sent to class {poison['target']}",
                      yaxis_title="% of triggered images (non-target classes)",
                      yaxis_range=[0, 109], barmode="group", legend=LEGEND_BELOW)
    return fig


def trigger_readout_per_layer(report: dict) -> go.Figure:
    """Per feature layer, the share of triggered images a nearest-class-mean readout on
    clean features sends to the target: where the trunk still routes the trigger."""
    poison = report["poison"]
    names = poison["readout_layers"]
    fig = go.Figure()
    for role in ROLES_BEFORE_AFTER:
        fig.add_scatter(x=names, y=_percent(poison["readout"][role]), mode="lines+markers",
                        name=ROLE_LABELS[role], line_color=ROLE_COLORS[role])
    fig.update_layout(title="Trigger readout per layer (held-out triggered images)",
                      xaxis_title="layer (shallow → deep)", xaxis_type="category",
                      yaxis_title=f"% read as class {poison['target']}", yaxis_range=[0, 105],
                      legend=LEGEND_BELOW)
    return fig


def cka_on_triggered_inputs(report: dict) -> go.Figure:
    """CKA to the original per layer on triggered images, for the unlearned model and
    the oracle."""
    cka = report["poison"]["cka_triggered"]
    names = cka["names"]
    fig = go.Figure()
    plotted = []
    for role, pair in (("unlearned", "unlearned_vs_original"), ("oracle", "oracle_vs_original")):
        plotted += cka[pair]
        fig.add_scatter(x=names, y=cka[pair], mode="lines+markers",
                        name=f"{ROLE_LABELS[role]} vs original", line_color=ROLE_COLORS[role])
    return layer_axes(fig, names, plotted, "CKA to the original on triggered inputs",
                      "linear CKA")


def asr_by_run(reports: dict[str, dict]) -> go.Figure:
    """ASR and ASR after a head refit of each run (label -> report), with the first run's
    original and oracle ASR as reference lines."""
    labels = list(reports)
    fig = go.Figure()
    for key, name, color in (("asr", "ASR", ROLE_COLORS["unlearned"]),
                             ("asr_head_refit", "ASR after a head refit", "#ff9896")):
        values = _percent(reports[label]["poison"][key]["unlearned"] for label in labels)
        fig.add_bar(x=labels, y=values, name=name, marker_color=color,
                    text=[None if v is None else f"{v:.0f}" for v in values],
                    textposition="outside")
    first = next(iter(reports.values()))["poison"]["asr"]
    for role in REFERENCE_ROLES:
        if first[role] is not None:
            fig.add_hline(y=100 * first[role], line_dash="dot", line_color=ROLE_COLORS[role],
                          annotation_text=f"{ROLE_LABELS[role]} ASR",
                          annotation_position="top left")
    fig.update_layout(title="Does the trigger still fire?", barmode="group",
                      yaxis_title="% of triggered test images sent to the target",
                      yaxis_range=[0, 109], legend=LEGEND_BELOW)
    return fig


def imprint_bars(report: dict) -> go.Figure:
    """A Gaussian-poisoning run: each model's mean noise imprint with ±2 standard errors."""
    poison = report["poison"]
    fig = go.Figure()
    for role in ROLES_BEFORE_AFTER:
        se = poison["imprint_se"][role]
        fig.add_bar(x=[ROLE_LABELS[role]], y=[poison["imprint"][role]], name=ROLE_LABELS[role],
                    marker_color=ROLE_COLORS[role],
                    error_y={"type": "data", "array": [None if se is None else 2 * se],
                             "visible": True})
    fig.add_hline(y=0, line_width=1, line_color="grey")
    fig.update_layout(title="Noise imprint on the poisoned examples (0 = never trained on it)",
                      yaxis_title="mean paired imprint", showlegend=False)
    return fig
