"""Embeddings: the probe examples' activations at one layer, for the original, the
unlearned model and the oracle, in one shared 2-d map (PCA at once, fitted in the
background for a layer evaluate() did not map; UMAP on request)."""

import streamlit as st

from ui import explainers, presenter, state, widgets
from ui.embeddings import stored_pca_or_fit
from ui.instance import instance_drilldown
from unlearn_core import array_keys, figures
from unlearn_core.config import DataSpec
from unlearn_core.data import load_dataset
from unlearn_core.pipeline import embedding_of_run, stored_embedding

SELECTION_SHOWN = 24  # images under the chart; more would push the chart off screen

st.title("Embeddings")
record = widgets.run_picker(needs=("layers",))
report = record.report
arrays = widgets.run_arrays(record)
if not figures.embedded_layers(report, arrays):
    st.info("This run was stored before the layer metrics existed; run it again")
    st.stop()

explainers.explain("embeddings")

layer_names = list(report["layers"]["names"])
layer_column, map_column, lines_column = st.columns([2, 1, 2])
layer = layer_column.selectbox("Layer", layer_names,
                               index=layer_names.index(figures.opening_layer(layer_names)),
                               key="embeddings-layer")
projection = map_column.radio("Map", ["PCA", "UMAP"], horizontal=True, key="embeddings-map")
show_lines = lines_column.checkbox("Show moves (original → unlearned)", key="embeddings-lines",
                                   help="A line from each forget example's place in the "
                                        "original's map to its place in the unlearned one's.")

coords = None
if projection == "UMAP":
    coords = stored_embedding(state.store(), record.id, arrays, layer, "umap")
    if coords is None:
        st.info(f"The UMAP of {layer} is not computed yet. It runs in the background "
                "(10–40 s on 2 CPU cores; the first one also compiles UMAP's code) and is "
                "kept with the run. PCA is shown meanwhile.")
        if st.button(f"Compute UMAP of {layer}", disabled=state.busy(), key="embeddings-umap"):
            store, run_id = state.store(), record.id
            state.submit(f"UMAP of {layer}", lambda progress: embedding_of_run(
                store, run_id, layer, "umap", progress))
            st.rerun()
        projection = "PCA"
if projection == "PCA":
    coords = stored_pca_or_fit(record, arrays, layer)
    if coords is None:
        st.stop()

event = presenter.chart(
    figures.embedding_panels(report, {**arrays, **coords}, layer, method=projection.lower(),
                             show_displacement=show_lines),
    on_select="rerun", selection_mode=("points", "box", "lasso"),
    key=f"embeddings-chart-{record.id}-{layer}-{projection}")
if projection == "PCA":
    variance = coords[array_keys.embedding_variance("pca", layer)]
    st.caption(f"PCA on the three models' activations pooled: the two axes explain "
               f"{100 * variance[0]:.1f}% and {100 * variance[1]:.1f}% of the variance "
               f"({100 * variance[:2].sum():.1f}% together).")

rows = figures.selected_probe_rows(event.selection.points if event else [])
if rows:
    dataset = load_dataset(DataSpec.from_dict(record.spec["setup"]["data"]))
    parts = report["layers"]["parts"]
    classes = report["classes"]
    predicted = {role: arrays[array_keys.pred(role)] for role in ("original", "unlearned")}
    shown = rows[:SELECTION_SHOWN]
    images = [(dataset.test if parts[arrays[array_keys.PROBE_PART][row]].endswith("_test")
               else dataset.train).images[int(arrays[array_keys.PROBE_INDEX][row])].numpy()
              for row in shown]
    st.subheader(f"Selected: {len(rows)} example{'s' if len(rows) != 1 else ''}"
                 + (f" (first {SELECTION_SHOWN} shown)" if len(rows) > SELECTION_SHOWN else ""))
    widgets.image_grid(
        images, [f"{classes[arrays[array_keys.PROBE_LABEL][row]]}: "
                 f"{classes[predicted['original'][row]]} → {classes[predicted['unlearned'][row]]}"
                 for row in shown])
    st.caption("Caption: label: predicted by the original → by the unlearned model.")

st.subheader("Drill-down: one forget example")
st.caption("Selected forget examples come first in the list.")
instance_drilldown(record, arrays, key="embeddings",
                   suggested=figures.selected_forget_examples(report, arrays, rows))
