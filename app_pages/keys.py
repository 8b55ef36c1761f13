"""Keys: what a DKVB unlearning run masked in the key-value bottleneck — key usage by
forget and retain data before and after, the keys only the forget classes use, the N
sweep and the cost next to gradient methods on the same frozen encoder."""

import streamlit as st

from ui import explainers, presenter, state, widgets
from unlearn_core.figures import format_percent
from unlearn_core.figures import keys as key_figures

st.title("Keys of the bottleneck")
record = widgets.run_picker()
arrays = widgets.run_arrays(record)
if not key_figures.is_key_masking_run(arrays):
    st.info("This run masked no keys. The Keys page shows runs of **DKVB: Unlearning via "
            "Activations** or **via Examples**, which need a setup whose model is `dkvb` "
            "(a trained model's frozen trunk with a key-value bottleneck).")
    # The run picked on another page is rarely a DKVB run: offer the newest that is.
    newest = state.store().query(kind="unlearn", status="done",
                                 methods=key_figures.KEY_MASKING_METHODS, limit=1)
    if newest and st.button(f"Open the newest key-masking run: {newest[0].label} · "
                            f"{newest[0].id}", key="keys-open-newest",
                            icon=":material/arrow_forward:"):
        state.select_run(newest[0].id)
        st.rerun()
    st.stop()
report = record.report

explainers.explain("keys")

numbers = key_figures.summary(report, arrays)
info = report["method"]["info"]
columns = st.columns(4)
columns[0].metric("Pairs masked", f"{numbers['pairs_masked']:,}",
                  help=f"of {numbers['pairs_total']:,} (codebook, key) pairs; N = {numbers['n']}")
columns[1].metric("Forget selections on masked pairs",
                  format_percent(numbers["forget_selections_masked"]),
                  help="share of the forget set's (example, codebook) selections, before "
                       "unlearning, that went to a pair now masked")
columns[2].metric("Retain selections on masked pairs",
                  format_percent(numbers["retain_selections_masked"]),
                  help="the same for the retain set: what the masking cost it")
columns[3].metric("Forget pairs exclusive to the forget set",
                  f"{numbers['exclusive_pairs']:,} / {numbers['forget_pairs_used']:,}",
                  help=f"pairs the forget set selects that no retain example selects; "
                       f"{numbers['masked_exclusive']:,} of them are masked")
if info.get("target_reached") is False:
    st.warning("The sweep did not reach its target forget accuracy even with every pair the "
               "counted forget examples select masked; every pair of the forget set is masked.")

sweep = key_figures.sweep_curve(report, arrays)
if sweep is None:
    st.caption("No sweep in this run: N was given (sweep_points 0).")
else:
    presenter.chart(sweep)

presenter.chart(key_figures.codebook_overview(arrays))
codebook = st.selectbox("Codebook", key_figures.codebooks_by_masking(arrays), key="keys-codebook",
                        help="codebooks with the most masked keys first")
presenter.chart(key_figures.usage_histogram(arrays, codebook))
presenter.chart(key_figures.key_class_matrix(report, arrays))

rows = key_figures.cost_rows(record.id, state.store().list(kind="unlearn", status="done"))
presenter.chart(key_figures.cost_figure(rows))
st.caption(f"This run: {info['encoder_forward_examples']:,} examples through the encoder, "
           f"{info['sweep_evaluations']} sweep evaluations, no gradient step, "
           f"{info['unlearning_seconds']:.2f} s; the key-usage counts shown here took another "
           f"{info['artifact_forward_examples']:,} examples and {info['artifact_seconds']:.2f} s.")
