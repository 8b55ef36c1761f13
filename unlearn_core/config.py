"""Specs: frozen, validated descriptions of what to run.

Every spec validates itself on construction (messages name the parameter and what is
allowed), round-trips through JSON, and has a stable content hash. Names of datasets,
models and methods are checked by their registries, which live in lower layers.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping

from .errors import UserError

FORGET_KINDS = ("classes", "random", "non_iid", "indices", "poison")
POISON_POSITIONS = ("bottom_right", "bottom_left", "top_right", "top_left")
# "backdoor": a patch and a target label; "gaussian": Gaussian noise on the image, label
# kept (Pawelczyk et al., ICLR 2025), read back by the noise imprint on input gradients.
POISON_ATTACKS = ("backdoor", "gaussian")
DEVICES = ("auto", "cpu", "cuda", "mps")
AUGMENTATIONS = ("none", "crop", "crop_flip")
# Training arithmetic: "fp32", or mixed precision (autocast) in bf16 or fp16 (with a
# gradient scaler), on CUDA only.
PRECISIONS = ("fp32", "bf16", "fp16")
# How the retrain oracle is initialised: "same" as the original (the setup's seed: the
# difference between the two is the forget data's alone) or "independent" (another seed,
# as a retrain from scratch would be: it also carries seed noise, which a twin original
# trained with that seed measures).
ORACLE_INITS = ("same", "independent")
# The independent oracle's seed (initialisation and data order) is the setup's plus this.
INDEPENDENT_SEED_OFFSET = 1_000_003


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise UserError(message)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def _int_tuple(name: str, values: Any) -> tuple[int, ...]:
    try:
        items = tuple(values)
    except TypeError:
        raise UserError(f"{name}: expected a list of integers, got {values!r}") from None
    for item in items:
        _require(_is_int(item) and item >= 0,
                 f"{name}: expected non-negative integers, got {item!r}")
    return items


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def content_hash(obj: Any) -> str:
    """A short, stable hash of any JSON-able value."""
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:16]


class _Spec:
    """JSON round-trip and hashing shared by every spec."""

    # Fields added after specs were first stored: left out of `to_dict` while at their
    # default, so the hashes of specs that predate them are unchanged.
    OMITTED_AT_DEFAULT: ClassVar[tuple[str, ...]] = ()

    def to_dict(self) -> dict:
        # Nested specs write their own dicts, so a spec that leaves out unset fields (as
        # ModelSpec does) is stored the same way inside a setup as alone.
        return {f.name: value.to_dict() if isinstance(value, _Spec) else copy.deepcopy(value)
                for f in dataclasses.fields(self) for value in (getattr(self, f.name),)
                if not (f.name in self.OMITTED_AT_DEFAULT and value == f.default)}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], field_path: str = ""):
        """`field_path` ("data", "forget.poison") names the spec in messages when it is
        read as a field of another."""
        where = field_path or cls.__name__
        _require(isinstance(raw, Mapping),
                 f"{where}: expected an object, got {type(raw).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - known)
        _require(not unknown, f"{where}: unknown field(s) {unknown}; "
                              f"allowed: {sorted(known)}")
        values = dict(raw)
        for f in dataclasses.fields(cls):
            nested = _NESTED.get(f.type)
            if nested is not None and f.name in values:
                values[f.name] = nested.from_dict(
                    values[f.name], f"{field_path}.{f.name}" if field_path else f.name)
            elif f.name in values and isinstance(values[f.name], list):
                values[f.name] = tuple(values[f.name])
        return cls(**values)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str):
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UserError(f"{cls.__name__}: not valid JSON ({exc})") from None
        return cls.from_dict(raw)

    @property
    def hash(self) -> str:
        return content_hash(self.to_dict())


def _nested_spec(value: Any, kind: type, field_path: str):
    """An optional nested spec given as the spec, as a mapping (parsed JSON) or as None
    (its defaults)."""
    if value is None:
        return kind()
    if isinstance(value, Mapping):
        value = kind.from_dict(value, field_path)
    _require(isinstance(value, kind), f"{field_path}: expected an object, got {value!r}")
    return value


@dataclass(frozen=True)
class DataSpec(_Spec):
    """Which dataset. `root` is needed by the torchvision datasets and ImageFolder;
    `download` lets torchvision fetch into `root` (only when the user asks)."""

    name: str = "mnist5k"
    root: str | None = None
    download: bool = False
    image_size: int = 32  # ImageFolder images are resized to this square size

    def __post_init__(self):
        _require(isinstance(self.name, str) and self.name != "",
                 "data.name: expected a dataset name")
        _require(self.root is None or isinstance(self.root, str),
                 f"data.root: expected a folder path, got {self.root!r}")
        if self.root is not None and self.root.strip():
            from .validate import user_path
            user_path(self.root, "data.root")  # NUL, `~` without HOME, unencodable
        if self.root is not None and self.root.strip():
            # "~/data" or "data" would mean another folder from another working
            # directory under the same spec hash, and so reuse models trained on other
            # data; the resolved folder is what is hashed, stored and shown.
            object.__setattr__(self, "root", os.path.realpath(os.path.expanduser(self.root)))
        _require(isinstance(self.download, bool),
                 f"data.download: expected true or false, got {self.download!r}")
        _require(_is_int(self.image_size) and 4 <= self.image_size <= 512,
                 f"data.image_size: expected an integer in [4, 512], got {self.image_size!r}")


@dataclass(frozen=True)
class PoisonSpec(_Spec):
    """A backdoor in the training data: `fraction` of the training set, drawn from the
    classes other than `target`, gets a square trigger (`patch_size` pixels a side, every
    channel set to `value`, one pixel in from the `position` corner) and the label
    `target`.

    The defaults suit the embedded default (mnist5k, small_cnn, seed 0): 5% poisoned,
    a white 4x4 patch in the bottom-right corner (MNIST digits leave that corner black),
    target class 0; the original then predicts 0 for nearly every triggered test image
    while its clean test accuracy stays within a point of the clean model's
    (docs/benchmarks/poison-mnist5k-cpu-2core.md).

    `attack` "gaussian" poisons without a trigger or a label (Pawelczyk et al., ICLR
    2025): `fraction` of the training set, from every class, gets seeded Gaussian noise of
    standard deviation `noise_std` (a fraction of the pixel range) and keeps its label;
    target and patch fields are then unused. `attack` and `noise_std` are left out of
    `to_dict` for a backdoor, so its hashes do not depend on them."""

    fraction: float = 0.05
    target: int = 0
    patch_size: int = 4
    value: int = 255
    position: str = "bottom_right"
    attack: str = "backdoor"
    noise_std: float = 0.3

    OMITTED_AT_DEFAULT = ("attack", "noise_std")

    def __post_init__(self):
        _require(_is_number(self.fraction) and 0 < self.fraction < 1,
                 f"forget.poison.fraction: expected a number in (0, 1), got {self.fraction!r}")
        _require(_is_int(self.target) and self.target >= 0,
                 f"forget.poison.target: expected a class id (an integer >= 0), got {self.target!r}")
        _require(_is_int(self.patch_size) and self.patch_size >= 1,
                 f"forget.poison.patch_size: expected an integer >= 1, got {self.patch_size!r}")
        _require(_is_int(self.value) and 0 <= self.value <= 255,
                 f"forget.poison.value: expected a pixel value in [0, 255], got {self.value!r}")
        _require(self.position in POISON_POSITIONS,
                 f"forget.poison.position: expected one of {list(POISON_POSITIONS)}, "
                 f"got {self.position!r}")
        _require(self.attack in POISON_ATTACKS,
                 f"forget.poison.attack: expected one of {list(POISON_ATTACKS)}, "
                 f"got {self.attack!r}")
        _require(_is_number(self.noise_std) and 0 < self.noise_std <= 1,
                 f"forget.poison.noise_std: expected a number in (0, 1] (a fraction of the "
                 f"pixel range), got {self.noise_std!r}")
        if self.attack == "backdoor":  # a backdoor adds no noise: equal backdoors hash equally
            object.__setattr__(self, "noise_std", PoisonSpec.noise_std)

    def describe(self) -> str:
        if self.attack == "gaussian":
            return f"Gaussian noise on {self.fraction:.0%} (std {self.noise_std:g})"
        return (f"backdoor {self.fraction:.0%} -> class {self.target} "
                f"({self.patch_size}x{self.patch_size} patch, {self.position.replace('_', '-')})")


@dataclass(frozen=True)
class ForgetSpec(_Spec):
    """Which training examples to forget.

    kind "classes": every training example of `classes`.
    kind "random": an IID `fraction` of the whole training set.
    kind "non_iid": a `fraction` of the training examples of each of `classes`.
    kind "indices": the training examples at `indices` (positions in the train set).
    kind "poison": the training examples a backdoor `poison` (PoisonSpec) was planted in;
    the original is trained on the poisoned training set, the oracle on the clean rest.
    `poison` is None for every other kind and then left out of `to_dict`, so the hashes
    of specs that predate it are unchanged.
    """

    kind: str = "classes"
    classes: tuple[int, ...] = (0,)
    fraction: float = 0.1
    indices: tuple[int, ...] = ()
    poison: PoisonSpec | None = None

    OMITTED_AT_DEFAULT = ("poison",)

    def __post_init__(self):
        _require(self.kind in FORGET_KINDS,
                 f"forget.kind: expected one of {list(FORGET_KINDS)}, got {self.kind!r}")
        object.__setattr__(self, "classes", tuple(sorted(set(
            _int_tuple("forget.classes", self.classes)))))
        object.__setattr__(self, "indices", tuple(sorted(set(
            _int_tuple("forget.indices", self.indices)))))
        if self.kind in ("classes", "non_iid"):
            _require(len(self.classes) > 0,
                     f"forget.classes: kind {self.kind!r} needs at least one class")
        if self.kind in ("random", "non_iid"):
            _require(_is_number(self.fraction) and 0 < self.fraction < 1,
                     f"forget.fraction: expected a number in (0, 1), got {self.fraction!r}")
        if self.kind == "indices":
            _require(len(self.indices) > 0, "forget.indices: kind 'indices' needs at "
                                            "least one training-set index")
        poison = self.poison
        if self.kind == "poison":
            poison = _nested_spec(poison, PoisonSpec, "forget.poison")
        else:
            _require(poison is None, f"forget.poison: only kind 'poison' plants a backdoor, "
                                     f"not kind {self.kind!r}")
        object.__setattr__(self, "poison", poison)
        # Fields a kind ignores are normalised so equal forget sets hash equally.
        if self.kind not in ("classes", "non_iid"):
            object.__setattr__(self, "classes", ())
        if self.kind not in ("random", "non_iid"):
            object.__setattr__(self, "fraction", 0.0)
        if self.kind != "indices":
            object.__setattr__(self, "indices", ())

    def describe(self) -> str:
        if self.kind == "classes":
            return "class " + ", ".join(map(str, self.classes))
        if self.kind == "random":
            return f"random {self.fraction:.0%}"
        if self.kind == "non_iid":
            return f"{self.fraction:.0%} of class " + ", ".join(map(str, self.classes))
        if self.kind == "poison":
            return self.poison.describe()
        return f"{len(self.indices)} listed examples"



# Models built on the frozen trunk (the "encoder") of another registered model's trained
# original: "dkvb" adds a discrete key-value bottleneck, "frozen_linear" keeps the
# encoder's own linear head (the baselines of the DKVB paper train only that head).
ENCODER_MODELS = ("dkvb", "frozen_linear")
DEFAULT_ENCODER = "small_cnn"


@dataclass(frozen=True)
class BottleneckSpec(_Spec):
    """The discrete key-value bottleneck of a "dkvb" model and how it is trained.

    C = `codebooks`, each with P = `keys` keys of dimension `key_dim` (the encoder output
    is projected into each codebook by its own fixed random matrix). The keys are fitted
    by EMA k-means (`decay`) over `kmeans_epochs` passes of training features and then
    frozen; the values (one d_v = number-of-classes vector per key) are trained with SGD
    for `value_epochs` at `value_lr`. That rate is large because a value gets 1/C of the
    logits' gradient, and only from the examples that select its key: on mnist5k, 1000
    gives the encoder model's own test accuracy, loss and confidence (100 leaves the
    softmax at 0.85 mean confidence, 10 near uniform). The defaults are scaled to the
    embedded data (64 x 512 keys of dimension 8: 98.0% test accuracy on mnist5k, seed 0,
    the encoder model's own being 97.9%); the paper's scale is PAPER_SCALE.
    """

    codebooks: int = 64
    keys: int = 512
    key_dim: int = 8
    decay: float = 0.95
    kmeans_epochs: int = 5
    value_epochs: int = 10
    value_lr: float = 1000.0

    def __post_init__(self):
        # At least 2 keys: masking a key hands its examples to the next-nearest one.
        for name, low, high in (("codebooks", 1, 4096), ("keys", 2, 65536), ("key_dim", 1, 1024),
                                ("kmeans_epochs", 1, 100), ("value_epochs", 1, 1000)):
            value = getattr(self, name)
            _require(_is_int(value) and low <= value <= high,
                     f"model.bottleneck.{name}: expected an integer in [{low}, {high}], "
                     f"got {value!r}")
        _require(_is_number(self.decay) and 0 < self.decay < 1,
                 f"model.bottleneck.decay: expected a number in (0, 1), got {self.decay!r}")
        _require(_is_number(self.value_lr) and 0 < self.value_lr <= 1e5,
                 f"model.bottleneck.value_lr: expected a number in (0, 1e5], got {self.value_lr!r}")


# The scale of the paper's bottleneck (Shah et al.), for BottleneckSpec(**PAPER_SCALE).
PAPER_SCALE = {"codebooks": 256, "keys": 4096, "key_dim": 14}


# The model built from a user's own code: `ModelSpec.entry_point` names the function.
USER_MODULE = "user_module"
# Registered families of adapted models (models/torchvision_models.py, timm_models.py):
# "torchvision/resnet18" means torchvision's resnet18.
ADAPTED_PREFIXES = ("torchvision/", "timm/")


def _is_adapted(name: str) -> bool:
    return name == USER_MODULE or name.startswith(ADAPTED_PREFIXES)


@dataclass(frozen=True)
class ModelSpec(_Spec):
    """Which architecture. `width` multiplies the channel counts.

    The models in ENCODER_MODELS are built on the trained original of another model,
    `encoder` (default small_cnn, at this `width`); "dkvb" also has a `bottleneck`
    (default BottleneckSpec()). Both fields are None for every other model and are then
    left out of `to_dict`, so the hashes of specs that predate them are unchanged.

    Adapted models (any nn.Module classifier made a chain of stages, models/adapter.py):
    "user_module" is built by the user's `entry_point` ("module:function", returning the
    nn.Module; `source_hash`, the hash of that module's file, is filled in when absent, so
    edited code makes another setup, never reusing models trained from the old one);
    "torchvision/<arch>" and "timm/<name>" are those libraries' models. For all of them
    `probe_layers` (module names; empty: a default) and `head` (the nn.Linear classifier;
    None: the one producing the output) say how to split them. torchvision models also
    take `small_stem` (the ImageNet stem adapted to small images) and `weights` (a
    safetensors or weights-only torch file to start from; `weights_hash`, its content
    hash, is filled in). Every one of these fields is left out of `to_dict` at its
    default, so the hashes of specs that predate them are unchanged.
    """

    name: str = "small_cnn"
    width: float = 1.0
    encoder: str | None = None
    bottleneck: BottleneckSpec | None = None
    entry_point: str | None = None
    source_hash: str | None = None
    probe_layers: tuple[str, ...] = ()
    head: str | None = None
    small_stem: bool = False
    weights: str | None = None
    weights_hash: str | None = None

    OMITTED_AT_DEFAULT = ("encoder", "bottleneck", "entry_point", "source_hash", "probe_layers",
                          "head", "small_stem", "weights", "weights_hash")

    def __post_init__(self):
        _require(isinstance(self.name, str) and self.name != "",
                 "model.name: expected a model name")
        _require(_is_number(self.width) and 0 < self.width <= 8,
                 f"model.width: expected a number in (0, 8], got {self.width!r}")
        _require(self.name == "dkvb" or self.bottleneck is None,
                 f"model.bottleneck: only dkvb has a bottleneck, not {self.name!r}")
        self._check_adapted()
        if self.name not in ENCODER_MODELS:
            _require(self.encoder is None, f"model.encoder: only {' and '.join(ENCODER_MODELS)} "
                                           f"are built on an encoder, not {self.name!r}")
            return
        encoder = DEFAULT_ENCODER if self.encoder is None else self.encoder
        _require(isinstance(encoder, str) and encoder != "" and encoder not in ENCODER_MODELS,
                 f"model.encoder: expected the name of a model to take the trunk of (not "
                 f"{' or '.join(ENCODER_MODELS)}), got {encoder!r}")
        object.__setattr__(self, "encoder", encoder)
        bottleneck = self.bottleneck
        if self.name == "dkvb":
            bottleneck = _nested_spec(bottleneck, BottleneckSpec, "model.bottleneck")
        object.__setattr__(self, "bottleneck", bottleneck)

    def _check_adapted(self) -> None:
        from .entry_points import check_entry_point_text, entry_point_source_hash
        adapted = _is_adapted(self.name)
        for name in ("probe_layers", "head"):
            _require(adapted or not getattr(self, name),
                     f"model.{name}: only adapted models ({USER_MODULE}, "
                     f"{', '.join(p + '...' for p in ADAPTED_PREFIXES)}) take {name}, "
                     f"not {self.name!r}")
        layers = self.probe_layers
        _require(not isinstance(layers, str) and all(isinstance(x, str) and x for x in layers),
                 f"model.probe_layers: expected a list of module names, got {layers!r}")
        object.__setattr__(self, "probe_layers", tuple(layers))
        _require(self.head is None or (isinstance(self.head, str) and self.head != ""),
                 f"model.head: expected the name of the nn.Linear classifier, got {self.head!r}")
        torchvision = self.name.startswith("torchvision/")
        _require(isinstance(self.small_stem, bool),
                 f"model.small_stem: expected true or false, got {self.small_stem!r}")
        _require(torchvision or not self.small_stem,
                 f"model.small_stem: only torchvision/... models have an ImageNet stem to "
                 f"adapt, not {self.name!r}")
        _require(torchvision or self.weights is None,
                 f"model.weights: only torchvision/... models start from a weights file, not "
                 f"{self.name!r} (a user module loads its own)")
        if self.weights is not None:
            from .validate import user_path
            path = os.path.realpath(user_path(self.weights, "model.weights"))
            _require(os.path.isfile(path), f"model.weights: file not found: {path}")
            object.__setattr__(self, "weights", path)
            if self.weights_hash is None:
                with open(path, "rb") as handle:
                    object.__setattr__(self, "weights_hash",
                                       hashlib.file_digest(handle, "sha256").hexdigest()[:16])
        else:
            _require(self.weights_hash is None,
                     "model.weights_hash: only set with model.weights")
        if self.name != USER_MODULE:
            _require(self.entry_point is None and self.source_hash is None,
                     f"model.entry_point: only model {USER_MODULE!r} is built by an entry "
                     f"point, not {self.name!r}")
            return
        _require(self.entry_point is not None,
                 f"model.entry_point: model {USER_MODULE!r} needs 'module:function', the "
                 f"function returning your nn.Module")
        object.__setattr__(self, "entry_point",
                           check_entry_point_text(self.entry_point, "model.entry_point"))
        _require(self.width == 1.0, f"model.width: a user module sets its own size; "
                                    f"expected 1, got {self.width!r}")
        if self.source_hash is None:
            object.__setattr__(self, "source_hash",
                               entry_point_source_hash(self.entry_point, field="model.entry_point"))


@dataclass(frozen=True)
class TrainSpec(_Spec):
    """The recipe for the original and, unchanged, for the retrain oracle:
    SGD with momentum and a cosine learning-rate schedule."""

    epochs: int = 6
    lr: float = 0.05
    batch_size: int = 64
    momentum: float = 0.9
    weight_decay: float = 5e-4
    augment: str = "none"  # "crop" (digits) or "crop_flip" (natural images)
    # Mixed precision changes the weights training produces, so it is part of the recipe
    # (and of the hashes), unlike the device; left out of `to_dict` at fp32.
    precision: str = "fp32"

    OMITTED_AT_DEFAULT = ("precision",)

    def __post_init__(self):
        _require(_is_int(self.epochs) and 1 <= self.epochs <= 1000,
                 f"train.epochs: expected an integer in [1, 1000], got {self.epochs!r}")
        _require(_is_number(self.lr) and 0 < self.lr <= 10,
                 f"train.lr: expected a number in (0, 10], got {self.lr!r}")
        _require(_is_int(self.batch_size) and 1 <= self.batch_size <= 65536,
                 f"train.batch_size: expected an integer in [1, 65536], got {self.batch_size!r}")
        _require(_is_number(self.momentum) and 0 <= self.momentum < 1,
                 f"train.momentum: expected a number in [0, 1), got {self.momentum!r}")
        _require(_is_number(self.weight_decay) and 0 <= self.weight_decay < 1,
                 f"train.weight_decay: expected a number in [0, 1), got {self.weight_decay!r}")
        _require(self.augment in AUGMENTATIONS,
                 f"train.augment: expected one of {list(AUGMENTATIONS)}, got {self.augment!r}")
        _require(self.precision in PRECISIONS,
                 f"train.precision: expected one of {list(PRECISIONS)}, got {self.precision!r}")


@dataclass(frozen=True)
class MethodSpec(_Spec):
    """An unlearning method by registry name (or a user's, see methods/user.py), with its
    hyperparameters. Missing hyperparameters take the method's documented defaults (filled
    in by the registry)."""

    name: str = "finetune"
    params: dict = field(default_factory=dict, hash=False)
    # A user's method ("module:function", or weights imported as "imported:<hash>"): the
    # hash of its source code (of the weights for an import), filled in when the run is
    # resolved, so edited code makes another run. Left out of `to_dict` while None.
    source_hash: str | None = None

    OMITTED_AT_DEFAULT = ("source_hash",)

    def __post_init__(self):
        _require(isinstance(self.name, str) and self.name != "",
                 "method.name: expected a method name")
        _require(self.source_hash is None or isinstance(self.source_hash, str),
                 f"method.source_hash: expected text, got {self.source_hash!r}")
        _require(isinstance(self.params, Mapping),
                 f"method.params: expected a mapping, got {type(self.params).__name__}")
        for key, value in self.params.items():
            _require(isinstance(key, str), f"method.params: keys must be strings, got {key!r}")
            if isinstance(value, float):
                _require(math.isfinite(value),
                         f"method.params.{key}: expected a finite number, got {value!r}")
        object.__setattr__(self, "params", dict(sorted(self.params.items())))


@dataclass(frozen=True)
class SetupSpec(_Spec):
    """Everything that fixes the original model and the oracle: data, forget set,
    architecture, recipe and seed. `device` is where to compute and is not part of
    any hash: the same weights are reused whatever device produced them."""

    data: DataSpec = field(default_factory=DataSpec)
    forget: ForgetSpec = field(default_factory=ForgetSpec)
    model: ModelSpec = field(default_factory=ModelSpec)
    train: TrainSpec = field(default_factory=TrainSpec)
    seed: int = 0
    device: str = "auto"
    # "trained": the original is trained with `train`; "imported:<hash>": a user's
    # checkpoint with that content hash stands in for it.
    original: str = "trained"
    oracle_init: str = "same"  # one of ORACLE_INITS
    # The same for the retrain oracle: "imported:<hash>" when a user's checkpoint, trained
    # without the forget set elsewhere, is the reference every run is judged against.
    oracle: str = "trained"

    OMITTED_AT_DEFAULT = ("oracle_init", "oracle")

    def __post_init__(self):
        for role in ("original", "oracle"):
            source = getattr(self, role)
            known = source == "trained" or isinstance(source, str) and re.fullmatch(
                r"imported:[0-9a-f]{16}", source) is not None
            _require(known, f"{role}: expected 'trained' or 'imported:<16 hex digits>', "
                            f"got {source!r}")
        _require(self.oracle == "trained" or self.oracle_init == "same",
                 f"oracle_init: {self.oracle_init!r} retrains the oracle from another seed, but "
                 f"the oracle is imported ({self.oracle}); leave oracle_init 'same'")
        for name, kind in (("data", DataSpec), ("forget", ForgetSpec),
                           ("model", ModelSpec), ("train", TrainSpec)):
            _require(isinstance(getattr(self, name), kind),
                     f"{name}: expected a {kind.__name__}")
        _require(_is_int(self.seed) and 0 <= self.seed < 2**31,
                 f"seed: expected an integer in [0, 2^31), got {self.seed!r}")
        _require(self.device in DEVICES,
                 f"device: expected one of {list(DEVICES)}, got {self.device!r}")
        _require(self.oracle_init in ORACLE_INITS,
                 f"oracle_init: expected one of {list(ORACLE_INITS)}, got {self.oracle_init!r}")

    @property
    def oracle_seed(self) -> int:
        """The seed the oracle is initialised and shuffled with."""
        return self.seed + (INDEPENDENT_SEED_OFFSET if self.oracle_init == "independent" else 0)

    def _hashed(self, *parts: str) -> str:
        return content_hash({p: getattr(self, p).to_dict() if isinstance(getattr(self, p), _Spec)
                             else getattr(self, p) for p in parts})

    @property
    def original_key(self) -> str:
        """Cache key of the original model (the forget set does not matter)."""
        if self.original != "trained":
            return self._hashed("data", "model", "original")
        if self.forget.kind == "poison":
            # The original learns from the poisoned training set, so the poison is part of it.
            return self._hashed("data", "forget", "model", "train", "seed")
        return self._hashed("data", "model", "train", "seed")

    @property
    def oracle_key(self) -> str:
        """Cache key of the retrain oracle (trained on the retain set only)."""
        if self.oracle != "trained":  # the forget set it was trained without matters
            return self._hashed("data", "forget", "model", "oracle")
        if self.oracle_init != "same":
            return self._hashed("data", "forget", "model", "train", "seed", "oracle_init")
        return self._hashed("data", "forget", "model", "train", "seed")

    @property
    def twin_key(self) -> str:
        """Cache key of the twin original: the original's recipe and data with the
        independent oracle's seed, the measure of seed noise."""
        return content_hash({"twin_of": self.original_key, "seed": self.oracle_seed})

    @property
    def hash(self) -> str:
        return self.oracle_key


@dataclass(frozen=True)
class RunSpec(_Spec):
    """One unlearning run: a setup and a method."""

    setup: SetupSpec = field(default_factory=SetupSpec)
    method: MethodSpec = field(default_factory=MethodSpec)

    def __post_init__(self):
        _require(isinstance(self.setup, SetupSpec), "setup: expected a SetupSpec")
        _require(isinstance(self.method, MethodSpec), "method: expected a MethodSpec")

    @property
    def hash(self) -> str:
        return content_hash({"setup": self.setup.hash, "method": self.method.to_dict()})


_NESTED: dict[Any, type] = {
    "DataSpec": DataSpec, "ForgetSpec": ForgetSpec, "PoisonSpec": PoisonSpec, "ModelSpec": ModelSpec,
    "TrainSpec": TrainSpec, "MethodSpec": MethodSpec, "SetupSpec": SetupSpec,
}
