"""EC (Erase at the Core): the contrastive unlearning loss by hand, the auxiliary heads
leaving no trace in the model, the loss going down, the plug-in composing with base
methods, and bad layer weights refused."""

import json
import math

import pytest
import torch

from conftest import tiny_context, unlearn_tiny
from unlearn_core.errors import UserError
from unlearn_core.methods import get_method
from unlearn_core.methods.base import Method, Outcome, UnlearnContext
from unlearn_core.methods.ec import (WithErasure, contrastive_unlearning_loss,
                                     default_layer_weights, erasure_loss)
from unlearn_core.training import sgd

# Short runs: the tests check behaviour, not how well EC forgets (docs/benchmarks/ does).
SHORT = {"epochs": 1}
SHORT_PLUGIN = {"epochs": 1, "ec_warmup_epochs": 0}


def test_contrastive_loss_matches_a_hand_computation():
    # One forget anchor of class 0; retain: one class-0 example, two class-1 examples;
    # a second forget example of class 0 also counts as the anchor's own class.
    z_forget = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    y_forget = torch.tensor([0, 0])
    z_retain = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    y_retain = torch.tensor([0, 1, 1])
    tau = 0.5
    loss = contrastive_unlearning_loss(z_forget, y_forget, z_retain, y_retain, tau)

    def anchor(z, companion):
        sims = [float(z @ r) / tau for r in z_retain] + [float(z @ companion) / tau]
        normaliser = math.log(sum(math.exp(s) for s in sims))
        others = [sims[1], sims[2]]  # the class-1 retain examples
        return -sum(s - normaliser for s in others) / len(others)

    expected = (anchor(z_forget[0], z_forget[1]) + anchor(z_forget[1], z_forget[0])) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_contrastive_loss_rewards_moving_toward_other_classes():
    y_retain = torch.tensor([0, 1])
    z_retain = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    at_own_class = contrastive_unlearning_loss(torch.tensor([[1.0, 0.0]]), torch.tensor([0]),
                                               z_retain, y_retain, 0.7)
    at_other_class = contrastive_unlearning_loss(torch.tensor([[0.0, 1.0]]), torch.tensor([0]),
                                                 z_retain, y_retain, 0.7)
    assert at_other_class < at_own_class


def test_default_layer_weights_increase_with_depth_and_sum_to_one():
    weights = default_layer_weights(5)
    assert weights == sorted(weights) and len(set(weights)) == 5
    assert sum(weights) == pytest.approx(1.0)


@pytest.mark.parametrize("weights, message", [
    ([1, 2, 3], "method.params.layer_weights: expected 5 weights"),
    ([1, -1, 1, 1, 1], "method.params.layer_weights: expected a list of numbers >= 0"),
    ([0, 0, 0, 0, 0], "method.params.layer_weights: expected a list of numbers >= 0, not all zero"),
    ("1, two", "method.params.layer_weights: expected a list of numbers"),
])
def test_bad_layer_weights_are_refused(tiny_refs, weights, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        tiny_context(tiny_refs, "ec", layer_weights=weights)


def test_plugin_layer_weights_are_checked_under_their_prefixed_name(tiny_refs):
    with pytest.raises(UserError, match="method.params.ec_layer_weights: expected 5 weights"):
        tiny_context(tiny_refs, "finetune+ec", ec_layer_weights=[1, 1])


def test_plugin_needs_a_method_that_trains_through_ctx_fit():
    with pytest.raises(UserError, match="method.name: ssd does not take a plug-in"):
        get_method("ssd+ec")
    with pytest.raises(UserError, match="unknown plug-in 'magic'"):
        get_method("finetune+magic")


def test_ec_leaves_the_architecture_of_the_original(tiny_refs):
    outcome, _ = unlearn_tiny(tiny_refs, "ec", **SHORT, stop_rule="none")
    original = tiny_refs.original.model.state_dict()
    unlearned = outcome.model.state_dict()
    assert list(unlearned) == list(original)
    assert all(unlearned[k].shape == original[k].shape for k in original)
    assert any(not torch.equal(unlearned[k], original[k]) for k in original)


def test_ec_loss_is_finite_and_decreases(tiny_refs):
    outcome, _ = unlearn_tiny(tiny_refs, "ec", epochs=6, stop_rule="none")
    losses = outcome.curves["loss"]
    assert len(losses) == 6 and all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0]
    layers = tiny_refs.original.model.probe_layers
    for layer in layers:  # a curve per supervision point and term, one value per epoch
        assert len(outcome.curves[f"ec/contrastive/{layer}"]) == 6
        assert len(outcome.curves[f"ec/ce/{layer}"]) == 6


def test_a_zero_layer_weight_leaves_that_layer_out(tiny_refs):
    ctx = tiny_context(tiny_refs, "ec", layer_weights=[0, 0, 1, 1, 2])
    loss = erasure_loss(ctx)
    assert sorted(loss.heads) == ["block3", "embedding"]
    assert loss.weights["logits"] == pytest.approx(0.5)


@pytest.mark.parametrize("base", ["finetune", "random_label", "neggrad_plus", "scrub"])
def test_plugin_composes_with_base_methods(tiny_refs, base):
    torch.manual_seed(0)
    plain, _ = unlearn_tiny(tiny_refs, base, **SHORT)
    torch.manual_seed(0)
    plugged, _ = unlearn_tiny(tiny_refs, f"{base}+ec", **SHORT_PLUGIN)
    info = plugged.info["ec"]
    assert info["steps"] == plugged.info["steps"] > 0  # one EC term per base step
    assert set(plain.curves) < set(plugged.curves)
    assert f"ec/contrastive/{tiny_refs.original.model.probe_layers[1]}" in plugged.curves
    changed = [k for k, v in plain.model.state_dict().items()
               if v.is_floating_point() and not torch.equal(v, plugged.model.state_dict()[k])]
    assert changed  # the EC term moved the weights away from the base method's
    assert list(plugged.model.state_dict()) == list(tiny_refs.original.model.state_dict())


class ClassifierOnly(Method):
    """A base that trains the classifier alone, as LAU does."""

    name = "classifier_only"
    title = "Classifier only"
    summary = "test double"
    plugin_ready = True
    params = ()

    def unlearn(self, ctx: UnlearnContext) -> Outcome:
        model = ctx.model
        retain = ctx.loader("retain", batch_size=64)
        log = ctx.fit(model.classifier, lambda: retain,
                      lambda b: torch.nn.functional.cross_entropy(model(b[0]), b[1]),
                      sgd(model.classifier.parameters(), lr=0.01), epochs=1,
                      progress=ctx.progress)
        return Outcome(model, info={"steps": log.steps})


def test_plugin_trains_the_layers_the_base_leaves_alone(tiny_refs):
    method = WithErasure(ClassifierOnly())
    params = method.resolve_params({"ec_warmup_epochs": 0})
    context = tiny_context(tiny_refs, "finetune")
    context.params = params
    outcome = method.unlearn(context)
    model = tiny_refs.original.model
    head = sum(p.numel() for p in model.classifier.parameters())
    assert outcome.info["ec"]["parameters_only_ec_trained"] == \
        sum(p.numel() for p in model.parameters()) - head
    before = model.stages["block1"].state_dict()
    after = outcome.model.stages["block1"].state_dict()
    assert not torch.equal(before["0.weight"], after["0.weight"])


def test_cli_plugin_option_names_the_plugged_method(capsys, tmp_path):
    from unlearn_core.cli import main
    code = main(["--store", str(tmp_path / "s"), "unlearn", "--method", "ssd", "--plugin", "ec",
                 "--dataset", "digits"])
    err = capsys.readouterr().err
    assert code == 2 and "method.name: ssd does not take a plug-in" in err
    assert "Traceback" not in err
    assert main(["--json", "list", "methods"]) == 0
    listed = {m["name"]: m for m in json.loads(capsys.readouterr().out)}
    assert listed["finetune"]["plugins"] == ["ec"] and listed["ssd"]["plugins"] == []
