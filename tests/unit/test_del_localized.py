"""DEL and the localized algorithms on the tiny digits setup (forget class 0 of 10):
the reset touches exactly the mask, masked training leaves every other parameter
bit-identical, and DEL forgets."""

import copy

import pytest
import torch

from conftest import tiny_context, unlearn_tiny
from unlearn_core.errors import Cancelled, UserError
from unlearn_core.methods import del_localized, get_method
from unlearn_core.methods.localization import localize
from unlearn_core.progress import Progress
from unlearn_core.training import FitLog


def bits(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.detach().contiguous().view(torch.int32)


def mask_of(ctx, strategy: str, random_like: str = "del") -> dict[str, torch.Tensor]:
    """The mask the method will compute: same model, loader, budget and seed."""
    p = ctx.params
    return localize(copy.deepcopy(ctx.model), ctx.loader("forget", shuffle=False), strategy,
                    p["rho"], Progress(), topk_fraction=p["topk_fraction"], seed=ctx.seed,
                    random_like=random_like).masks


def classifier_names(model) -> set[str]:
    return {f"stages.logits.{name}" for name, _ in model.classifier.named_parameters()}


def test_reset_changes_exactly_the_masked_parameters_before_finetuning(tiny_refs, monkeypatch):
    ctx = tiny_context(tiny_refs, "del")
    masks = mask_of(ctx, "del")
    fresh = dict(ctx.experiment.new_model(seed=ctx.seed).named_parameters())
    seen = {}

    def capture(ctx_, trained, forward, label):
        seen.update({name: p.detach().clone() for name, p in trained.named_parameters()})
        return FitLog()

    monkeypatch.setattr(del_localized, "fit_on_retain", capture)
    get_method("del").unlearn(ctx)
    original = dict(tiny_refs.original.model.named_parameters())
    assert 0 < sum(int(m.sum()) for m in masks.values()) < sum(m.numel() for m in masks.values())
    for name, mask in masks.items():
        changed = bits(seen[name]) != bits(original[name])
        assert torch.equal(changed, mask), name
        assert torch.equal(bits(seen[name])[mask], bits(fresh[name])[mask]), name


@pytest.mark.parametrize("strategy", ["del", "salloc"])
def test_reset_finetune_leaves_unmasked_parameters_bit_identical(tiny_refs, strategy):
    # SalLoc's masks select single entries everywhere, so this also covers the
    # partly-masked tensors whose gradients are multiplied by the mask.
    ctx = tiny_context(tiny_refs, "localized", strategy=strategy, epochs=1)
    masks = mask_of(ctx, strategy)
    outcome = get_method("localized").unlearn(ctx)
    after = dict(outcome.model.named_parameters())
    original = dict(tiny_refs.original.model.named_parameters())
    classifier = classifier_names(outcome.model)
    for name, mask in masks.items():
        moved = bits(after[name]) != bits(original[name])
        if name in classifier:
            assert moved.float().mean() > 0.9, name  # always trained
            continue
        assert not moved[~mask].any(), f"{name}: an unmasked entry moved"
        if mask.any():
            assert moved[mask].float().mean() > 0.9, name
    assert outcome.info["algorithm"] == "rft" and outcome.info["steps"] > 0


@pytest.mark.parametrize("algorithm", ["random_label", "neggrad_plus"])
def test_masked_algorithms_change_nothing_outside_the_mask(tiny_refs, algorithm):
    ctx = tiny_context(tiny_refs, "localized", strategy="salloc", algorithm=algorithm,
                       rho=0.2, epochs=1, lr=0.02)
    masks = mask_of(ctx, "salloc")
    outcome = get_method("localized").unlearn(ctx)
    after = dict(outcome.model.named_parameters())
    for name, before in tiny_refs.original.model.named_parameters():
        moved = bits(after[name]) != bits(before)
        assert not moved[~masks[name]].any(), f"{name}: an unmasked entry moved"
    assert sum(int((bits(after[n]) != bits(p)).sum())
               for n, p in tiny_refs.original.model.named_parameters()) > 0


def test_del_forgets_the_class_and_describes_its_mask(tiny_refs):
    outcome, acc = unlearn_tiny(tiny_refs, "del")
    assert acc["forget_train"] < 0.05 and acc["test_forget"] < 0.05
    assert acc["retain_train"] > 0.95 and acc["test_retain"] > 0.9
    loc = outcome.info["localization"]
    assert loc["strategy"] == "del" and loc["granularity"] == "channel"
    assert loc["selected_parameters"] <= 0.3 * loc["total_parameters"]
    assert outcome.info["mask_fraction"] == loc["selected_fraction"]
    model = outcome.model
    layers = len(model.probe_layers)
    assert outcome.artifacts["mask/stage_parameter_fraction"].shape == (layers,)
    assert outcome.artifacts["selectivity/value"].shape[1] == layers
    assert outcome.artifacts["mask/criticality"].shape == outcome.artifacts["mask/channel_fraction"].shape
    assert outcome.curves["retain_loss"]


def test_masked_gradients_restores_the_model(tiny_refs):
    model = copy.deepcopy(tiny_refs.original.model)
    for p in model.parameters():
        p.requires_grad_(True)
    masks = {name: torch.zeros_like(p, dtype=torch.bool) for name, p in model.named_parameters()}
    first = next(iter(masks))
    masks[first].view(-1)[0] = True
    with del_localized.masked_gradients(model, masks):
        frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
        assert frozen == [n for n in masks if n != first]
        x = torch.randn(2, 1, 8, 8)
        model(x).sum().backward()
        grad = dict(model.named_parameters())[first].grad
        assert grad.view(-1)[1:].abs().sum() == 0 and grad.view(-1)[0] != 0
    assert all(p.requires_grad for p in model.parameters())
    model.zero_grad(set_to_none=True)
    model(x).sum().backward()
    assert dict(model.named_parameters())[first].grad.view(-1)[1:].abs().sum() > 0


@pytest.mark.parametrize("method, params, name", [
    ("del", {"rho": 0.0}, "rho"), ("del", {"rho": 1.5}, "rho"),
    ("localized", {"strategy": "middle"}, "strategy"),
    ("localized", {"random_like": "random"}, "random_like"),
    ("localized", {"algorithm": "scrub"}, "algorithm"),
])
def test_bad_params_name_the_parameter(method, params, name):
    with pytest.raises(UserError, match=rf"method\.params\.{name}: expected"):
        get_method(method).resolve_params(params)


def test_cancel_stops_del(tiny_refs):
    progress = Progress()
    progress.cancel()
    with pytest.raises(Cancelled):
        get_method("del").unlearn(tiny_context(tiny_refs, "del", progress=progress))
