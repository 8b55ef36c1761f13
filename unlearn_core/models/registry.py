"""Models by name, timm-style: `register_model` adds a builder, `build_model` makes one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..config import ModelSpec
from ..errors import UserError, refuse_duplicate
from .base import LensModel

Builder = Callable[[ModelSpec, int, int, int], LensModel]


@dataclass(frozen=True)
class ModelInfo:
    name: str
    description: str
    min_image_size: int


_REGISTRY: dict[str, tuple[ModelInfo, Builder]] = {}


def register_model(name: str, *, description: str, min_image_size: int = 4):
    def decorator(builder: Builder) -> Builder:
        refuse_duplicate("model", name, _REGISTRY)
        _REGISTRY[name] = (ModelInfo(name, description, min_image_size), builder)
        return builder
    return decorator


# Families named by a prefix ("timm/"): the rest of the name is the library's own.
_FAMILIES: dict[str, tuple[ModelInfo, Builder]] = {}


def register_model_family(prefix: str, *, description: str, min_image_size: int = 4):
    def decorator(builder: Builder) -> Builder:
        if prefix in _FAMILIES:
            raise ValueError(f"model family {prefix!r} registered twice")
        _FAMILIES[prefix] = (ModelInfo(prefix + "<name>", description, min_image_size), builder)
        return builder
    return decorator


def list_models() -> list[ModelInfo]:
    """Every registered model; a family appears as "<prefix><name>"."""
    return [info for info, _ in _REGISTRY.values()]


def list_model_families() -> list[ModelInfo]:
    return [info for info, _ in _FAMILIES.values()]


def _lookup(name: str) -> tuple[ModelInfo, Builder]:
    if name in _REGISTRY:
        return _REGISTRY[name]
    for prefix, entry in _FAMILIES.items():
        if name.startswith(prefix) and len(name) > len(prefix):
            return entry
    raise UserError(f"model.name: unknown model {name!r}; allowed: {sorted(_REGISTRY)}, or "
                    f"{', '.join(p + '<name>' for p in sorted(_FAMILIES))}")


def build_model(spec: ModelSpec, *, in_channels: int, num_classes: int,
                image_size: int) -> LensModel:
    info, builder = _lookup(spec.name)
    if image_size < info.min_image_size:
        raise UserError(f"model.name: {spec.name} needs images of at least "
                        f"{info.min_image_size}x{info.min_image_size}, got {image_size}")
    return builder(spec, in_channels, num_classes, image_size)
