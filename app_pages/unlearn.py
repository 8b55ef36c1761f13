"""Unlearn: pick a method, set its hyperparameters, run it in the background."""

import streamlit as st

from ui import own_method, state, widgets
from unlearn_core.config import MethodSpec, RunSpec, SetupSpec
from unlearn_core.errors import UserError
from unlearn_core.methods import applicability, get_method, list_methods, list_plugins
from unlearn_core.methods.registry import PLUGIN_SEPARATOR
from unlearn_core.pipeline import run_unlearning
from unlearn_core.training import prepare


@st.cache_data(max_entries=16, show_spinner="Checking which methods apply to this model...")
def refusals(setup_json: str) -> dict[str, str]:
    """Each method's reason not to run on the setup's model ("" = it applies)."""
    return applicability(prepare(SetupSpec.from_json(setup_json)).new_model())


st.title("Unlearn")
spec = state.current_setup()
st.caption(f"Setup: {spec.data.name} · {spec.model.name} · forget {spec.forget.describe()} · "
           f"seed {spec.seed}. Change it on the Setup page.")

try:
    refused = {n: why for n, why in refusals(spec.to_json()).items() if why}
except UserError as exc:
    st.error(str(exc))
    st.stop()
if refused:
    with st.expander(f"{len(refused)} method(s) do not apply to {spec.model.name}"):
        for refused_name, why in refused.items():
            st.markdown(f"- **{refused_name}**: {why}")

methods = {m.name: m for m in list_methods()}
name = st.selectbox("Method", list(methods), format_func=lambda n: methods[n].title, key="method")
if methods[name].plugin_ready:
    for plugin in list_plugins():
        if st.checkbox(f"+ {plugin.upper()}", key=f"plugin-{plugin}",
                       help=f"add the {plugin.upper()} plug-in's loss to every training step "
                            f"of {methods[name].title}; its hyperparameters start with "
                            f"{plugin}_"):
            name = f"{name}+{plugin}"
            break
method = get_method(name)
st.markdown(method.summary)
if method.reference:
    st.caption(f"Reference: {method.reference}")

refusal = refused.get(name.partition(PLUGIN_SEPARATOR)[0])
if refusal:
    st.warning(f"Does not apply to this setup's model: {refusal}")

with st.form(f"method-{name}"):
    st.markdown("**Hyperparameters**")
    raw = widgets.method_form_inputs(method)
    submitted = st.form_submit_button("Run", type="primary",
                                      disabled=state.busy() or bool(refusal))

if submitted:
    try:
        params = method.resolve_params(raw)
        run_spec = RunSpec(spec, MethodSpec(name, params))
    except UserError as exc:
        st.error(str(exc))
    else:
        store = state.store()
        job = state.submit(f"{method.title} on {spec.data.name}, forget {spec.forget.describe()}",
                           lambda progress: run_unlearning(run_spec, store, progress))
        st.session_state["unlearn_job"] = job.id
        st.rerun()

own_method.own_method_section(spec)
own_method.import_section(spec)

job = state.session_job()
if job is not None and job.id == st.session_state.get("unlearn_job") and job.status == "done":
    state.select_run(job.result)
    st.success(f"Run {job.result} is stored.")
    st.page_link("app_pages/results.py", label="See the results", icon=":material/arrow_forward:")
