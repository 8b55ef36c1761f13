"""Presenter mode for classrooms and talks: larger fonts, fewer controls.

On with the sidebar toggle or with `?present=1` in the URL. app.py draws the toggle once
per run (`sidebar_toggle`); pages ask `active()` to leave out optional controls and draw
every chart with `chart`, which gives it larger text (and titles that fit beside another).
"""

from __future__ import annotations

import textwrap
from typing import TYPE_CHECKING

import streamlit as st

if TYPE_CHECKING:  # plotly is imported by the pages that draw: not before the first page
    import plotly.graph_objects as go

KEY = "presenter_mode"
QUERY_PARAMETER = "present"
FIGURE_FONT_SIZE = 20
# How many characters of a chart title fit across the page's main column: in chromium at
# 1400 px a half-row title was cut after about 43 characters when presenting (22 px) and
# fits about 60 otherwise (16 px); these leave room for a narrower laptop screen.
ROW_TITLE_CHARS, ROW_TITLE_CHARS_PRESENTING = 100, 76
TITLE_LINE_PX, TITLE_LINE_PX_PRESENTING = 22, 30

# Streamlit's stable test ids; expanders hold optional detail (explainers, run details)
# and the toolbar holds the deploy and settings menu, neither wanted on a projector.
STYLE = """
<style>
html, body, .stApp { font-size: 22px; }
.stMarkdown p, .stMarkdown li, .stAlert p { font-size: 1.3rem; line-height: 1.5; }
h1 { font-size: 3rem !important; }
h2, h3 { font-size: 2.2rem !important; }
[data-testid="stMetricValue"] { font-size: 2.6rem; }
[data-testid="stCaptionContainer"] { font-size: 1.1rem; }
[data-testid="stExpander"], [data-testid="stToolbar"] { display: none; }
</style>
"""


def sidebar_toggle() -> bool:
    """The toggle, started from the URL's `?present=1` the first time a session sees it;
    while on, the URL carries the parameter, so a shared link opens in presenter mode.
    Injects the style. Call once per script run (app.py's sidebar)."""
    if KEY not in st.session_state:
        st.session_state[KEY] = st.query_params.get(QUERY_PARAMETER) == "1"
    on = st.sidebar.toggle("Presenter mode", key=KEY,
                           help="larger fonts and fewer controls, for a projector")
    if on:
        st.query_params[QUERY_PARAMETER] = "1"
        st.markdown(STYLE, unsafe_allow_html=True)
    elif QUERY_PARAMETER in st.query_params:
        del st.query_params[QUERY_PARAMETER]
    return on


def active() -> bool:
    return bool(st.session_state.get(KEY))


def figure(fig: go.Figure, beside: int = 1) -> go.Figure:
    """The figure with larger text in presenter mode (CSS does not reach into charts).
    `beside`: how many figures share its row; plotly cuts a title that does not fit
    rather than wrapping it, so a long one is broken into lines."""
    if active():
        fig.update_layout(font_size=FIGURE_FONT_SIZE)
    title = fig.layout.title.text
    limit = (ROW_TITLE_CHARS_PRESENTING if active() else ROW_TITLE_CHARS) // beside
    if beside > 1 and title and "<br>" not in title and len(title) > limit:
        lines = textwrap.wrap(title, limit)
        # Hung from the figure's top with a top margin that holds every line: Streamlit's
        # chart theme keeps a one-line margin, which cut the first line off.
        line_px = TITLE_LINE_PX_PRESENTING if active() else TITLE_LINE_PX
        fig.update_layout(title={"text": "<br>".join(lines), "y": 1, "yref": "container",
                                 "yanchor": "top", "pad": {"t": line_px}},
                          margin_t=line_px * (len(lines) + 2))
    return fig


def chart(fig: go.Figure, container=st, *, beside: int = 1, **kwargs):
    """`fig` drawn across `container` (the page, a column) as every page draws its charts:
    through `figure`, so presenter mode reaches them all. `kwargs` go to
    st.plotly_chart (key, on_select, ...); returns what it returns."""
    return container.plotly_chart(figure(fig, beside), width="stretch", **kwargs)

