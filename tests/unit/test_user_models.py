"""A user's own module by entry point (CLI, setup JSON), checked before anything trains;
adapted models through the pipeline with the full report; every method saying whether it
applies."""

import json

import numpy as np
import pytest

from unlearn_core import pipeline
from unlearn_core.cli import main
from unlearn_core.config import DataSpec, MethodSpec, ModelSpec, RunSpec, SetupSpec, TrainSpec
from unlearn_core.errors import UserError
from unlearn_core.methods import applicability
from unlearn_core.models import build_model
from unlearn_core.runs import RunStore
from unlearn_core.training import prepare

MODULE = """
from torch import nn


def build(num_classes, in_channels):
    return nn.Sequential(nn.Conv2d(in_channels, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                         nn.Flatten(), nn.Linear(32, num_classes))


def wrong_classes():
    return build(3, 1)


def not_a_module():
    return "a model"


def crashes():
    raise RuntimeError("out of ideas")


def with_dropout(num_classes, in_channels):
    return nn.Sequential(nn.Conv2d(in_channels, 8, 3, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Dropout(0.5), nn.Linear(8 * 8 * 8, num_classes))


def not_a_classifier():
    return nn.Sequential(nn.Conv2d(1, 10, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.ReLU())
"""
TINY = ["--dataset", "digits", "--epochs", "1", "--batch-size", "64", "--device", "cpu"]


@pytest.fixture
def user_file(tmp_path):
    path = tmp_path / "my_models.py"
    path.write_text(MODULE)
    return path


def user_spec(path, function="build", **changes):
    return ModelSpec("user_module", entry_point=f"{path}:{function}", **changes)


def test_the_entry_point_and_its_source_are_in_the_setup_hash(user_file):
    spec = SetupSpec(data=DataSpec("digits"), model=user_spec(user_file))
    assert spec.model.source_hash and spec.model.to_dict()["entry_point"].endswith(":build")
    again = SetupSpec.from_json(spec.to_json())
    assert again.hash == spec.hash and again.model.source_hash == spec.model.source_hash
    user_file.write_text(MODULE + "\n# an edit\n")
    assert SetupSpec(data=DataSpec("digits"), model=user_spec(user_file)).hash != spec.hash
    other = SetupSpec(data=DataSpec("digits"), model=user_spec(user_file, "wrong_classes"))
    assert other.hash != spec.hash


@pytest.mark.parametrize("function, message", [
    ("wrong_classes", r"^model.entry_point: the model's output on a batch of 2 is \(2, 3\); a "
                      r"classifier of this data gives \(2, 10\) logits"),
    ("not_a_module", r"^model.entry_point: '.*:not_a_module' returned a str, expected a "
                     r"torch.nn.Module classifier"),
    ("crashes", r"^model.entry_point: calling '.*:crashes' failed: RuntimeError: out of ideas$"),
    ("not_a_classifier", r"^model.head: the output of Sequential is not an nn.Linear's output"),
])
def test_a_bad_module_is_refused_before_training(user_file, function, message):
    with pytest.raises(UserError, match=message):
        build_model(user_spec(user_file, function), in_channels=1, num_classes=10, image_size=8)


def test_bad_probe_layer_and_head_name_the_setup_field(user_file):
    with pytest.raises(UserError, match=r"^model.probe_layers: the model has no module 'nope'"):
        build_model(user_spec(user_file, probe_layers=("nope",)), in_channels=1,
                    num_classes=10, image_size=8)
    with pytest.raises(UserError, match=r"^model.head: expected the name of the model's "
                                        r"nn.Linear classifier, got '0' \(Conv2d\)"):
        build_model(user_spec(user_file, head="0"), in_channels=1, num_classes=10, image_size=8)


def test_cli_user_module_errors_exit_2_and_store_nothing(tmp_path, user_file, capsys):
    store = tmp_path / "store"
    for flags, message in (
            (["--entry-point", "no_such_module_21a:build"],
             "error: model.entry_point: cannot import module 'no_such_module_21a'"),
            (["--entry-point", f"{user_file}:wrong_classes"],
             "error: model.entry_point: the model's output on a batch of 2 is (2, 3)"),
            (["--entry-point", f"{user_file}:build", "--probe-layers", "9"],
             "error: model.probe_layers: the model has no module '9'")):
        code = main(["--store", str(store), "--quiet", "unlearn", "--method", "finetune",
                     "--model", "user_module", *flags, *TINY])
        err = capsys.readouterr().err
        assert code == 2 and err.startswith(message) and err.count("\n") == 1, err
    assert RunStore(store).list() == []


def test_cli_and_setup_json_train_a_user_module(tmp_path, user_file, capsys):
    store = tmp_path / "store"
    assert main(["--store", str(store), "--quiet", "train", "--model", "user_module",
                 "--entry-point", f"{user_file}:build", "--probe-layers", "2,6", *TINY]) == 0
    setup = SetupSpec(data=DataSpec("digits"), train=TrainSpec(epochs=1, batch_size=64),
                      model=user_spec(user_file, probe_layers=("2", "6")), device="cpu")
    path = tmp_path / "setup.json"
    path.write_text(setup.to_json())
    capsys.readouterr()
    assert main(["--store", str(store), "--quiet", "--json", "train", "--setup-json",
                 str(path)]) == 0
    # The JSON names the same setup as the flags: its two models were found, not retrained.
    assert len(list((store / "cache").iterdir())) == 2


def test_retrain_reproduces_the_oracle_of_a_model_with_dropout(tmp_path, user_file):
    """Dropout draws from torch's global generator: training is seeded so that a retrain
    with the oracle's seed is the oracle, whatever ran in the process before."""
    setup = SetupSpec(data=DataSpec("digits"), model=user_spec(user_file, "with_dropout"),
                      device="cpu", train=TrainSpec(epochs=1, batch_size=64))
    store = RunStore(tmp_path / "store")
    run_id = pipeline.run_unlearning(RunSpec(setup, MethodSpec("retrain", {})), store)
    gaps = store.get(run_id).report["gap_to_oracle"]
    assert gaps and all(gap == 0.0 for gap in gaps.values() if gap is not None), gaps
    other = pipeline.run_unlearning(RunSpec(setup, MethodSpec("retrain", {"seed_offset": 1})),
                                    store)
    assert store.get(other).report["gap_to_oracle"]["retain_train"] != 0.0


def test_methods_say_whether_they_apply_to_an_adapted_model():
    setup = SetupSpec(data=DataSpec("digits"), device="cpu",
                      model=ModelSpec("torchvision/mobilenet_v3_small", 0.25, small_stem=True))
    reasons = applicability(prepare(setup).new_model())
    refused = {name for name, why in reasons.items() if why}
    assert refused == {"dkvb_activations", "dkvb_examples"}
    assert "has no key-value bottleneck" in reasons["dkvb_examples"]


def test_a_refused_method_stops_before_anything_trains(tmp_path):
    store = RunStore(tmp_path / "store")
    setup = SetupSpec(data=DataSpec("digits"), device="cpu",
                      model=ModelSpec("torchvision/resnet18", 0.125, small_stem=True))
    with pytest.raises(UserError, match="^method.name: dkvb_activations unlearns a DKVB model"):
        pipeline.run_unlearning(RunSpec(setup, MethodSpec("dkvb_activations")), store)
    assert store.list() == [] and not any(store.root.joinpath("cache").glob("*"))


# Alone on the 2 cores each case takes about 2-5 min (training two references and the
# full evaluation); with four sessions sharing them, one took over 10.
@pytest.mark.slow
@pytest.mark.timeout(1200)
@pytest.mark.parametrize("model, method, params", [
    (ModelSpec("torchvision/resnet18", 0.125, small_stem=True), "del", {"epochs": 1}),
    (ModelSpec("torchvision/mobilenet_v3_small", 0.25, small_stem=True), "lau", {}),
])
def test_adapted_models_get_every_view(tmp_path, model, method, params):
    """Layers (CKA per probe layer), Privacy (MIA), Embeddings (PCA per layer) and, for
    DEL, Localization (the channel mask) from a torchvision model on the embedded data."""
    store = RunStore(tmp_path / "store")
    setup = SetupSpec(data=DataSpec("digits"), model=model, device="cpu",
                      train=TrainSpec(epochs=1, batch_size=64))
    run_id = pipeline.run_unlearning(RunSpec(setup, MethodSpec(method, params)), store)
    report, arrays = store.get(run_id).report, store.load_arrays(run_id)
    names = report["layers"]["names"]
    assert names[-2:] == ["embedding", "logits"] and len(names) >= 4
    for part, values in report["layers"]["cka"]["unlearned_vs_original"].items():
        assert len(values) == len(names) and np.isfinite(values).all(), part
    assert set(report["mia"]["efficacy"]) == {"unlearned", "original", "oracle"}
    for layer in names[-2:]:  # the others' PCA is fitted when first viewed
        assert arrays[f"eval/pca/{layer}/unlearned"].shape[1] == 2
    assert pipeline.embedding_of_run(store, run_id, names[0])[
        f"eval/pca/{names[0]}/unlearned"].shape[1] == 2
    if method == "del":
        info = report["method"]["info"]["localization"]
        assert 0 < info["selected_fraction"] <= 0.5 and info["selected_channels"] > 0
        # the channel x layer heatmap: a column per weight tensor, across every stage
        assert arrays["mask/criticality"].shape[1] == len(info["weight_tensors"])
        assert {label.split("/")[0] for label in info["weight_tensors"]} >= set(names[:-2])
    json.dumps(report)  # storable as it is
    assert_every_view_opens(store, run_id, masks=method == "del")


def assert_every_view_opens(store: RunStore, run_id: str, masks: bool) -> None:
    """The app's analysis pages draw the run: no exception, the figures each page shows
    for a run of a built-in model (Localization's only for a run with channel masks)."""
    from streamlit.testing.v1 import AppTest

    from tests.app.helpers import ROOT, TIMEOUT, chart_specs
    from ui.state import SELECTED_RUN_KEY
    for page, least in {"results": 2, "layers": 6, "privacy": 3, "embeddings": 1,
                        "localization": 1 if masks else 0}.items():
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
        at.session_state[SELECTED_RUN_KEY] = run_id
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("LENS_STORE", str(store.root))
            at.run()
            at.switch_page(f"app_pages/{page}.py").run()
        assert not at.exception, (page, at.exception)
        assert len(chart_specs(at)) >= least, page
