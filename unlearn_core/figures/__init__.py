"""Pure functions from stored results to plotly figures (no Streamlit, no torch)."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .. import array_keys
# The labels are the vocabulary's; pages and exports read them through figures.
from ..vocabulary import (PART_LABELS, REFERENCE_ROLES, ROLE_LABELS,  # noqa: F401
                          ROLES_BEFORE_AFTER)

ROLE_COLORS = {"unlearned": "#d62728", "original": "#7f7f7f", "oracle": "#2ca02c"}
# A horizontal legend under the chart, placed from the bottom of the whole figure: placed
# from the plot area (y=-0.2), it ran into the x-axis title once presenter mode enlarged
# the text.
LEGEND_BELOW = {"orientation": "h", "yref": "container", "y": 0, "yanchor": "bottom"}
SEED_NOISE_COLOR = "#9467bd"
# Several runs in one chart beside the references: D3's colours without the three roles'
# (a run drawn in the oracle's green read as the oracle).
RUN_COLORS = ("#1f77b4", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf")
ACCURACY_LABELS = {"forget_train": "Forget (train)", "retain_train": "Retain (train)",
                   "test_forget": "Test, forget classes", "test_retain": "Test, retain classes",
                   "test": "Test, all"}


def format_percent(value: float | None) -> str:
    """A fraction as "12.3%", or "n/a" where the value does not exist for this setup."""
    return "n/a" if value is None else f"{100 * value:.1f}%"


def format_speedup(speedup: float | None) -> str | None:
    """Retraining time over unlearning time as "4.0× faster than retraining" (or "2.5×
    slower"); None where it is unknown (an imported oracle has no retraining time)."""
    if speedup is None or not np.isfinite(speedup) or speedup <= 0:
        return None
    if speedup >= 1:
        return f"{speedup:.1f}× faster than retraining"
    return f"{1 / speedup:.1f}× slower than retraining"


def _percent(values):
    return [None if v is None else 100 * v for v in values]


def accuracy_overview(report: dict) -> go.Figure:
    """Grouped bars: each accuracy of the protocol for unlearned, original and oracle."""
    keys = [k for k in ACCURACY_LABELS if report["accuracy"]["unlearned"][k] is not None]
    fig = go.Figure()
    for role in ROLES_BEFORE_AFTER:
        values = _percent(report["accuracy"][role][k] for k in keys)
        fig.add_bar(name=ROLE_LABELS[role], x=[ACCURACY_LABELS[k] for k in keys], y=values,
                    marker_color=ROLE_COLORS[role],
                    text=[f"{v:.1f}" for v in values], textposition="outside")
    fig.update_layout(title="Accuracy: unlearned vs original vs retrain oracle",
                      yaxis_title="accuracy (%)", yaxis_range=[0, 109], barmode="group",
                      legend=LEGEND_BELOW)
    return fig


def per_class_accuracy(report: dict) -> go.Figure:
    """Test accuracy per class; forget classes are marked on the axis."""
    classes = report["classes"]
    forget = set(report.get("forget_classes", []))
    labels = [f"{name} ✕" if i in forget else name for i, name in enumerate(classes)]
    fig = go.Figure()
    for role in ROLES_BEFORE_AFTER:
        fig.add_bar(name=ROLE_LABELS[role], x=labels,
                    y=_percent(report["accuracy"][role]["per_class_test"]),
                    marker_color=ROLE_COLORS[role])
    # Class names are often digits: without a category axis plotly reads them as
    # numbers and silently drops the marked forget class.
    fig.update_layout(title="Test accuracy per class (✕ = forget class)",
                      xaxis_title="class", xaxis_type="category",
                      yaxis_title="accuracy (%)", yaxis_range=[0, 105],
                      barmode="group", legend=LEGEND_BELOW)
    return fig


def forget_set_by_class(train_labels: np.ndarray, forget: np.ndarray,
                        classes: list[str]) -> go.Figure:
    """Each class's training examples, stacked: those in the forget set and those the model
    keeps (a class forget set is one whole bar; a random or non-IID one spreads)."""
    total = np.bincount(train_labels, minlength=len(classes))
    forgotten = np.bincount(train_labels[forget], minlength=len(classes))
    fig = go.Figure()
    for key, counts in (("forget_train", forgotten), ("retain_train", total - forgotten)):
        fig.add_bar(name=ACCURACY_LABELS[key], x=list(classes), y=counts.tolist(),
                    marker_color=PART_COLORS[key])
    # Two title lines and no x-axis title (the ticks are the classes): the chart also
    # sits in half a page, in presenter mode with larger text.
    fig.update_layout(title=f"Training examples per class<br>{len(forget):,} to forget, "
                            f"{int(total.sum()) - len(forget):,} to keep",
                      xaxis_type="category", yaxis_title="examples", barmode="stack",
                      legend={**LEGEND_BELOW, "traceorder": "normal"},
                      height=380)
    return fig


def training_curves(report: dict) -> go.Figure | None:
    """Per-epoch loss curves the method recorded, or None if it recorded none. Curves
    with a figure of their own stay off it: EC's per-layer terms, and shares of the
    forget set still classified correctly."""
    curves = {k: v for k, v in report.get("method", {}).get("curves", {}).items()
              if v and not k.endswith(("_per_step", "_correct")) and not k.startswith("ec/")}
    if not curves:
        return None
    fig = go.Figure()
    for name, values in curves.items():
        fig.add_scatter(x=list(range(1, len(values) + 1)), y=values, mode="lines+markers", name=name)
    fig.update_layout(title="Unlearning loss per epoch", xaxis_title="epoch", yaxis_title="loss")
    return fig


# --- inside the model: layers, privacy, embeddings ----------------------------------

PART_COLORS = {"forget_train": "#d62728", "retain_train": "#1f77b4",
               "forget_test": "#ff7f0e", "retain_test": "#17becf"}
REFERENCE_PAIR = "oracle_vs_original"
PAIR_NAMES = {"unlearned_vs_original": "Unlearned vs original",
              "unlearned_vs_oracle": "Unlearned vs oracle",
              REFERENCE_PAIR: "Oracle vs original (reference)"}
MIA_FEATURE_LABELS = {"confidence": "Confidence", "correctness": "Correctness",
                      "entropy": "Entropy", "m_entropy": "Modified entropy"}
SCORE_NAMES = {"conf": "Confidence", "entropy": "Entropy"}
SCORE_AXIS_TITLES = {"conf": "confidence p_y", "entropy": "entropy of the softmax (nats)"}
# Ten class colours without red, the colour of forget examples.
CLASS_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2",
                "#bcbd22", "#17becf", "#393b79", "#637939")
FORGET_COLOR = "#d62728"
NOT_SIGNIFICANT_COLOR = "#9e9e9e"


def _translucent(hex_color: str, alpha: float) -> str:
    red, green, blue = (int(hex_color[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({red},{green},{blue},{alpha})"


def _known(values) -> list[float]:
    return [v for v in values if v is not None]


def _band_outline(names: list[str], low: list, high: list) -> tuple[list, list]:
    """A closed outline (along the lower edge, back along the upper) for each run of
    layers where both edges are known, runs separated by None, for fill="toself": a
    layer without a value breaks the band instead of being bridged."""
    xs, ys = [], []
    run: list[int] = []
    for i in range(len(names) + 1):
        if i < len(names) and low[i] is not None and high[i] is not None:
            run.append(i)
            continue
        if run:
            xs += [names[j] for j in run] + [names[j] for j in reversed(run)] + [None]
            ys += [low[j] for j in run] + [high[j] for j in reversed(run)] + [None]
            run = []
    return xs, ys


def cka_per_layer(report: dict, parts=("forget_train",), reference: str = "original",
                  show_band: bool = True) -> go.Figure:
    """Linear CKA per layer between the unlearned model and `reference` ("original" or
    "oracle"), one solid line per part, next to the dashed oracle-vs-original curve: the
    change a retrained model shows, i.e. what core forgetting looks like. The shaded band
    is the 95% bootstrap interval over examples."""
    if reference not in REFERENCE_ROLES:
        raise ValueError(f"reference: expected 'original' or 'oracle', got {reference!r}")
    layers = report["layers"]
    names = layers["names"]
    pairs = (f"unlearned_vs_{reference}", REFERENCE_PAIR)
    fig = go.Figure()
    plotted = []
    for part in parts:
        color = PART_COLORS[part]
        for pair in pairs:
            group = f"{pair}/{part}"
            # Bands are computed on forget parts only: elsewhere they are null.
            band = layers["cka_band"].get(pair, {}).get(part)
            band_x, band_y = _band_outline(names, band["low"], band["high"]) if band else ([], [])
            if show_band and band_x:
                fig.add_scatter(x=band_x, y=band_y, mode="lines", line_width=0, fill="toself",
                                fillcolor=_translucent(color, 0.15), legendgroup=group,
                                showlegend=False, hoverinfo="skip",
                                name=f"{PAIR_NAMES[pair]} · {PART_LABELS[part]}, 95% band")
                plotted += band["low"] + band["high"]
            values = layers["cka"][pair][part]
            plotted += values
            fig.add_scatter(x=names, y=values, mode="lines+markers", legendgroup=group,
                            name=f"{PAIR_NAMES[pair]} · {PART_LABELS[part]}",
                            line={"color": color,
                                  "dash": "dash" if pair == REFERENCE_PAIR else "solid"})
        twin = (layers.get("seed_noise") or {}).get(part)
        if twin is not None and reference == "original":
            # Everything above the twin's curve is within what another seed alone changes.
            band_x, band_y = _band_outline(names, twin, [1.0] * len(twin))
            fig.add_scatter(x=band_x, y=band_y, mode="lines", line_width=0, fill="toself",
                            fillcolor=_translucent(SEED_NOISE_COLOR, 0.25), hoverinfo="skip",
                            name=f"Seed noise · {PART_LABELS[part]} (an original trained "
                                 "with the oracle's seed, up to 1)")
            plotted += twin
    return layer_axes(fig, names, plotted,
                      f"Linear CKA per layer: unlearned vs {ROLE_LABELS[reference].lower()}"
                      " (dashed: oracle vs original)", "linear CKA (1 = same representation)")


def layer_axes(fig: go.Figure, names: list[str], plotted: list, title: str,
               yaxis_title: str) -> go.Figure:
    """Lay out a CKA-per-layer chart: layers in model order, the y range from 1.05 down
    to the lowest value `plotted`."""
    # Debiased CKA can dip below 0: keep such values on the chart.
    lowest = min(_known(plotted), default=0.0)
    fig.update_layout(title=title, xaxis_title="layer (shallow → deep)", xaxis_type="category",
                      # A band broken by a null would otherwise order the layers by
                      # first appearance and move the broken layer to the end.
                      xaxis_categoryorder="array", xaxis_categoryarray=names,
                      yaxis_title=yaxis_title, yaxis_range=[min(0.0, lowest) - 0.02, 1.05],
                      legend=LEGEND_BELOW)
    return fig


def forgetting_depth_bars(report: dict, part: str) -> go.Figure:
    """Forgetting depth per layer on a forget part: 0 = as the original, 1 = moved as far
    as the oracle did. Layers without a depth (null: the oracle did not move there, or
    CKA is undefined) are marked "n/a" instead of drawn as 0."""
    layers = report["layers"]
    names, depth = layers["names"], layers["depth"][part]
    fig = go.Figure()
    fig.add_bar(x=names, y=depth, name="forgetting depth", marker_color=PART_COLORS[part],
                text=[None if v is None else f"{v:.2f}" for v in depth],
                textposition="outside")
    for name, value in zip(names, depth):
        if value is None:
            fig.add_annotation(x=name, y=0, yanchor="bottom", showarrow=False,
                               text="n/a<br>(undefined)")  # short lines: they sit side by side
    fig.update_layout(title=f"Forgetting depth per layer, {PART_LABELS[part]}",
                      xaxis_title="layer (shallow → deep)", xaxis_type="category",
                      yaxis_title="depth (0 = as original, 1 = as oracle)",
                      yaxis_range=[0, 1.15])
    return fig


def cka_excess_bars(report: dict, part: str) -> go.Figure | None:
    """CKA(unlearned, original) - CKA(oracle, original) per layer on a forget part, with
    its paired 95% interval: above 0, the layer stayed closer to the original than the
    oracle's did (the superficial-forgetting signature), even where the oracle moved too
    little for a depth. None for runs stored before it existed."""
    excess = report["layers"].get("cka_excess", {}).get(part)
    if excess is None:
        return None
    names, values = report["layers"]["names"], excess["value"]
    upper = [None if v is None or h is None else h - v for v, h in zip(values, excess["high"])]
    lower = [None if v is None or lo is None else v - lo for v, lo in zip(values, excess["low"])]
    significant = [lo is not None and lo > 0 for lo in excess["low"]]
    fig = go.Figure()
    fig.add_bar(x=names, y=values, name="CKA difference",
                marker_color=[FORGET_COLOR if s else NOT_SIGNIFICANT_COLOR for s in significant],
                error_y={"type": "data", "array": upper, "arrayminus": lower, "visible": True},
                text=[None if v is None else f"{v:+.3f}" for v in values],
                textposition="outside")
    fig.add_hline(y=0, line_width=1, line_color="grey")
    fig.update_layout(title=f"Closer to the original than the oracle? {PART_LABELS[part]}",
                      xaxis_title="layer (shallow → deep)", xaxis_type="category",
                      yaxis_title="CKA(unl., orig.) − CKA(oracle, orig.)")
    return fig


def probe_accuracy_per_layer(report: dict) -> go.Figure | None:
    """Held-out forget accuracy of a linear probe on each layer's frozen activations, for
    the unlearned model, the original and the oracle; None when the run has no probes
    (no held-out forget examples). A probe that still recovers the forget labels from
    the unlearned model means the information is still there. Where the run stores the
    same probes' accuracy on held-out retain examples (the baseline), it is drawn dotted."""
    layers = report["layers"]
    if layers["probes"] is None:
        return None
    names = layers["probe_layers"]
    retain = layers.get("probes_retain") or {}
    fig = go.Figure()
    for role in ROLES_BEFORE_AFTER:
        fig.add_scatter(x=names, y=_percent(layers["probes"][role]), mode="lines+markers",
                        name=ROLE_LABELS[role], line_color=ROLE_COLORS[role])
        if any(v is not None for v in retain.get(role, [])):
            fig.add_scatter(x=names, y=_percent(retain[role]), mode="lines",
                            name=f"{ROLE_LABELS[role]}, retain examples (baseline)",
                            line={"color": ROLE_COLORS[role], "dash": "dot"})
    fig.update_layout(title="Linear probe accuracy on held-out forget examples",
                      xaxis_title="layer (shallow → deep)", xaxis_type="category",
                      yaxis_title="probe accuracy (%)", yaxis_range=[0, 105],
                      legend=LEGEND_BELOW)
    return fig


def cka_heatmap(report: dict, pair: str) -> go.Figure:
    """Layer x layer linear CKA on the forget data: rows are the layers of the pair's first
    model (unlearned or oracle), columns the original's. The matrix must not be null."""
    layers = report["layers"]
    names = layers["names"]
    model = pair.split("_vs_")[0]
    fig = go.Figure(go.Heatmap(
        z=layers["cka_matrix"][pair], x=names, y=names, zmin=0, zmax=1,
        colorscale="Viridis", colorbar_title="CKA",
        hovertemplate=f"{model}: %{{y}}<br>original: %{{x}}<br>CKA %{{z:.3f}}<extra></extra>"))
    fig.update_layout(title=f"Layer × layer CKA, {model} vs original "
                            f"({PART_LABELS[layers['cka_matrix']['part']]})",
                      xaxis_title="original: layer", xaxis_type="category",
                      yaxis_title=f"{model}: layer", yaxis_type="category")
    return fig


def mia_efficacy_bars(report: dict) -> go.Figure:
    """SalUn MIA efficacy for each attack feature; the oracle's bar is the target (a
    retrained model's forget examples look like non-members only as much as they really
    are), not 100%."""
    efficacy = report["mia"]["efficacy"]
    features = [f for f in MIA_FEATURE_LABELS if f in efficacy["unlearned"]]
    fig = go.Figure()
    for role in ROLES_BEFORE_AFTER:
        values = _percent(efficacy[role][f] for f in features)
        name = ROLE_LABELS[role] + (" (target)" if role == "oracle" else "")
        fig.add_bar(name=name, x=[MIA_FEATURE_LABELS[f] for f in features], y=values,
                    marker_color=ROLE_COLORS[role],
                    text=[None if v is None else f"{v:.1f}" for v in values],
                    textposition="outside")
    fig.update_layout(title="MIA efficacy per attack feature (target: the oracle's value)",
                      xaxis_title="attack feature",
                      yaxis_title="forget examples called non-member (%)",
                      yaxis_range=[0, 109], barmode="group",
                      legend=LEGEND_BELOW)
    return fig


# (role, set, legend name, colour) of the score histograms' three sets.
_SCORE_SETS = (("unlearned", "forget", "Forget, unlearned model", ROLE_COLORS["unlearned"]),
               ("unlearned", "test", "Test, unlearned model", "#1f77b4"),
               ("oracle", "forget", "Forget, retrain oracle", ROLE_COLORS["oracle"]))


def score_arrays_stored(arrays: dict, feature: str = "conf") -> bool:
    """Whether `arrays` hold the per-example scores `score_histograms` draws."""
    return all(array_keys.score(feature, role, subset) in arrays
               for role, subset, _, _ in _SCORE_SETS)


def score_histograms(arrays: dict, feature: str = "conf") -> go.Figure:
    """Overlaid histograms of a per-example score ("conf" or "entropy"): forget examples
    under the unlearned model, test examples under it, and forget examples under the
    oracle. After good unlearning the first looks like the third."""
    if feature not in SCORE_AXIS_TITLES:
        raise ValueError(f"feature: expected one of {tuple(SCORE_AXIS_TITLES)}, got {feature!r}")
    values = {name: np.asarray(arrays[array_keys.score(feature, role, subset)], dtype=float)
              for role, subset, name, _ in _SCORE_SETS}
    pooled = np.concatenate(list(values.values()))
    low, high = float(pooled.min()), float(pooled.max())
    # Shared bins, or the overlaid bars would not line up.
    bins = {"start": low, "end": high, "size": (high - low) / 40 if high > low else 1.0}
    fig = go.Figure()
    for _, _, name, color in _SCORE_SETS:
        fig.add_histogram(x=values[name].tolist(), name=name, marker_color=color,
                          opacity=0.55, histnorm="probability", xbins=bins)
    fig.update_layout(title=f"{SCORE_NAMES[feature]}: forget vs test vs oracle",
                      xaxis_title=SCORE_AXIS_TITLES[feature],
                      yaxis_title="fraction of the set", barmode="overlay",
                      legend=LEGEND_BELOW)
    return fig


def _distinguishability_arrays(arrays: dict, feature: str):
    return tuple(np.asarray(arrays[array_keys.distinguishability(feature, curve)], dtype=float)
                 for curve in array_keys.DISTINGUISHABILITY_CURVES)


def rates_at_threshold(arrays: dict, feature: str, threshold: float) -> dict[str, float]:
    """FPR and FNR of the attacker that says "unlearned" when value >= `threshold`.

    The stored curve is a step function known at the distinct pooled values: fpr(t) =
    share of oracle values >= t is constant on (t_{i-1}, t_i], so any t takes the rates of
    the first stored threshold at or above it (past the last one nothing is >= t)."""
    thresholds, fpr, fnr = _distinguishability_arrays(arrays, feature)
    index = int(np.searchsorted(thresholds, threshold, side="left"))
    if index == thresholds.size:
        return {"fpr": 0.0, "fnr": 1.0}
    return {"fpr": float(fpr[index]), "fnr": float(fnr[index])}


def most_telling_threshold(arrays: dict, feature: str) -> float:
    """The stored threshold where the attacker is furthest from guessing (|1 - FPR - FNR|
    largest, in either direction of the test): a meaningful place to start looking."""
    thresholds, fpr, fnr = _distinguishability_arrays(arrays, feature)
    return float(thresholds[np.argmax(np.abs(1.0 - fpr - fnr))])


def distinguishability_curve(arrays: dict, feature: str, threshold: float | None = None
                             ) -> go.Figure:
    """Error rates of telling the unlearned model from the oracle by a threshold on a
    per-forget-example value ("confidence" or "entropy"); marks `threshold` if given.
    Where both rates sum to 1 the two models cannot be told apart."""
    thresholds, fpr, fnr = _distinguishability_arrays(arrays, feature)
    label = MIA_FEATURE_LABELS[feature].lower()
    fig = go.Figure()
    # "vh" draws the step exactly: each rate holds on (previous threshold, this one].
    fig.add_scatter(x=thresholds.tolist(), y=fpr.tolist(), mode="lines", line_shape="vh",
                    name="FPR: oracle called unlearned", line_color=ROLE_COLORS["oracle"])
    fig.add_scatter(x=thresholds.tolist(), y=fnr.tolist(), mode="lines", line_shape="vh",
                    name="FNR: unlearned called oracle", line_color=ROLE_COLORS["unlearned"])
    if threshold is not None:
        rates = rates_at_threshold(arrays, feature, threshold)
        fig.add_vline(x=threshold, line_dash="dot", line_color="#444")
        fig.add_scatter(x=[threshold, threshold], y=[rates["fpr"], rates["fnr"]],
                        mode="markers", name="chosen threshold",
                        marker={"size": 11, "color": "#444", "symbol": "diamond"})
    fig.update_layout(title=f"Telling the unlearned model from the oracle by {label} "
                            "on forget examples",
                      xaxis_title=f"threshold on {label} (says 'unlearned' when ≥ threshold)",
                      yaxis_title="error rate", yaxis_range=[-0.02, 1.02],
                      legend=LEGEND_BELOW)
    return fig


def opening_layer(names: list[str]) -> str:
    """The layer the embedding views open on: the deepest before the logits (the logits
    when there is no other)."""
    return ([name for name in names if name != "logits"] or names)[-1]


def embedded_layers(report: dict, arrays: dict, method: str = "pca") -> list[str]:
    """The report's layers, shallowest first, that have stored 2-d coordinates."""
    return [name for name in report["layers"]["names"]
            if array_keys.embedding(method, name, "original") in arrays]


def _embedding_hover(report: dict, arrays: dict) -> np.ndarray:
    classes, parts = report["classes"], report["layers"]["parts"]
    predicted = {role: arrays[array_keys.pred(role)] for role in ROLES_BEFORE_AFTER}
    return np.array([
        f"#{index} · {PART_LABELS[parts[part]]}<br>label: {classes[label]}<br>"
        f"predicted: {classes[before]} → {classes[after]} (oracle: {classes[oracle]})"
        for index, part, label, before, after, oracle in zip(
            arrays[array_keys.PROBE_INDEX], arrays[array_keys.PROBE_PART], arrays[array_keys.PROBE_LABEL],
            predicted["original"], predicted["unlearned"], predicted["oracle"])])


def selected_probe_rows(points: list[dict]) -> list[int]:
    """Rows of the probe arrays behind the points selected in `embedding_panels` (each
    example once, in selection order; the displacement lines carry no rows)."""
    rows: dict[int, None] = {}
    for point in points:
        row = point.get("customdata")
        if isinstance(row, list):  # plotly sends customdata as a list per point at times
            row = row[0] if row else None
        if isinstance(row, (int, float)):
            rows[int(row)] = None
    return list(rows)


def selected_forget_examples(report: dict, arrays: dict, rows: list[int]) -> list[int]:
    """Training-set indices of the forget-train examples among the probe `rows` (what
    the instance drill-down offers first)."""
    parts = report["layers"]["parts"]
    return [int(arrays[array_keys.PROBE_INDEX][row]) for row in rows
            if parts[arrays[array_keys.PROBE_PART][row]] == "forget_train"]


def embedding_panels(report: dict, arrays: dict, layer: str, method: str = "pca",
                     show_displacement: bool = False) -> go.Figure:
    """Original | unlearned | oracle activations of the probe examples at `layer`, in one
    jointly fitted 2-d map (shared axes, so a point that moved really moved). Retain
    examples are coloured by class, forget examples are red crosses. With
    `show_displacement`, the unlearned panel links each forget example's original position
    to its new one."""
    parts = report["layers"]["parts"]
    labels = np.asarray(arrays[array_keys.PROBE_LABEL])
    is_forget = np.array([parts[p].startswith("forget") for p in arrays[array_keys.PROBE_PART]],
                         dtype=bool)
    class_colors = np.array([CLASS_COLORS[label % len(CLASS_COLORS)] for label in labels])
    hover = _embedding_hover(report, arrays)
    coords = {role: np.asarray(arrays[array_keys.embedding(method, layer, role)], dtype=float)
              for role in ROLES_BEFORE_AFTER}
    fig = make_subplots(rows=1, cols=3, shared_xaxes="all", shared_yaxes="all",
                        horizontal_spacing=0.03,
                        subplot_titles=[ROLE_LABELS[role] for role in ROLES_BEFORE_AFTER])
    for column, role in enumerate(ROLES_BEFORE_AFTER, start=1):
        for rows, name, marker in (
                (~is_forget, "Retain examples (colour = class)",
                 {"size": 6, "opacity": 0.7, "color": class_colors[~is_forget].tolist()}),
                (is_forget, "Forget examples",
                 {"size": 8, "symbol": "x", "color": FORGET_COLOR,
                  "line": {"width": 0.5, "color": "white"}})):
            # customdata = row in the probe arrays, so a selection maps back to examples.
            fig.add_scatter(x=coords[role][rows, 0].tolist(), y=coords[role][rows, 1].tolist(),
                            mode="markers", name=name, legendgroup=name,
                            showlegend=column == 1, hovertext=hover[rows].tolist(),
                            customdata=np.flatnonzero(rows).tolist(),
                            hoverinfo="text", marker=marker, row=1, col=column)
    if show_displacement:
        start, end = coords["original"][is_forget], coords["unlearned"][is_forget]
        # One trace of segments separated by gaps: thousands of shapes would be slow.
        xs = [v for a, b in zip(start[:, 0], end[:, 0]) for v in (a, b, None)]
        ys = [v for a, b in zip(start[:, 1], end[:, 1]) for v in (a, b, None)]
        fig.add_scatter(x=xs, y=ys, mode="lines", name="Forget: original → unlearned",
                        line={"width": 1, "color": "rgba(0,0,0,0.35)"}, hoverinfo="skip",
                        row=1, col=2)
    axis_titles = ["dimension 1", "dimension 2"]
    variance_key = array_keys.embedding_variance(method, layer)
    if variance_key in arrays:
        axis_titles = [f"PC{i + 1} ({100 * ratio:.1f}% of variance)"
                       for i, ratio in enumerate(arrays[variance_key][:2])]
    for column in (1, 2, 3):
        fig.update_xaxes(title_text=axis_titles[0], row=1, col=column)
    fig.update_yaxes(title_text=axis_titles[1], row=1, col=1)
    # Dragging selects (the page shows the selected examples' images); zoom stays in the
    # toolbar.
    fig.update_layout(title=f"{layer}: one joint {method.upper()} map of the three models",
                      legend=LEGEND_BELOW, height=480, dragmode="select")
    return fig
