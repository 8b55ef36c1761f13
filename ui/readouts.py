"""The Layers page's probe view (feature readouts) and its relearning test: numbers kept
with the run, computed in the background on request (like the Embeddings page's UMAP);
the page itself never trains."""

from __future__ import annotations

import streamlit as st

from unlearn_core import figures
from unlearn_core.figures import readouts as readout_figures
from unlearn_core.metrics.readouts import HEADLINE, READOUT_LABELS, READOUTS
from unlearn_core.pipeline import (readouts_of_run, relearn_of_run, stored_readouts,
                                   stored_relearn)
from unlearn_core.runs import RunRecord
from . import presenter, state

BENCHMARK = "docs/benchmarks/readouts-mnist5k-cpu-2core.md"


def _compute_button(label: str, job_label: str, key: str, compute) -> None:
    if st.button(label, disabled=state.busy(), key=key):
        store = state.store()
        state.submit(job_label, lambda progress: compute(store, progress))
        st.rerun()


def _headline_note() -> str:
    if HEADLINE is None:
        return (f"On the embedded default (mnist5k, forget class 0, 3 seeds; {BENCHMARK}) no "
                "readout separated the original from the oracle: none of these charts can "
                "tell superficial from core forgetting there.")
    return (f"Headline: {READOUT_LABELS[HEADLINE].lower()}, the readout that separated the "
            "original from the retrain oracle most on the embedded default (mnist5k, forget "
            f"class 0, 3 seeds, at the last feature layer; {BENCHMARK}); the linear probe "
            "and k-NN did not separate them. Where the oracle's curve lies well below the "
            "original's, an unlearned model's curve near the original's means its features "
            "still hold the forget data.")


def probe_view(record: RunRecord) -> None:
    """The readouts of the run's layers: the headline readout once computed (the others
    in a select box), else the stored linear probe and a button to compute them."""
    layers = record.report["layers"]
    readouts = stored_readouts(state.store(), record.id)
    if readouts is None:
        probes = figures.probe_accuracy_per_layer(record.report)
        if probes is None:
            st.caption("No linear probes or head refit for this run: its probe subset has "
                       "no held-out forget examples.")
            return
        presenter.chart(probes)
        if HEADLINE is not None:
            st.info(f"The few-shot and nearest-neighbour readouts of this run's layers are "
                    f"not computed yet (the headline, {READOUT_LABELS[HEADLINE].lower()}, is "
                    "one). They run in the background on the run's probe examples and are "
                    "kept with the run. " + _headline_note())
        else:
            st.caption(_headline_note())
        run_id = record.id
        _compute_button("Compute the layer readouts", f"Layer readouts of {run_id}",
                        "layers-readouts-compute",
                        lambda store, progress: readouts_of_run(store, run_id, progress))
        return
    if layers.get("probes") is None:
        st.caption("This run's probe subset has no held-out forget examples: the readouts "
                   "below are scored on forget-train examples they were not fit on.")
    default = HEADLINE or "linear_probe"
    name = st.selectbox("Readout", READOUTS, index=READOUTS.index(default),
                        format_func=READOUT_LABELS.get, key="layers-readout")
    presenter.chart(readout_figures.readout_per_layer(readouts, name))
    st.caption(_headline_note())


def relearning_section(record: RunRecord) -> None:
    """The relearning test of the run: the curves and one sentence once computed, else a
    button to compute it in the background."""
    st.subheader("Relearning test")
    report = stored_relearn(state.store(), record.id)
    if report is None:
        st.info("Fine-tunes copies of the unlearned model, the oracle and the original for a "
                "few steps on a few forget examples and tracks held-out forget accuracy: "
                "knowledge that comes back faster than it comes to the oracle was hidden, "
                "not removed. Not computed for this run yet; it runs in the background "
                "and is kept with the run.")
        run_id = record.id
        _compute_button("Run the relearning test", f"Relearning test of {run_id}",
                        "layers-relearn-compute",
                        lambda store, progress: relearn_of_run(store, run_id, progress))
        return
    presenter.chart(readout_figures.relearn_curves(report))
    (st.warning if (report["faster_by"] or 0) > 0 else st.info)(report["sentence"])
