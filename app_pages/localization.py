"""Localization: where a localized unlearning run (DEL, or any strategy × algorithm) put
its mask, per layer and per channel, and how the results move with the budget ρ."""

import streamlit as st

from ui import explainers, presenter, state, widgets
from unlearn_core import engine
from unlearn_core.config import RunSpec
from unlearn_core.errors import UserError
from unlearn_core.figures import localization as figs
from unlearn_core.methods import get_method
from unlearn_core.methods.localization import REFERENCE_STRATEGIES, STRATEGIES
from unlearn_core.methods.del_localized import (ALGORITHM_TITLES, ALGORITHMS, SWEEP_RHOS,
                                                TUNING_GRID, budget_sweep_specs, grid_settings)

st.title("Localization")
store = state.store()
runs = {r.id: r for r in widgets.run_page("loc", methods=figs.LOCALIZED_METHODS)}
if not runs:
    st.info("No localized run yet: run DEL or 'Localized unlearning' on the Unlearn page.")
    st.page_link("app_pages/unlearn.py", label="Unlearn", icon=":material/arrow_forward:")
    st.stop()

selected = st.session_state.get(state.SELECTED_RUN_KEY)
ids = list(runs)
run_id = st.selectbox("Run", ids, index=ids.index(selected) if selected in ids else 0,
                      format_func=lambda i: f"{runs[i].label} · {figs.series_label(runs[i].report)}"
                                            f" · ρ = {figs.localization_params(runs[i].report)['rho']:g}"
                                            f" · {i}", key="loc-run")
state.select_run(run_id)
record = runs[run_id]
report, arrays = record.report, widgets.run_arrays(record)
info = report["method"]["info"]["localization"]

cols = st.columns(4)
cols[0].metric("Strategy · algorithm", figs.series_label(report))
cols[1].metric("Budget ρ", f"{info['rho']:g}")
cols[2].metric("Parameters selected", f"{100 * info['selected_fraction']:.1f}%",
               f"{info['selected_parameters']:,} of {info['total_parameters']:,}",
               delta_color="off")
cols[3].metric("Channels selected", f"{info['selected_channels']} of {info['total_channels']}",
               help="a channel counts when any of its parameters is selected; the channel "
                    "strategies select whole channels")

explainers.explain("localization")

setup_hash = RunSpec.from_dict(record.spec).setup.hash
same_setup = [i for i, r in runs.items()
              if i != run_id and RunSpec.from_dict(r.spec).setup.hash == setup_hash]
compared = st.multiselect(
    "Compare with other localization runs of this setup", same_setup, key="loc-compare",
    format_func=lambda i: f"{figs.series_label(runs[i].report)} · ρ = "
                          f"{figs.localization_params(runs[i].report)['rho']:g} · {i}")
side_by_side = [(f"{figs.series_label(report)} ρ={info['rho']:g} (this run)", report, arrays)]
side_by_side += [(f"{figs.series_label(runs[i].report)} ρ="
                  f"{figs.localization_params(runs[i].report)['rho']:g} · {i}",
                  runs[i].report, widgets.run_arrays(runs[i])) for i in compared]
presenter.chart(figs.selected_fraction_bars(side_by_side))
presenter.chart(figs.criticality_heatmap(report, arrays))
if "layers" in report:
    presenter.chart(figs.mask_on_cka(report, arrays))
presenter.chart(figs.selectivity_by_selection(report, arrays))

st.header("Budget sweep")
tuned_view = st.toggle(
    "Best lr and epochs per ρ", key="loc-sweep-tuned",
    help="As the paper tunes per budget: at each ρ, the run closest to the oracle (average "
         "gap over forget, retain, test accuracy and MIA) among those of this setup; hover "
         "a point for the setting chosen. Off: each training setting is its own line.")
st.caption("Every localized run of this setup, grouped by strategy · algorithm and by ρ "
           "(mean ± std where several runs share a point).")
presenter.chart(figs.budget_sweep([report] + [runs[i].report for i in same_setup],
                                  tuned=tuned_view))


picked_params = report["method"]["params"]
with st.form("loc-sweep"):
    st.markdown(f"**Run a sweep** over ρ ∈ {{{', '.join(f'{r:g}' for r in SWEEP_RHOS)}}} on "
                "this run's setup")
    left, middle, right = st.columns(3)
    strategy = left.selectbox("Strategy", list(STRATEGIES), key="loc-sweep-strategy",
                              format_func=lambda s: STRATEGIES[s].title)
    random_like = middle.selectbox("Random mask copies the counts of", REFERENCE_STRATEGIES,
                                   key="loc-sweep-like", help="used with strategy random")
    algorithm = right.selectbox("Algorithm", ALGORITHMS, key="loc-sweep-algorithm",
                                format_func=ALGORITHM_TITLES.get)
    grid_text = " × ".join(f"{name} ∈ {{{', '.join(f'{v:g}' for v in values)}}}"
                           for name, values in TUNING_GRID.items())
    tune = st.checkbox(f"Tune lr and epochs per ρ ({grid_text}: "
                       f"{len(grid_settings(TUNING_GRID))} runs per ρ)", key="loc-sweep-tune",
                       help="the paper tunes per budget; the lr and epochs below are then "
                            "ignored")
    lr_column, epochs_column = st.columns(2)
    lr = lr_column.number_input("lr", value=float(picked_params["lr"]), format="%g",
                                key="loc-sweep-lr")
    epochs = epochs_column.number_input("epochs", value=int(picked_params["epochs"]), step=1,
                                        key="loc-sweep-epochs")
    submitted = st.form_submit_button("Run the sweep", type="primary", disabled=state.busy())

if submitted:
    carried = {p.name: picked_params[p.name] for p in get_method("localized").params
               if p.name in picked_params}
    try:
        specs = budget_sweep_specs(RunSpec.from_dict(record.spec).setup,
                                   {**carried, "strategy": strategy, "random_like": random_like,
                                    "algorithm": algorithm, "lr": lr, "epochs": epochs},
                                   tuning_grid=TUNING_GRID if tune else None)
    except UserError as exc:
        st.error(str(exc))
    else:
        label = f"Budget sweep: {figs.series_label({'method': specs[0].method.to_dict()})}"
        setup, methods = specs[0].setup, [spec.method for spec in specs]
        state.submit(label, lambda progress: engine.run_on_setup(
            setup, methods, store, label="budget sweep", progress=progress))
        st.rerun()
