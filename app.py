"""Unlearning Lens: page config, the shared sidebar and the page list."""

from pathlib import Path

import streamlit as st

from ui import presenter, state, widgets
from unlearn_core.errors import UserError

ASSETS = Path(__file__).parent / "assets"

st.set_page_config(page_title="Unlearning Lens", page_icon=str(ASSETS / "logo.png"),
                   layout="wide")

pages = [
    st.Page("app_pages/tour.py", title="Tour", icon=":material/school:", default=True),
    st.Page("app_pages/setup.py", title="Setup", icon=":material/tune:"),
    st.Page("app_pages/unlearn.py", title="Unlearn", icon=":material/delete_sweep:"),
    st.Page("app_pages/results.py", title="Results", icon=":material/analytics:"),
    st.Page("app_pages/layers.py", title="Layers", icon=":material/layers:"),
    st.Page("app_pages/privacy.py", title="Privacy", icon=":material/policy:"),
    st.Page("app_pages/embeddings.py", title="Embeddings", icon=":material/scatter_plot:"),
    st.Page("app_pages/localization.py", title="Localization", icon=":material/target:"),
    st.Page("app_pages/keys.py", title="Keys", icon=":material/key:"),
    st.Page("app_pages/compare.py", title="Compare", icon=":material/compare_arrows:"),
    st.Page("app_pages/sweeps.py", title="Sweeps", icon=":material/grid_view:"),
]
navigation = st.navigation(pages)

with st.sidebar:
    st.logo(str(ASSETS / "logo.png"), size="large")
    presenter.sidebar_toggle()
    try:
        store = state.store_index()
    except UserError as exc:
        st.error(str(exc))
        st.stop()
    spec = state.current_setup()
    st.caption(f"**Setup:** {spec.data.name} · {spec.model.name} · forget "
               f"{spec.forget.describe()} · seed {spec.seed} · {spec.device}")
    st.caption(f"Run store: `{store.root}`")
    widgets.job_panel()

try:
    navigation.run()
except UserError as exc:  # e.g. the store's index damaged while the app was open
    st.error(str(exc))
