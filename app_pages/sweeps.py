"""Sweeps: a method over a grid of its hyperparameters and over setup seeds, run in the
background, then grouped by setting (mean ± std, 95% interval, best marked) with the
trade-off plot, here or on a Ray cluster. The CLI's `sweep config.toml [--ray ADDRESS]`
runs the same `engine.run_sweep`."""

import pandas as pd
import streamlit as st

from ui import presenter, state
from unlearn_core import engine
from unlearn_core.engine import ray_executor
from unlearn_core.errors import UserError
from unlearn_core.figures.sweeps import TRADEOFF_AXES, tradeoff_scatter
from unlearn_core.methods import list_methods

RESULT_KEY = "sweep_result"
JOB_KEY = "sweep_job"

st.title("Sweeps")
setup = state.current_setup()
st.caption(f"Setup: {setup.data.name} · {setup.model.name} · forget "
           f"{setup.forget.describe()}. Change it on the Setup page. The sweep uses setup "
           "seeds 0..n-1 (each trains its own original and oracle, cached), not the Setup "
           "page's seed.")

methods = {m.name: m for m in list_methods()}
name = st.selectbox("Method", list(methods), format_func=lambda n: methods[n].title,
                    key="sweep_method")
method = methods[name]
# A list-valued parameter cannot be written as comma-separated grid values.
sweepable = [p for p in method.params if p.kind != "floats"]

with st.form(f"sweep-{name}"):
    st.markdown("**Grid**: comma-separated values per hyperparameter; the sweep runs "
                "their product. Empty: the default.")
    fields = {p.name: st.text_input(p.name, placeholder=f"default {p.default}",
                                    help=f"{p.help}; {p.allowed()}",
                                    key=f"sweep-{name}-{p.name}")
              for p in sweepable}
    seeds = st.number_input("Seeds", min_value=1, max_value=engine.MAX_SEEDS, value=3,
                            step=1, key="sweep_seeds",
                            help="setup seeds 0..n-1; statistics are over these")
    ray_address = st.text_input(
        "Ray cluster address", key="sweep_ray_address", placeholder="empty: run here",
        help="HOST:PORT of a Ray cluster's head (or auto: the one `ray start` joined on "
             "this machine). Runs become Ray tasks; this app stores them. README: Sweeps "
             "on a Ray cluster").strip()
    go_big = st.checkbox(f"Start even if it has more than {engine.CONFIRM_ABOVE_RUNS} runs",
                         key="sweep_go_big")
    submitted = st.form_submit_button("Run sweep", type="primary", disabled=state.busy())

if submitted:
    try:
        config = engine.SweepConfig(
            method=name, seeds=tuple(range(int(seeds))), setup=setup,
            grid=engine.grid_from_values(name, {k: v for k, v in fields.items() if v.strip()}))
        if ray_address:
            ray_executor.import_ray()  # without Ray: say what to install, before submitting
    except UserError as exc:
        st.error(str(exc))
        config = None
    size = engine.estimate(config, state.store()) if config is not None else None
    if size is not None and size["runs"] > engine.CONFIRM_ABOVE_RUNS and not go_big:
        st.warning(f"This sweep has {size['runs']:,} runs ({len(config.specs):,} settings x "
                   f"{len(config.seeds)} seeds; {size['reused']:,} already in the store), more "
                   f"than {engine.CONFIRM_ABOVE_RUNS}: tick the box above to start it, or "
                   "shrink the grid or the seeds.")
    elif size is not None:
        store = state.store()
        where = f" on Ray ({ray_address})" if ray_address else ""
        job = state.submit(f"Sweep{where}: {engine.describe_config(config)}",
                           lambda progress: engine.run_sweep(config, store, progress=progress,
                                                             ray_address=ray_address or None))
        st.session_state[JOB_KEY] = job.id
        st.session_state.pop(RESULT_KEY, None)
        st.rerun()

job = state.session_job()
if job is not None and job.id == st.session_state.get(JOB_KEY):
    if job.is_active:
        st.info(f"Running: {job.message or job.status} "
                "(progress and Cancel in the sidebar)")
    elif job.status == "done":
        st.session_state[RESULT_KEY] = job.result
    elif job.status == "failed":
        st.error(f"The sweep failed: {job.error}")

result = st.session_state.get(RESULT_KEY)
if result is not None:
    summary = result["summary"]
    st.subheader("Grouped by setting")
    on_ray = summary.get("ray")
    st.caption(f"{summary['runs']} runs ({summary['reused']} reused from the store, "
               f"{summary['failed']} failed) in {summary['wall_seconds']:.0f} s"
               + (f" on Ray, at most {on_ray['at_once']} at once {on_ray['why']}"
                  if on_ray else "") + ". " + engine.LEGEND)
    table = pd.DataFrame(result["records"])
    best = table.pop("best")
    st.dataframe(table.style.apply(
        lambda row: ["font-weight: bold; background-color: #e6f4ea" if best[row.name] else ""
                     for _ in row], axis=1), hide_index=True)
    x = st.radio("Horizontal axis", list(TRADEOFF_AXES), format_func=TRADEOFF_AXES.get,
                 horizontal=True, key="sweep_x")
    presenter.chart(tradeoff_scatter(result["rows"], x))
