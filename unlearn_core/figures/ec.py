"""Figures for comparing runs layer by layer (a base method against base + EC) and for
EC's per-layer training losses."""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from . import PART_LABELS, REFERENCE_PAIR, ROLE_COLORS, ROLE_LABELS, RUN_COLORS, layer_axes

EC_TERMS = {"contrastive": "Contrastive unlearning loss (forget vs retain)",
            "ce": "Cross-entropy on retain data (deep supervision)"}


def cka_overlay(reports: dict[str, dict], part: str = "forget_train") -> go.Figure:
    """CKA(unlearned, original) per layer on `part` for several runs of one setup (e.g.
    a base method and base + EC), with the oracle's curve from the first run: the lower
    a run's curve in the middle layers, the deeper its forgetting."""
    fig = go.Figure()
    plotted: list = []
    names: list[str] = []
    for index, (label, report) in enumerate(reports.items()):
        layers = report["layers"]
        names = names or layers["names"]
        values = layers["cka"]["unlearned_vs_original"].get(part)
        if values is None:
            continue
        plotted += values
        fig.add_scatter(x=layers["names"], y=values, mode="lines+markers", name=label,
                        line={"color": RUN_COLORS[index % len(RUN_COLORS)]})
    first = next(iter(reports.values()), None)
    if first is not None and part in first["layers"]["cka"][REFERENCE_PAIR]:
        reference = first["layers"]["cka"][REFERENCE_PAIR][part]
        plotted += reference
        fig.add_scatter(x=first["layers"]["names"], y=reference, mode="lines+markers",
                        name=f"{ROLE_LABELS['oracle']} (reference)",
                        line={"color": ROLE_COLORS["oracle"], "dash": "dash"})
    return layer_axes(fig, names, plotted,
                      f"Linear CKA to the original per layer, {PART_LABELS[part].lower()}: "
                      "runs side by side", "linear CKA to the original")


def ec_layer_losses(report: dict) -> go.Figure | None:
    """EC's two terms per supervision point and epoch, or None for a run without EC:
    how the forgetting moved through depth during training."""
    curves = report.get("method", {}).get("curves", {})
    layers = list(dict.fromkeys(name.split("/", 2)[2] for name in curves
                                if name.startswith("ec/")))
    if not layers:
        return None
    fig = make_subplots(rows=1, cols=2, subplot_titles=list(EC_TERMS.values()))
    for column, term in enumerate(EC_TERMS, start=1):
        for index, layer in enumerate(layers):
            values = curves.get(f"ec/{term}/{layer}") or []
            fig.add_scatter(x=list(range(1, len(values) + 1)), y=values, mode="lines+markers",
                            name=layer, legendgroup=layer, showlegend=column == 1,
                            line={"color": qualitative.D3[index % len(qualitative.D3)]},
                            row=1, col=column)
        fig.update_xaxes(title_text="epoch", row=1, col=column)
    fig.update_yaxes(title_text="mean loss in the epoch", row=1, col=1)
    fig.update_layout(title="EC per supervision point (shallow → deep)", legend_title="layer")
    return fig
