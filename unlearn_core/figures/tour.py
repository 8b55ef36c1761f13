"""The figure of the tour's first step (unlearn_core/tour.py); its other steps reuse the
figures of the analysis pages."""

from __future__ import annotations

import plotly.graph_objects as go

from . import ACCURACY_LABELS, ROLE_COLORS, ROLE_LABELS, _percent

FORGET_KEYS = ("forget_train", "test_forget")


def forget_accuracy_by_run(reports: dict[str, dict]) -> go.Figure:
    """Forget-train and forget-class test accuracy of several runs side by side, with the
    first run's original and retrain oracle as the two reference bars at the ends."""
    first = next(iter(reports.values()))
    columns = {ROLE_LABELS["original"]: first["accuracy"]["original"],
               **{label: report["accuracy"]["unlearned"] for label, report in reports.items()},
               ROLE_LABELS["oracle"]: first["accuracy"]["oracle"]}
    colors = [ROLE_COLORS["original"]] + [ROLE_COLORS["unlearned"]] * len(reports) \
        + [ROLE_COLORS["oracle"]]
    fig = go.Figure()
    for key, opacity in zip(FORGET_KEYS, (1.0, 0.55)):
        values = _percent(acc[key] for acc in columns.values())
        fig.add_bar(name=ACCURACY_LABELS[key], x=list(columns), y=values, opacity=opacity,
                    marker_color=colors,
                    text=[None if v is None else f"{v:.1f}" for v in values],
                    textposition="outside")
    fig.update_layout(title="Forget accuracy after each method (solid: train, light: test)",
                      xaxis_type="category", yaxis_title="accuracy (%)",
                      yaxis_range=[0, 109], barmode="group", showlegend=False)
    return fig
