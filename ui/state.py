"""Process-wide singletons (run store, job runner) and per-session state."""

from __future__ import annotations

from typing import Any, Callable

import streamlit as st

from unlearn_core.config import SetupSpec
from unlearn_core.jobs import Job, JobRunner
from unlearn_core.progress import Progress
from unlearn_core.runs import RunStore, default_store_root

SETUP_KEY = "setup_spec"
JOB_KEY = "job_id"
SELECTED_RUN_KEY = "selected_run"


@st.cache_resource
def job_runner() -> JobRunner:
    """One queue per app process: jobs from every browser tab run in order."""
    return JobRunner()


@st.cache_resource
def _store(root: str) -> RunStore:
    return RunStore(root)


@st.cache_resource
def _data_source(root: str) -> None:
    # Imported here: the data package imports torch, which the sidebar and a page's
    # title need not wait for.
    from unlearn_core.data import user as user_data
    user_data.add_source(_store(root))  # data given from a notebook (Lens) is kept there


def store() -> RunStore:
    """The run store at $LENS_STORE (or the default folder), one per folder, registered
    as where user datasets are restored from."""
    root = str(default_store_root())
    _data_source(root)
    return _store(root)


def store_index() -> RunStore:
    """The same store without registering it for user data (so without importing torch):
    for the sidebar, which only names the store and lists jobs."""
    return _store(str(default_store_root()))


def current_setup() -> SetupSpec:
    raw = st.session_state.get(SETUP_KEY)
    return SetupSpec.from_dict(raw) if raw else SetupSpec()


def set_setup(spec: SetupSpec) -> None:
    st.session_state[SETUP_KEY] = spec.to_dict()


def session_job() -> Job | None:
    job_id = st.session_state.get(JOB_KEY)
    return job_runner().get(job_id) if job_id else None


def busy() -> bool:
    """Whether this session has a job queued or running (its buttons are disabled)."""
    job = session_job()
    return job is not None and job.is_active


def submit(label: str, fn: Callable[[Progress], Any]) -> Job:
    job = job_runner().submit(label, fn)
    st.session_state[JOB_KEY] = job.id
    return job


def select_run(run_id: str) -> None:
    st.session_state[SELECTED_RUN_KEY] = run_id
