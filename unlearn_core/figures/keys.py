"""The Keys page's views of a DKVB unlearning run, from the arrays methods/dkvb.py stores:
which (codebook, key) pairs the forget and retain data select before and after the
masking, which keys only the forget classes use, the N sweep (the paper's Figs. 2-3)
and the cost next to other methods on the same frozen encoder. Pure functions, no
Streamlit, no torch; values go into figures as plain lists."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..config import ENCODER_MODELS
from . import LEGEND_BELOW, CLASS_COLORS, FORGET_COLOR, _translucent

MASK = "dkvb/mask"
KEY_CLASS = "dkvb/key_class_usage"
SWEEP_N = "dkvb/sweep_n"
RETAIN_COLOR = "#1f77b4"


def usage(arrays: dict, part: str, when: str) -> np.ndarray:
    """(C, P) selection counts of the "forget" or "retain" training set, "before" or
    "after" the masking."""
    return np.asarray(arrays[f"dkvb/usage_{part}_{when}"])


# The shipped methods that mask keys (a user's method on a dkvb model may too: the pages
# go by the arrays).
KEY_MASKING_METHODS = ("dkvb_activations", "dkvb_examples")


def is_key_masking_run(arrays: dict) -> bool:
    return MASK in arrays


def summary(report: dict, arrays: dict) -> dict:
    """The headline numbers: pairs masked, forget selections those pairs held, retain
    selections they cost, and how exclusive the forget set's pairs were."""
    mask = np.asarray(arrays[MASK])
    forget, retain = usage(arrays, "forget", "before"), usage(arrays, "retain", "before")
    used = forget > 0
    exclusive = used & (retain == 0)
    info = report.get("method", {}).get("info", {})
    return {
        "n": info.get("n"), "pairs_masked": int(mask.sum()), "pairs_total": int(mask.size),
        "forget_pairs_used": int(used.sum()), "exclusive_pairs": int(exclusive.sum()),
        "masked_exclusive": int((mask & exclusive).sum()),
        "forget_selections_masked": float(forget[mask].sum() / max(forget.sum(), 1)),
        "retain_selections_masked": float(retain[mask].sum() / max(retain.sum(), 1)),
    }


def codebook_overview(arrays: dict) -> go.Figure:
    """Per codebook: keys the forget set selects, those of them no retain example
    selects, and the keys masked."""
    mask = np.asarray(arrays[MASK])
    forget, retain = usage(arrays, "forget", "before"), usage(arrays, "retain", "before")
    x = list(range(mask.shape[0]))
    fig = go.Figure()
    fig.add_bar(x=x, y=(forget > 0).sum(1).tolist(), name="keys the forget set selects",
                marker_color=_translucent(FORGET_COLOR, 0.35))
    fig.add_bar(x=x, y=((forget > 0) & (retain == 0)).sum(1).tolist(),
                name="... that no retain example selects", marker_color=FORGET_COLOR)
    fig.add_scatter(x=x, y=mask.sum(1).tolist(), mode="markers", name="keys masked",
                    marker={"symbol": "x", "color": "black", "size": 7})
    fig.update_layout(title="Keys per codebook: used by the forget set, exclusive to it, masked",
                      xaxis_title="codebook", yaxis_title="keys", barmode="overlay",
                      legend=LEGEND_BELOW)
    return fig


def codebooks_by_masking(arrays: dict) -> list[int]:
    """Codebooks with the most masked keys first (the interesting ones to open)."""
    masked = np.asarray(arrays[MASK]).sum(1)
    return [int(c) for c in np.argsort(-masked, kind="stable")]


def usage_histogram(arrays: dict, codebook: int) -> go.Figure:
    """Key usage of one codebook, forget vs retain set, before (top) and after (bottom)
    the masking. Only keys some training example selects are shown, the forget set's
    favourites first; masked keys carry an ✕."""
    mask = np.asarray(arrays[MASK])[codebook]
    before = {part: usage(arrays, part, "before")[codebook] for part in ("forget", "retain")}
    after = {part: usage(arrays, part, "after")[codebook] for part in ("forget", "retain")}
    shown = np.flatnonzero(before["forget"] + before["retain"] + after["forget"]
                           + after["retain"])
    shown = shown[np.lexsort((-before["retain"][shown], -before["forget"][shown]))]
    labels = [f"{k} ✕" if mask[k] else str(k) for k in shown]
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=("before unlearning", "after unlearning"))
    for row, counts in ((1, before), (2, after)):
        for part, color in (("retain", RETAIN_COLOR), ("forget", FORGET_COLOR)):
            fig.add_bar(x=labels, y=counts[part][shown].tolist(), name=f"{part} set",
                        marker_color=color, legendgroup=part, showlegend=row == 1,
                        row=row, col=1)
    masked_labels = [label for label, k in zip(labels, shown) if mask[k]]
    for row in (1, 2):
        fig.add_scatter(x=masked_labels, y=[0] * len(masked_labels), mode="markers",
                        marker={"symbol": "x", "color": "black", "size": 8}, name="masked",
                        legendgroup="masked", showlegend=row == 1, row=row, col=1)
    fig.update_xaxes(type="category", title_text=f"key of codebook {codebook} (✕ = masked)",
                     row=2, col=1)
    fig.update_yaxes(title_text="selections")
    fig.update_layout(title=f"Codebook {codebook}: which keys the training examples select",
                      barmode="group", legend=LEGEND_BELOW, height=520)
    return fig


def key_class_matrix(report: dict, arrays: dict, top: int = 40) -> go.Figure:
    """The `top` pairs the forget classes select most (before unlearning) x classes:
    each row is that pair's selections split by class, in % of the row. A row that is
    all forget class is a key only the forget class uses. ✕ marks masked pairs."""
    counts = np.asarray(arrays[KEY_CLASS])
    codebooks, keys, num_classes = counts.shape
    flat = counts.reshape(-1, num_classes)
    forget_classes = list(report.get("forget_classes") or [])
    weight = flat[:, forget_classes].sum(1) if forget_classes else usage(
        arrays, "forget", "before").reshape(-1)
    rows = [int(i) for i in np.argsort(-weight, kind="stable")[:top] if weight[i] > 0]
    mask = np.asarray(arrays[MASK]).reshape(-1)
    shares = flat[rows] / np.maximum(flat[rows].sum(1, keepdims=True), 1)
    classes = list(report.get("classes") or range(num_classes))
    x = [f"{name} ✕" if c in forget_classes else str(name) for c, name in enumerate(classes)]
    y = [f"c{i // keys}/k{i % keys}" + (" ✕" if mask[i] else "") for i in rows]
    fig = go.Figure(go.Heatmap(
        z=(100 * shares).tolist(), x=x, y=y, text=flat[rows].tolist(), texttemplate="%{text}",
        colorscale="Reds", zmin=0, zmax=100, colorbar_title="% of the key's selections",
        hovertemplate="pair %{y}, class %{x}: %{text} selections (%{z:.0f}%)<extra></extra>"))
    fig.update_layout(
        title=f"The {len(rows)} pairs the forget set selects most, split by class "
              "(✕ on a row = masked, on a column = forget class)",
        xaxis_title="class", yaxis_title="codebook/key", xaxis_type="category",
        yaxis_type="category", yaxis_autorange="reversed", height=max(300, 80 + 18 * len(rows)))
    return fig


def sweep_curve(report: dict, arrays: dict) -> go.Figure | None:
    """The N sweep: held-out forget and sampled retain accuracy as N grows (left) and
    retain vs forget accuracy coloured by N (right, as the paper's Figs. 2-3), with the
    N the sweep chose. None for a run without a sweep."""
    if SWEEP_N not in arrays:
        return None
    n = np.asarray(arrays[SWEEP_N]).tolist()
    forget = (100 * np.asarray(arrays["dkvb/sweep_forget_accuracy"])).tolist()
    retain = (100 * np.asarray(arrays["dkvb/sweep_retain_accuracy"])).tolist()
    info = report.get("method", {}).get("info", {})
    chosen = info.get("n_swept")
    fig = make_subplots(rows=1, cols=2, subplot_titles=(
        "validation accuracy as N grows", "retain vs forget accuracy (colour = N)"))
    fig.add_scatter(x=n, y=forget, mode="lines+markers", name="forget (held-out)",
                    line_color=FORGET_COLOR, row=1, col=1)
    fig.add_scatter(x=n, y=retain, mode="lines+markers", name="retain (sample)",
                    line_color=RETAIN_COLOR, row=1, col=1)
    fig.add_scatter(x=forget, y=retain, mode="markers", showlegend=False,
                    text=[f"N = {v:,}" for v in n],
                    hovertemplate="%{text}: forget %{x:.1f}%, retain %{y:.1f}%<extra></extra>",
                    marker={"color": np.log10(n).tolist(), "colorscale": "Viridis", "size": 9,
                            "colorbar": {"title": "log10 N", "x": 1.02}}, row=1, col=2)
    if chosen is not None and chosen in n:
        i = n.index(chosen)
        fig.add_vline(x=chosen, line_dash="dash", line_color="black", row=1, col=1)
        fig.add_scatter(x=[forget[i]], y=[retain[i]], mode="markers", name=f"chosen N = {chosen:,}",
                        marker={"symbol": "star", "size": 16, "color": "black"}, row=1, col=2)
    fig.update_xaxes(type="log", title_text="N", row=1, col=1)
    fig.update_xaxes(title_text="forget accuracy (%)", row=1, col=2)
    fig.update_yaxes(title_text="accuracy (%)", row=1, col=1)
    fig.update_yaxes(title_text="retain accuracy (%)", row=1, col=2)
    fig.update_layout(title="The N sweep (validation data, never the test set)",
                      legend=LEGEND_BELOW)
    return fig


def _encoder_of(model: dict) -> tuple:
    """The trained trunk a model stands on: its encoder's for DKVB and frozen_linear."""
    if model.get("name") in ENCODER_MODELS:
        return model.get("encoder"), model.get("width")
    return model.get("name"), model.get("width")


def cost_rows(run_id: str, records: list) -> list[dict]:
    """Cost of the run `run_id` next to every finished run on the same data, forget set
    and seed whose model stands on the same trained encoder (DKVB, frozen_linear or the
    encoder model itself). `records` are run records (id, label, spec, report)."""
    by_id = {r.id: r for r in records}
    setup = by_id[run_id].spec["setup"]

    def comparable(spec: dict) -> bool:
        other = spec["setup"]
        return (other["data"] == setup["data"] and other["forget"] == setup["forget"]
                and other["seed"] == setup["seed"]
                and _encoder_of(other["model"]) == _encoder_of(setup["model"]))

    rows = []
    for record in records:
        # The setup first: only a comparable run's report is read.
        if not comparable(record.spec) or record.report is None:
            continue
        info = record.report["method"].get("info", {})
        rows.append({
            "run": record.id, "method": record.report["method"]["title"],
            "model": record.spec["setup"]["model"]["name"],
            "seconds": record.report["cost"]["seconds"],
            "unlearning_seconds": info.get("unlearning_seconds", record.report["cost"]["seconds"]),
            "gradient_steps": info.get("gradient_steps", info.get("steps")),
            "forward_examples": info.get("encoder_forward_examples"),
            "this_run": record.id == run_id})
    return sorted(rows, key=lambda r: r["unlearning_seconds"])


def cost_figure(rows: list[dict]) -> go.Figure:
    """Unlearning seconds per run (log scale), labelled with gradient steps or forward
    examples."""
    labels = [f"{r['method']} [{r['model']}]" + (" ◀ this run" if r["this_run"] else "")
              for r in rows]
    text = [f"{r['forward_examples']:,} examples forward, 0 steps"
            if r["forward_examples"] is not None else "steps n/a"
            if r["gradient_steps"] is None else f"{r['gradient_steps']:,} gradient steps"
            for r in rows]
    colors = [FORGET_COLOR if r["forward_examples"] is not None else CLASS_COLORS[0] for r in rows]
    fig = go.Figure(go.Bar(x=[r["unlearning_seconds"] for r in rows], y=labels, orientation="h",
                           text=text, textposition="auto", marker_color=colors))
    fig.update_layout(title="Cost of the unlearning itself (same data, forget set, seed and "
                            "encoder)", xaxis_title="seconds (log scale)", xaxis_type="log",
                      yaxis_autorange="reversed", height=max(240, 60 + 40 * len(rows)))
    return fig

