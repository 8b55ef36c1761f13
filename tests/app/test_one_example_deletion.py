"""A single person's deletion request: forget ONE training example of `digits` with
Finetune, NegGrad+ and SalUn. Each run stores a full report (what cannot be estimated
from one example is marked so), and every page of the app renders for it without an
exception, saying "not estimable from 1 example" where a number cannot be had."""

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from conftest import tiny_setup
from unlearn_core.config import ForgetSpec, MethodSpec, RunSpec
from unlearn_core.pipeline import run_unlearning
from unlearn_core.runs import RunStore

# Several seconds each on 2 cores: left out of `make test-fast`.
pytestmark = pytest.mark.slow

TIMEOUT = 120
APP = str(Path(__file__).resolve().parents[2] / "app.py")
PAGES = ["tour", "setup", "unlearn", "results", "layers", "privacy", "embeddings",
         "localization", "keys", "compare", "sweeps"]
METHODS = {"finetune": {"epochs": 1}, "neggrad_plus": {"epochs": 1}, "salun": {"epochs": 1}}


@pytest.fixture(scope="module")
def one_example_runs(tmp_path_factory):
    store = RunStore(tmp_path_factory.mktemp("one-example") / "store")
    setup = tiny_setup(forget=ForgetSpec("indices", indices=(7,)))
    ids = {m: run_unlearning(RunSpec(setup, MethodSpec(m, p)), store) for m, p in METHODS.items()}
    return store, ids


def test_one_example_runs_store_a_full_report(one_example_runs):
    store, ids = one_example_runs
    for method, run_id in ids.items():
        record = store.get(run_id)
        assert record.status == "done", (method, record.error)
        report = record.report
        assert report["split"]["forget"] == 1
        assert set(report) >= {"accuracy", "gap_to_oracle", "cost", "layers", "mia",
                               "method", "not_estimable"}
        assert report["accuracy"]["unlearned"]["forget_train"] in (0.0, 1.0)
        assert report["not_estimable"]["layers.cka.forget_train"] == \
            "needs at least 4 examples, has 1"
        assert report["not_estimable"]["mia.distinguishability"] == \
            "needs at least 10 examples, has 1"
        arrays = store.load_arrays(run_id)
        for role in ("unlearned", "original", "oracle"):
            assert arrays[f"eval/mia_score/{role}"].shape == (1,)


def _texts(at) -> str:
    parts = []
    for kind in ("title", "header", "subheader", "markdown", "caption", "info", "warning",
                 "error", "success", "text"):
        parts += [str(e.value) for e in getattr(at, kind)]
    parts += [str(e.label) for e in at.metric] + [str(e.value) for e in at.metric]
    return "\n".join(parts)


@pytest.mark.parametrize("method", list(METHODS))
def test_every_page_renders_for_a_one_example_run(one_example_runs, monkeypatch, method):
    store, ids = one_example_runs
    monkeypatch.setenv("LENS_STORE", str(store.root))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.session_state["selected_run"] = ids[method]
    at.run()
    assert not at.exception, at.exception
    seen = {}
    for page in PAGES:
        at.switch_page(f"app_pages/{page}.py").run()
        assert not at.exception, (page, at.exception)
        assert not at.error, (page, [e.value for e in at.error])
        seen[page] = _texts(at)
        if page == "results":
            frames = [f.value for f in at.dataframe]
    results = seen["results"]
    assert "This run forgot 1 example" in results
    assert "Training example 7" in results
    example = next(f for f in frames if "Membership score" in f.columns)
    assert list(example.index) == ["Original", "Unlearned", "Retrain oracle"]
    assert list(example.columns) == ["Predicted", "Confidence in its label", "Membership score"]
    assert all(v != "n/a" for v in example.to_numpy().ravel())
    assert "not estimable from 1 example" in seen["layers"]
    assert "not estimable from 1 example" in seen["layers"]
    assert "not estimable from 1 example" in seen["privacy"]
