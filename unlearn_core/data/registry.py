"""Dataset types and the registry of datasets by name.

Images are kept in memory as uint8 (N, C, H, W); normalisation with the train-set
per-channel mean and std happens per batch in `TensorLoader`.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from ..config import DataSpec
from ..errors import UserError, refuse_duplicate

# Full-size datasets are large (SVHN train is about 220 MB as uint8), so only the
# most recently used few stay in memory.
_MAX_CACHED_DATASETS = 4


@dataclass(frozen=True, eq=False)
class ImageSet:
    """Images as uint8 (N, C, H, W) with int64 labels (N,)."""

    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self):
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(f"ImageSet.images: expected uint8 (N, C, H, W), got "
                             f"{self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.dtype != torch.int64 or self.labels.shape != (len(self.images),):
            raise ValueError(f"ImageSet.labels: expected int64 ({len(self.images)},), got "
                             f"{self.labels.dtype} {tuple(self.labels.shape)}")

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True, eq=False)
class Dataset:
    """A train and a test set of square images, with class names and train statistics."""

    name: str
    train: ImageSet
    test: ImageSet
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    notes: tuple[str, ...] = ()

    def __post_init__(self):
        shape = tuple(self.train.images.shape[1:])
        if tuple(self.test.images.shape[1:]) != shape or shape[1] != shape[2]:
            raise ValueError(f"Dataset {self.name}: train {shape} and test "
                             f"{tuple(self.test.images.shape[1:])} must share one square shape")
        if not len(self.mean) == len(self.std) == shape[0]:
            raise ValueError(f"Dataset {self.name}: mean/std need one value per channel")
        for part in (self.train, self.test):
            if len(part) and not 0 <= int(part.labels.min()) <= int(part.labels.max()) < len(
                    self.classes):
                raise ValueError(f"Dataset {self.name}: labels must lie in "
                                 f"0..{len(self.classes) - 1}")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_channels(self) -> int:
        return self.train.images.shape[1]

    @property
    def image_size(self) -> int:
        return self.train.images.shape[2]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.images.shape[1:])


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    embedded: bool     # ships with the installed packages: no folder, no download
    needs_root: bool   # reads from DataSpec.root
    description: str


DatasetLoader = Callable[[DataSpec], Dataset]

_REGISTRY: dict[str, tuple[DatasetInfo, DatasetLoader]] = {}
_CACHE: OrderedDict[DataSpec, Dataset] = OrderedDict()
_CACHE_LOCK = threading.Lock()


def register_dataset(name: str, *, embedded: bool, needs_root: bool, description: str):
    """Decorator registering `fn(DataSpec) -> Dataset` under `name`."""

    def decorate(loader: DatasetLoader) -> DatasetLoader:
        refuse_duplicate("dataset", name, _REGISTRY)
        _REGISTRY[name] = (DatasetInfo(name, embedded, needs_root, description), loader)
        return loader

    return decorate


def list_datasets() -> list[DatasetInfo]:
    return [info for info, _ in _REGISTRY.values()]


def load_dataset(spec: DataSpec) -> Dataset:
    """The dataset `spec` names, loaded once per process and then shared (never mutate it).
    A user's own data ("user-<fingerprint>", data/user.py) is the one given in this process
    or restored from a run store."""
    from .user import given, is_user_data
    if is_user_data(spec):
        return given(spec)
    if spec.name not in _REGISTRY:
        raise UserError(f"data.name: unknown dataset {spec.name!r}; allowed: "
                        f"{sorted(_REGISTRY)}")
    info, loader = _REGISTRY[spec.name]
    key = _cache_key(spec, info)
    # One lock for all loads: two threads asking for the same data wait for one load.
    with _CACHE_LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
        dataset = loader(spec)
        _CACHE[key] = dataset
        while len(_CACHE) > _MAX_CACHED_DATASETS:
            _CACHE.popitem(last=False)
        return dataset


def _cache_key(spec: DataSpec, info: DatasetInfo) -> DataSpec:
    """Fields that cannot change the loaded data are dropped so equal data loads once."""
    if info.embedded:
        return DataSpec(name=spec.name)
    return dataclasses.replace(spec, download=False)


# Building blocks shared by the loaders.

def stratified_holdout(labels: np.ndarray, test_fraction: float,
                       seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train and test positions with round(test_fraction * n_c) test examples per class
    (at least one train and, for classes of two or more, one test example), both in a
    seeded random order so that positions do not follow the classes."""
    rng = np.random.default_rng(seed)
    train_parts, test_parts = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        n_test = min(max(round(test_fraction * len(members)), 1), len(members) - 1)
        test_parts.append(members[:n_test])
        train_parts.append(members[n_test:])
    train = rng.permutation(np.concatenate(train_parts))
    test = rng.permutation(np.concatenate(test_parts))
    return train, test


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 (N, C, H, W) images scaled to [0, 1]."""
    channels = images.shape[1]
    total = torch.zeros(channels, dtype=torch.float64)
    total_sq = torch.zeros(channels, dtype=torch.float64)
    # Chunks keep the float64 copy small for full-size datasets.
    for chunk in images.split(4096):
        values = chunk.to(torch.float64) / 255.0
        total += values.sum(dim=(0, 2, 3))
        total_sq += values.square().sum(dim=(0, 2, 3))
    count = images.shape[0] * images.shape[2] * images.shape[3]
    mean = total / count
    std = (total_sq / count - mean.square()).clamp_min(0).sqrt()
    # A constant channel would divide by zero when normalising; leave it unscaled.
    std = torch.where(std < 1e-6, torch.ones_like(std), std)
    return tuple(mean.tolist()), tuple(std.tolist())


def build_dataset(name: str, train: ImageSet, test: ImageSet, classes: tuple[str, ...],
                  notes: tuple[str, ...] = ()) -> Dataset:
    """A Dataset whose normalisation statistics come from `train`."""
    mean, std = channel_stats(train.images)
    return Dataset(name=name, train=train, test=test, classes=tuple(classes),
                   mean=mean, std=std, notes=tuple(notes))
