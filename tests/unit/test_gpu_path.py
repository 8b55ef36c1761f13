"""The GPU path as far as a CPU can test it: mixed precision in the one training loop
(autocast; fp16's gradient scaler), its refusal off CUDA, channels-last only on CUDA, and
`bench --suite gpu` refusing clearly without CUDA or CIFAR-10. Nothing here ran on a GPU."""

import pytest
import torch
import torch.nn.functional as F

from unlearn_core.cli import main
from unlearn_core.config import DataSpec, ModelSpec, SetupSpec, TrainSpec
from unlearn_core.errors import UserError
from unlearn_core.progress import Progress
from unlearn_core.training import autocast, check_precision, fit, on_device, prepare, sgd


def test_precision_is_validated_and_in_the_recipe_hash():
    with pytest.raises(UserError, match=r"^train.precision: expected one of \['fp32', 'bf16', "
                                        r"'fp16'\], got 'fp8'"):
        TrainSpec(precision="fp8")
    assert "precision" not in TrainSpec().to_dict()  # old hashes unchanged
    assert SetupSpec(train=TrainSpec(precision="bf16")).hash != SetupSpec().hash


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_is_refused_off_cuda_before_training(precision):
    with pytest.raises(UserError, match=rf"^train.precision: {precision} mixed precision runs "
                                        r"on CUDA only; this setup computes on cpu; use fp32"):
        prepare(SetupSpec(data=DataSpec("digits"), device="cpu",
                          train=TrainSpec(precision=precision)))
    check_precision("fp32", torch.device("cpu"))  # fp32 runs anywhere


def _fit(precision: str):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Flatten(),
                                torch.nn.Linear(4 * 6 * 6, 3))
    x, y = torch.randn(16, 1, 8, 8), torch.randint(0, 3, (16,))
    dtypes = []

    def loss_fn(batch):
        logits = model(batch[0])
        dtypes.append(logits.dtype)
        return F.cross_entropy(logits, batch[1])

    before = [p.detach().clone() for p in model.parameters()]
    log = fit(model, lambda: [(x, y)] * 4, loss_fn, sgd(model.parameters(), lr=0.1), epochs=2,
              progress=Progress(), precision=precision)
    changed = any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    return log, dtypes, changed


def test_autocast_runs_the_forward_in_bf16_and_still_trains():
    """CPU autocast in bf16 exercises the same branch CUDA takes (the refusal above keeps
    users off it on a CPU, where it is slower)."""
    log, dtypes, changed = _fit("bf16")
    assert set(dtypes) == {torch.bfloat16} and changed and log.steps == 8
    log, dtypes, changed = _fit("fp32")
    assert set(dtypes) == {torch.float32} and changed


def test_fp16_steps_through_the_gradient_scaler():
    try:
        with autocast("fp16", torch.device("cpu")):
            torch.nn.Linear(2, 2)(torch.randn(1, 2))
        torch.amp.GradScaler("cpu")
    except (RuntimeError, ValueError) as unsupported:
        pytest.skip(f"fp16 autocast or GradScaler not on this CPU build: {unsupported}")
    log, dtypes, changed = _fit("fp16")
    assert set(dtypes) == {torch.float16} and log.steps == 8
    # The scaler may skip the first steps while it finds its scale; the rest update.
    assert changed and all(torch.isfinite(torch.tensor(log.epoch_losses)))


def test_channels_last_only_on_cuda():
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3))
    model = on_device(model, torch.device("cpu"))
    assert model[0].weight.is_contiguous()  # the default layout on a CPU
    if torch.cuda.is_available():
        cuda = on_device(model, torch.device("cuda"))
        assert cuda[0].weight.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without CUDA")
def test_bench_gpu_refuses_without_cuda(capsys):
    assert main(["bench", "--suite", "gpu", "--root", "/nowhere"]) == 2
    err = capsys.readouterr().err
    assert err == "error: --suite gpu: needs a CUDA device; torch sees none on this machine\n"


def test_bench_gpu_refuses_without_cifar10(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert main(["bench", "--suite", "gpu", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --suite gpu: CIFAR-10 is not readable in --root {tmp_path}")
    assert err.count("\n") == 1
    assert main(["bench", "--suite", "gpu"]) == 2
    assert "needs --root" in capsys.readouterr().err


def test_bench_options_of_other_suites_are_refused(capsys):
    assert main(["bench", "--suite", "quick", "--precision", "bf16"]) == 2
    assert "--precision: not an option of --suite quick" in capsys.readouterr().err


def test_gpu_setup_is_torchvision_resnet18_on_cifar10():
    from unlearn_core import bench
    assert bench.GPU_MODEL == ModelSpec("torchvision/resnet18", small_stem=True)
