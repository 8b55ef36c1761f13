"""Widgets used by more than one page."""

from __future__ import annotations

from typing import Any

import numpy as np
import streamlit as st

from unlearn_core.methods import Method
from . import state


@st.fragment(run_every=0.5)
def job_panel() -> None:
    """Progress and cancel for this session's job; a full rerun once it ends so the
    pages show its results and enable their buttons again."""
    job = state.session_job()
    if job is None:
        return
    if job.is_active:
        text = f"{job.label} — {job.message or job.status}"
        st.progress(job.fraction, text=text)
        if st.button("Cancel", key=f"cancel-{job.id}", help="stops at the next training step"):
            job.cancel()
        return
    seen_key = f"job-seen-{job.id}"
    if not st.session_state.get(seen_key):
        st.session_state[seen_key] = True
        st.rerun(scope="app")
    if job.status == "done":
        st.success(f"{job.label}: done")
    elif job.status == "cancelled":
        st.warning(f"{job.label}: cancelled")
    else:
        st.error(f"{job.label} failed: {job.error}")


def method_form_inputs(method: Method) -> dict[str, Any]:
    """One input per hyperparameter, built from the method's own description.
    Ranges are enforced by `Method.resolve_params`, the same check the CLI uses."""
    values: dict[str, Any] = {}
    for p in method.params:
        key = f"param-{method.name}-{p.name}"
        if p.kind == "bool":
            values[p.name] = st.checkbox(p.name, value=p.default, help=p.help, key=key)
        elif p.kind == "choice":
            values[p.name] = st.selectbox(p.name, p.choices, index=p.choices.index(p.default),
                                          help=p.help, key=key)
        elif p.kind == "int":
            values[p.name] = st.number_input(p.name, value=int(p.default), step=1, help=p.help,
                                             key=key)
        else:
            values[p.name] = st.number_input(p.name, value=float(p.default), format="%g",
                                             step=float(p.default) / 10 or 0.01, help=p.help,
                                             key=key)
    return values


def image_grid(images: np.ndarray, captions: list[str], columns: int = 8, size: int = 84) -> None:
    """uint8 images (N, C, H, W) upscaled with nearest neighbours for a crisp look."""
    cols = st.columns(columns)
    for i, (image, caption) in enumerate(zip(images, captions)):
        scale = max(1, size // image.shape[-1])
        pixels = image.repeat(scale, axis=1).repeat(scale, axis=2)
        pixels = pixels[0] if pixels.shape[0] == 1 else pixels.transpose(1, 2, 0)
        cols[i % columns].image(pixels, caption=caption)
