"""The Keys page through AppTest, on a DKVB run (tiny digits, a small bottleneck) whose
arrays and info come from a real dkvb_activations unlearning, next to a frozen-encoder
baseline run of the same setup and one of another seed. Figures are checked against the
stored arrays."""

import copy

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import tiny_context, tiny_setup
from ui import state
from unlearn_core.config import BottleneckSpec, MethodSpec, ModelSpec, RunSpec
from unlearn_core.methods import get_method
from unlearn_core.progress import Progress
from unlearn_core.runs import RunStore
from unlearn_core.training import TrainedModel, get_original, prepare
from tests.app.helpers import ROOT, TIMEOUT, charts

PAGE_PATH = "app_pages/keys.py"
# Until app.py lists the page, it is opened on its own.
REGISTERED = PAGE_PATH in (ROOT / "app.py").read_text()
SMALL = BottleneckSpec(codebooks=8, keys=32, key_dim=4, kmeans_epochs=2, value_epochs=5)


class OriginalOnly:
    """What tiny_context reads of the references: the experiment and the original (the
    page needs no oracle, so none is trained)."""

    def __init__(self, experiment, original: TrainedModel):
        self.experiment, self.original = experiment, original


def store_run(store: RunStore, setup, method: str, report: dict, arrays: dict) -> str:
    run_id = store.create("unlearn", RunSpec(setup, MethodSpec(method)).to_dict(),
                          label=report["method"]["title"])
    store.finish(run_id, report, arrays=arrays)
    return run_id


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    root = tmp_path_factory.mktemp("keys-store")
    store = RunStore(root)
    setup = tiny_setup(model=ModelSpec("dkvb", bottleneck=SMALL))
    exp = prepare(setup)
    refs = OriginalOnly(exp, get_original(exp, store, Progress()))
    method = get_method("dkvb_activations")
    outcome = method.unlearn(tiny_context(refs, method.name))
    report = {"method": {"name": method.name, "title": method.title, "params": {},
                         "curves": {}, "info": outcome.info},
              "cost": {"seconds": outcome.info["unlearning_seconds"]
                       + outcome.info["artifact_seconds"]},
              "classes": list(exp.dataset.classes), "forget_classes": [0]}
    dkvb = store_run(store, setup, method.name, report, outcome.artifacts)
    baseline_report = copy.deepcopy(report)
    baseline_report["method"] = {"name": "finetune", "title": "Finetune", "params": {},
                                 "curves": {}, "info": {"steps": 57, "epochs_run": 1}}
    baseline_report["cost"]["seconds"] = 9.5
    no_keys = {"eval/probe_index": np.arange(3)}
    baseline = store_run(store, tiny_setup(model=ModelSpec("frozen_linear")), "finetune",
                         baseline_report, no_keys)
    elsewhere = store_run(store, tiny_setup(seed=1), "finetune", baseline_report, no_keys)
    return root, store, {"dkvb": dkvb, "baseline": baseline, "elsewhere": elsewhere}


def open_page(root, monkeypatch, run_id: str) -> AppTest:
    monkeypatch.setenv("LENS_STORE", str(root))
    path = "app.py" if REGISTERED else PAGE_PATH
    at = AppTest.from_file(str(ROOT / path), default_timeout=TIMEOUT)
    at.session_state[state.SELECTED_RUN_KEY] = run_id
    at.run()
    if REGISTERED:
        at.switch_page(PAGE_PATH).run()
    assert not at.exception, at.exception
    return at


def chart(at, title_part: str) -> dict:
    return next(spec for title, spec in charts(at).items() if title_part in title)


def test_keys_page_draws_the_runs_masking_from_its_arrays(stored, monkeypatch):
    root, store, ids = stored
    arrays = store.load_arrays(ids["dkvb"])
    info = store.get(ids["dkvb"]).report["method"]["info"]
    at = open_page(root, monkeypatch, ids["dkvb"])
    mask = arrays["dkvb/mask"]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Pairs masked"] == f"{int(mask.sum()):,}"

    sweep = chart(at, "The N sweep")
    forget_curve = next(t for t in sweep["data"] if t.get("name") == "forget (held-out)")
    assert forget_curve["x"] == arrays["dkvb/sweep_n"].tolist()
    assert forget_curve["y"] == pytest.approx(100 * arrays["dkvb/sweep_forget_accuracy"])
    assert any(t.get("name") == f"chosen N = {info['n_swept']:,}" for t in sweep["data"])

    overview = chart(at, "Keys per codebook")
    masked_marks = next(t for t in overview["data"] if t["name"] == "keys masked")
    assert masked_marks["y"] == mask.sum(1).tolist()

    # The codebook box starts at the codebook with the most masked keys.
    codebook = at.selectbox(key="keys-codebook").value
    assert mask[codebook].sum() == mask.sum(1).max()
    histogram = chart(at, f"Codebook {codebook}: ")
    before_forget = next(t for t in histogram["data"] if t["name"] == "forget set")
    shown = [int(label.split()[0]) for label in before_forget["x"]]
    assert before_forget["y"] == arrays["dkvb/usage_forget_before"][codebook][shown].tolist()
    masked_x = next(t for t in histogram["data"] if t["name"] == "masked")["x"]
    assert sorted(int(label.split()[0]) for label in masked_x) == np.flatnonzero(
        mask[codebook]).tolist()
    after = [t for t in histogram["data"] if t["name"] == "forget set"][1]
    assert all(y == 0 for label, y in zip(after["x"], after["y"]) if "✕" in label)

    other = next(c for c in at.selectbox(key="keys-codebook").options if c != codebook)
    at.selectbox(key="keys-codebook").set_value(other).run()
    assert not at.exception
    assert chart(at, f"Codebook {other}: ")

    matrix = chart(at, "pairs the forget set selects most")["data"][0]
    counts = arrays["dkvb/key_class_usage"].reshape(-1, 10)
    first = matrix["y"][0].split()[0]
    c, k = (int(part[1:]) for part in first.split("/"))
    assert matrix["text"][0] == counts[c * SMALL.keys + k].tolist()
    assert counts[c * SMALL.keys + k, 0] == counts[:, 0].max()  # the forget class's favourite


def test_cost_chart_compares_runs_on_the_same_encoder_only(stored, monkeypatch):
    root, store, ids = stored
    at = open_page(root, monkeypatch, ids["dkvb"])
    cost = chart(at, "Cost of the unlearning itself")["data"][0]
    info = store.get(ids["dkvb"]).report["method"]["info"]
    assert len(cost["y"]) == 2  # the seed-1 run stands on another original
    assert cost["y"][0] == "DKVB: Unlearning via Activations [dkvb] ◀ this run"
    assert cost["x"][0] == pytest.approx(info["unlearning_seconds"])
    assert cost["text"] == [f"{info['encoder_forward_examples']:,} examples forward, 0 steps",
                            "57 gradient steps"]
    assert cost["y"][1] == "Finetune [frozen_linear]"


def test_a_run_without_keys_gets_a_pointer_to_the_dkvb_methods(stored, monkeypatch):
    root, _, ids = stored
    at = open_page(root, monkeypatch, ids["baseline"])
    assert "masked no keys" in at.info[0].value
    assert not at.get("plotly_chart")
    at.button(key="keys-open-newest").click().run()
    assert not at.exception, at.exception
    assert at.session_state[state.SELECTED_RUN_KEY] == ids["dkvb"]
    assert {m.label for m in at.metric} >= {"Pairs masked"}
