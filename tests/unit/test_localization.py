"""Localization strategies on the tiny digits model (forget class 0): budgets, whole
channels, DEL's ranking, the random control's per-layer counts, the mask summary, the
selectivity, and the localization figures."""

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from unlearn_core.errors import UserError
from unlearn_core.figures import localization as figs
from unlearn_core.config import ModelSpec
from unlearn_core.report_schema import average_gap
from unlearn_core.methods.localization import (MEAN, STRATEGIES, TOPK_MEAN, Units,
                                               channel_criticality, channel_score_rule,
                                               channel_selectivity, localize, mask_summary,
                                               weight_tensors)
from unlearn_core.models import build_model
from unlearn_core.progress import Progress

CHANNEL_STRATEGIES = ("del", "shallowest", "deepest")


@pytest.fixture(scope="module")
def model(tiny_refs):
    trainable = copy.deepcopy(tiny_refs.original.model)
    for p in trainable.parameters():
        p.requires_grad_(True)
    return trainable


@pytest.fixture(scope="module")
def forget(tiny_refs):
    return tiny_refs.experiment.loader("forget", batch_size=64)


@pytest.fixture(scope="module")
def masks_at(model, forget):
    """Localizations by (strategy, rho, random_like, seed), computed once each."""
    found = {}

    def get(strategy, rho=0.3, random_like="del", seed=0):
        key = (strategy, rho, random_like, seed)
        if key not in found:
            found[key] = localize(model, forget, strategy, rho, Progress(), seed=seed,
                                  random_like=random_like)
        return found[key]
    return get


def total(model) -> int:
    return sum(p.numel() for p in model.parameters())


def selected(masks) -> int:
    return sum(int(m.sum()) for m in masks.values())


def largest_channel(model) -> int:
    return max(p[0].numel() for p in model.parameters() if p.dim() >= 2)


@pytest.mark.parametrize("strategy", CHANNEL_STRATEGIES + ("random",))
@pytest.mark.parametrize("rho", [0.05, 0.3, 0.7])
def test_channel_masks_spend_the_budget_within_one_channel(model, masks_at, strategy, rho):
    masks = masks_at(strategy, rho).masks
    budget = rho * total(model)
    assert 0 <= budget - selected(masks) < largest_channel(model)


@pytest.mark.parametrize("strategy", CHANNEL_STRATEGIES + ("random",))
def test_every_channel_is_wholly_in_or_out(masks_at, strategy):
    masks = masks_at(strategy).masks
    weights = [m.reshape(m.shape[0], -1) for m in masks.values() if m.dim() >= 2]
    for rows in weights:
        assert torch.equal(rows.any(dim=1), rows.all(dim=1))
    assert any(rows.any() for rows in weights)


def summed_gradients(model, forget) -> dict[str, torch.Tensor]:
    """Σ over the forget batches of ∇CE, in eval mode, written out independently of the
    code under test."""
    model.eval()
    totals = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    for x, y in forget:
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        for n, p in model.named_parameters():
            totals[n] += p.grad
    model.zero_grad(set_to_none=True)
    return totals


def test_del_takes_the_most_critical_channels(model, forget, masks_at):
    loc = masks_at("del")
    grads = summed_gradients(model, forget)
    scores = {n: (p.detach() * grads[n]).abs() for n, p in model.named_parameters()}
    chosen, rest = [], []
    for name, p in model.named_parameters():
        if p.dim() >= 2:
            rows = scores[name].reshape(p.shape[0], -1)
            k = max(1, math.floor(0.1 * p.shape[0]))
            unit = rows.sort(dim=1, descending=True).values[:, :k].mean(dim=1)
            assert torch.allclose(loc.channel_scores[name], unit, rtol=1e-4)
            picked = loc.masks[name].reshape(p.shape[0], -1)[:, 0]
        else:
            unit, picked = scores[name], loc.masks[name]
        chosen.append(unit[picked])
        rest.append(unit[~picked])
    assert torch.cat(chosen).min() >= torch.cat(rest).max()


def test_channel_criticality_is_the_mean_of_the_top_k():
    scores = torch.arange(20 * 3, dtype=torch.float32).reshape(20, 3)  # C_out 20: k = 2
    assert channel_criticality(scores, 0.1).tolist() == [(3 * c + 2 + 3 * c + 1) / 2
                                                         for c in range(20)]
    wide = torch.rand(40, 2)  # k = 4 is capped at the row length 2
    assert torch.allclose(channel_criticality(wide, 0.1), wide.mean(dim=1))
    assert torch.equal(channel_criticality(wide[:5], 0.1), wide[:5].max(dim=1).values)


def test_channel_criticality_mean_rule_averages_the_whole_row():
    scores = torch.rand(20, 7)
    assert torch.allclose(channel_criticality(scores, 0.1, MEAN), scores.mean(dim=1))
    assert not torch.allclose(channel_criticality(scores, 0.1, TOPK_MEAN), scores.mean(dim=1))


@pytest.mark.parametrize("name, rule", [("small_cnn", TOPK_MEAN), ("resnet18", TOPK_MEAN),
                                        ("vit_tiny", MEAN)])
def test_del_scores_vit_channels_by_their_mean_as_the_authors_code(name, rule):
    model = build_model(ModelSpec(name, width=0.25), in_channels=1, num_classes=10,
                        image_size=16)
    assert channel_score_rule(model) == rule
    forget = [(torch.randn(8, 1, 16, 16), torch.randint(0, 10, (8,)))]
    loc = localize(model, forget, "del", 0.3, Progress())
    assert loc.channel_score == rule
    assert mask_summary(model, loc)[1]["channel_score"] == rule
    if rule == MEAN:  # every channel score is the plain mean of its |w·g| row
        gradients = summed_gradients(model, forget)
        for name_, p in model.named_parameters():
            if p.dim() >= 2:
                row_mean = (p * gradients[name_]).abs().reshape(p.shape[0], -1).mean(dim=1)
                assert torch.allclose(loc.channel_scores[name_], row_mean, rtol=1e-4, atol=1e-12)


def test_salloc_selects_the_largest_gradients_per_parameter(model, forget, masks_at):
    loc = masks_at("salloc", 0.2)
    assert selected(loc.masks) == round(0.2 * total(model))
    grads = {n: g.abs() for n, g in summed_gradients(model, forget).items()}
    picked = torch.cat([grads[n][m] for n, m in loc.masks.items()])
    others = torch.cat([grads[n][~m] for n, m in loc.masks.items()])
    assert picked.min() >= others.max() * (1 - 1e-4)


def test_shallowest_and_deepest_fill_from_their_end(masks_at):
    shallow, deep = masks_at("shallowest").masks, masks_at("deepest").masks
    assert shallow["stages.block1.0.weight"].all() and not shallow["stages.logits.weight"].any()
    assert deep["stages.logits.weight"].all() and not deep["stages.block1.0.weight"].any()


@pytest.mark.parametrize("reference", ["del", "salloc", "shallowest"])
def test_random_control_copies_the_per_layer_counts(masks_at, reference):
    ref = masks_at(reference, random_like=reference)
    control = masks_at("random", random_like=reference)
    assert control.granularity == ref.granularity
    for name, mask in ref.masks.items():
        assert int(control.masks[name].sum()) == int(mask.sum()), name
    assert any(not torch.equal(control.masks[n], m) for n, m in ref.masks.items())
    reseeded = masks_at("random", random_like=reference, seed=1)
    assert any(not torch.equal(reseeded.masks[n], m) for n, m in control.masks.items())


def test_bad_strategy_rho_and_too_small_a_budget_are_user_errors(model, forget):
    with pytest.raises(UserError, match=r"method\.params\.strategy: expected one of 'del'"):
        localize(model, forget, "middle", 0.3, Progress())
    for rho in (0.0, 1.01, float("nan")):
        with pytest.raises(UserError, match=r"method\.params\.rho: expected a number in \(0, 1\]"):
            localize(model, forget, "del", rho, Progress())
    with pytest.raises(UserError, match=r"method\.params\.random_like"):
        localize(model, forget, "random", 0.3, Progress(), random_like="random")
    # Shallowest starts with block1's filters of 9 weights: 5 parameters cannot hold one.
    with pytest.raises(UserError, match=r"method\.params\.rho: .*first unit shallowest"):
        localize(model, forget, "shallowest", 5 / total(model), Progress())


def test_mask_summary_counts_what_the_mask_selects(model, masks_at):
    loc = masks_at("del")
    arrays, info = mask_summary(model, loc)
    assert info["selected_parameters"] == selected(loc.masks)
    assert info["selected_fraction"] == pytest.approx(selected(loc.masks) / total(model))
    weights = weight_tensors(model)
    assert info["weight_tensors"] == [label for _, label, _ in weights] == list(model.probe_layers)
    fraction = arrays["mask/channel_fraction"]
    assert fraction.shape == (max(p.shape[0] for _, _, p in weights), len(weights))
    # Channel strategies: each channel fully in (1) or out (0), NaN below short layers.
    known = fraction[~np.isnan(fraction)]
    assert set(np.unique(known)) <= {0.0, 1.0}
    listed = {tuple(pair) for pair in arrays["mask/selected_channels"]}
    assert listed == {(j, c) for c, j in zip(*np.nonzero(np.nan_to_num(fraction) > 0))}
    assert info["selected_channels"] == len(listed)
    for j, (name, _, p) in enumerate(weights):
        assert np.isnan(arrays["mask/criticality"][p.shape[0]:, j]).all()
        np.testing.assert_allclose(arrays["mask/criticality"][:p.shape[0], j],
                                   loc.channel_scores[name].numpy(), rtol=1e-6)
    stage = dict(zip(model.probe_layers, arrays["mask/stage_parameter_fraction"]))
    block1 = [loc.masks[n] for n in loc.masks if n.startswith("stages.block1.")]
    assert stage["block1"] == pytest.approx(sum(int(m.sum()) for m in block1)
                                            / sum(m.numel() for m in block1))


def test_selectivity_is_zero_against_itself_and_finds_the_forget_logit(tiny_refs, masks_at):
    exp = tiny_refs.experiment
    original = tiny_refs.original.model
    loc = masks_at("del")
    forget = exp.loader("forget", batch_size=64)
    same = channel_selectivity(original, forget, exp.loader("forget", batch_size=64), loc)
    values = same["selectivity/value"]
    assert np.nanmax(np.abs(values)) < 1e-6
    against_retain = channel_selectivity(original, forget,
                                         exp.loader("retain", batch_size=64, shuffle=True), loc)
    logits = against_retain["selectivity/value"][:10, list(original.probe_layers).index("logits")]
    assert int(np.argmax(logits)) == 0 and logits[0] > 2  # class 0 is the forget class
    flags = against_retain["selectivity/selected"]
    assert set(np.unique(flags[~np.isnan(flags)])) <= {0.0, 1.0}


def test_units_cover_every_parameter_once(model):
    units = Units.of(model)
    assert int(units.size.sum()) == total(model)
    assert STRATEGIES.keys() == {"del", "salloc", "shallowest", "deepest", "random"}


# --- figures -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stored(model, masks_at, tiny_refs):
    """(report, arrays) as a del run stores them, with a small synthetic layers section."""
    loc = masks_at("del")
    arrays, info = mask_summary(model, loc)
    exp = tiny_refs.experiment
    arrays.update(channel_selectivity(tiny_refs.original.model, exp.loader("forget"),
                                      exp.loader("retain", shuffle=True), loc))
    names = list(model.probe_layers)
    report = {"method": {"name": "del", "params": {"rho": 0.3}, "info": {"localization": info}},
              "layers": {"names": names, "cka_band": {},
                         "cka": {pair: {"forget_train": [0.9, 0.8, 0.7, 0.6, 0.5]}
                                 for pair in ("unlearned_vs_original", "oracle_vs_original")}}}
    return report, arrays


def test_fraction_bars_show_the_stored_fractions(stored):
    report, arrays = stored
    fig = figs.selected_fraction_bars([("run A", report, arrays), ("run B", report, arrays)])
    bars = {(t.name, t.xaxis): t for t in fig.data}
    channels, params = bars[("run A", "x")], bars[("run A", "x2")]
    assert list(channels.x) == report["layers"]["names"]
    np.testing.assert_allclose(channels.y, 100 * arrays["mask/stage_channel_fraction"], rtol=1e-6)
    np.testing.assert_allclose(params.y, 100 * arrays["mask/stage_parameter_fraction"], rtol=1e-6)
    assert ("run B", "x2") in bars


def test_criticality_heatmap_marks_exactly_the_selected_channels(stored):
    report, arrays = stored
    fig = figs.criticality_heatmap(report, arrays)
    heat, marks = fig.data[0], fig.data[1]
    labels = report["method"]["info"]["localization"]["weight_tensors"]
    assert list(heat.x) == labels
    pairs = arrays["mask/selected_channels"]
    assert list(zip(marks.x, marks.y)) == [(labels[j], int(c)) for j, c in pairs]


def test_mask_on_cka_adds_the_mask_on_a_second_axis(stored):
    report, arrays = stored
    fig = figs.mask_on_cka(report, arrays)
    bars = [t for t in fig.data if t.type == "bar"]
    assert len(bars) == 1 and bars[0].yaxis == "y2"
    np.testing.assert_allclose(bars[0].y, arrays["mask/stage_parameter_fraction"], rtol=1e-6)
    assert fig.layout.yaxis2.overlaying == "y"


def test_selectivity_figure_splits_selected_and_unselected(stored):
    report, arrays = stored
    fig = figs.selectivity_by_selection(report, arrays)
    values, flags = arrays["selectivity/value"], arrays["selectivity/selected"]
    by_name = {t.name: t for t in fig.data}
    expected = np.sort(values[(flags == 1) & ~np.isnan(values)])
    np.testing.assert_allclose(np.sort(np.asarray(by_name["selected"].y, dtype=float)),
                               expected, rtol=1e-6)
    n_unselected = int(((flags == 0) & ~np.isnan(values)).sum())
    assert len(by_name["not selected"].y) == n_unselected


def sweep_report(strategy, rho, forget, mia, test, oracle=(0.97, 0.05, 0.975), lr=0.1,
                 epochs=3, retain=0.99, oracle_key="oracle-seed-0"):
    accuracy = {"forget_train": forget, "retain_train": retain, "test": test}
    report = {"method": {"name": "localized",
                       "params": {"strategy": strategy, "algorithm": "rft", "rho": rho,
                                  "random_like": "del", "lr": lr, "epochs": epochs}},
            "oracle": {"key": oracle_key},
            "accuracy": {"unlearned": accuracy,
                         "oracle": {"forget_train": oracle[0], "retain_train": 0.99,
                                    "test": oracle[2]}},
            "mia": {"efficacy": {"unlearned": {"confidence": mia},
                                 "oracle": {"confidence": oracle[1]}}}}
    # What evaluate() stores and the figures read.
    return {**report, "average_gap": {"unlearned": average_gap(report)}}


def test_tuned_budget_sweep_takes_the_run_closest_to_each_seeds_oracle():
    # Seed 0: lr 0.03 is closer to the oracle (gap 0.5 pp vs 2.5 pp); seed 1: lr 0.1 is.
    reports = [sweep_report("del", 0.3, 0.99, 0.05, 0.975, lr=0.1, oracle_key="s0"),
               sweep_report("del", 0.3, 0.97, 0.07, 0.975, lr=0.03, epochs=6, oracle_key="s0"),
               sweep_report("del", 0.3, 0.97, 0.05, 0.975, lr=0.1, oracle_key="s1"),
               sweep_report("del", 0.3, 1.00, 0.01, 0.975, lr=0.03, epochs=6, oracle_key="s1")]
    chosen = figs.best_per_budget(reports)
    assert [figs.training_setting(r) for r in chosen] == ["lr 0.03, 6 epochs", "lr 0.1, 3 epochs"]
    (point,) = figs.sweep_points(reports, tuned=True)
    assert point["n"] == 2 and point["settings"] == ["lr 0.03, 6 epochs", "lr 0.1, 3 epochs"]
    assert point["forget_train"]["mean"] == pytest.approx(0.97)
    # Untuned, the two settings are separate series, never averaged together.
    untuned = figs.sweep_points(reports)
    assert sorted(p["series"] for p in untuned) == ["del · rft (lr 0.03, 6 epochs)",
                                                    "del · rft (lr 0.1, 3 epochs)"]
    fig = figs.budget_sweep(reports, tuned=True)
    assert "best lr and epochs" in fig.layout.title.text
    assert "lr 0.03, 6 epochs" in fig.data[0].customdata[0]


def test_budget_sweep_specs_cover_every_budget_and_grid_setting():
    from conftest import tiny_setup
    from unlearn_core.methods.del_localized import TUNING_GRID, budget_sweep_specs
    specs = budget_sweep_specs(tiny_setup(), {"strategy": "del"}, rhos=(0.1, 0.3),
                               tuning_grid=TUNING_GRID)
    settings = {(s.method.params["rho"], s.method.params["lr"], s.method.params["epochs"])
                for s in specs}
    assert len(specs) == len(settings) == 2 * 4
    assert {s.method.params["strategy"] for s in specs} == {"del"}
    assert len({s.hash for s in specs}) == 8


def test_budget_sweep_averages_seeds_per_rho_and_draws_the_oracle():
    reports = [sweep_report("del", 0.3, 0.96, 0.06, 0.97), sweep_report("del", 0.3, 0.98, 0.08, 0.97),
               sweep_report("del", 0.1, 0.99, 0.02, 0.98), sweep_report("random", 0.1, 1.0, 0.01, 0.98)]
    points = figs.sweep_points(reports)
    del_03 = next(p for p in points if p["series"] == "del · rft" and p["rho"] == 0.3)
    assert del_03["n"] == 2
    assert del_03["forget_train"]["mean"] == pytest.approx(0.97)
    assert del_03["mia"]["mean"] == pytest.approx(0.07)
    assert {p["series"] for p in points} == {"del · rft", "random (like del) · rft"}
    fig = figs.budget_sweep(reports)
    line = next(t for t in fig.data if t.name == "del · rft" and t.xaxis == "x")
    assert list(line.x) == [0.1, 0.3] and line.y[1] == pytest.approx(97.0)
    assert any(shape.y0 == pytest.approx(97.0) for shape in fig.layout.shapes)  # oracle
