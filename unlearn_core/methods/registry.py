"""Methods by name: `register_method` adds a Method class, `get_method` returns one."""

from __future__ import annotations

from ..errors import UserError
from .base import Method

_REGISTRY: dict[str, type[Method]] = {}


def register_method(cls: type[Method]) -> type[Method]:
    if cls.name in _REGISTRY:
        raise ValueError(f"method {cls.name!r} registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def get_method(name: str) -> Method:
    if name not in _REGISTRY:
        raise UserError(f"method.name: unknown method {name!r}; allowed: {sorted(_REGISTRY)}")
    return _REGISTRY[name]()


def list_methods() -> list[Method]:
    return [cls() for cls in _REGISTRY.values()]
