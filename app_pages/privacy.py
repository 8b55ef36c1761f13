"""Privacy: membership inference on the forget set next to the oracle's, and how well the
unlearned model can be told apart from the oracle example by example."""

import pandas as pd
import streamlit as st

from ui import explainers, presenter, widgets
from ui.instance import instance_drilldown
from unlearn_core import array_keys, figures


st.title("Privacy")
record = widgets.run_picker(needs=("mia",))
report = record.report
mia = report["mia"]
efficacy = mia["efficacy"]
headline = mia["headline"]

explainers.explain("privacy")

gap = mia["gap_to_oracle"][headline]
headline_label = figures.MIA_FEATURE_LABELS[headline].lower()
unlearned_column, oracle_column, original_column = st.columns(3)
unlearned_column.metric(f"MIA efficacy ({headline_label})",
                        figures.format_percent(efficacy["unlearned"][headline]),
                        None if gap is None else f"{100 * gap:+.1f} vs oracle", delta_color="off")
oracle_column.metric("Retrain oracle (target)", figures.format_percent(efficacy["oracle"][headline]))
original_column.metric("Original", figures.format_percent(efficacy["original"][headline]))

chart_column, table_column = st.columns([3, 2])
presenter.chart(figures.mia_efficacy_bars(report), chart_column, beside=2)  # 3/5 of the row
table = pd.DataFrame({figures.ROLE_LABELS[role]: efficacy[role]
                      for role in ("unlearned", "oracle", "original")})
table.index = [figures.MIA_FEATURE_LABELS[feature] for feature in table.index]
table_column.dataframe((table * 100).round(1), width="stretch")
table_column.caption("MIA efficacy (%) per attack feature.")

st.subheader("Unlearned model vs oracle, example by example")
arrays = widgets.run_arrays(record)
if widgets.show_not_estimable(report, "mia").get("distinguishability"):
    st.subheader("Drill-down: one forget example")
    instance_drilldown(record, arrays, key="privacy", by_membership=True)
    st.stop()
scored_features = [f for f in array_keys.SCORE_ARRAY_NAMES if f in mia["distinguishability"]]
feature = st.radio("Score", scored_features, horizontal=True,
                   format_func=figures.MIA_FEATURE_LABELS.get, key="privacy-feature")
score_name = array_keys.SCORE_ARRAY_NAMES[feature]
if not figures.score_arrays_stored(arrays, score_name) or \
        array_keys.distinguishability(feature, "thresholds") not in arrays:
    st.info("This run's arrays hold no per-example scores, so it cannot be compared with "
            "the oracle example by example (its MIA numbers above come from the report).")
    st.stop()
presenter.chart(figures.score_histograms(arrays, score_name))

thresholds = arrays[array_keys.distinguishability(feature, "thresholds")]
low, high = float(thresholds.min()), float(thresholds.max())
threshold = None
if high > low:
    threshold = st.slider("Threshold", low, high, figures.most_telling_threshold(arrays, feature),
                          step=(high - low) / 200, format="%.4f",
                          key=f"privacy-threshold-{feature}")
presenter.chart(figures.distinguishability_curve(arrays, feature, threshold))

scores = mia["distinguishability"][feature]
fpr_column, fnr_column, epsilon_column, score_column = st.columns(4)
if threshold is not None:
    rates = figures.rates_at_threshold(arrays, feature, threshold)
    fpr_column.metric("FPR at the threshold", figures.format_percent(rates["fpr"]),
                      help="Share of forget examples where the oracle is called 'unlearned'.")
    fnr_column.metric("FNR at the threshold", figures.format_percent(rates["fnr"]),
                      help="Share of forget examples where the unlearned model is called 'oracle'.")
epsilon_column.metric("ε", "n/a" if scores["epsilon"] is None else f"{scores['epsilon']:.3f}")
score_column.metric("Privacy score 2^−ε", "n/a" if scores["privacy_score"] is None
                    else f"{scores['privacy_score']:.3f}")

st.subheader("Drill-down: one forget example")
st.caption("Forget examples in order of the attack's membership score on the unlearned "
           "model, most member-like first: those an attacker would still call members.")
instance_drilldown(record, arrays, key="privacy", by_membership=True)
