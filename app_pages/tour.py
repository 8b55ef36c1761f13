"""Tour: superficial vs core forgetting on the embedded default, told in six steps from
the runs one click leaves in the store (unlearn_core/tour.py)."""

import streamlit as st

from ui import presenter, state, widgets

# The title first: the Tour is the first page, and the core's modules below import torch
# and scikit-learn, seconds on a cold start.
st.title("Tour: is the forgetting only skin-deep?")
from unlearn_core.data import load_dataset, make_split  # noqa: E402
from unlearn_core.tour import run_tour, tour_runs, tour_setups, tour_story  # noqa: E402
from unlearn_core.tour_backdoor import (backdoor_runs, backdoor_step,  # noqa: E402
                                        run_backdoor_tour)

store = state.store()
runs = tour_runs(store)
setup = tour_setups()[0]
st.markdown(
    f"{len(runs)} unlearning methods make a `{setup.model.name}` trained on `{setup.data.name}` "
    f"forget {setup.forget.describe()}. Step 1 checks that each brings its accuracy down; "
    "the next steps look inside the models to see which ones really changed what the "
    "network knows, with the retrain oracle (a model trained without the forget set) as "
    "the reference. Every number below is read from the stored runs.")
to_run = [run.label for run in runs.values() if run.status == "not_run"]
if to_run:
    if st.button("Start the tour" if len(to_run) == len(runs) else "Run the rest of the tour",
                 type="primary", disabled=state.busy(), key="tour-start",
                 help=f"trains the original and the oracle if needed, then runs "
                      f"{', '.join(to_run)}, in the background: progress and Cancel in the "
                      f"sidebar; finished runs are kept, so this happens once"):
        state.submit("Tour", lambda progress: run_tour(store, progress))
        st.rerun()
    if state.busy():
        st.info("The tour is being computed: the bar in the sidebar shows where it is.")

if not presenter.active():
    with st.expander("The tour's runs"):
        st.dataframe([{"method": run.label, "status": run.status, "run id": run.run_id,
                       "note": run.missing} for run in runs.values()],
                     hide_index=True, width="stretch")


def show(step) -> None:
    st.subheader(f"{step.number}. {step.title}")
    if not step.available:
        st.info(step.text)
        return
    st.markdown(step.text)
    for column, figure in zip(st.columns(len(step.figures)), step.figures):
        presenter.chart(figure, column, beside=len(step.figures))
    for link in step.links:
        if st.button(f"Open {link.label}", key=f"tour-open-{step.number}-{link.label}",
                     icon=":material/arrow_forward:"):
            state.select_run(link.run_id)
            st.switch_page(link.page)


story = tour_story(store)
if all(run.status == "not_run" for run in runs.values()):
    # Before the first run: what the story will show, not six "not available" boxes, and
    # the data it is told on (which also has the browser load plotly while the user reads).
    outline, data = st.columns(2)
    outline.markdown("**The story, once the tour has run:**\n\n" + "\n".join(
        f"{step.number}. {step.title}" for step in story))
    dataset = load_dataset(setup.data)
    with data:
        widgets.forget_set_chart(dataset, make_split(dataset, setup.forget, setup.seed))
else:
    for step in story:
        show(step)

backdoor_to_run = [run.label for run in backdoor_runs(store).values() if run.status == "not_run"]
if backdoor_to_run and st.button(
        "Start the backdoor chapter", disabled=state.busy(), key="tour-backdoor-start",
        help=f"trains an original on poisoned mnist5k and its oracle, then runs "
             f"{', '.join(backdoor_to_run)}, in the background"):
    state.submit("Tour: the backdoor", lambda progress: run_backdoor_tour(store, progress))
    st.rerun()
show(backdoor_step(store))
