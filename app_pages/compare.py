"""Compare: every finished run in one table, two runs side by side on every view, the
trade-off between closeness to the oracle and utility, exports, a forget example's
drill-down, and deleting runs."""

import streamlit as st

from ui import exports, presenter, state, widgets
from ui.embeddings import stored_pca_or_fit
from ui.instance import instance_drilldown
from unlearn_core import compare, export, figures
from unlearn_core.errors import UserError
from unlearn_core.figures.compare import TRADEOFF_X, tradeoff_scatter

st.title("Compare runs")
store = state.store()
# The table is made from the summaries in the store's index (no run folder is read) and
# scrolls virtually; the pickers below offer one page of the shown runs at a time.
records = {r.id: r for r in store.query(kind="unlearn", status="done")}
table = compare.run_table(records.values())
if table.empty:
    st.info("No finished runs yet: run a method on the Unlearn page.")
    st.page_link("app_pages/unlearn.py", label="Unlearn", icon=":material/arrow_forward:")
    st.stop()

filter_columns = st.columns(len(compare.FILTERS))
chosen = {column: box.multiselect(compare.COLUMNS[column], sorted(table[column].unique()),
                                  key=f"compare-filter-{column}", placeholder="all")
          for column, box in zip(compare.FILTERS, filter_columns)}
shown = compare.filter_table(table, **chosen)
column_config = {name: st.column_config.Column(label) for name, label in compare.COLUMNS.items()}
column_config.update({name: st.column_config.NumberColumn(compare.COLUMNS[name], format="percent")
                      for name in compare.PERCENT_COLUMNS})
column_config.update({"mean_depth": st.column_config.NumberColumn(compare.COLUMNS["mean_depth"],
                                                                  format="%.2f"),
                      "seconds": st.column_config.NumberColumn(compare.COLUMNS["seconds"],
                                                               format="%.1f"),
                      "speedup": st.column_config.NumberColumn(compare.COLUMNS["speedup"],
                                                               format="%.1f")})
st.dataframe(shown, column_config=column_config, hide_index=True, width="stretch",
             key="compare-table")
st.caption(f"{len(shown)} of {len(table)} runs; click a column header to sort. Avg gap = "
           "mean |unlearned − oracle| over forget, retain and test accuracy and MIA "
           "efficacy (confidence).")
csv_column, json_column, _ = st.columns([1, 1, 4])
csv_column.download_button("Table (CSV)", data=export.table_csv(shown),
                           file_name="runs.csv", mime="text/csv", key="compare-table-csv",
                           on_click="ignore")
json_column.download_button("Table (JSON)", data=export.table_json(shown),
                            file_name="runs.json", mime="application/json",
                            key="compare-table-json", on_click="ignore")
if shown.empty:
    st.info("No run matches the filters.")
    st.stop()

tradeoff_x = "avg_gap"
if shown["asr"].notna().any():
    tradeoff_x = st.radio("Trade-off x axis", list(TRADEOFF_X), horizontal=True,
                          format_func=lambda x: TRADEOFF_X[x][1], key="compare-tradeoff-x")
exports.chart(tradeoff_scatter(shown, tradeoff_x), "tradeoff", "compare-tradeoff")
st.caption(exports.STATIC_IMAGE_NOTE)

st.header("Run A vs run B")
shown_ids = shown["id"].tolist()
page = widgets.page_number(len(shown_ids), "compare")
on_page = shown_ids[(page - 1) * widgets.RUNS_PER_PAGE:page * widgets.RUNS_PER_PAGE]
# Runs A and B stay selected when another page is shown.
chosen_pair = [st.session_state.get(key) for key in ("compare-a", "compare-b")]
ids = list(dict.fromkeys([r for r in chosen_pair if r in shown_ids] + on_page))
labels = {r: f"{records[r].label} · {r}" for r in ids}
a_column, b_column = st.columns(2)
run_a = a_column.selectbox("Run A", ids, format_func=labels.get, key="compare-a")
run_b = b_column.selectbox("Run B", ids, index=min(1, len(ids) - 1), format_func=labels.get,
                           key="compare-b")
pair = {"A": records[run_a], "B": records[run_b]}
arrays = {name: widgets.run_arrays(record) for name, record in pair.items()}
st.dataframe(compare.pair_table_text(compare.pair_table(table, run_a, run_b)), hide_index=True,
             width="stretch")


def side_by_side(name: str, draw, missing: str) -> None:
    """`draw(report, arrays, run)` for A and B in two columns; it returns a figure or
    None when the run lacks that view, which is then said in words."""
    for (run, record), column in zip(pair.items(), st.columns(2)):
        column.markdown(f"**{run}:** {record.report['method']['title']} · {record.id}")
        fig = draw(record.report, arrays[run], run) if "layers" in record.report else None
        if fig is None:
            column.info(f"Run {run}: {missing}")
        else:
            exports.chart(fig, f"{name}-{record.id}", f"compare-{name}-{run}", column, beside=2)


# Only the open tab is drawn (a rerun on a tab change): the six tabs hold 13 plotly figures,
# two of them scatter plots of thousands of points, and drawing them all took the page
# over 2 s in the browser.
accuracy_tab, cka_tab, probes_tab, mia_tab, embeddings_tab, export_tab = st.tabs(
    ["Accuracy per class", "CKA per layer", "Probes", "MIA", "Embeddings", "Export"],
    key="compare-tab", on_change="rerun")
if accuracy_tab.open:
    with accuracy_tab:
        for (run, record), column in zip(pair.items(), st.columns(2)):
            column.markdown(f"**{run}:** {record.report['method']['title']} · {record.id}")
            exports.chart(figures.per_class_accuracy(record.report), f"per-class-{record.id}",
                          f"compare-per-class-{run}", column, beside=2)
if cka_tab.open:
    with cka_tab:
        side_by_side("cka", lambda report, _, run: figures.cka_per_layer(
            report, [p for p in report["layers"]["parts"] if p in report["layers"]["depth"]]
            or report["layers"]["parts"][:1]), "stored before the layer metrics existed")
if probes_tab.open:
    with probes_tab:
        side_by_side("probes", lambda report, _, run: figures.probe_accuracy_per_layer(report),
                     "no linear probes (no held-out forget examples, or stored before them)")
if mia_tab.open:
    with mia_tab:
        side_by_side("mia", lambda report, _, run: figures.mia_efficacy_bars(report)
                     if "mia" in report else None, "no MIA section (stored before it existed)")
        side_by_side("mia-histogram", lambda _, run_arrays, run: figures.score_histograms(
            run_arrays) if figures.score_arrays_stored(run_arrays) else None,
            "no per-example scores stored")
selected_examples: dict[str, list[int]] = {"A": [], "B": []}
if embeddings_tab.open:
    with embeddings_tab:
        st.caption("Select forget examples (box or lasso) to open them in the drill-down below.")
        for (run, record), column in zip(pair.items(), st.columns(2)):
            column.markdown(f"**{run}:** {record.report['method']['title']} · {record.id}")
            if "layers" not in record.report or not figures.embedded_layers(record.report,
                                                                            arrays[run]):
                column.info(f"Run {run}: no stored embeddings")
                continue
            layers = list(record.report["layers"]["names"])
            layer = column.selectbox("Layer", layers,
                                     index=layers.index(figures.opening_layer(layers)),
                                     key=f"compare-embedding-layer-{run}")
            coords = stored_pca_or_fit(record, arrays[run], layer, column)
            if coords is None:
                continue
            event = presenter.chart(
                figures.embedding_panels(record.report, {**arrays[run], **coords}, layer),
                column, on_select="rerun", selection_mode=("points", "box", "lasso"),
                key=f"compare-embedding-{run}-{record.id}-{layer}")
            selected_examples[run] = figures.selected_forget_examples(
                record.report, arrays[run],
                figures.selected_probe_rows(event.selection.points if event else []))
if export_tab.open:
    with export_tab:
        for run, record in pair.items():
            st.markdown(f"**{run}:** {record.label} · {record.id}")
            exports.run_downloads(record, arrays[run], f"compare-export-{run}")
        st.caption(exports.STATIC_IMAGE_NOTE)

st.header("Drill-down: one forget example")
drill_run = st.radio("Run", list(pair), horizontal=True, key="compare-drill-run",
                     format_func=lambda run: f"{run}: {pair[run].label} · {pair[run].id}")
instance_drilldown(pair[drill_run], arrays[drill_run], key="compare",
                   suggested=selected_examples[drill_run])

st.header("Delete runs")
doomed = st.multiselect("Runs to delete", ids, format_func=labels.get, key="compare-delete")
confirmed = st.checkbox(f"Yes, delete {len(doomed)} run(s) with their weights and results; "
                        "this cannot be undone", key="compare-delete-confirm",
                        disabled=not doomed)
if st.button("Delete", type="primary", disabled=not (doomed and confirmed),
             key="compare-delete-button"):
    try:
        for run_id in doomed:
            store.delete(run_id)
    except UserError as exc:
        st.error(str(exc))
    else:
        # The widgets still hold the deleted ids; clear them before the next draw.
        for widget in ("compare-delete", "compare-delete-confirm"):
            st.session_state.pop(widget, None)
        st.session_state["compare-deleted"] = len(doomed)
        st.rerun()
deleted = st.session_state.pop("compare-deleted", None)
if deleted:
    st.success(f"Deleted {deleted} run(s).")
