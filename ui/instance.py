"""Instance drill-down widget: one forget example of a run under the original, the
unlearned model and the oracle. Any page with a run can call `instance_drilldown`."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import streamlit as st

from unlearn_core import array_keys, figures
from unlearn_core.errors import UserError
from unlearn_core.figures.compare import instance_margins
from unlearn_core.instance import DERIVED_NAME, describe_instance, forget_examples, \
    instance_results
from unlearn_core.runs import RunRecord
from . import presenter, state, widgets


@st.cache_resource(max_entries=4, show_spinner=False)
def _forget_examples(run_id: str, spec_json: str):
    # Keyed by the run (its spec never changes); the dataset itself is shared, not copied.
    return forget_examples(json.loads(spec_json))


def instance_drilldown(record: RunRecord, arrays: dict, key: str,
                       suggested: list[int] | tuple[int, ...] = (),
                       by_membership: bool = False) -> None:
    """Pick a forget example of `record` by its training index (`suggested` indices, e.g.
    from a chart selection, come first) and show its image, each model's prediction and
    confidence, its membership score and its probe margin per layer; what the store
    cannot give for this run is said, not hidden. With `by_membership`, the other forget
    examples follow in order of the attack's membership score on the unlearned model,
    most member-like first."""
    try:
        dataset, forget = _forget_examples(record.id, json.dumps(record.spec, sort_keys=True))
    except UserError as exc:
        st.error(f"Cannot load this run's data for the drill-down: {exc}")
        return
    in_forget = set(forget.tolist())
    first = [int(i) for i in suggested if int(i) in in_forget]
    scores = arrays.get(array_keys.mia_score("unlearned"))
    ordered = forget[np.argsort(-scores, kind="stable")] \
        if by_membership and scores is not None and len(scores) == len(forget) else forget
    options = first + [int(i) for i in ordered if int(i) not in set(first)]
    index = st.selectbox("Forget example (training-set index; type to search)", options,
                         key=f"drilldown-{key}-{record.id}-index",
                         help="The first ones are those selected in the chart above, if any.")
    store = state.store()
    derived = store.get_derived(record.id, DERIVED_NAME)
    label = int(dataset.train.labels[index])
    try:
        info = describe_instance(record.report, arrays, forget, label, index, derived)
    except UserError as exc:
        st.error(str(exc))
        return
    classes = record.report["classes"]
    image_column, table_column = st.columns([1, 3])
    with image_column:
        widgets.image_grid(dataset.train.images[index:index + 1].numpy(),
                           [f"#{index}, label {classes[label]}"], columns=1, size=140)
    with table_column:
        rows = {figures.ROLE_LABELS[role]: {
            "predicted": None if v["predicted"] is None else classes[v["predicted"]],
            "probability of the prediction": figures.format_percent(v["predicted_prob"]),
            f"p(label {classes[label]})": figures.format_percent(v["p_label"])}
            for role, v in info["roles"].items()}
        st.dataframe(pd.DataFrame(rows).T, width="stretch")
        score = info["mia_score"]
        st.metric("MIA membership score (attack on the unlearned model)",
                  "n/a" if score is None else f"{score:.3f}",
                  None if score is None else ("called member" if score > 0.5
                                              else "called non-member"), delta_color="off",
                  help="sigmoid of the SVC margin of the confidence attack: > 0.5 = "
                       "member. After good unlearning a forget example looks like a "
                       "non-member as often as under the oracle.")
    margins = instance_margins(info)
    if margins is not None:
        presenter.chart(margins, key=f"drilldown-{key}-margins")
        if info["probe_fit_on"]:
            st.caption("The probes were fit on this example (half of the forget training "
                       "examples are): its margin is in-sample.")
    for note in info["missing"]:
        st.caption(f"Not available: {note}.")
    if derived is None:
        run_id = record.id
        if st.button("Compute predictions and probe margins (rebuilds the three models, "
                     "runs in the background)", key=f"drilldown-{key}-{record.id}-compute",
                     disabled=state.busy()):
            state.submit(f"Drill-down of {run_id}",
                         lambda progress: instance_results(store, run_id, progress))
            st.rerun()
