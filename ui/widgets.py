"""Widgets used by more than one page."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import streamlit as st

from unlearn_core import array_keys
from unlearn_core.runs import RunRecord, RunStore
from unlearn_core.vocabulary import ROLES_BEFORE_AFTER
from . import presenter, state

if TYPE_CHECKING:  # the methods and the data import torch: not needed before a page that runs one
    from unlearn_core.data import Dataset, Split
    from unlearn_core.methods import Method

RUN_PICKER_KEY = "picked_run"


# Once a second: each poll is a fragment rerun in the server and a redraw in the browser,
# which on 2 cores slow the job itself (the Tour took 54.5 s polled every 0.5 s, 49.7 s
# every 1 s; docs/benchmarks/instant-lens-cpu-2core.md).
@st.fragment(run_every=1.0)
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
        elif p.kind == "floats":
            values[p.name] = st.text_input(p.name, value=", ".join(f"{v:g}" for v in p.default),
                                           help=p.help, key=key)
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


def forget_set_chart(dataset: Dataset, split: Split) -> None:
    """How the forget set falls across the classes of the training data."""
    from unlearn_core import figures  # plotly: imported by the pages that draw, not the sidebar
    presenter.chart(figures.forget_set_by_class(
        dataset.train.labels.numpy(), split.forget, list(dataset.classes)))


def _remember_picked_run() -> None:
    state.select_run(st.session_state[RUN_PICKER_KEY])


# Runs a picker offers at once: a select box stays quick with a few hundred options.
RUNS_PER_PAGE = 200


def page_number(total: int, key: str) -> int:
    """1, or past RUNS_PER_PAGE runs the page a page-number input chooses."""
    if total <= RUNS_PER_PAGE:
        return 1
    pages = -(-total // RUNS_PER_PAGE)
    return int(st.number_input(f"Page of runs ({total} runs, {RUNS_PER_PAGE} a page, newest "
                               "first)", min_value=1, max_value=pages, value=1, step=1,
                               key=f"{key}-page"))


def run_page(key: str, *, setup: str | None = None,
             methods: tuple[str, ...] | None = None) -> list[RunRecord]:
    """The finished unlearning runs (of a setup key, of some methods) of one page, newest
    first, from the store's index; past RUNS_PER_PAGE a page-number input chooses the
    page. The session's selected run stays in the list (first) when it is on another."""
    store = state.store()
    total = store.count(kind="unlearn", status="done", setup=setup, methods=methods)
    page = page_number(total, key)
    records = store.query(kind="unlearn", status="done", setup=setup, methods=methods,
                          limit=RUNS_PER_PAGE, offset=(page - 1) * RUNS_PER_PAGE)
    selected = st.session_state.get(state.SELECTED_RUN_KEY)
    if selected and all(record.id != selected for record in records):
        records = store.query(kind="unlearn", status="done", setup=setup, methods=methods,
                              ids=[selected]) + records
    return records


def run_picker(needs: tuple[str, ...] = ()) -> RunRecord:
    """A select box over the finished unlearning runs (newest first, paged) that starts
    at the session's selected run, and that run's record. Stops the page with a pointer
    to the Unlearn page when there is no run, and with a hint to rerun when the report
    lacks a section in `needs` (runs stored before that section existed)."""
    done = {r.id: r for r in run_page("run-picker")}
    if not done:
        st.info("No finished runs yet: run a method on the Unlearn page.")
        st.page_link("app_pages/unlearn.py", label="Unlearn", icon=":material/arrow_forward:")
        st.stop()
    selected = st.session_state.get(state.SELECTED_RUN_KEY)
    # The selection may have changed on another page since this box was last drawn;
    # the box's own changes reach SELECTED_RUN_KEY first, through its callback.
    st.session_state[RUN_PICKER_KEY] = selected if selected in done else next(iter(done))
    run_id = st.selectbox("Run", list(done), format_func=lambda i: f"{done[i].label} · {i}",
                          key=RUN_PICKER_KEY, on_change=_remember_picked_run)
    state.select_run(run_id)
    record = done[run_id]
    if any(section not in record.summary["sections"] for section in needs):
        st.info("This run was stored before the layer metrics existed; run it again")
        st.page_link("app_pages/unlearn.py", label="Unlearn", icon=":material/arrow_forward:")
        st.stop()
    return record


@st.cache_data(max_entries=8, show_spinner=False)
def _stored_arrays(store_root: str, run_id: str) -> dict[str, np.ndarray]:
    return RunStore(store_root).load_arrays(run_id)


def run_arrays(record: RunRecord) -> dict[str, np.ndarray]:
    """A finished run's artifacts.npz, read once per run: a stored run never changes."""
    return _stored_arrays(str(state.store().root), record.id)


def _examples(n: int) -> str:
    return f"{n} example" if n == 1 else f"{n} examples"


def not_estimable_text(reason: str) -> str:
    """"needs at least 4 examples, has 1" -> "not estimable from 1 example (needs at
    least 4)"."""
    import re
    match = re.fullmatch(r"needs at least (\d+) examples, has (\d+)", reason or "")
    if not match:
        return f"not estimable ({reason})"
    return f"not estimable from {_examples(int(match.group(2)))} (needs at least {match.group(1)})"


NOT_ESTIMABLE_LABELS = {"cka": "CKA", "cka_excess": "CKA difference to the oracle",
                        "cka_matrix": "Layer × layer CKA",
                        "distinguishability": "Distinguishability from the oracle (ε)"}


def show_not_estimable(report: dict, section: str) -> dict[str, str]:
    """One info line per value of `section` ("layers", "mia") the report marks as not
    estimable for too few examples; returns those entries (key without the section)."""
    from unlearn_core import figures
    notes = {key[len(section) + 1:]: reason
             for key, reason in (report.get("not_estimable") or {}).items()
             if key.startswith(section + ".")}
    for key, reason in notes.items():
        name, _, part = key.partition(".")
        label = NOT_ESTIMABLE_LABELS.get(name, name)
        where = f" on {figures.PART_LABELS.get(part, part).lower()}" if part else ""
        st.info(f"{label}{where}: {not_estimable_text(reason)}.")
    return notes


SMALL_FORGET_SET = 5  # up to this many forget examples, Results shows each one


def small_forget_view(record: RunRecord, arrays: dict[str, np.ndarray]) -> None:
    """A deletion of a few examples, example by example: its prediction, its confidence
    in its own label and its membership score under the original, the unlearned model
    and the oracle."""
    import pandas as pd
    from unlearn_core import figures
    report = record.report
    n = int(report["split"]["forget"])
    if n > SMALL_FORGET_SET or array_keys.FORGET_INDEX not in arrays:
        return
    classes = report.get("classes") or []
    st.subheader(f"This run forgot {_examples(n)}")
    st.caption("Each forgotten example under the three models: the class it is predicted "
               "as, the model's confidence in its true label, and the membership score of "
               "the attack (high: looks like a training member). The oracle never saw it.")
    try:
        from unlearn_core.instance import forget_examples
        dataset, _ = forget_examples(record.spec)
        labels = dataset.train.labels.numpy()
    except Exception:  # the dataset may be gone; the table still shows the scores
        labels = None
    roles = ROLES_BEFORE_AFTER
    for position, index in enumerate(arrays[array_keys.FORGET_INDEX]):
        label = None if labels is None else int(labels[int(index)])
        name = (classes[label] if label is not None and label < len(classes) else label)
        st.markdown(f"**Training example {int(index)}**" +
                    (f" (label {name})" if label is not None else ""))
        rows = {}
        for role in roles:
            pred = arrays.get(array_keys.forget_pred(role))
            conf = arrays.get(array_keys.score("conf", role, "forget"))
            score = arrays.get(array_keys.mia_score(role))
            predicted = None if pred is None else int(pred[position])
            rows[figures.ROLE_LABELS[role]] = {
                "Predicted": "n/a" if predicted is None else str(
                    classes[predicted] if predicted < len(classes) else predicted),
                "Confidence in its label": "n/a" if conf is None else f"{100 * float(conf[position]):.1f}%",
                "Membership score": "n/a" if score is None else f"{float(score[position]):.3f}"}
        st.dataframe(pd.DataFrame(rows).T, width="stretch")
