"""Figures of localized unlearning runs ("del", "localized"): where the mask falls per
layer and per channel, how it lines up with the CKA curve and with the channels'
forget-vs-retain selectivity, and how the results move with the budget ρ. Pure
functions of a run's report and arrays (methods/localization.py names them)."""

from __future__ import annotations

import math
import statistics
from typing import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from . import LEGEND_BELOW, ROLE_COLORS, cka_per_layer

LOCALIZED_METHODS = ("del", "localized")
SELECTED_COLOR = "#d62728"
UNSELECTED_COLOR = "#7f7f7f"
SERIES_COLORS = ("#d62728", "#1f77b4", "#ff7f0e", "#9467bd", "#8c564b", "#17becf",
                 "#e377c2", "#bcbd22")
# What a budget sweep plots: (label, where the value is in a report).
SWEEP_METRICS = (("forget_train", "forget accuracy (%)"), ("mia", "MIA efficacy, confidence (%)"),
                 ("test", "test accuracy (%)"))


def localization_params(report: dict) -> dict:
    """strategy, algorithm, random_like and rho of a localized run; "del" is the DEL mask
    with Reset + Finetune."""
    method = report["method"]
    params = method["params"]
    if method["name"] == "del":
        return {"strategy": "del", "algorithm": "rft", "random_like": None, "rho": params["rho"]}
    return {"strategy": params["strategy"], "algorithm": params["algorithm"],
            "random_like": params["random_like"] if params["strategy"] == "random" else None,
            "rho": params["rho"]}


def series_label(report: dict) -> str:
    """"strategy · algorithm", e.g. "del · rft" or "random (like del) · rft"."""
    p = localization_params(report)
    strategy = p["strategy"] + (f" (like {p['random_like']})" if p["random_like"] else "")
    return f"{strategy} · {p['algorithm']}"


def _info(report: dict) -> dict:
    return report["method"]["info"]["localization"]


def selected_fraction_bars(runs: Sequence[tuple[str, dict, dict]]) -> go.Figure:
    """Per probe layer, the share of channels (left) and of parameters (right) each run's
    mask selected; `runs` = (label, report, arrays), drawn side by side."""
    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, horizontal_spacing=0.06,
                        subplot_titles=("channels selected", "parameters selected"))
    for index, (label, report, arrays) in enumerate(runs):
        layers = _info(report)["layers"]
        color = SERIES_COLORS[index % len(SERIES_COLORS)]
        for column, key in ((1, "mask/stage_channel_fraction"), (2, "mask/stage_parameter_fraction")):
            values = 100 * np.asarray(arrays[key], dtype=float)
            fig.add_bar(x=layers, y=values.tolist(), name=label, legendgroup=label,
                        showlegend=column == 1, marker_color=color,
                        text=[f"{v:.0f}" for v in values], textposition="outside",
                        row=1, col=column)
    fig.update_xaxes(title_text="layer (shallow → deep)", type="category")
    fig.update_yaxes(title_text="selected (%)", range=[0, 109], row=1, col=1)
    fig.update_layout(title="Where the mask falls: selected share per layer",
                      barmode="group", legend=LEGEND_BELOW)
    return fig


def criticality_heatmap(report: dict, arrays: dict) -> go.Figure:
    """Channel x layer criticality (log10 of the strategy's channel score; the
    reference's for a random mask) with the selected channels marked by open squares.
    A score of 0 (a channel without gradient, e.g. a dead unit) is left blank.
    Strategies without scores (shallowest, deepest) show the selected share instead."""
    info = _info(report)
    labels = info["weight_tensors"]
    scored = "mask/criticality" in arrays
    values = np.asarray(arrays["mask/criticality" if scored else "mask/channel_fraction"],
                        dtype=float)
    rows = np.arange(values.shape[0])
    if scored:
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.where(values > 0, np.log10(values), np.nan)
        source = info.get("scores_from") or info["strategy"]
        title = (f"Channel criticality ({source} scores) · □ = selected by "
                 f"{info['strategy']}")
        colorbar = "log10 score"
    else:
        z, title, colorbar = values, f"Selected share of each channel ({info['strategy']})", "share"
    fig = go.Figure(go.Heatmap(
        z=np.where(np.isnan(z), None, z).tolist(), x=labels, y=rows.tolist(),
        colorscale="Viridis", colorbar_title=colorbar, hoverongaps=False,
        hovertemplate="%{x}, channel %{y}<br>" + colorbar + " %{z:.3g}<extra></extra>"))
    pairs = np.asarray(arrays["mask/selected_channels"]).reshape(-1, 2)
    fig.add_scatter(x=[labels[j] for j in pairs[:, 0]], y=pairs[:, 1].tolist(), mode="markers",
                    name="selected channel", hoverinfo="skip",
                    marker={"symbol": "square-open", "size": 7, "color": "white",
                            "line": {"width": 1.5}})
    fig.update_layout(title=title, xaxis_title="layer (weight tensor)", xaxis_type="category",
                      yaxis_title="output channel", legend=LEGEND_BELOW,
                      height=520)
    return fig


def mask_on_cka(report: dict, arrays: dict, part: str = "forget_train") -> go.Figure:
    """The run's CKA-per-layer curve against the original (and the oracle's reference
    curve), with the share of each layer's parameters the mask selected as bars on a
    second axis: does the representation move where the mask is?"""
    fig = cka_per_layer(report, (part,), "original")
    fig.add_bar(x=_info(report)["layers"], y=np.asarray(
        arrays["mask/stage_parameter_fraction"], dtype=float).tolist(),
                name="parameters selected (right axis)", yaxis="y2", opacity=0.3,
                marker_color=SELECTED_COLOR)
    fig.update_layout(title="CKA to the original per layer, with the mask per layer",
                      yaxis2={"title": "share of the layer's parameters selected",
                              "overlaying": "y", "side": "right", "range": [0, 1.05],
                              "tickformat": ".0%", "dtick": 0.2, "showgrid": False})
    return fig


def selectivity_by_selection(report: dict, arrays: dict) -> go.Figure:
    """Per layer, the forget-vs-retain selectivity (Cohen's d of the channel's mean
    activation on the original model, see `channel_selectivity`) of the channels the
    mask selected next to the ones it did not."""
    layers = _info(report)["layers"]
    values = np.asarray(arrays["selectivity/value"], dtype=float)
    flags = np.asarray(arrays["selectivity/selected"], dtype=float)
    fig = go.Figure()
    for flag, name, color in ((1.0, "selected", SELECTED_COLOR),
                              (0.0, "not selected", UNSELECTED_COLOR)):
        keep = (flags == flag) & ~np.isnan(values)
        columns = np.nonzero(keep)[1]
        fig.add_box(x=[layers[j] for j in columns], y=values[keep].tolist(), name=name,
                    marker_color=color, boxpoints="all", jitter=0.4, pointpos=0)
    fig.add_hline(y=0, line_width=1, line_color="grey")
    fig.update_layout(title="Forget-vs-retain selectivity of channels on the original model",
                      xaxis_title="layer (shallow → deep)", xaxis_type="category",
                      xaxis_categoryorder="array", xaxis_categoryarray=layers,
                      yaxis_title="selectivity (Cohen's d, forget − retain)",
                      boxmode="group", legend=LEGEND_BELOW)
    return fig


def _metric(report: dict, role: str, key: str) -> float | None:
    if key == "mia":
        return report["mia"]["efficacy"][role]["confidence"]
    return report["accuracy"][role][key]


def _summary(values: list) -> dict:
    known = [v for v in values if v is not None and math.isfinite(v)]
    return {"mean": statistics.fmean(known) if known else None,
            "std": statistics.stdev(known) if len(known) > 1 else None}


def training_setting(report: dict) -> str:
    """The learning rate and epochs a localized run trained with, e.g. "lr 0.1, 3 epochs"."""
    params = report["method"]["params"]
    return f"lr {params['lr']:g}, {params['epochs']} epochs"


def best_per_budget(reports: Sequence[dict]) -> list[dict]:
    """Per strategy · algorithm, ρ and setup (the oracle the runs are judged against),
    the run closest to the oracle (SalUn's average gap): the paper's per-budget tuning of
    the learning rate and epochs, read off the runs of a grid. Ties keep the first run."""
    best: dict[tuple, tuple[float, dict]] = {}
    for report in reports:
        gap = report["average_gap"]["unlearned"]
        if gap is None:
            continue
        key = (series_label(report), localization_params(report)["rho"],
               report.get("oracle", {}).get("key"))
        if key not in best or gap < best[key][0]:
            best[key] = (gap, report)
    return [report for _, report in best.values()]


def sweep_points(reports: Sequence[dict], tuned: bool = False) -> list[dict]:
    """One point per (series, ρ): mean and sample std over the runs (seeds) of forget
    accuracy, MIA efficacy (confidence) and test accuracy, sorted by series then ρ.

    With `tuned`, each setup contributes its best run per ρ (`best_per_budget`) and each
    point lists the settings chosen; otherwise runs that trained with different settings
    are separate series, so no point averages over learning rates."""
    if tuned:
        reports = best_per_budget(reports)
    settings_of: dict[str, set[str]] = {}
    for report in reports:
        settings_of.setdefault(series_label(report), set()).add(training_setting(report))
    groups: dict[tuple[str, float], list[dict]] = {}
    for report in reports:
        series = series_label(report)
        if not tuned and len(settings_of[series]) > 1:
            series += f" ({training_setting(report)})"
        groups.setdefault((series, localization_params(report)["rho"]), []).append(report)
    return [{"series": series, "rho": rho, "n": len(group),
             "settings": sorted({training_setting(r) for r in group}),
             **{key: _summary([_metric(r, "unlearned", key) for r in group])
                for key, _ in SWEEP_METRICS}}
            for (series, rho), group in sorted(groups.items())]


def budget_sweep(reports: Sequence[dict], tuned: bool = False) -> go.Figure:
    """Forget accuracy, MIA efficacy and test accuracy against the budget ρ, one line per
    strategy · algorithm (mean ± std over seeds), the oracle's mean as a dashed line; with
    `tuned`, each point from the best learning rate and epochs at that ρ (hover: which)."""
    fig = make_subplots(rows=1, cols=len(SWEEP_METRICS), horizontal_spacing=0.07,
                        subplot_titles=[title for _, title in SWEEP_METRICS])
    points = sweep_points(reports, tuned)
    for index, series in enumerate(dict.fromkeys(p["series"] for p in points)):
        mine = [p for p in points if p["series"] == series]
        color = SERIES_COLORS[index % len(SERIES_COLORS)]
        for column, (key, _) in enumerate(SWEEP_METRICS, start=1):
            fig.add_scatter(
                x=[p["rho"] for p in mine], mode="lines+markers", name=series,
                y=[None if p[key]["mean"] is None else 100 * p[key]["mean"] for p in mine],
                error_y={"type": "data", "visible": True,
                         "array": [100 * (p[key]["std"] or 0.0) for p in mine]},
                legendgroup=series, showlegend=column == 1, line_color=color,
                customdata=["; ".join(p["settings"]) for p in mine],
                hovertemplate="ρ %{x}: %{y:.1f}%<br>%{customdata}<extra>" + series + "</extra>",
                row=1, col=column)
    for column, (key, _) in enumerate(SWEEP_METRICS, start=1):
        oracle = _summary([_metric(r, "oracle", key) for r in reports])["mean"]
        if oracle is not None:
            fig.add_hline(y=100 * oracle, line_dash="dash", line_color=ROLE_COLORS["oracle"],
                          annotation_text="oracle", row=1, col=column)
    fig.update_xaxes(title_text="budget ρ (share of parameters)")
    fig.update_layout(title="Budget sweep: results against ρ (dashed: the retrain oracle)"
                      + (", the best lr and epochs per ρ" if tuned else ""),
                      legend=LEGEND_BELOW, height=420)
    return fig
