"""Results: one run's accuracies next to the original and the oracle, and its cost."""

import pandas as pd
import streamlit as st

from ui import state
from unlearn_core import figures
from unlearn_core.errors import UserError

st.title("Results")
store = state.store()
runs = store.list(kind="unlearn")
done = [r for r in runs if r.status == "done"]
if not done:
    st.info("No finished runs yet: run a method on the Unlearn page.")
    st.page_link("app_pages/unlearn.py", label="Unlearn", icon=":material/arrow_forward:")
else:
    ids = [r.id for r in done]
    labels = {r.id: f"{r.label} · {r.id}" for r in done}
    selected = st.session_state.get(state.SELECTED_RUN_KEY)
    run_id = st.selectbox("Run", ids, index=ids.index(selected) if selected in ids else 0,
                          format_func=labels.get, key="run")
    state.select_run(run_id)
    try:
        record = store.get(run_id)
    except UserError as exc:
        st.error(str(exc))
        st.stop()
    report = record.report
    acc, gap, cost = report["accuracy"], report["gap_to_oracle"], report["cost"]

    def pct(v):
        return "n/a" if v is None else f"{100 * v:.1f}%"

    def delta(v):
        return None if v is None else f"{100 * v:+.1f} vs oracle"

    cols = st.columns(5)
    for col, key, label in zip(cols[:4], ("forget_train", "test_forget", "retain_train", "test"),
                               ("Forget (train)", "Test, forget classes", "Retain (train)", "Test")):
        col.metric(label, pct(acc["unlearned"][key]), delta(gap[key]), delta_color="off")
    speed = cost["speedup"]
    cols[4].metric("Time", f"{cost['seconds']:.1f} s",
                   None if speed is None else f"speed-up {speed:.1f}x over retraining",
                   delta_color="off")

    table = pd.DataFrame({figures.ROLE_NAMES[r]: [acc[r][k] for k in figures.ACCURACY_LABELS]
                          for r in ("unlearned", "original", "oracle")},
                         index=list(figures.ACCURACY_LABELS.values()))
    table["Gap to oracle"] = [gap[k] for k in figures.ACCURACY_LABELS]
    st.dataframe((table * 100).round(1), width="stretch")
    st.plotly_chart(figures.accuracy_overview(report), width="stretch")
    st.plotly_chart(figures.per_class_accuracy(report), width="stretch")
    curves = figures.training_curves(report)
    if curves is not None:
        st.plotly_chart(curves, width="stretch")
    with st.expander("Run details"):
        st.json({"id": record.id, "spec": record.spec, "method": report["method"],
                 "split": report["split"], "cost": cost})

failed = [r for r in runs if r.status in ("failed", "cancelled")]
if failed:
    with st.expander(f"{len(failed)} failed or cancelled run(s)"):
        for r in failed:
            st.write(f"**{r.label}** ({r.id}): {r.status} — {r.error}")
