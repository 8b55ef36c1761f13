"""The Unlearn page's two ways past the built-in methods: your own method by entry point,
and weights unlearned elsewhere, uploaded and evaluated as a run of the current setup."""

from __future__ import annotations

import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import streamlit as st

from unlearn_core.config import MethodSpec, RunSpec, SetupSpec
from unlearn_core.errors import UserError
from unlearn_core.io import SAFETENSORS_SUFFIXES, TORCH_SUFFIXES, load_into_model, load_state_dict
from unlearn_core.methods import get_method
from unlearn_core.pipeline import import_run, run_unlearning
from unlearn_core.training import prepare
from . import state, widgets

JOB_KEY = "unlearn_job"
CHECKPOINT_TYPES = [s.lstrip(".") for s in SAFETENSORS_SUFFIXES + TORCH_SUFFIXES]  # uploads


def own_method_section(spec: SetupSpec) -> None:
    """An entry point "module:function" (a module on the app's Python path, or a .py file
    by its path); its form is built from its parameters like a built-in method's."""
    with st.expander("Your own method (module:function)"):
        st.caption("A function `(model, forget_loader, retain_loader, **params) -> model` or "
                   "a `Method` subclass; int, float and bool defaults become its "
                   "hyperparameters. The run records its name, parameters and source hash.")
        entry = st.text_input("Entry point", key="own-entry",
                              placeholder="mypackage.unlearning:unlearn or path/to/file.py:unlearn")
        if not entry.strip():
            return
        try:
            method = get_method(entry.strip())
        except UserError as exc:
            st.error(str(exc))
            return
        st.markdown(f"**{method.title}**: {method.summary}")
        with st.form(f"own-{method.name}"):
            raw = widgets.method_form_inputs(method)
            submitted = st.form_submit_button("Run your method", type="primary",
                                              disabled=state.busy())
        if submitted:
            try:
                run_spec = RunSpec(spec, MethodSpec(method.name, method.resolve_params(raw)))
            except UserError as exc:
                st.error(str(exc))
                return
            store = state.store()
            _start(method.title, spec, lambda progress: run_unlearning(run_spec, store, progress))


@contextmanager
def upload_as_file(name: str, data: bytes) -> Iterator[Path]:
    """The uploaded bytes as a temporary file with the upload's suffix (what tells a
    checkpoint's format), removed afterwards."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"upload{Path(name).suffix.lower()}"
        path.write_bytes(data)
        yield path


def fitting_upload(spec: SetupSpec, upload) -> dict:
    """The uploaded file's tensors, read like any checkpoint (never unpickled) and checked
    against the setup's architecture: a UserError naming the upload, not a temporary file."""
    with upload_as_file(upload.name, upload.getvalue()) as path:
        try:
            weights = load_state_dict(path)
        except UserError as exc:
            raise UserError(str(exc).replace(str(path), upload.name)) from None
    load_into_model(prepare(spec).new_model(), weights, source=upload.name)
    return weights


def import_section(spec: SetupSpec) -> None:
    """Upload weights unlearned elsewhere; they are checked against the setup's
    architecture here, then evaluated in the background against its original and oracle."""
    with st.expander("Import an unlearned checkpoint"):
        st.caption("Weights of this setup's architecture, unlearned outside the lens "
                   "(.safetensors, or .pt/.pth/.bin saved weights-only: never unpickled). "
                   "The run gets the full report and every view, against this setup's "
                   "original and oracle (trained first if missing).")
        upload = st.file_uploader("Unlearned weights", key="import-weights",
                                  type=CHECKPOINT_TYPES)
        seconds = st.number_input("Unlearning time where it ran (seconds; 0 = unknown)",
                                  min_value=0.0, value=0.0, key="import-seconds")
        if upload is None or not st.button("Import and evaluate", key="import-run",
                                           disabled=state.busy()):
            return
        try:
            weights = fitting_upload(spec, upload)
        except UserError as exc:
            st.error(str(exc))
            return
        store = state.store()
        _start(f"Imported {upload.name}", spec,
               lambda progress: import_run(spec, weights, store, progress,
                                           seconds=seconds or None, source=upload.name))


def _start(what: str, spec: SetupSpec, work) -> None:
    """Submit the work as the Unlearn page's job (its panel follows JOB_KEY) and rerun."""
    job = state.submit(f"{what} on {spec.data.name}, forget {spec.forget.describe()}", work)
    st.session_state[JOB_KEY] = job.id
    st.rerun()
