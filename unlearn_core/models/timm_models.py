"""timm's models by name ("timm/resnet18" is timm.create_model("resnet18")), adapted into
LensModels, when timm is installed (`pip install -r requirements-timm.txt`; optional).

Randomly initialised (nothing is downloaded), with the data's input channels and classes.
`width` does not apply: timm models are sized by their own names.
"""

from __future__ import annotations

import torch

from ..config import ModelSpec
from ..entry_points import one_line
from ..errors import UserError
from .adapter import adapt_module
from .base import LensModel
from .registry import register_model_family
from .user_module import in_spec_terms

PREFIX = "timm/"


@register_model_family(PREFIX, description="timm's model of that name (needs timm installed)")
def timm_model(spec: ModelSpec, in_channels: int, num_classes: int, image_size: int) -> LensModel:
    try:
        import timm
    except ImportError:
        raise UserError(f"model.name: {spec.name} needs timm, which is not installed "
                        f"(pip install -r requirements-timm.txt)") from None
    if spec.width != 1.0:
        raise UserError(f"model.width: timm models are sized by their names; expected 1, "
                        f"got {spec.width!r}")
    name = spec.name[len(PREFIX):]
    if name not in timm.list_models():
        raise UserError(f"model.name: timm has no model {name!r} (see timm.list_models())")
    try:
        module = timm.create_model(name, pretrained=False, num_classes=num_classes,
                                   in_chans=in_channels)
    except Exception as exc:  # timm's own validation of the options
        raise UserError(f"model.name: timm cannot build {name!r} for {in_channels}-channel "
                        f"images and {num_classes} classes: {one_line(exc)}") from None
    try:
        return adapt_module(module, probe_layers=spec.probe_layers or None, head=spec.head,
                            sample=torch.randn(2, in_channels, image_size, image_size))
    except UserError as error:
        raise in_spec_terms(error) from None
