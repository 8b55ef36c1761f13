"""Embeddings: the probe examples' activations at one layer, for the original, the
unlearned model and the oracle, in one shared 2-d map."""

import streamlit as st

from ui import widgets
from unlearn_core import figures

st.title("Embeddings")
record = widgets.run_picker(needs=("layers",))
report = record.report
arrays = widgets.run_arrays(record)
layer_names = figures.embedded_layers(report, arrays)
if not layer_names:
    st.info("This run was stored before the layer metrics existed; run it again")
    st.stop()

with st.expander("What am I looking at?"):
    st.markdown("""
Each point is one example of the probe subset, placed by its activations at the chosen
layer. One PCA is fitted on the original's, the unlearned model's and the oracle's
activations together, so the three panels share their axes: a point that sits elsewhere
in the middle panel really moved. Colours are classes; **red crosses are forget
examples**.

After forgetting at the core, the forget examples in the unlearned panel look like they
do in the oracle's (for a forgotten class: no separate cluster of its own). If they sit
where they sat in the original, only the last layers changed. The lines link each forget
example's original position to its unlearned one. Hover a point for its index, label and
the class each model predicts.
""")

# The deepest layer before the logits is the usual place to look first.
features_only = [name for name in layer_names if name != "logits"] or layer_names
layer_column, lines_column = st.columns([2, 1])
layer = layer_column.selectbox("Layer", layer_names,
                               index=layer_names.index(features_only[-1]),
                               key="embeddings-layer")
show_lines = lines_column.checkbox("Show moves (original → unlearned)", key="embeddings-lines",
                                   help="A line from each forget example's place in the "
                                        "original's map to its place in the unlearned one's.")
st.plotly_chart(figures.embedding_panels(report, arrays, layer, show_displacement=show_lines),
                width="stretch")
variance = arrays[f"eval/pca_variance/{layer}"]
st.caption(f"PCA on the three models' activations pooled: the two axes explain "
           f"{100 * variance[0]:.1f}% and {100 * variance[1]:.1f}% of the variance "
           f"({100 * variance[:2].sum():.1f}% together).")
