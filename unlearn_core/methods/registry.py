"""Methods by name: `register_method` adds a Method class, `get_method` returns one.

A plug-in wraps a method: "<method>+<plug-in>" (e.g. "finetune+ec") names the method
with the plug-in's term added to its training, for any method marked `plugin_ready`.
"""

from __future__ import annotations

from typing import Callable

from ..errors import UserError, refuse_duplicate
from .base import Method

_REGISTRY: dict[str, type[Method]] = {}
_PLUGINS: dict[str, Callable[[Method], Method]] = {}
PLUGIN_SEPARATOR = "+"


def register_method(cls: type[Method]) -> type[Method]:
    refuse_duplicate("method", cls.name, _REGISTRY)
    if PLUGIN_SEPARATOR in cls.name:
        raise ValueError(f"method {cls.name!r}: a name may not contain {PLUGIN_SEPARATOR!r}")
    _REGISTRY[cls.name] = cls
    return cls


def register_plugin(name: str, wrap: Callable[[Method], Method]) -> None:
    """`wrap(base)` returns the method "<base>+<name>"."""
    refuse_duplicate("plug-in", name, _PLUGINS)
    _PLUGINS[name] = wrap


def get_method(name: str) -> Method:
    """A registered method (optionally "+<plug-in>"), or a user's method named by an entry
    point "module:function" (methods/user.py), loaded now."""
    from .user import is_user_method_name, method_from_entry_point
    if is_user_method_name(name):
        return method_from_entry_point(name)
    base_name, plugged, plugin = name.partition(PLUGIN_SEPARATOR)
    if base_name not in _REGISTRY:
        raise UserError(f"method.name: unknown method {base_name!r}; allowed: "
                        f"{sorted(_REGISTRY)}, each optionally with "
                        f"{PLUGIN_SEPARATOR}<plug-in> ({', '.join(sorted(_PLUGINS))}), or "
                        f"your own as 'module:function'")
    base = _REGISTRY[base_name]()
    if not plugged:
        return base
    if plugin not in _PLUGINS:
        raise UserError(f"method.name: unknown plug-in {plugin!r} in {name!r}; allowed: "
                        f"{sorted(_PLUGINS)}")
    if not base.plugin_ready:
        raise UserError(f"method.name: {base_name} does not take a plug-in; methods that "
                        f"do: {', '.join(plugin_ready_methods())}")
    return _PLUGINS[plugin](base)


def list_methods() -> list[Method]:
    return [cls() for cls in _REGISTRY.values()]


def applicability(model) -> dict[str, str]:
    """Why each registered method cannot run on `model` (a LensModel; an untrained one of
    the setup's architecture will do) with its default hyperparameters: "" where it can.
    What `Method.accept` would say before a run, asked of every method at once."""
    reasons = {}
    for method in list_methods():
        try:
            method.accept(method.resolve_params({}), model)
            reasons[method.name] = ""
        except UserError as refusal:
            reasons[method.name] = str(refusal).removeprefix("method.name: ")
    return reasons


def list_plugins() -> list[str]:
    return sorted(_PLUGINS)


def plugin_ready_methods() -> list[str]:
    return [name for name, cls in _REGISTRY.items() if cls.plugin_ready]
