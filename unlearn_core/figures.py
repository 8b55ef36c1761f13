"""Pure functions from stored results to plotly figures (no Streamlit, no torch)."""

from __future__ import annotations

import plotly.graph_objects as go

ROLE_COLORS = {"unlearned": "#d62728", "original": "#7f7f7f", "oracle": "#2ca02c"}
ROLE_NAMES = {"unlearned": "Unlearned", "original": "Original", "oracle": "Retrain oracle"}
ACCURACY_LABELS = {"forget_train": "Forget (train)", "retain_train": "Retain (train)",
                   "test_forget": "Test, forget classes", "test_retain": "Test, retain classes",
                   "test": "Test, all"}


def _percent(values):
    return [None if v is None else 100 * v for v in values]


def accuracy_overview(report: dict) -> go.Figure:
    """Grouped bars: each accuracy of the protocol for unlearned, original and oracle."""
    keys = [k for k in ACCURACY_LABELS if report["accuracy"]["unlearned"][k] is not None]
    fig = go.Figure()
    for role in ("original", "unlearned", "oracle"):
        values = _percent(report["accuracy"][role][k] for k in keys)
        fig.add_bar(name=ROLE_NAMES[role], x=[ACCURACY_LABELS[k] for k in keys], y=values,
                    marker_color=ROLE_COLORS[role],
                    text=[f"{v:.1f}" for v in values], textposition="outside")
    fig.update_layout(title="Accuracy: unlearned vs original vs retrain oracle",
                      yaxis_title="accuracy (%)", yaxis_range=[0, 109], barmode="group",
                      legend_orientation="h", legend_y=-0.15)
    return fig


def per_class_accuracy(report: dict) -> go.Figure:
    """Test accuracy per class; forget classes are marked on the axis."""
    classes = report["classes"]
    forget = set(report.get("forget_classes", []))
    labels = [f"{name} ✕" if i in forget else name for i, name in enumerate(classes)]
    fig = go.Figure()
    for role in ("original", "unlearned", "oracle"):
        fig.add_bar(name=ROLE_NAMES[role], x=labels,
                    y=_percent(report["accuracy"][role]["per_class_test"]),
                    marker_color=ROLE_COLORS[role])
    # Class names are often digits: without a category axis plotly reads them as
    # numbers and silently drops the marked forget class.
    fig.update_layout(title="Test accuracy per class (✕ = forget class)",
                      xaxis_title="class", xaxis_type="category",
                      yaxis_title="accuracy (%)", yaxis_range=[0, 105],
                      barmode="group", legend_orientation="h", legend_y=-0.2)
    return fig


def training_curves(report: dict) -> go.Figure | None:
    """Per-epoch loss curves the method recorded, or None if it recorded none."""
    curves = {k: v for k, v in report.get("method", {}).get("curves", {}).items()
              if v and not k.endswith("_per_step")}
    if not curves:
        return None
    fig = go.Figure()
    for name, values in curves.items():
        fig.add_scatter(x=list(range(1, len(values) + 1)), y=values, mode="lines+markers", name=name)
    fig.update_layout(title="Unlearning loss per epoch", xaxis_title="epoch", yaxis_title="loss")
    return fig
