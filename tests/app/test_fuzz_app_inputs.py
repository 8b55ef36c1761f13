"""Property-based test (Hypothesis) of the app's typed inputs: a dataset root typed on
the Setup page and grid values typed on the Sweeps page. The property: the page renders
without an exception box; a bad value shows as st.error naming the field; nothing is
stored. Bounded (15 examples each) to stay within the suite's time."""

import os
import time
from unittest import mock

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from streamlit.testing.v1 import AppTest

from conftest import tiny_setup
from ui import state
from unlearn_core.runs import RunStore
from tests.app.helpers import ROOT

# Several seconds or more on 2 cores: left out of `make test-fast`.
pytestmark = pytest.mark.slow

APP_FUZZ = settings(max_examples=int(os.environ.get("LENS_FUZZ_APP_EXAMPLES", "15")),
                    deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])
TYPED = st.one_of(st.sampled_from(["", " ", "a\x00b", "~", "~nosuchuser/x", "/", ".",
                                   "1" + "0" * 5000, "1e400", "nan", "-inf", "é" * 300,
                                   "x" * 5000, "0.1, , 0.2", "[1]", "\u202e"]),
                  st.text(max_size=20))


@APP_FUZZ
@given(root=TYPED)
@example(root="a\x00b")
def test_setup_page_typed_root(tmp_path_factory, root):
    store = tmp_path_factory.mktemp("app-fuzz") / "store"
    os.environ["LENS_STORE"] = str(store)
    at = AppTest.from_file(str(ROOT / "app_pages" / "setup.py"), default_timeout=60)
    at.run()
    at.selectbox(key="dataset").set_value("imagefolder").run()
    assert not at.exception, at.exception
    at.text_input(key="root").input(root).run()
    assert not at.exception, (root, at.exception)
    for error in at.error:
        assert "\n" not in error.value.strip() and "Traceback" not in error.value
        assert any(f in error.value for f in ("data.root", "data.", "root")), error.value
    assert RunStore(store).list() == []


@APP_FUZZ
@given(values=TYPED)
@example(values="1" + "0" * 5000)
@example(values="-inf")  # int(-inf) was an OverflowError traceback on the page
def test_sweeps_page_typed_grid(tmp_path_factory, values):
    store = tmp_path_factory.mktemp("app-fuzz") / "store"
    os.environ["LENS_STORE"] = str(store)
    at = AppTest.from_file(str(ROOT / "app_pages" / "sweeps.py"), default_timeout=60)
    at.session_state[state.SETUP_KEY] = tiny_setup().to_dict()
    at.run()
    at.selectbox(key="sweep_method").set_value("finetune").run()
    at.text_input(key="sweep-finetune-epochs").input(values)
    # An accepted grid submits a job; the stub stands where the sweep would start.
    with mock.patch("unlearn_core.engine.run_sweep", side_effect=RuntimeError("accepted")):
        at.button[0].click().run()
        if "sweep_job" in at.session_state:
            job = state.job_runner().get(at.session_state["sweep_job"])
            deadline = time.monotonic() + 30
            while job is not None and job.is_active and time.monotonic() < deadline:
                time.sleep(0.05)  # let the stub run inside the patch
    assert not at.exception, (values, at.exception)
    for error in at.error:
        assert "grid.epochs" in error.value or "accepted" in error.value, error.value
    assert RunStore(store).list() == []
