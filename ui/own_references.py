"""The Setup page's way to bring your own original or retrain oracle: weights uploaded,
checked against the setup's architecture, then imported in the background into the
store's checkpoint cache (what `--original-checkpoint` / `--oracle-checkpoint` do in the CLI)."""

from __future__ import annotations

import dataclasses
import functools

import streamlit as st

from unlearn_core.config import SetupSpec
from unlearn_core.errors import UserError
from unlearn_core.runs import RunStore
from unlearn_core.training import check_reference_import, import_reference, reference_key
from unlearn_core.vocabulary import REFERENCE_ROLES
from . import state
from .own_method import CHECKPOINT_TYPES, fitting_upload, upload_as_file

IMPORTED_KEY = "imported_references"  # role -> {"value": "imported:<hash>", "name": file name}
PENDING_KEY = "reference_import_job"  # {"job": id, "role": ..., "name": ...}


def with_imported_references(spec: SetupSpec, store: RunStore) -> SetupSpec:
    """`spec` with each reference this session imported that fits it: one whose checkpoint
    the cache holds under this setup's key (an original fits every forget set of its data
    and model; an oracle only the forget set it was imported for)."""
    _collect_finished_import()
    for role, entry in st.session_state.get(IMPORTED_KEY, {}).items():
        try:
            candidate = dataclasses.replace(spec, **{role: entry["value"]})
        except UserError:  # e.g. an imported oracle with an independent initialisation
            continue
        if store.cache_has(reference_key(candidate, role)):
            spec = candidate
    return spec


def imported_name(spec: SetupSpec, role: str) -> str | None:
    """The file name of the reference `spec` imports for `role`, if it imports one."""
    entry = st.session_state.get(IMPORTED_KEY, {}).get(role)
    return entry["name"] if entry and getattr(spec, role) == entry["value"] else None


def _collect_finished_import() -> None:
    pending = st.session_state.get(PENDING_KEY)
    if pending is None:
        return
    job = state.job_runner().get(pending["job"])
    if job is not None and job.is_active:
        return
    del st.session_state[PENDING_KEY]
    if job is not None and job.status == "done":  # a failure is shown by the job panel
        st.session_state.setdefault(IMPORTED_KEY, {})[pending["role"]] = {
            "value": job.result, "name": pending["name"]}


def _import(spec: SetupSpec, store: RunStore, data: bytes, name: str, role: str,
            progress) -> str:
    """Import the uploaded bytes as `role` of `spec`; returns the setup's new value of
    `role`."""
    with upload_as_file(name, data) as path:
        return getattr(import_reference(spec, store, str(path), role, source=name), role)


def reference_import_section(spec: SetupSpec) -> None:
    """Upload an original or an oracle for the current setup; an imported one can be
    dropped again (the setup then trains it)."""
    with st.expander("Your own original or oracle (upload weights)"):
        st.caption("Weights of this setup's architecture (.safetensors, or .pt/.pth/.bin "
                   "saved weights-only: never unpickled). An imported original is used for "
                   "every forget set of this data and model; an imported oracle must have "
                   "been trained without this forget set (the lens cannot check that). The "
                   "other reference is trained with the recipe above.")
        for role in REFERENCE_ROLES:
            name = imported_name(spec, role)
            if name is not None:
                st.write(f"**{role.capitalize()}**: imported from `{name}`")
                if st.button(f"Train the {role} instead", key=f"reference-drop-{role}"):
                    del st.session_state[IMPORTED_KEY][role]
                    st.rerun()
                continue
            upload = st.file_uploader(f"{role.capitalize()} weights", type=CHECKPOINT_TYPES,
                                      key=f"reference-upload-{role}")
            if upload is None or not st.button(f"Use as the {role}", disabled=state.busy(),
                                               key=f"reference-import-{role}"):
                continue
            try:
                check_reference_import(spec, role, option=f"{role.capitalize()} weights")
                fitting_upload(spec, upload)
            except UserError as exc:
                st.error(str(exc))
                continue
            job = state.submit(f"Import the {role} {upload.name}", functools.partial(
                _import, spec, state.store(), upload.getvalue(), upload.name, role))
            st.session_state[PENDING_KEY] = {"job": job.id, "role": role, "name": upload.name}
            st.rerun()
