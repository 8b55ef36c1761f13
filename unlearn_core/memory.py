"""Batch sizes that fit the device's memory.

An evaluation pass (predictions, activations) gives the same numbers whatever its batch
size, so after a CUDA out-of-memory error it is run again with half the batch, down to
one example, and the size that fitted is remembered for that model on that device. A
training step's batch size is part of the recipe (its numbers depend on it), so there an
out-of-memory error is refused with a message naming the batch size instead
(`training.fit`).
"""

from __future__ import annotations

import gc
from typing import Callable, TypeVar

import torch

from .errors import UserError

T = TypeVar("T")

# (model class, parameter count, device) -> the largest evaluation batch known to fit.
_fitting: dict[tuple[str, int, str], int] = {}


def _signature(model: torch.nn.Module) -> tuple[str, int, str]:
    parameters = list(model.parameters())
    device = str(parameters[0].device) if parameters else "cpu"
    return type(model).__name__, sum(p.numel() for p in parameters), device


def _free_device_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def evaluation_batches(model: torch.nn.Module, batch_size: int, what: str,
                       run: Callable[[int], T]) -> T:
    """`run(b)` with the largest b <= `batch_size` that fits: halved after each
    out-of-memory error; `what` ("predictions", ...) names the pass if even one example
    does not fit."""
    signature = _signature(model)
    size = min(batch_size, _fitting.get(signature, batch_size))
    while True:
        try:
            result = run(size)
        except torch.OutOfMemoryError:
            if size == 1:
                raise UserError(f"{what}: one example does not fit in {signature[2]}'s memory "
                                "with this model; free the device or use a smaller model") from None
        else:
            if size < batch_size:
                _fitting[signature] = size
            return result
        # Outside the except block, so the error's frames (and their tensors) are gone.
        _free_device_memory()
        size = max(1, size // 2)
