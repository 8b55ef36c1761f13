"""A layer's joint PCA for the pages that draw it: the stored map, or a fit started in
the background (evaluate() maps only the layers every view opens on)."""

from __future__ import annotations

import numpy as np
import streamlit as st

from unlearn_core.pipeline import embedding_of_run, stored_embedding
from unlearn_core.runs import RunRecord
from . import state


def stored_pca_or_fit(record: RunRecord, arrays: dict[str, np.ndarray], layer: str,
                      where=st) -> dict[str, np.ndarray] | None:
    """The run's PCA arrays of `layer`; if they are not stored, a background fit (a
    second or two, then kept with the run) is started and None returned, with a line in
    `where` saying so. The fit starts once per session, run and layer: one that failed
    is reported with a button to try again, not retried on every rerun."""
    store = state.store()
    run_id = record.id
    shown = stored_embedding(store, run_id, arrays, layer, "pca")
    if shown is not None:
        return shown
    started_key = f"pca-fit-started-{run_id}-{layer}"
    if state.busy():
        where.info(f"The PCA of {layer} is fitted in the background and kept with the run; "
                   "it starts when this session's running job ends (see its progress above).")
    elif not st.session_state.get(started_key):
        st.session_state[started_key] = True
        state.submit(f"PCA of {layer} ({run_id})",
                     lambda progress: embedding_of_run(store, run_id, layer, "pca", progress))
        where.info(f"Fitting the PCA of {layer} in the background (a second or two); it is "
                   "kept with the run.")
    else:
        where.warning(f"The PCA of {layer} could not be fitted (the job's message says why).")
        if where.button(f"Try the PCA of {layer} again", key=f"pca-fit-retry-{run_id}-{layer}"):
            del st.session_state[started_key]
            st.rerun()
    return None
