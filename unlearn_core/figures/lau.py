"""LAU's own views, from the arrays its runs store (methods/lau.py writes them):
where Partial-PGD sent the forget samples, how fast they left, and how far the attack
moved their features. Pure functions, no Streamlit, no torch; values go into the
figures as plain lists (plotly would encode numpy arrays as binary blobs)."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from . import LEGEND_BELOW

STILL_CORRECT = "lau/still_correct_share"
TARGET_MATRIX = "lau/target_matrix"
PERTURBATION_NORM = "lau/perturbation_norm"
RELATIVE_PERTURBATION_NORM = "lau/relative_perturbation_norm"


def has_lau_arrays(arrays: dict) -> bool:
    """Whether a run's arrays come from LAU (alone or with a plug-in)."""
    return TARGET_MATRIX in arrays and STILL_CORRECT in arrays


def attacked_rows(arrays: dict) -> list[int]:
    """The true classes that were attacked at least once, in class order."""
    return [int(c) for c in np.flatnonzero(np.asarray(arrays[TARGET_MATRIX]).sum(axis=1))]


def target_class_matrix(arrays: dict, classes: list[str]) -> go.Figure | None:
    """Heatmap, true class (attacked rows only) -> adversarial target class: the share
    of that class's attacks sent to each class, counts in the cells. None when nothing
    was attacked (the forget set was already misclassified)."""
    counts = np.asarray(arrays[TARGET_MATRIX])
    rows = attacked_rows(arrays)
    if not rows:
        return None
    shown = counts[rows]
    shares = shown / shown.sum(axis=1, keepdims=True)
    fig = go.Figure(go.Heatmap(
        z=(100 * shares).tolist(), x=list(classes), y=[classes[r] for r in rows],
        text=shown.tolist(), texttemplate="%{text}", colorscale="Reds", zmin=0, zmax=100,
        colorbar_title="% of the row",
        hovertemplate="true %{y} → target %{x}: %{text} attacks (%{z:.1f}%)<extra></extra>"))
    # Class names are often digits: keep them categories, in class order.
    fig.update_layout(
        title="Where Partial-PGD sent the forget samples (every attack of the run; "
              "diagonal = the attack did not leave the true class)",
        xaxis_title="adversarial target class", yaxis_title="true class",
        xaxis_type="category", yaxis_type="category", yaxis_autorange="reversed",
        height=max(220, 90 + 45 * len(rows)))
    return fig


def still_correct_curve(arrays: dict) -> go.Figure:
    """Share of the forget samples the model still classifies correctly, before
    unlearning (epoch 0) and after each epoch."""
    share = 100 * np.asarray(arrays[STILL_CORRECT], dtype=float)
    fig = go.Figure(go.Scatter(x=list(range(len(share))), y=share.tolist(), mode="lines+markers",
                               name="still correct", line_color="#d62728"))
    fig.update_layout(title="Forget samples still classified correctly (epoch 0 = before LAU)",
                      xaxis_title="epoch", yaxis_title="forget samples correct (%)",
                      yaxis_range=[0, 105], xaxis_dtick=1)
    return fig


def perturbation_norms(arrays: dict) -> go.Figure | None:
    """Per epoch, the mean L2 norm of the feature perturbation ‖ℓ_adv − ℓ_f‖ over the
    attacks, absolute and relative to ‖ℓ_f‖. None for a run without epochs."""
    absolute = np.asarray(arrays[PERTURBATION_NORM], dtype=float)
    relative = np.asarray(arrays[RELATIVE_PERTURBATION_NORM], dtype=float)
    if not len(absolute):
        return None
    epochs = list(range(1, len(absolute) + 1))
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_bar(x=epochs, y=absolute.tolist(), name="‖ℓ_adv − ℓ_f‖ (mean)", marker_color="#1f77b4")
    fig.add_scatter(x=epochs, y=relative.tolist(), name="‖ℓ_adv − ℓ_f‖ / ‖ℓ_f‖ (mean)",
                    mode="lines+markers", line_color="#ff7f0e", secondary_y=True)
    fig.update_layout(title="Partial-PGD feature perturbation per epoch", xaxis_title="epoch",
                      xaxis_dtick=1, legend=LEGEND_BELOW)
    fig.update_yaxes(title_text="L2 norm (feature units)", secondary_y=False)
    fig.update_yaxes(title_text="relative to the feature norm", rangemode="tozero",
                     secondary_y=True)
    return fig


def summary(info: dict, arrays: dict) -> str:
    """One sentence: how many epochs and steps it took, and why it stopped."""
    share = np.asarray(arrays[STILL_CORRECT], dtype=float)
    epochs = info.get("epochs_run", len(share) - 1)
    steps = info.get("steps")
    text = f"{epochs} epoch{'s' if epochs != 1 else ''}"
    if steps is not None:
        text += f", {steps} gradient step{'s' if steps != 1 else ''} on the classifier"
    text += f": forget samples correct {100 * share[0]:.1f}% → {100 * share[-1]:.1f}%"
    reason = info.get("stop_reason")
    return f"{text} ({reason})." if reason else f"{text}."
