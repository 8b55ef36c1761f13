"""Results: one run's accuracies next to the original and the oracle, and its cost."""

import pandas as pd
import streamlit as st

from ui import explainers, presenter, state, widgets
from ui.poison import backdoor_section
from unlearn_core import figures
from unlearn_core.figures import lau as lau_figures
from unlearn_core.vocabulary import ROLES

st.title("Results")
failed = [r for r in state.store().list(kind="unlearn")
          if r.status in ("failed", "cancelled", "damaged")]
if failed:
    with st.expander(f"{len(failed)} failed, cancelled or damaged run(s)"):
        for r in failed:
            st.write(f"**{r.label}** ({r.id}): {r.status} — {r.damage or r.error}")

record = widgets.run_picker()
explainers.explain("results")
report = record.report
acc, gap, cost = report["accuracy"], report["gap_to_oracle"], report["cost"]


def delta(v):
    return None if v is None else f"{100 * v:+.1f} vs oracle"


cols = st.columns(5)
for col, key, label in zip(cols[:4], ("forget_train", "test_forget", "retain_train", "test"),
                           ("Forget (train)", "Test, forget classes", "Retain (train)", "Test")):
    col.metric(label, figures.format_percent(acc["unlearned"][key]), delta(gap[key]),
               delta_color="off")
cols[4].metric("Time", f"{cost['seconds']:.1f} s",
               figures.format_speedup(cost["speedup"]), delta_color="off", delta_arrow="off")

table = pd.DataFrame({figures.ROLE_LABELS[r]: [acc[r][k] for k in figures.ACCURACY_LABELS]
                      for r in ROLES},
                     index=list(figures.ACCURACY_LABELS.values()))
table["Gap to oracle"] = [gap[k] for k in figures.ACCURACY_LABELS]
st.dataframe((table * 100).round(1), width="stretch")
presenter.chart(figures.accuracy_overview(report))
presenter.chart(figures.per_class_accuracy(report))
curves = figures.training_curves(report)
if curves is not None:
    presenter.chart(curves)

backdoor_section(report, charts=False)

arrays = widgets.run_arrays(record)
widgets.small_forget_view(record, arrays)  # a deletion of one or a few examples
widgets.show_not_estimable(report, "layers")
widgets.show_not_estimable(report, "mia")
if lau_figures.has_lau_arrays(arrays):  # LAU alone or with a plug-in
    st.subheader("LAU: where the forget samples went")
    st.write(lau_figures.summary(report["method"]["info"], arrays))
    matrix = lau_figures.target_class_matrix(arrays, report["classes"])
    if matrix is None:
        st.info("No forget sample was attacked: all were misclassified before LAU began.")
    else:
        presenter.chart(matrix)
    presenter.chart(lau_figures.still_correct_curve(arrays))
    norms = lau_figures.perturbation_norms(arrays)
    if norms is not None:
        presenter.chart(norms)

with st.expander("Run details"):
    st.json({"id": record.id, "spec": record.spec, "method": report["method"],
             "split": report["split"], "cost": cost})

