"""A user's own classifier, built by an entry point ("module:function" -> nn.Module)."""

from __future__ import annotations

import inspect

import torch
from torch import nn

from ..config import USER_MODULE, ModelSpec
from ..entry_points import load_entry_point, one_line
from ..errors import UserError
from .adapter import adapt_module
from .base import LensModel
from .registry import register_model

# What the builder may take by name; it gets those its signature lists.
BUILDER_ARGUMENTS = ("num_classes", "in_channels", "image_size")
SAMPLE_BATCH = 2


def in_spec_terms(error: UserError) -> UserError:
    """The adapter's message with its field named as in a setup ("model.head")."""
    field, _, rest = str(error).partition(": ")
    return UserError(f"{field if field.startswith('model') else 'model.' + field}: {rest}")


@register_model(USER_MODULE, description="your own nn.Module classifier, built by "
                                         "model.entry_point ('module:function')")
def user_module(spec: ModelSpec, in_channels: int, num_classes: int, image_size: int) -> LensModel:
    build = load_entry_point(spec.entry_point, field="model.entry_point")
    given = dict(zip(BUILDER_ARGUMENTS, (num_classes, in_channels, image_size)))
    try:
        accepted = inspect.signature(build).parameters
    except (TypeError, ValueError):  # a builtin without a signature: call it bare
        accepted = {}
    try:
        module = build(**{k: v for k, v in given.items() if k in accepted})
    except Exception as exc:  # the user's code: report, never a traceback
        raise UserError(f"model.entry_point: calling {spec.entry_point!r} failed: "
                        f"{type(exc).__name__}: {one_line(exc)}") from None
    if not isinstance(module, nn.Module):
        raise UserError(f"model.entry_point: {spec.entry_point!r} returned a "
                        f"{type(module).__name__}, expected a torch.nn.Module classifier")
    sample = torch.zeros(SAMPLE_BATCH, in_channels, image_size, image_size)
    try:
        with torch.no_grad():
            output = module.eval()(sample)
    except Exception as exc:
        raise UserError(f"model.entry_point: the model fails on a batch of {in_channels}x"
                        f"{image_size}x{image_size} images: {type(exc).__name__}: "
                        f"{one_line(exc)}") from None
    module.train()
    if not isinstance(output, torch.Tensor) or tuple(output.shape) != (SAMPLE_BATCH, num_classes):
        shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        raise UserError(f"model.entry_point: the model's output on a batch of {SAMPLE_BATCH} is "
                        f"{shape}; a classifier of this data gives ({SAMPLE_BATCH}, "
                        f"{num_classes}) logits")
    try:
        return adapt_module(module, probe_layers=spec.probe_layers or None, head=spec.head,
                            sample=torch.randn(SAMPLE_BATCH, in_channels, image_size, image_size))
    except UserError as error:
        raise in_spec_terms(error) from None
