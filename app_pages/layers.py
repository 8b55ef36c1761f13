"""Layers: how deep the forgetting goes — CKA per layer, forgetting depth, linear probes
and the head refit, with the verdict they add up to."""

import streamlit as st

from ui import explainers, presenter, readouts, widgets
from ui.poison import backdoor_section
from unlearn_core import figures
from unlearn_core.figures import ec as ec_figures
from unlearn_core.runs import setup_key

WARNING_VERDICTS = ("superficial", "not_forgotten")


st.title("Inside the layers")
record = widgets.run_picker(needs=("layers",))
report = record.report
layers = report["layers"]

verdict = layers["verdict"]
(st.warning if verdict["kind"] in WARNING_VERDICTS else st.info)(verdict["text"])

explainers.explain("layers")
backdoor_section(report)
widgets.show_not_estimable(report, "layers")

present = layers["parts"]
default_part = "forget_train" if "forget_train" in present else present[0]
part_column, reference_column, band_column = st.columns([3, 2, 1])
parts = part_column.segmented_control(
    "Data", present, selection_mode="multi", default=[default_part],
    format_func=figures.PART_LABELS.get, key="layers-parts")
reference = reference_column.radio(
    "Compare the unlearned model with", ["original", "oracle"], horizontal=True,
    format_func=lambda role: figures.ROLE_LABELS[role].lower(), key="layers-reference")
show_band = band_column.toggle("95% band", value=True, key="layers-band")

if parts:
    presenter.chart(figures.cka_per_layer(report, parts, reference, show_band))
    depth_parts = [part for part in parts if part in layers["depth"]]
    if depth_parts:
        for column, part in zip(st.columns(len(depth_parts)), depth_parts):
            presenter.chart(figures.forgetting_depth_bars(report, part), column,
                            beside=len(depth_parts))
            excess = figures.cka_excess_bars(report, part)
            if excess is not None:
                presenter.chart(excess, column, beside=len(depth_parts))
    else:
        st.caption("Forgetting depth is defined on forget data: pick a forget part to see it.")
else:
    st.info("Pick at least one part of the data to draw the CKA curves.")

same_setup = {r.id: r for r in widgets.run_page("layers-overlay", setup=setup_key(record.spec))
              if r.id != record.id and "layers" in r.summary["sections"]}
if same_setup:
    overlay = st.multiselect(
        "Overlay other runs of this setup (e.g. the base method and base + EC)",
        list(same_setup), format_func=lambda i: f"{same_setup[i].label} · {i}",
        key="layers-overlay")
    if overlay:
        overlay_part = parts[0] if parts else default_part
        reports = {f"{record.report['method']['title']} · {record.id}": report}
        reports.update({f"{same_setup[i].report['method']['title']} · {i}": same_setup[i].report
                        for i in overlay})
        presenter.chart(ec_figures.cka_overlay(reports, overlay_part))

ec_losses = ec_figures.ec_layer_losses(report)
if ec_losses is not None:
    presenter.chart(ec_losses)
    st.caption("EC's terms per supervision point during unlearning: the contrastive loss "
               "falls where forget features leave their class; the cross-entropy shows "
               "each layer staying useful on retain data.")

readouts.probe_view(record)
refit = layers["head_refit"]
if refit is not None:
    st.markdown("**Head refit:** retrain only the classifier, forget data included")
    before_column, after_column, returned_column = st.columns(3)
    before_column.metric("Forget accuracy before the refit",
                         figures.format_percent(refit["forget_accuracy_before"]))
    after_column.metric("Forget accuracy after the refit",
                        figures.format_percent(refit["forget_accuracy_after"]))
    returned = refit["returned"]
    returned_column.metric("Returned",
                           "n/a" if returned is None else f"{100 * returned:+.1f} points",
                           help="Forget accuracy the refitted head gains over the unlearned "
                                "model's own (after − before): high means the trunk still "
                                "knows the forget data, i.e. superficial forgetting.")
readouts.relearning_section(record)

# The unlearned model first: JSON storage does not keep the report's key order. A matrix
# is null when a layer is constant on the forget data (CKA undefined).
matrix_pairs = [pair for pair in figures.PAIR_NAMES if layers["cka_matrix"].get(pair)]
if matrix_pairs:
    with st.expander("Layer × layer CKA"):
        st.caption("Every layer of one model against every layer of the original, on forget "
                   "data. A bright diagonal means each layer still matches its counterpart.")
        for column, pair in zip(st.columns(len(matrix_pairs)), matrix_pairs):
            presenter.chart(figures.cka_heatmap(report, pair), column, beside=len(matrix_pairs))
