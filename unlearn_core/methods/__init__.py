"""Unlearning methods: one interface (`Method.unlearn(ctx) -> Outcome`), one registry."""

# Imported in this order so that the methods list in the same order everywhere (app, CLI, bench).
from . import (retrain, finetune, neggrad, l1_sparse, last_stages, boundary, scrub,  # noqa: F401
               dkvb, ec, lau, del_localized, random_label, salun, ssd)  # (registration)
from .base import Method, Outcome, Param, UnlearnContext
from .registry import applicability, get_method, list_methods, list_plugins, register_method

__all__ = ["Method", "Outcome", "Param", "UnlearnContext", "applicability", "get_method",
           "list_methods", "list_plugins", "register_method"]
