"""LAU on the tiny digits setup: only F_c moves, the stop rule, the loss by hand, the
Partial-PGD ball, parameter checks and the artifacts' shapes."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from conftest import tiny_context, unlearn_tiny
from unlearn_core.errors import UserError
from unlearn_core.figures import lau as lau_figures
from unlearn_core.methods import get_method
from unlearn_core.methods.lau import lau_loss, partial_pgd
from unlearn_core.metrics.accuracy import accuracies, predictions
from unlearn_core.models import LensModel


def state_of(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_stages_identical(model: LensModel, original: LensModel, stages) -> None:
    for stage in stages:
        ours, theirs = model.stages[stage].state_dict(), original.stages[stage].state_dict()
        assert ours.keys() == theirs.keys()
        for key in ours:  # parameters and batch-norm buffers alike, bit for bit
            assert torch.equal(ours[key], theirs[key]), f"{stage}.{key} changed"


def test_feature_layers_bit_identical_and_forget_class_gone(tiny_refs):
    original = tiny_refs.original.model
    outcome, acc = unlearn_tiny(tiny_refs, "lau")
    model = outcome.model
    assert_stages_identical(model, original, model.feature_layers)
    assert not torch.equal(model.classifier.weight, original.classifier.weight)
    assert acc["forget_train"] == 0.0
    assert acc["test_forget"] <= 0.05
    exp = tiny_refs.experiment
    before = accuracies(predictions(original, exp), exp.split, exp.dataset.num_classes)
    assert acc["retain_train"] >= before["retain_train"] - 0.02, (acc, before)
    assert acc["test_retain"] >= before["test_retain"] - 0.03, (acc, before)
    info = outcome.info
    assert info["split_layer"] == "embedding" and info["trained_stages"] == ["logits"]
    assert info["features_nonnegative"] is True  # embedding ends in a ReLU
    # The stop rule ended the run as soon as the forget set was misclassified.
    assert info["epochs_run"] < get_method("lau").resolve_params({})["epochs"]
    assert info["stop_reason"].startswith("every forget sample misclassified after epoch")


def test_artifacts_have_the_documented_shapes(tiny_refs):
    outcome, _ = unlearn_tiny(tiny_refs, "lau", lr=0.001)  # slower, so several epochs
    info, arrays = outcome.info, outcome.artifacts
    epochs = info["epochs_run"]
    assert epochs >= 2, info
    share = arrays["lau/still_correct_share"]
    assert share.shape == (epochs + 1,)
    assert share[0] == 1.0 and share[-1] == 0.0  # the original knows every forget sample
    assert outcome.curves["forget_still_correct"] == share[1:].tolist()
    matrix = arrays["lau/target_matrix"]
    num_classes = tiny_refs.original.model.num_classes
    assert matrix.shape == (num_classes, num_classes) and matrix.dtype == np.int64
    forget_class = tiny_refs.experiment.spec.forget.classes[0]
    # Rows sum to the attacks made: only forget samples are attacked, one count each time
    # one is still classified correctly when its batch comes.
    assert matrix.sum() == info["attacks"] == sum(info["attacks_per_epoch"])
    assert matrix.sum(axis=1).tolist() == [info["attacks"] if c == forget_class else 0
                                           for c in range(num_classes)]
    forget_size = len(tiny_refs.experiment.split.forget)
    assert 0 < info["attacks_per_epoch"][0] <= forget_size
    assert len(info["attacks_per_epoch"]) == epochs
    for name in ("lau/perturbation_norm", "lau/relative_perturbation_norm"):
        assert arrays[name].shape == (epochs,)
    epsilon = get_method("lau").resolve_params({})["epsilon"]
    assert np.all(arrays["lau/relative_perturbation_norm"] <= epsilon + 1e-5)
    # The Results page's figures read these very arrays.
    assert lau_figures.has_lau_arrays(arrays)
    heatmap = lau_figures.target_class_matrix(arrays, [str(c) for c in range(num_classes)])
    assert heatmap.data[0].y == (str(forget_class),)
    assert list(heatmap.data[0].text[0]) == matrix[forget_class].tolist()
    assert list(lau_figures.still_correct_curve(arrays).data[0].y) == (100 * share).tolist()
    assert len(lau_figures.perturbation_norms(arrays).data[0].y) == epochs


def test_already_forgotten_set_costs_zero_steps(tiny_refs):
    ctx = tiny_context(tiny_refs, "lau")
    forget_class = tiny_refs.experiment.spec.forget.classes[0]
    with torch.no_grad():  # a classifier that can never output the forget class
        ctx.model.classifier.weight[forget_class] = 0.0
        ctx.model.classifier.bias[forget_class] = -1e4
    before = state_of(ctx.model)
    outcome = get_method("lau").unlearn(ctx)
    assert outcome.info["steps"] == 0 and outcome.info["epochs_run"] == 0
    assert outcome.info["stop_reason"].startswith("every forget sample was already")
    after = outcome.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert outcome.artifacts["lau/still_correct_share"].tolist() == [0.0]
    assert outcome.artifacts["lau/target_matrix"].sum() == 0
    assert outcome.artifacts["lau/perturbation_norm"].shape == (0,)
    assert lau_figures.target_class_matrix(outcome.artifacts, list("0123456789")) is None
    assert lau_figures.perturbation_norms(outcome.artifacts) is None


def test_split_moved_into_the_conv_blocks_keeps_their_statistics(tiny_refs):
    original = tiny_refs.original.model
    outcome, acc = unlearn_tiny(tiny_refs, "lau", split_offset=2)
    model = outcome.model
    assert outcome.info["split_layer"] == "block2"
    assert outcome.info["trained_stages"] == ["block3", "embedding", "logits"]
    assert_stages_identical(model, original, ["block1", "block2"])
    # block3 is trained, but its batch-norm statistics never saw a forget-only batch.
    bn_trained = [name for name, m in model.stages["block3"].named_modules()
                  if isinstance(m, nn.BatchNorm2d)]
    assert bn_trained
    for name in bn_trained:
        ours = dict(model.stages["block3"].named_modules())[name]
        theirs = dict(original.stages["block3"].named_modules())[name]
        assert torch.equal(ours.running_mean, theirs.running_mean)
        assert torch.equal(ours.running_var, theirs.running_var)
    assert not torch.equal(model.stages["block3"][0].weight, original.stages["block3"][0].weight)
    assert acc["forget_train"] == 0.0


@pytest.mark.parametrize("name,value", [("alpha", -0.1), ("alpha", 1.5), ("temperature", 0),
                                        ("temperature", -2.0), ("epsilon", 0),
                                        ("pgd_steps", 0), ("step_size", 0.0),
                                        ("split_offset", 3)])
def test_bad_params_are_rejected_naming_the_param(name, value):
    with pytest.raises(UserError, match=rf"method\.params\.{name}: expected .*got {value}"):
        get_method("lau").resolve_params({name: value})


def test_alpha_bounds_are_allowed():
    method = get_method("lau")
    assert method.resolve_params({"alpha": 0})["alpha"] == 0.0
    assert method.resolve_params({"alpha": 1})["alpha"] == 1.0


def test_split_offset_is_checked_against_the_model():
    method = get_method("lau")
    shallow = LensModel([("flat", nn.Flatten()), ("embedding", nn.Linear(4, 3)),
                         ("logits", nn.Linear(3, 2))])
    method.check(method.resolve_params({"split_offset": 1}), shallow)
    with pytest.raises(UserError, match=r"method\.params\.split_offset: expected an integer "
                                        r"in \[0, 1\] for this model.*got 2"):
        method.check(method.resolve_params({"split_offset": 2}), shallow)


def test_double_softmax_kl_by_hand():
    student = torch.tensor([[2.0, -1.0, 0.5], [0.0, 3.0, -2.0]])
    teacher = torch.tensor([[-1.0, 4.0, 0.0], [1.0, 1.0, 5.0]])
    tau = 4.0

    def softmax(row):
        e = [math.exp(v) for v in row]
        return [v / sum(e) for v in e]

    kl = 0.0
    for s_row, t_row in zip(student.tolist(), teacher.tolist()):
        target = softmax([v / tau for v in softmax(t_row)])  # softmax(softmax(z_t)/τ)
        student_soft = softmax([v / tau for v in s_row])
        kl += sum(p * math.log(p / q) for p, q in zip(target, student_soft))
    by_hand = tau ** 2 * kl / 2

    assert lau_loss(student, teacher, alpha=1.0, temperature=tau).item() == pytest.approx(
        by_hand, rel=1e-5)
    # α = 0: plain cross-entropy on the teacher's argmax (classes 1 and 2).
    ce = -(math.log(softmax(student[0].tolist())[1]) + math.log(softmax(student[1].tolist())[2])) / 2
    assert lau_loss(student, teacher, alpha=0.0, temperature=tau).item() == pytest.approx(ce, rel=1e-5)
    assert lau_loss(student, teacher, alpha=0.5, temperature=tau).item() == pytest.approx(
        0.5 * ce + 0.5 * by_hand, rel=1e-5)


def test_partial_pgd_stays_in_the_ball_and_crosses_the_boundary():
    torch.manual_seed(0)
    head = nn.Linear(8, 4).requires_grad_(False)
    features = torch.rand(16, 8) + 0.1
    labels = head(features).argmax(dim=1)
    epsilon = 0.3
    adversarial = partial_pgd(head, features, labels, epsilon=epsilon, step_size=0.5,
                              steps=20, nonnegative=True)
    shift = (adversarial - features).norm(dim=1)
    assert torch.all(shift <= epsilon * features.norm(dim=1) * (1 + 1e-5))
    assert torch.all(adversarial >= 0)
    before = nn.functional.cross_entropy(head(features), labels, reduction="none")
    after = nn.functional.cross_entropy(head(adversarial), labels, reduction="none")
    assert torch.all(after > before)
    # A radius as large as the features themselves is enough to leave the class.
    far = partial_pgd(head, features, labels, epsilon=1.0, step_size=0.5, steps=20,
                      nonnegative=False)
    assert (head(far).argmax(dim=1) != labels).float().mean() >= 0.9


def test_double_softmax_on_both_sides_by_hand():
    student = torch.tensor([[2.0, -1.0, 0.5]])
    teacher = torch.tensor([[-1.0, 4.0, 0.0]])
    tau = 4.0

    def softmax(row):
        e = [math.exp(v) for v in row]
        return [v / sum(e) for v in e]

    target = softmax([v / tau for v in softmax(teacher[0].tolist())])
    student_soft = softmax([v / tau for v in softmax(student[0].tolist())])
    by_hand = tau ** 2 * sum(p * math.log(p / q) for p, q in zip(target, student_soft))
    assert lau_loss(student, teacher, alpha=1.0, temperature=tau,
                    double_softmax="both").item() == pytest.approx(by_hand, rel=1e-5)
    with pytest.raises(ValueError, match="double_softmax"):
        lau_loss(student, teacher, alpha=1.0, temperature=tau, double_softmax="student")


def test_a_fixed_teacher_and_both_sides_still_forget_and_keep_the_trunk(tiny_refs):
    outcome, acc = unlearn_tiny(tiny_refs, "lau", teacher="fixed", double_softmax="both")
    assert acc["test_forget"] <= 0.05
    original = tiny_refs.original.model
    assert_stages_identical(outcome.model, original, original.feature_layers)
    with pytest.raises(UserError, match="teacher"):
        get_method("lau").resolve_params({"teacher": "frozen"})
