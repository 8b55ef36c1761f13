"""The one interface every unlearning method implements.

A method describes its hyperparameters (`Param`: type, default, range, help) so the app
and the CLI build their forms and their validation from the same description, and it
implements `unlearn(ctx) -> Outcome`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping

import numpy as np
import torch

from ..errors import UserError
from ..models import LensModel
from ..progress import Progress
from ..training import Experiment

PARAM_KINDS = ("float", "int", "bool", "choice")


@dataclass(frozen=True)
class Param:
    """One hyperparameter: its type, default, allowed range and a one-line help."""

    name: str
    kind: str
    default: Any
    help: str
    low: float | None = None
    high: float | None = None
    low_inclusive: bool = True
    high_inclusive: bool = True
    choices: tuple = ()
    log_scale: bool = False  # the app uses a log-spaced input for learning rates

    def __post_init__(self):
        if self.kind not in PARAM_KINDS:
            raise ValueError(f"Param {self.name}: kind must be one of {PARAM_KINDS}")
        self.validate(self.default)

    def allowed(self) -> str:
        if self.kind == "bool":
            return "true or false"
        if self.kind == "choice":
            return "one of " + ", ".join(map(repr, self.choices))
        what = "an integer" if self.kind == "int" else "a number"
        if self.low is None and self.high is None:
            return what
        left = ("[" if self.low_inclusive else "(") + ("-inf" if self.low is None else f"{self.low:g}")
        right = ("inf" if self.high is None else f"{self.high:g}") + ("]" if self.high_inclusive else ")")
        return f"{what} in {left}, {right}"

    def validate(self, value: Any) -> Any:
        """The value, coerced to the param's type, or a UserError naming the param."""
        bad = UserError(f"method.params.{self.name}: expected {self.allowed()}, got {value!r}")
        if self.kind == "bool":
            if not isinstance(value, bool):
                raise bad
            return value
        if self.kind == "choice":
            if value not in self.choices:
                raise bad
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        if self.kind == "int":
            if float(value) != int(value):
                raise bad
            value = int(value)
        else:
            value = float(value)
        if not math.isfinite(value):
            raise bad
        if self.low is not None and (value < self.low or (value == self.low and not self.low_inclusive)):
            raise bad
        if self.high is not None and (value > self.high or (value == self.high and not self.high_inclusive)):
            raise bad
        return value


def epochs_param(default: int, help: str = "passes over the training data") -> Param:
    return Param("epochs", "int", default, help, low=1, high=500)


def lr_param(default: float, help: str = "SGD learning rate (cosine schedule)") -> Param:
    return Param("lr", "float", default, help, low=0.0, high=10.0, low_inclusive=False,
                 log_scale=True)


def batch_size_param(default: int = 64) -> Param:
    return Param("batch_size", "int", default, "examples per batch", low=1, high=65536)


@dataclass
class UnlearnContext:
    """What a method gets: a copy of the original to change, the frozen original for
    reference, the data, its resolved hyperparameters, progress and cancel."""

    model: LensModel
    original: LensModel
    experiment: Experiment
    params: dict[str, Any]
    progress: Progress
    seed: int

    @property
    def device(self) -> torch.device:
        return self.experiment.device

    def loader(self, part: str, *, shuffle: bool = True, batch_size: int | None = None):
        return self.experiment.loader(part, shuffle=shuffle, seed=self.seed,
                                      batch_size=batch_size or self.params.get("batch_size"))


@dataclass
class Outcome:
    """The unlearned model and what the method wants to show about how it got there."""

    model: LensModel
    curves: dict[str, list[float]] = field(default_factory=dict)  # e.g. loss per epoch
    artifacts: dict[str, np.ndarray] = field(default_factory=dict)  # masks, key usage, ...
    info: dict[str, Any] = field(default_factory=dict)  # steps, stop reason, ...


class Method:
    """Base class: subclasses set the class attributes and implement `unlearn`."""

    name: ClassVar[str]
    title: ClassVar[str]
    summary: ClassVar[str]
    reference: ClassVar[str] = ""
    params: ClassVar[tuple[Param, ...]] = ()

    def resolve_params(self, raw: Mapping[str, Any] | None) -> dict[str, Any]:
        """Defaults filled in, every value validated, unknown names rejected."""
        raw = dict(raw or {})
        known = {p.name: p for p in self.params}
        unknown = sorted(set(raw) - set(known))
        if unknown:
            raise UserError(f"method.params: {self.name} has no parameter(s) {unknown}; "
                            f"allowed: {sorted(known)}")
        return {name: p.validate(raw.get(name, p.default)) for name, p in known.items()}

    def check(self, params: dict[str, Any], model: LensModel) -> None:
        """Checks that need several parameters at once or the model (a UserError naming
        the parameter); the pipeline calls it before any run is recorded."""

    def unlearn(self, ctx: UnlearnContext) -> Outcome:
        raise NotImplementedError
