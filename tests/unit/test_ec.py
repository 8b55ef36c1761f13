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
from unlearn_core.methods.ec import (ErasureLoss, WithErasure, contrastive_unlearning_loss,
                                     default_layer_weights, erasure_loss, layer_weights,
                                     supervision_points)
from unlearn_core.progress import Progress
from unlearn_core.training import fit, sgd

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


# --- issue 19: supervision points, batch norm, the stop rule within an epoch -----------

BUILT_IN = {  # model -> its supervision points, written out by hand
    "small_cnn": ["block1", "block2", "block3", "embedding", "logits"],
    "resnet18": ["layer1", "layer2", "layer3", "layer4", "logits"],
    "vit_tiny": ["block1", "block2", "block3", "block4", "embedding", "logits"],
}


def built_in(name: str):
    from unlearn_core.config import ModelSpec
    from unlearn_core.models import build_model
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return build_model(ModelSpec(name, width=0.25 if name == "resnet18" else 1.0),
                           in_channels=1, num_classes=10, image_size=8)


@pytest.mark.parametrize("name", sorted(BUILT_IN))
def test_supervision_points_are_each_feature_stage_once_plus_the_head(name):
    model = built_in(name)
    points = supervision_points(model)
    assert points == BUILT_IN[name]
    assert len(set(points)) == len(points) and points[-1] == "logits"
    # Each point trains a stage of its own: no two points are the same stage seen twice
    # (resnet18's "embedding", a parameter-free pool of layer4, is not a point).
    for layer in model.feature_layers:
        own = list(model.stages[layer].parameters())
        assert (layer in points) == bool(own), layer
    # EC builds a head per feature point and weighs each point once.
    loss = ErasureLoss(model, default_layer_weights(len(points)), (1, 8, 8),
                       lambda_ul=3.0, lambda_ce=1.0, temperature=0.7)
    assert list(loss.heads) == points[:-1] and list(loss.weights) == points
    x, y = torch.randn(6, 1, 8, 8), torch.tensor([0, 0, 0, 1, 2, 3])
    value = loss((x[:3], y[:3]), (x[3:], y[3:]))
    assert torch.isfinite(value)
    assert set(name.split("/")[1] for name, v in loss.log.items() if v) == set(points)


def test_resnet18_layer_weights_count_one_per_supervision_point():
    model = built_in("resnet18")
    with pytest.raises(UserError, match=r"expected 5 weights.*'layer4', 'logits'\]"):
        layer_weights(model, [1, 1, 1, 1, 1, 1], "layer_weights")
    weights = layer_weights(model, [], "layer_weights")
    # layers 1-3 get 6/15 of the total (with "embedding" as a sixth point: 6/21).
    assert sum(weights[:3]) == pytest.approx(6 / 15)


def batch_norm_state(model):
    return {k: v.clone() for k, v in model.state_dict().items()
            if "running" in k or "num_batches_tracked" in k}


def forget_and_retain_batches(refs, n=16):
    exp = refs.experiment
    forget = next(iter(exp.loader("forget", batch_size=n)))
    retain = next(iter(exp.loader("retain", batch_size=n)))
    return forget, retain


def erasure_on_copy(refs, bn_mode):
    import copy
    model = copy.deepcopy(refs.original.model)
    model.train()
    weights = default_layer_weights(len(supervision_points(model)))
    loss = ErasureLoss(model, weights, (1, 8, 8), lambda_ul=3.0, lambda_ce=1.0,
                       temperature=0.7, bn_mode=bn_mode)
    return model, loss


def train_mode_batch_norm_batches(model, run) -> list[int]:
    """Batch sizes that batch-norm modules saw in train mode (updating their running
    statistics) while `run()` ran."""
    from torch.nn.modules.batchnorm import _BatchNorm
    seen = []
    hooks = [m.register_forward_pre_hook(lambda m, args: seen.append(len(args[0]))
                                         if m.training else None)
             for m in model.modules() if isinstance(m, _BatchNorm)]
    try:
        run()
    finally:
        for h in hooks:
            h.remove()
    return seen


@pytest.mark.parametrize("mode", ["default", "frozen_forget", "mixed", "train"])
def test_no_forget_only_batch_reaches_batch_norm_in_train_mode(tiny_refs, mode):
    if mode == "default":
        mode = get_method("ec").resolve_params({})["bn_mode"]
    forget, retain = forget_and_retain_batches(tiny_refs)
    forget = (forget[0][:8], forget[1][:8])  # 8 forget and 16 retain examples
    model, loss = erasure_on_copy(tiny_refs, mode)
    sizes = train_mode_batch_norm_batches(model, lambda: loss(forget, retain))
    assert sizes
    if mode == "train":  # before issue 19: the forget batch alone, in train mode
        assert 8 in sizes
    else:
        assert 8 not in sizes and set(sizes) == {16 if mode == "frozen_forget" else 24}
    assert all(m.training for m in model.modules())  # batch norm back in train mode


def test_a_forget_only_pass_leaves_running_statistics_under_frozen_forget(tiny_refs):
    forget, retain = forget_and_retain_batches(tiny_refs)
    model, loss = erasure_on_copy(tiny_refs, "frozen_forget")
    assert any("running_mean" in k for k in batch_norm_state(model))
    before = batch_norm_state(model)
    with torch.no_grad():
        loss.forget_features(model, forget[0], list(loss.layers))
    after_forget = batch_norm_state(model)
    assert all(torch.equal(before[k], after_forget[k]) for k in before)
    assert all(m.training for m in model.modules())
    # The whole loss: the statistics move as a retain-only forward moves them.
    loss(forget, retain)
    reference, _ = erasure_on_copy(tiny_refs, "frozen_forget")
    with torch.no_grad():
        reference(retain[0])
    expected = batch_norm_state(reference)
    assert all(torch.allclose(expected[k], v) for k, v in batch_norm_state(model).items())


def test_two_train_mode_passes_let_the_forget_batch_shift_the_statistics(tiny_refs):
    # The behaviour bn_mode guards against (kept as "train"): the test above can fail.
    forget, _ = forget_and_retain_batches(tiny_refs)
    model, loss = erasure_on_copy(tiny_refs, "train")
    before = batch_norm_state(model)
    with torch.no_grad():
        loss.forget_features(model, forget[0], list(loss.layers))
    moved = batch_norm_state(model)
    means = [k for k in before if k.endswith("running_mean")]
    assert means and not any(torch.allclose(before[k], moved[k]) for k in means)


def test_mixed_bn_mode_runs_one_batch_of_forget_and_retain(tiny_refs):
    forget, retain = forget_and_retain_batches(tiny_refs)
    model, loss = erasure_on_copy(tiny_refs, "mixed")
    with torch.no_grad():
        out_f, out_r = loss.features(model, forget[0], retain[0], list(loss.layers))
    reference, _ = erasure_on_copy(tiny_refs, "mixed")
    with torch.no_grad():
        both = reference(torch.cat([forget[0], retain[0]]))
    assert torch.allclose(torch.cat([out_f["logits"], out_r["logits"]]), both, atol=1e-5)
    expected = batch_norm_state(reference)
    assert all(torch.allclose(expected[k], v) for k, v in batch_norm_state(model).items())


def test_stop_rule_fires_within_the_first_epoch(tiny_refs):
    # stop_accuracy 1.0: the first check stops the run, so the run is exactly one
    # check_every long, less than an epoch (before issue 19: a whole epoch).
    outcome, _ = unlearn_tiny(tiny_refs, "ec", epochs=3, batch_size=8, warmup_epochs=0,
                              stop_rule="target", stop_accuracy=1.0, check_every=3)
    info = outcome.info
    assert info["steps_per_epoch"] > 3
    assert info["steps"] == 3 and info["epochs_run"] == 1
    assert [c["step"] for c in info["stop_checks"]] == [3]
    assert "after step 3" in info["stop_reason"]
    assert len(outcome.curves["loss"]) == 1 and len(outcome.curves["ec/ce/logits"]) == 1


def test_stop_rule_checks_every_few_steps_until_the_target(tiny_refs):
    outcome, _ = unlearn_tiny(tiny_refs, "ec", epochs=2, batch_size=8, warmup_epochs=0,
                              stop_rule="none", check_every=2)
    info = outcome.info
    per_epoch = info["steps_per_epoch"]
    assert info["steps"] == 2 * per_epoch
    steps = [c["step"] for c in info["stop_checks"]]
    # every 2nd step, and the end of each epoch (once where they coincide)
    expected = sorted(set(range(2, 2 * per_epoch + 1, 2)) | {per_epoch, 2 * per_epoch})
    assert steps == expected


def test_fit_checks_stop_every_k_steps_and_trains_in_train_mode_after_a_check():
    model = torch.nn.Linear(2, 1)
    batches = [(torch.randn(4, 2), torch.randn(4, 1)) for _ in range(5)]
    checks, modes = [], []

    def loss_fn(batch):
        modes.append(model.training)
        return torch.nn.functional.mse_loss(model(batch[0]), batch[1])

    def stop():
        checks.append(len(modes))
        model.eval()  # as an evaluation does
        return len(modes) >= 7

    log = fit(model, lambda: batches, loss_fn, sgd(model.parameters(), lr=0.01), epochs=3,
              progress=Progress(), stop=stop, stop_every=2)
    # every 2nd step and at each epoch's end (not twice at one step); stops at step 8
    assert checks == [2, 4, 5, 6, 8]
    assert log.steps == 8 and log.epoch_ends == [5, 8] and len(log.epoch_losses) == 2
    assert all(modes)
    with pytest.raises(ValueError, match="stop_every"):
        fit(model, lambda: batches, loss_fn, sgd(model.parameters(), lr=0.01), epochs=1,
            progress=Progress(), stop=stop, stop_every=0)


def test_a_plugin_refuses_stop_checks_inside_an_epoch(tiny_refs):
    # The plug-in's per-epoch curves ride on the stop check: fit(stop_every=...) would
    # split them wrongly, so ctx.fit refuses the combination instead.
    from unlearn_core.methods.ec import ErasurePlugin
    ctx = tiny_context(tiny_refs, "finetune+ec", ec_warmup_epochs=0)
    ctx.plugin = ErasurePlugin(ctx, erasure_loss(ctx, "ec_"), beta=0.1, lr=0.01)
    model = ctx.model
    with pytest.raises(ValueError, match="stop_every is not supported with a plug-in"):
        ctx.fit(model, lambda: [], lambda b: model(b[0]).sum(),
                sgd(model.parameters(), lr=0.01), epochs=1, progress=Progress(),
                stop=lambda: False, stop_every=2)
