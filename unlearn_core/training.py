"""Training: the experiment context, one SGD loop for everything that trains, and the
original model and retrain oracle with their checkpoint cache."""

from __future__ import annotations

import dataclasses
import hashlib
import math
import threading
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.ops import StochasticDepth

from .config import ENCODER_MODELS, SetupSpec, TrainSpec, content_hash
from .data import Dataset, Split, TensorLoader, load_dataset, make_split
from .data.poison import poisoned_dataset
from .errors import DivergedError, UserError
from .io import load_into_model, load_state_dict
from .memory import evaluation_batches
from .models import LensModel, build_model
from .models.dkvb import EmaKMeans, bottleneck_of, encoder_spec
from .progress import Progress
from .vocabulary import REFERENCE_ROLES

PARTS = ("forget", "retain", "train", "test", "test_forget", "test_retain")


def resolve_device(name: str = "auto") -> torch.device:
    """"auto" picks CUDA, then MPS, then CPU; an explicit device must exist."""
    mps = getattr(torch.backends, "mps", None)
    mps_ok = mps is not None and mps.is_available()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if mps_ok else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("device: cuda is not available on this machine; choose auto or cpu")
    if name == "mps" and not mps_ok:
        raise UserError("device: mps is not available on this machine; choose auto or cpu")
    if name not in ("cpu", "cuda", "mps"):
        raise UserError(f"device: expected one of auto, cpu, cuda, mps; got {name!r}")
    return torch.device(name)


_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def check_precision(precision: str, device: torch.device) -> None:
    """Mixed precision only where it is supported and pays: on CUDA (bf16 where the GPU
    has it). On a CPU autocast is slower than fp32 for these models, so it is refused."""
    if precision == "fp32":
        return
    if device.type != "cuda":
        raise UserError(f"train.precision: {precision} mixed precision runs on CUDA only; this "
                        f"setup computes on {device.type}; use fp32")
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        raise UserError(f"train.precision: this GPU ({torch.cuda.get_device_name(device)}) has "
                        f"no bf16; use fp16 or fp32")


def autocast(precision: str, device: torch.device):
    """The forward passes of a training step in `precision` ("fp32": as they are)."""
    if precision == "fp32":
        return nullcontext()
    return torch.autocast(device.type, dtype=_AUTOCAST_DTYPES[precision])


def on_device(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """`model` on `device`; on CUDA a convolutional model is stored channels-last, the
    layout its tensor cores run convolutions in (inputs need not change: a convolution
    with channels-last weights gives channels-last outputs)."""
    model = model.to(device)
    if device.type == "cuda" and any(isinstance(m, torch.nn.Conv2d) for m in model.modules()):
        model = model.to(memory_format=torch.channels_last)
    return model


# nn's default initialisations draw from torch's one global generator, which all threads
# of a process share: two jobs building models at once (two app sessions, or a job still
# winding down after Cancel while the next starts) would interleave their draws and get
# other weights than their seed says. Seeded draws take this lock and leave the global
# stream as they found it (every global draw of this package is inside one).
_GLOBAL_RNG_LOCK = threading.RLock()


@contextmanager
def seeded(seed: int):
    """Draws from torch's global generator inside the block start from `seed`, whatever
    other threads do meanwhile."""
    with _GLOBAL_RNG_LOCK, torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


@dataclass
class Experiment:
    """A setup made concrete: the data, the split and the device."""

    spec: SetupSpec
    dataset: Dataset
    split: Split
    device: torch.device

    def part(self, name: str):
        """(ImageSet, indices) of a named part of the data."""
        if name not in PARTS:
            raise ValueError(f"part: expected one of {PARTS}, got {name!r}")
        if name in ("train", "test"):
            images = getattr(self.dataset, name)
            return images, np.arange(len(images))
        images = self.dataset.test if name.startswith("test_") else self.dataset.train
        return images, getattr(self.split, name)

    def loader(self, name: str, *, batch_size: int | None = None, shuffle: bool = False,
               augment: str = "none", seed: int | None = None) -> TensorLoader:
        images, indices = self.part(name)
        return TensorLoader(images, indices, mean=self.dataset.mean, std=self.dataset.std,
                            batch_size=batch_size or self.spec.train.batch_size,
                            shuffle=shuffle, seed=self.spec.seed if seed is None else seed,
                            device=self.device, augment=augment)

    def new_model(self, seed: int | None = None) -> LensModel:
        """A freshly initialised model of the setup's architecture."""
        with seeded(self.spec.seed if seed is None else seed):
            model = build_model(self.spec.model, in_channels=self.dataset.in_channels,
                                num_classes=self.dataset.num_classes,
                                image_size=self.dataset.image_size)
        return on_device(model, self.device)


def prepare(spec: SetupSpec) -> Experiment:
    """Load the data, make the split and pick the device; every input error surfaces
    here, before any training starts."""
    device = resolve_device(spec.device)
    check_precision(spec.train.precision, device)
    dataset = load_dataset(spec.data)
    split = make_split(dataset, spec.forget, spec.seed)
    if spec.forget.kind == "poison":
        dataset = poisoned_dataset(dataset, split.forget, spec.forget.poison, spec.seed)
    if spec.oracle_init != "same" and (spec.model.name in ENCODER_MODELS or
                                       spec.original != "trained"):
        raise UserError(f"oracle_init: 'independent' needs an original trained here (its twin "
                        f"is trained with the oracle's seed), not model {spec.model.name!r} "
                        f"with original {spec.original!r}; use 'same'")
    # Build once to validate the architecture against this data's image size.
    build_model(spec.model, in_channels=dataset.in_channels,
                num_classes=dataset.num_classes, image_size=dataset.image_size)
    return Experiment(spec, dataset, split, device)


@dataclass
class FitLog:
    """What a training loop did: mean loss per epoch, steps taken, wall time."""

    epoch_losses: list[float] = field(default_factory=list)
    steps: int = 0
    seconds: float = 0.0
    # Steps taken by the end of each epoch (the last one partial when `stop` fired
    # mid-epoch): where per-step curves split into epochs.
    epoch_ends: list[int] = field(default_factory=list)


def sgd(params: Iterable[torch.nn.Parameter], *, lr: float, momentum: float = 0.9,
        weight_decay: float = 0.0) -> torch.optim.SGD:
    return torch.optim.SGD(list(params), lr=lr, momentum=momentum, weight_decay=weight_decay)


def fit(model: torch.nn.Module, batches: Callable[[], Iterable[Any]],
        loss_fn: Callable[[Any], torch.Tensor], optimizer: torch.optim.Optimizer, *,
        epochs: int, progress: Progress, label: str = "training",
        steps_per_epoch: int | None = None,
        after_step: Callable[[], None] | None = None,
        stop: Callable[[], bool] | None = None,
        stop_every: int | None = None, precision: str = "fp32") -> FitLog:
    """The one training loop: `batches()` yields an epoch's batches, `loss_fn(batch)`
    returns the loss to minimise. A cosine schedule runs over all steps; a non-finite
    loss raises DivergedError instead of producing a NaN model; `stop()` is checked
    after each epoch (early stopping rules of the methods) and, with `stop_every` = k,
    also after every k-th step within an epoch (a rule that must not wait for the end of
    the epoch). `model` is put back in train mode after a check inside an epoch, since a
    check usually evaluates it. `precision` "bf16"/"fp16" runs `loss_fn` under autocast
    (fp16 with a gradient scaler, whose skipped steps on overflow are normal)."""
    if stop_every is not None and stop_every < 1:
        raise ValueError(f"stop_every: expected a positive number of steps, got {stop_every}")
    per_epoch = steps_per_epoch if steps_per_epoch is not None else len(batches())
    total = max(1, epochs * per_epoch)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
    log = FitLog()
    started = time.perf_counter()
    stopped = False
    device = next(model.parameters()).device
    scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None
    for epoch in range(epochs):
        model.train()
        running, count = 0.0, 0
        checked_at = -1  # the step count of the last check inside this epoch
        for batch in batches():
            try:
                loss = _step(batch, loss_fn, optimizer, scaler, precision, device, label,
                             epoch)
            except torch.OutOfMemoryError:
                # The batch size is part of the recipe: halving it would change the numbers.
                raise UserError(
                    f"batch_size: {label} ran out of {device} memory at a batch of "
                    f"{_batch_rows(batch)} examples; choose a smaller batch size (the "
                    "setup's train.batch_size, or the method's batch_size)") from None
            if after_step is not None:
                after_step()
            scheduler.step()
            log.steps += 1
            running += loss.item()
            count += 1
            progress.update(log.steps / total,
                            f"{label}: epoch {epoch + 1}/{epochs}, loss {running / count:.3f}")
            if stop is not None and stop_every is not None and log.steps % stop_every == 0:
                checked_at = log.steps
                if stop():
                    stopped = True
                    break
                model.train()
        log.epoch_losses.append(running / max(count, 1))
        log.epoch_ends.append(log.steps)
        if stopped:
            break
        if stop is not None and checked_at != log.steps and stop():
            break
    log.seconds = time.perf_counter() - started
    return log


def _step(batch: Any, loss_fn: Callable[[Any], torch.Tensor], optimizer: torch.optim.Optimizer,
          scaler: torch.amp.GradScaler | None, precision: str, device: torch.device,
          label: str, epoch: int) -> torch.Tensor:
    """One optimisation step of `fit` on `batch`; returns its loss."""
    with autocast(precision, device):
        loss = loss_fn(batch)
    if not torch.isfinite(loss):
        raise DivergedError(f"{label}: the loss became {loss.item()} in epoch "
                            f"{epoch + 1}; lower the learning rate")
    optimizer.zero_grad(set_to_none=True)
    if scaler is None:
        loss.backward()
        optimizer.step()
    else:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    return loss


def _batch_rows(batch: Any) -> int | str:
    """How many examples a batch holds (its first tensor's rows), for messages."""
    while isinstance(batch, (tuple, list)) and batch:
        batch = batch[0]
    return batch.shape[0] if isinstance(batch, torch.Tensor) and batch.dim() else "?"


def repeat_forever(loader: Iterable[Any]) -> Iterator[Any]:
    """Batches of `loader` without end, reshuffled on every pass (unlike itertools.cycle,
    which replays the first pass)."""
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            raise ValueError("repeat_forever: the loader yields no batches")


def train_classifier(model: LensModel, exp: Experiment, part: str, recipe: TrainSpec,
                     progress: Progress, label: str, seed: int | None = None) -> FitLog:
    """Supervised training with a recipe (SGD, momentum, cosine); `seed` fixes the
    data order (the setup's seed by default)."""
    loader = exp.loader(part, batch_size=recipe.batch_size, shuffle=True,
                        augment=recipe.augment, seed=seed)
    optimizer = sgd(model.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                    weight_decay=recipe.weight_decay)

    def loss_fn(batch):
        x, y = batch
        return F.cross_entropy(model(x), y)

    # Dropout draws from torch's global generator: seeded, a retrain with the oracle's seed
    # is the oracle (MobileNetV3 and EfficientNet have dropout heads). The seed holds a
    # process-wide lock, so only models that draw take it.
    draws = _draws_randomness(model)
    with seeded(exp.spec.seed if seed is None else seed) if draws else nullcontext():
        return fit(model, lambda: loader, loss_fn, optimizer, epochs=recipe.epochs,
                   progress=progress, label=label, precision=recipe.precision)


_RANDOM_MODULES = (torch.nn.Dropout, torch.nn.Dropout1d, torch.nn.Dropout2d, torch.nn.Dropout3d,
                   torch.nn.AlphaDropout, torch.nn.FeatureAlphaDropout, StochasticDepth)


def _draws_randomness(model: torch.nn.Module) -> bool:
    return any(isinstance(m, _RANDOM_MODULES) and m.p > 0 for m in model.modules())


def predict(model: torch.nn.Module, loader: TensorLoader) -> tuple[np.ndarray, np.ndarray]:
    """Softmax probabilities and labels over a loader, in eval mode; in smaller batches
    than the loader's if those do not fit the device (`memory.evaluation_batches`)."""
    return evaluation_batches(model, loader.batch_size, "predictions",
                              lambda size: _predict(model, loader.rebatched(size)))


@torch.no_grad()
def _predict(model: torch.nn.Module, loader: TensorLoader) -> tuple[np.ndarray, np.ndarray]:
    model.eval()
    probs, labels = [], []
    for x, y in loader:
        probs.append(torch.softmax(model(x).float(), dim=1).cpu())
        labels.append(y.cpu())
    if not probs:
        return np.zeros((0, 0), np.float32), np.zeros(0, np.int64)
    return torch.cat(probs).numpy(), torch.cat(labels).numpy()


class CheckpointCache(Protocol):
    def cache_get(self, key: str, on_damage: Callable[[str], None] | None = None
                  ) -> tuple[dict[str, torch.Tensor], dict] | None: ...
    def cache_put(self, key: str, state_dict: dict[str, torch.Tensor], meta: dict) -> None: ...


@dataclass
class TrainedModel:
    model: LensModel
    meta: dict  # seconds, steps, device, test_accuracy, role, key


def _from_cache(exp: Experiment, cache: CheckpointCache, key: str, role: str,
                progress: Progress) -> TrainedModel | None:
    # A damaged entry is set aside by the cache and made again: say so in the progress.
    cached = cache.cache_get(key, on_damage=lambda note: progress.update(0.0, f"{role}: {note}"))
    if cached is None:
        return None
    state, meta = cached
    model = exp.new_model()
    model.load_state_dict(state)
    model.eval()
    progress.update(1.0, f"{role}: loaded from cache")
    return TrainedModel(model, meta)


def _trained(exp: Experiment, cache: CheckpointCache, key: str, role: str, part: str,
             progress: Progress, seed: int | None = None) -> TrainedModel:
    """`role` trained on `part` with the setup's recipe, initialised and shuffled with
    `seed` (the setup's by default), or loaded from the cache under `key`."""
    cached = _from_cache(exp, cache, key, role, progress)
    if cached is not None:
        return cached
    if role in ("original", "oracle") and getattr(exp.spec, role) != "trained":
        raise UserError(f"{role}: the imported checkpoint {getattr(exp.spec, role)} is not in "
                        "the run store's cache; import it again")
    model = exp.new_model(seed)
    log = train_classifier(model, exp, part, exp.spec.train, progress, label=f"training {role}",
                           seed=seed)
    probs, labels = predict(model, exp.loader("test", batch_size=512))
    meta = {"role": role, "key": key, "seconds": log.seconds, "steps": log.steps,
            "device": str(exp.device), "epoch_losses": log.epoch_losses,
            "test_accuracy": float((probs.argmax(1) == labels).mean()),
            "train_size": int(len(exp.part(part)[1]))}
    cache.cache_put(key, {k: v.detach().cpu() for k, v in model.state_dict().items()}, meta)
    model.eval()
    return TrainedModel(model, meta)


def reference_key(spec: SetupSpec, role: str) -> str:
    """Checkpoint-cache key of the "original", the "oracle" or the "twin" of a setup.

    A "frozen_linear" model has its encoder model's checkpoints (the same weights). A
    "dkvb" original also depends on the seed and recipe when its encoder is an imported
    checkpoint (whose own key leaves them out): the bottleneck is trained with them.
    """
    if spec.model.name == "frozen_linear":
        return reference_key(encoder_setup(spec), role)
    if spec.model.name == "dkvb" and role == "original":
        return "original-" + content_hash({"original": spec.original_key, "seed": spec.seed,
                                           "train": spec.train.to_dict()})
    if role == "twin":
        return "twin-" + spec.twin_key
    return f"{role}-" + (spec.original_key if role == "original" else spec.oracle_key)


def get_original(exp: Experiment, cache: CheckpointCache, progress: Progress) -> TrainedModel:
    """The original model, trained on the whole training set (cached by spec hash)."""
    if exp.spec.model.name in ENCODER_MODELS:
        return _on_encoder(exp, cache, "original", progress)
    return _trained(exp, cache, reference_key(exp.spec, "original"), "original", "train", progress)


def get_oracle(exp: Experiment, cache: CheckpointCache, progress: Progress) -> TrainedModel:
    """The retrain oracle: the original's recipe on the retain set only (cached)."""
    if exp.spec.model.name in ENCODER_MODELS:
        return _on_encoder(exp, cache, "oracle", progress)
    return _trained(exp, cache, reference_key(exp.spec, "oracle"), "oracle", "retain", progress,
                    seed=exp.spec.oracle_seed)


def get_twin(exp: Experiment, cache: CheckpointCache, progress: Progress) -> TrainedModel:
    """The twin original of a setup with an independent oracle: the original's data and
    recipe with the oracle's seed. How far it sits from the original is seed noise, the
    floor under which a difference to the oracle means nothing (cached)."""
    return _trained(exp, cache, reference_key(exp.spec, "twin"), "twin", "train", progress,
                    seed=exp.spec.oracle_seed)


# --- models built on another model's trunk (models/dkvb.py) ----------------------------

KMEANS_BATCH = 256


def encoder_setup(spec: SetupSpec) -> SetupSpec:
    """The setup of the model whose trunk a "dkvb" or "frozen_linear" model uses."""
    return dataclasses.replace(spec, model=encoder_spec(spec.model))


def _on_encoder(exp: Experiment, cache: CheckpointCache, role: str,
                progress: Progress) -> TrainedModel:
    """The original or the oracle of a model built on an encoder model's trunk.

    The encoder comes from the encoder model's own original or oracle (cached, trained
    with the setup's recipe when missing). So the oracle is a full retrain on the retain
    set: its encoder never saw the forget set either, its keys are fitted and its values
    trained on retain data only. "frozen_linear" is that model itself; "dkvb" fits its
    keys and trains its values on the encoder's features (`train_bottleneck`) and is
    cached under its own key.
    """
    key = reference_key(exp.spec, role)
    if exp.spec.model.name == "dkvb":
        cached = _from_cache(exp, cache, key, role, progress)
        if cached is not None:
            return cached
    model = exp.new_model()
    encoder_exp = Experiment(encoder_setup(exp.spec), exp.dataset, exp.split, exp.device)
    get = get_original if role == "original" else get_oracle
    encoder = get(encoder_exp, cache, progress.stage(0.0, 0.6))
    if exp.spec.model.name == "frozen_linear":
        model.load_state_dict(encoder.model.state_dict())
        model.eval()
        return TrainedModel(model, encoder.meta)
    for name in model.frozen_stages:
        model.stages[name].load_state_dict(encoder.model.stages[name].state_dict())
    part = "train" if role == "original" else "retain"
    log = train_bottleneck(model, exp, part, progress.stage(0.6, 1.0))
    probs, labels = predict(model, exp.loader("test", batch_size=512))
    encoder_seconds = encoder.meta.get("seconds")
    meta = {"role": role, "key": key, "encoder_key": encoder.meta.get("key"),
            "bottleneck_seconds": log.seconds, "encoder_seconds": encoder_seconds,
            # From scratch: the encoder's training as well (None for an imported one).
            "seconds": None if encoder_seconds is None else encoder_seconds + log.seconds,
            "steps": log.steps, "device": str(exp.device), "epoch_losses": log.epoch_losses,
            "test_accuracy": float((probs.argmax(1) == labels).mean()),
            "encoder_test_accuracy": encoder.meta.get("test_accuracy"),
            "train_size": int(len(exp.part(part)[1]))}
    cache.cache_put(key, {k: v.detach().cpu() for k, v in model.state_dict().items()}, meta)
    model.eval()
    return TrainedModel(model, meta)


@torch.no_grad()
def encode(model: LensModel, loader: TensorLoader, layer: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Outputs of probe layer `layer` (eval mode) and the labels, over a loader."""
    model.eval()
    features, labels = [], []
    for x, y in loader:
        features.append(model.forward_features(x, [layer])[layer])
        labels.append(y)
    return torch.cat(features), torch.cat(labels)


def train_bottleneck(model: LensModel, exp: Experiment, part: str, progress: Progress) -> FitLog:
    """Fit the keys of a DKVB model by EMA k-means on the encoder features of `part`, then
    freeze them and train the values (cross-entropy on the mean of the fetched values)
    with SGD, momentum 0.9, a cosine schedule and the recipe's batch size. The encoder
    runs once, and as keys and encoder are frozen the key each example selects is found
    once too: value training only fetches and averages."""
    bottleneck = bottleneck_of(model)
    spec = exp.spec.model.bottleneck
    layer = model.encoder_output
    started = time.perf_counter()
    features, labels = encode(model, exp.loader(part, batch_size=512), layer)
    generator = torch.Generator().manual_seed(exp.spec.seed)
    with torch.no_grad():
        queries = bottleneck.project(features)
        kmeans = EmaKMeans(bottleneck, queries, spec.decay, generator)
        for epoch in range(spec.kmeans_epochs):
            order = torch.randperm(len(queries), generator=generator).to(queries.device)
            for batch in order.split(KMEANS_BATCH):
                kmeans.update(queries[batch])
            progress.update(0.3 * (epoch + 1) / spec.kmeans_epochs,
                            f"fitting keys: k-means pass {epoch + 1}/{spec.kmeans_epochs}")
        selection = bottleneck.nearest(queries)
    batch_size = exp.spec.train.batch_size

    def batches():
        order = torch.randperm(len(features), generator=generator).to(features.device)
        return [(selection[i], labels[i]) for i in order.split(batch_size)]

    def loss_fn(batch):
        keys, y = batch
        return F.cross_entropy(model.classifier(bottleneck.fetch(keys).flatten(1)), y)

    log = fit(model, batches, loss_fn, sgd([bottleneck.values], lr=spec.value_lr, momentum=0.9),
              epochs=spec.value_epochs, progress=progress.stage(0.3, 1.0),
              label="training the values", steps_per_epoch=math.ceil(len(features) / batch_size))
    log.seconds = time.perf_counter() - started
    return log


def check_reference_import(spec: SetupSpec, role: str, option: str | None = None) -> None:
    """Refuse, naming `option` (default: the CLI's --<role>-checkpoint), a reference the
    setup cannot take from a user: an encoder-built model's oracle, or an oracle when the
    setup asks for an independent initialisation."""
    option = option or f"--{role}-checkpoint"
    if role not in REFERENCE_ROLES:
        raise UserError(f"role: expected one of {list(REFERENCE_ROLES)}, got {role!r}")
    if spec.model.name in ENCODER_MODELS and role == "oracle":
        raise UserError(f"{option}: a {spec.model.name!r} model's oracle is built on its encoder "
                        "model's oracle; import the encoder model's oracle instead")
    if role == "oracle" and spec.oracle_init != "same":
        raise UserError(f"{option}: an imported oracle has its own initialisation; leave "
                        f"oracle_init 'same' (got {spec.oracle_init!r})")


def import_reference(spec: SetupSpec, cache: CheckpointCache, path: str,
                     role: str, source: str | None = None) -> SetupSpec:
    """Make a user's checkpoint the "original" or the "oracle" of `spec`; returns the
    setup that uses it. `source` names the file in the meta where `path` is a temporary
    copy (an upload); by default the path as resolved.

    Loaded weights-only (safetensors or `torch.load(weights_only=True)`): a corrupt file
    or one of another architecture is refused with a UserError before anything is cached.
    The other reference is still trained with the setup's recipe, which the user's
    checkpoint may not have followed; an imported oracle is trusted to have been trained
    without the setup's forget set (the lens cannot check that).
    """
    check_reference_import(spec, role)
    # Only read: the weights are copied into the store's cache; the meta names the file
    # as resolved, wherever it was typed from.
    path = Path(path).expanduser().resolve()
    source = source or str(path)
    exp = prepare(spec)
    model = exp.new_model()
    state = load_state_dict(path)
    load_into_model(model, state, source=source)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    imported = dataclasses.replace(spec, **{role: f"imported:{digest}"})
    probs, labels = predict(model, exp.loader("test", batch_size=512))
    meta = {"role": role, "key": reference_key(imported, role),
            "imported_from": source, "seconds": None, "steps": 0, "device": str(exp.device),
            "epoch_losses": [], "test_accuracy": float((probs.argmax(1) == labels).mean()),
            "train_size": len(exp.part("train" if role == "original" else "retain")[1])}
    cache.cache_put(meta["key"], {k: v.detach().cpu() for k, v in model.state_dict().items()}, meta)
    return imported


def import_original(spec: SetupSpec, cache: CheckpointCache, path: str) -> SetupSpec:
    """`import_reference` of the original."""
    return import_reference(spec, cache, path, "original")


def speedup(reference_seconds: float | None, seconds: float) -> float | None:
    """Oracle seconds over the run's; None where the oracle's time is not known (an
    imported oracle) or not a number."""
    if reference_seconds is None or seconds <= 0 or not math.isfinite(reference_seconds):
        return None
    return reference_seconds / seconds
