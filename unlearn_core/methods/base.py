"""The one interface every unlearning method implements.

A method describes its hyperparameters (`Param`: type, default, range, help) so the app
and the CLI build their forms and their validation from the same description, and it
implements `unlearn(ctx) -> Outcome`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterable, Mapping, Protocol

import numpy as np
import torch

from ..errors import UserError
from ..models import LensModel
from ..progress import Progress
from ..training import Experiment, FitLog, fit

PARAM_KINDS = ("float", "int", "bool", "choice", "floats")


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
        if self.kind == "floats":
            return ("a list of numbers >= 0, not all zero, e.g. 1,2,3 (empty for the "
                    "default)")
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
        if self.kind == "floats":
            return self._validate_floats(value, bad)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        if isinstance(value, float) and not math.isfinite(value):
            raise bad  # before int(): int(inf) is an OverflowError, not a message
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

    @staticmethod
    def _validate_floats(value: Any, bad: UserError) -> list[float]:
        """A list of weights: from a list, or from text "1, 2, 3" (the CLI's and the
        app's form); every entry finite and >= 0, not all zero; [] means the default."""
        if isinstance(value, str):
            texts = [t.strip() for t in value.split(",")] if value.strip() else []
            try:
                value = [float(t) for t in texts]
            except ValueError:
                raise bad from None
        if not isinstance(value, (list, tuple)):
            raise bad
        if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in value):
            raise bad
        weights = [float(v) for v in value]
        if any(not math.isfinite(w) or w < 0 for w in weights) or (weights and not any(weights)):
            raise bad
        return weights


def epochs_param(default: int, help: str = "passes over the training data") -> Param:
    return Param("epochs", "int", default, help, low=1, high=500)


def lr_param(default: float, help: str = "SGD learning rate (cosine schedule)") -> Param:
    return Param("lr", "float", default, help, low=0.0, high=10.0, low_inclusive=False,
                 log_scale=True)


def batch_size_param(default: int = 64) -> Param:
    return Param("batch_size", "int", default, "examples per batch", low=1, high=65536)


class TrainingPlugin(Protocol):
    """A term added to every training step of a method (EC's plug-in). `start(optimizer)`
    comes first, with the method's optimizer: the plug-in trains whatever that one does
    not; `loss()` is added to the method's loss before the backward pass; `after_step()`
    runs after the method's optimizer step (the plug-in steps its own there);
    `end_epoch()` after each epoch."""

    def start(self, optimizer: torch.optim.Optimizer) -> None: ...
    def loss(self) -> torch.Tensor: ...
    def after_step(self) -> None: ...
    def end_epoch(self) -> None: ...


@dataclass
class UnlearnContext:
    """What a method gets: a copy of the original to change, the frozen original for
    reference, the data, its resolved hyperparameters, progress and cancel, and the
    plug-in (if any) its training steps must include. Training through `fit` runs in the
    setup's precision (train.precision)."""

    model: LensModel
    original: LensModel
    experiment: Experiment
    params: dict[str, Any]
    progress: Progress
    seed: int
    plugin: TrainingPlugin | None = None

    def fit(self, model: torch.nn.Module, batches: Callable[[], Iterable[Any]],
            loss_fn: Callable[[Any], torch.Tensor], optimizer: torch.optim.Optimizer, *,
            after_step: Callable[[], None] | None = None,
            stop: Callable[[], bool] | None = None, **kwargs) -> FitLog:
        """`training.fit` with the plug-in's term in every step: methods that train
        through this (and set `plugin_ready`) can be combined with a plug-in."""
        kwargs.setdefault("precision", self.experiment.spec.train.precision)
        plugin = self.plugin
        if plugin is None:
            return fit(model, batches, loss_fn, optimizer, after_step=after_step, stop=stop,
                       **kwargs)

        if kwargs.get("stop_every") is not None:
            # The plug-in's end_epoch rides on the stop check, which stop_every also
            # runs inside an epoch: its per-epoch curves would be split wrongly.
            raise ValueError("ctx.fit: stop_every is not supported with a plug-in")
        plugin.start(optimizer)

        def plugged_after_step() -> None:
            if after_step is not None:
                after_step()
            plugin.after_step()

        def plugged_stop() -> bool:
            plugin.end_epoch()
            return stop is not None and stop()

        return fit(model, batches, lambda batch: loss_fn(batch) + plugin.loss(), optimizer,
                   after_step=plugged_after_step, stop=plugged_stop, **kwargs)

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
    # Weights unlearned outside the lens (an imported checkpoint): the time measured here
    # is only their loading, so the report takes `stated_seconds` (the user's figure for
    # the unlearning) and claims no speed-up without one.
    ran_elsewhere: bool = False
    stated_seconds: float | None = None


# The refusals (Method.frozen_encoder_refusal, bottleneck_refusal) several methods share.
NEEDS_EVERY_GRADIENT = ("it scores every parameter by its gradient, and this model keeps its "
                        "encoder frozen (only its head trains)")
NO_GRADIENT_THROUGH_KEYS = ("it follows the gradient of the logits back to the input or the "
                            "features, and the bottleneck's nearest-key lookup passes none")


class Method:
    """Base class: subclasses set the class attributes and implement `unlearn`."""

    name: ClassVar[str]
    title: ClassVar[str]
    summary: ClassVar[str]
    reference: ClassVar[str] = ""
    params: ClassVar[tuple[Param, ...]] = ()
    # True when every training step goes through `ctx.fit` on `ctx.model` with all its
    # parameters trainable, so a plug-in's gradient reaches the whole network.
    plugin_ready: ClassVar[bool] = False

    def resolve_params(self, raw: Mapping[str, Any] | None) -> dict[str, Any]:
        """Defaults filled in, every value validated, unknown names rejected."""
        raw = dict(raw or {})
        known = {p.name: p for p in self.params}
        unknown = sorted(set(raw) - set(known))
        if unknown:
            raise UserError(f"method.params: {self.name} has no parameter(s) {unknown}; "
                            f"allowed: {sorted(known)}")
        return {name: p.validate(raw.get(name, p.default)) for name, p in known.items()}

    # Why the method cannot run on a model built on a frozen encoder (config.ENCODER_MODELS:
    # dkvb, frozen_linear), or on a DKVB model in particular; "" = it can, training only
    # the parameters that model leaves trainable.
    frozen_encoder_refusal: ClassVar[str] = ""
    bottleneck_refusal: ClassVar[str] = ""

    def accept(self, params: dict[str, Any], model: LensModel) -> None:
        """Everything checked before a run is recorded: that the method can run on this
        kind of model, then `check`."""
        from ..models.dkvb import FrozenEncoderModel, bottleneck_of
        if isinstance(model, FrozenEncoderModel):
            dkvb = bottleneck_of(model) is not None
            refusal = self.frozen_encoder_refusal or (self.bottleneck_refusal if dkvb else "")
            if refusal:
                raise UserError(f"method.name: {self.name} cannot run on model "
                                f"{'dkvb' if dkvb else 'frozen_linear'}: {refusal}")
        self.check(params, model)

    def check(self, params: dict[str, Any], model: LensModel) -> None:
        """Checks that need several parameters at once or the model (a UserError naming
        the parameter); `accept` calls it before any run is recorded."""

    def unlearn(self, ctx: UnlearnContext) -> Outcome:
        raise NotImplementedError
