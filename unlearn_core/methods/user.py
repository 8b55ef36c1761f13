"""A user's own unlearning method, and weights unlearned elsewhere, as methods of the
pipeline: both run through `run_unlearning`, its evaluation and the run store.

A user method is either
- a function `unlearn(model, forget_loader, retain_loader, **params) -> model`: `model` is
  a copy of the original (on the setup's device, in train mode), the loaders yield
  normalised `(x, y)` batches on that device; it returns the unlearned model (the same
  object changed in place, or a new module with the same state-dict keys and shapes). Its
  hyperparameters are described by a `params` attribute holding `Param`s (as the built-in
  methods'), else read from its signature: every keyword parameter with an int, float or
  bool default becomes a parameter of that type; or
- a `Method` subclass (full access to the `UnlearnContext`).
It is named by an entry point "module:function" (a module on the Python path or a .py file
by its path), or passed as the object itself from a notebook (`Lens.unlearn`). Its
identity in the run spec is that name, its resolved params and `source_hash`: a hash of its
source code, so an edited function makes a different run.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import math
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from ..entry_points import check_entry_point_text, entry_point_source_hash, load_entry_point, one_line
from ..errors import UserError
from ..io import SAFETENSORS_SUFFIXES, TORCH_SUFFIXES, load_into_model
from .base import Method, Outcome, Param, UnlearnContext

# The first three arguments of a user function; every other one is a hyperparameter.
FUNCTION_ARGUMENTS = ("model", "forget_loader", "retain_loader")
_INFERRED_KINDS = {bool: "bool", int: "int", float: "float"}
IMPORTED_PREFIX = "imported:"
WEIGHT_SUFFIXES = SAFETENSORS_SUFFIXES + TORCH_SUFFIXES


def is_user_method_name(name: str) -> bool:
    """Whether a method name is an entry point ("module:function") or an imported
    checkpoint, rather than a registered method's name."""
    return ":" in name


def source_hash(obj: Any, entry_point: str | None = None) -> str:
    """16 hex digits of the object's source code (a notebook cell's function included);
    where the source cannot be read, the hash of its module's file; "" when neither
    exists (a compiled extension)."""
    try:
        return hashlib.sha256(inspect.getsource(obj).encode()).hexdigest()[:16]
    except (OSError, TypeError):
        pass
    try:
        return entry_point_source_hash(entry_point, field="method.name") if entry_point else ""
    except UserError:  # a name that is no entry point (a lambda's "<lambda>")
        return ""


def _inferred_params(fn: Callable, name: str) -> tuple[Param, ...]:
    params = []
    for parameter in list(inspect.signature(fn).parameters.values())[len(FUNCTION_ARGUMENTS):]:
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        kind = _INFERRED_KINDS.get(type(parameter.default))
        if kind is None:
            raise UserError(f"method.name: {name}: parameter {parameter.name!r} needs a default "
                            f"of type int, float or bool (got {parameter.default!r}), or "
                            f"describe the parameters with a `params` attribute of "
                            f"unlearn_core.methods.Param")
        params.append(Param(parameter.name, kind, parameter.default,
                            f"{parameter.name} of {fn.__name__} (default {parameter.default!r})"))
    return tuple(params)


def _check_signature(fn: Callable, name: str) -> None:
    try:
        positional = [p for p in inspect.signature(fn).parameters.values()
                      if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        return  # no signature to read (a builtin): the call itself will tell
    if len(positional) < len(FUNCTION_ARGUMENTS):
        raise UserError(f"method.name: {name} takes {len(positional)} positional argument(s); "
                        f"a user method takes ({', '.join(FUNCTION_ARGUMENTS)}, **params)")


class _CheckedLoader:
    """A loader whose every batch first checks for cancel, so the app's Cancel button stops
    a user function at its next batch even if it never reports progress."""

    def __init__(self, loader, ctx: UnlearnContext):
        self._loader, self._ctx = loader, ctx

    def __len__(self) -> int:
        return len(self._loader)

    def __iter__(self):
        for batch in self._loader:
            self._ctx.progress.check()
            yield batch

    def __getattr__(self, name):  # batch_size, num_examples, device, ...
        return getattr(self._loader, name)


class FunctionMethod(Method):
    """A user function as a Method (see the module docstring for the contract)."""

    def __init__(self, fn: Callable, name: str, source: str):
        _check_signature(fn, name)
        self.fn = fn
        self.name = name
        self.title = getattr(fn, "title", None) or getattr(fn, "__name__", name)
        doc = inspect.getdoc(fn) or ""
        self.summary = doc.split("\n\n")[0].replace("\n", " ") or f"your own method {name}"
        declared = getattr(fn, "params", None)
        if declared is None:
            self.params = _inferred_params(fn, name)
        elif isinstance(declared, (list, tuple)) and all(isinstance(p, Param) for p in declared):
            self.params = tuple(declared)
        else:
            raise UserError(f"method.name: {name}: its `params` attribute must be a list of "
                            f"unlearn_core.methods.Param, got {declared!r}")
        self.source_hash = source

    def unlearn(self, ctx: UnlearnContext) -> Outcome:
        forget = _CheckedLoader(ctx.loader("forget"), ctx)
        retain = _CheckedLoader(ctx.loader("retain"), ctx)
        ctx.model.train()
        ctx.progress.update(0.0, f"running {self.name}")
        returned = self.fn(ctx.model, forget, retain, **ctx.params)
        if not isinstance(returned, torch.nn.Module):
            raise UserError(f"method.name: {self.name} returned {type(returned).__name__}; "
                            f"expected the unlearned model (a torch.nn.Module)")
        if returned is not ctx.model:
            # A new module: its weights must fit the setup's architecture, key by key.
            load_into_model(ctx.model, returned.state_dict(), source=f"returned by {self.name}")
        return Outcome(ctx.model)


class ImportedCheckpoint(Method):
    """Weights unlearned elsewhere, evaluated as a run: "unlearning" loads them into the
    setup's architecture (refused, naming the tensor, when they do not fit)."""

    title = "Imported checkpoint"
    summary = "weights unlearned outside the lens, evaluated against the same references"

    def __init__(self, state_dict: Mapping[str, torch.Tensor], source: str, digest: str,
                 seconds: float | None = None):
        if seconds is not None and not (isinstance(seconds, (int, float)) and not
                                        isinstance(seconds, bool) and 0 <= seconds < math.inf):
            raise UserError(f"seconds: expected the unlearning's wall time in seconds (a "
                            f"number >= 0), got {seconds!r}")
        self.state_dict, self.source, self.seconds = dict(state_dict), source, seconds
        self.name = IMPORTED_PREFIX + digest
        self.title = f"Imported {Path(source).name if source.endswith(WEIGHT_SUFFIXES) else 'weights'}"
        self.source_hash = digest

    def check(self, params: dict[str, Any], model) -> None:
        # Refused before the run is recorded: nothing stored for weights that do not fit.
        load_into_model(copy.deepcopy(model), self.state_dict, source=self.source)

    def unlearn(self, ctx: UnlearnContext) -> Outcome:
        load_into_model(ctx.model, self.state_dict, source=self.source)
        return Outcome(ctx.model, info={"imported_from": self.source}, ran_elsewhere=True,
                       stated_seconds=None if self.seconds is None else float(self.seconds))


def state_dict_digest(state_dict: Mapping[str, torch.Tensor]) -> str:
    """16 hex digits over the names, dtypes, shapes and values of the tensors."""
    digest = hashlib.sha256()
    for key in sorted(state_dict):
        tensor = state_dict[key].detach().to("cpu").contiguous()
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def method_from_object(obj: Any, name: str | None = None) -> Method:
    """A user's function, Method subclass or Method instance as a Method named `name`
    (default "<module>:<qualified name>")."""
    target = obj.__class__ if isinstance(obj, Method) else obj
    name = name or f"{getattr(target, '__module__', '?')}:{getattr(target, '__qualname__', '?')}"
    source = source_hash(target, name)
    if isinstance(obj, Method) or (isinstance(obj, type) and issubclass(obj, Method)):
        method = obj if isinstance(obj, Method) else obj()
        method.name = name
        method.source_hash = source
        return method
    if isinstance(obj, type) or not callable(obj):
        raise UserError(f"method.name: {name} is a {type(obj).__name__}; expected a function "
                        f"(model, forget_loader, retain_loader, **params) -> model, or a "
                        f"unlearn_core.methods.Method subclass")
    return FunctionMethod(obj, name, source)


def method_from_entry_point(text: str) -> Method:
    """The method an entry point "module:function" names, loaded now (a UserError naming
    method.name if it does not import or is not a method)."""
    if text.startswith(IMPORTED_PREFIX):
        raise UserError(f"method.name: {text!r} names an imported checkpoint, not a method to "
                        f"run; import weights with `python -m unlearn_core import-run`")
    name = check_entry_point_text(text, "method.name")
    obj = load_entry_point(name, field="method.name")
    try:
        return method_from_object(obj, name)
    except UserError:
        raise
    except Exception as exc:  # a Method subclass whose constructor fails: the user's code
        raise UserError(f"method.name: {name}: {type(exc).__name__}: {one_line(exc)}") from None
