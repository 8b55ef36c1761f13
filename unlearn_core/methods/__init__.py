"""Unlearning methods: one interface (`Method.unlearn(ctx) -> Outcome`), one registry."""

from . import baselines, boundary, distill, dkvb, ec, lau, localized, relabel, ssd  # noqa: F401  (registration)
from .base import Method, Outcome, Param, UnlearnContext
from .registry import applicability, get_method, list_methods, list_plugins, register_method

__all__ = ["Method", "Outcome", "Param", "UnlearnContext", "applicability", "get_method",
           "list_methods", "list_plugins", "register_method"]
