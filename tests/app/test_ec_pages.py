"""EC in the app: "+ EC" next to each method that takes the plug-in, and the Layers page
overlaying runs of the same setup (a base method and base + EC)."""

import copy

import numpy as np
from streamlit.testing.v1 import AppTest

from test_inside_pages import APP, TIMEOUT, chart, open_page, synthetic_report
from unlearn_core.runs import RunStore


def open_unlearn(tmp_path, monkeypatch) -> AppTest:
    monkeypatch.setenv("LENS_STORE", str(tmp_path / "store"))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    at.switch_page("app_pages/unlearn.py").run()
    return at


def test_plugin_checkbox_adds_ec_parameters_to_the_form(tmp_path, monkeypatch):
    at = open_unlearn(tmp_path, monkeypatch)
    at.selectbox(key="method").set_value("finetune").run()
    assert "ec_beta" not in [n.label for n in at.number_input]
    at.checkbox(key="plugin-ec").check().run()
    assert not at.exception, at.exception
    labels = [n.label for n in at.number_input]
    assert {"ec_beta", "ec_lambda_ul", "lr", "epochs"} <= set(labels)
    assert "ec_layer_weights" in [t.label for t in at.text_input]


def test_no_plugin_checkbox_for_a_method_without_training_steps(tmp_path, monkeypatch):
    at = open_unlearn(tmp_path, monkeypatch)
    at.selectbox(key="method").set_value("ssd").run()
    assert not any(c.key == "plugin-ec" for c in at.checkbox)


def test_layers_page_overlays_runs_of_the_same_setup(tmp_path, monkeypatch):
    monkeypatch.setenv("LENS_STORE", str(tmp_path / "store"))
    store = RunStore(tmp_path / "store")
    setup = {"seed": 0}
    base = synthetic_report(np.random.default_rng(0))
    plugged = copy.deepcopy(base)
    plugged["method"]["title"] = "NegGrad+ + EC"
    plugged["layers"]["cka"]["unlearned_vs_original"]["forget_train"] = [0.5, 0.4, 0.3, 0.2, 0.1]
    plugged["method"]["curves"] = {f"ec/{term}/{layer}": [2.0, 1.5]
                                   for term in ("contrastive", "ce")
                                   for layer in base["layers"]["names"]}
    ids = []
    for label, report in (("NegGrad+", base), ("NegGrad+ + EC", plugged)):
        run_id = store.create("unlearn", {"setup": setup, "method": {"name": label}}, label)
        store.finish(run_id, report)
        ids.append(run_id)
    other = store.create("unlearn", {"setup": {"seed": 1}, "method": {"name": "x"}}, "other")
    store.finish(other, base)

    at = open_page("layers")  # the newest run: another setup, nothing to overlay
    assert not any(m.key == "layers-overlay" for m in at.multiselect)
    at.selectbox(key="picked_run").set_value(ids[1]).run()
    overlay = at.multiselect(key="layers-overlay")
    assert overlay.options == [f"NegGrad+ · {ids[0]}"]
    overlay.set_value([ids[0]]).run()
    assert not at.exception, at.exception
    spec = chart(at, "Linear CKA to the original per layer")
    names = [t["name"] for t in spec["data"]]
    assert names == [f"NegGrad+ + EC · {ids[1]}", f"NegGrad+ · {ids[0]}",
                     "Retrain oracle (reference)"]
    assert spec["data"][0]["y"] == [0.5, 0.4, 0.3, 0.2, 0.1]
    losses = chart(at, "EC per supervision point")
    assert len(losses["data"]) == 2 * len(base["layers"]["names"])
