"""A user's own data: any torch Dataset of (image, label) as a lens Dataset.

Its identity is a content fingerprint: the setup names it "user-<16 hex digits>" (hashed
like any dataset name), so the same images and labels reuse the same trained models and
other data never does. No registry can load it again, so it is kept in the run store's
checkpoint cache (`keep`, entry "data-<fingerprint>") and taken from there by another
process (the app) that opens a run of it (`restore`); without that entry the views that
need the data say so, naming the fingerprint, and the stored report and arrays still show.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
from typing import Any, Sequence

import numpy as np
import torch

from ..config import DataSpec
from ..errors import UserError
from .registry import Dataset, ImageSet, build_dataset

USER_PREFIX = "user-"
_CACHE_PREFIX = "data-"
# Datasets given in this process, by DataSpec name: `load_dataset` finds them here.
_GIVEN: dict[str, Dataset] = {}
# Run stores `load_dataset` restores a user dataset from (`add_source`: the app's store).
_SOURCES: list = []
_LOCK = threading.Lock()


def add_source(cache) -> None:
    """Let `load_dataset` restore user datasets kept in this run store (`keep`): the app
    registers its store, so every page that loads a run's data finds them."""
    with _LOCK:
        if cache not in _SOURCES:
            _SOURCES.append(cache)


def is_user_data(spec: DataSpec) -> bool:
    return spec.name.startswith(USER_PREFIX)


def _image_array(image: Any, where: str) -> np.ndarray:
    """(C, H, W) uint8 pixels from a PIL image, a tensor (C, H, W) / (H, W) or a numpy
    array (H, W, C) / (H, W); floats must be raw intensities in [0, 1]."""
    if hasattr(image, "convert") and hasattr(image, "size"):  # a PIL image
        image = np.asarray(image)
        channels_last = True
    elif isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
        channels_last = False
    elif isinstance(image, np.ndarray):
        channels_last = True
    else:
        raise UserError(f"{where}: the image is a {type(image).__name__}; expected a PIL image, "
                        f"a torch tensor (C, H, W) or a numpy array (H, W, C)")
    if image.ndim == 2:
        image = image[None]
    elif image.ndim == 3 and channels_last:
        image = image.transpose(2, 0, 1)
    elif image.ndim != 3:
        raise UserError(f"{where}: the image has shape {image.shape}; expected 2 or 3 "
                        f"dimensions")
    if image.dtype == np.uint8:
        return image
    if image.dtype == bool or not np.issubdtype(image.dtype, np.number):
        raise UserError(f"{where}: image dtype {image.dtype}; expected uint8 or floats in [0, 1]")
    low, high = float(image.min()), float(image.max())
    if np.issubdtype(image.dtype, np.integer):
        if low < 0 or high > 255:
            raise UserError(f"{where}: integer pixel values span [{low:g}, {high:g}]; "
                            f"expected 0..255")
        return image.astype(np.uint8)
    if low < -1e-6 or high > 1 + 1e-6:
        # The lens normalises with the training set's own mean and std (as for every
        # dataset); values already normalised would be normalised twice.
        raise UserError(f"{where}: float pixel values span [{low:.3g}, {high:.3g}]; expected "
                        f"raw intensities in [0, 1] (drop a Normalize transform: the lens "
                        f"normalises with the training set's mean and std itself)")
    return np.rint(image * 255).clip(0, 255).astype(np.uint8)


def _label(label: Any, where: str) -> int:
    if isinstance(label, torch.Tensor) and label.numel() == 1:
        label = label.item()
    if isinstance(label, np.generic):
        label = label.item()
    if isinstance(label, bool) or not isinstance(label, int) or label < 0:
        raise UserError(f"{where}: the label is {label!r}; expected a class index (an "
                        f"integer >= 0)")
    return label


def _image_set(items, role: str) -> ImageSet:
    try:
        count = len(items)
    except TypeError:
        raise UserError(f"{role}: expected a torch Dataset with a length (map-style), got "
                        f"{type(items).__name__}") from None
    if count == 0:
        raise UserError(f"{role}: the dataset is empty")
    images, labels, shape = [], [], None
    for index in range(count):
        where = f"{role}[{index}]"
        item = items[index]
        if not isinstance(item, (tuple, list)) or len(item) < 2:
            raise UserError(f"{where}: expected an (image, label) pair, got "
                            f"{type(item).__name__}")
        pixels = _image_array(item[0], where)
        if shape is None:
            shape = pixels.shape
            if shape[1] != shape[2]:
                raise UserError(f"{where}: images are {shape[1]}x{shape[2]}; the lens needs "
                                f"square images (resize or crop them, e.g. with "
                                f"torchvision.transforms.Resize((s, s)))")
        elif pixels.shape != shape:
            raise UserError(f"{where}: image shape {pixels.shape} differs from the first "
                            f"image's {shape}; every image needs the same (C, H, W)")
        images.append(pixels)
        labels.append(_label(item[1], where))
    return ImageSet(torch.from_numpy(np.stack(images)), torch.tensor(labels, dtype=torch.int64))


def fingerprint(dataset: Dataset) -> str:
    digest = hashlib.sha256(json.dumps(list(dataset.classes)).encode())
    for part in (dataset.train, dataset.test):
        digest.update(str(tuple(part.images.shape)).encode())
        digest.update(part.images.numpy().tobytes())
        digest.update(part.labels.numpy().tobytes())
    return digest.hexdigest()[:16]


def from_torch(train_set, test_set, classes: Sequence[str] | None = None) -> DataSpec:
    """Convert a train and a test torch Dataset of (image, label), make them loadable in
    this process, and return the DataSpec naming them by fingerprint. Class names:
    `classes`, else the train set's `.classes` (torchvision's), else "0", "1", ..."""
    train = _image_set(train_set, "train_set")
    test = _image_set(test_set, "test_set")
    if train.images.shape[1:] != test.images.shape[1:]:
        raise UserError(f"test_set: images are {tuple(test.images.shape[1:])}, the train set's "
                        f"{tuple(train.images.shape[1:])}; both need the same (C, H, W)")
    names = classes if classes is not None else getattr(train_set, "classes", None)
    top = int(max(train.labels.max(), test.labels.max()))
    if names is None:
        names = [str(c) for c in range(top + 1)]
    names = [str(n) for n in names]
    if top >= len(names):
        raise UserError(f"classes: {len(names)} class name(s), but a label is {top}; give one "
                        f"name per class index")
    dataset = build_dataset("user data", train, test, tuple(names))
    spec = DataSpec(USER_PREFIX + fingerprint(dataset))
    with _LOCK:
        _GIVEN[spec.name] = dataclasses.replace(dataset, name=spec.name)
    return spec


def given(spec: DataSpec) -> Dataset:
    """The user dataset `spec` names, if this process has it (given or restored), or can
    restore it from a store registered with `add_source`."""
    with _LOCK:
        sources = list(_SOURCES)
    for cache in sources:
        restore(spec, cache)
    with _LOCK:
        dataset = _GIVEN.get(spec.name)
    if dataset is None:
        raise UserError(f"data.name: {spec.name} is a dataset given from Python (Lens) and "
                        f"not kept in this run store's cache ({_CACHE_PREFIX}"
                        f"{spec.name[len(USER_PREFIX):]}); this view needs the data: open "
                        f"the run from the notebook that made it (its stored report and "
                        f"figures show here)")
    return dataset


def keep(spec: DataSpec, cache) -> None:
    """Store the user dataset `spec` names in the run store's cache, once."""
    dataset = given(spec)
    tensors = {"train_images": dataset.train.images, "train_labels": dataset.train.labels,
               "test_images": dataset.test.images, "test_labels": dataset.test.labels}
    cache.cache_put(_CACHE_PREFIX + spec.name[len(USER_PREFIX):], tensors,
                    {"role": "data", "classes": list(dataset.classes)})


def restore(spec: DataSpec, cache) -> None:
    """Make a user dataset loadable in this process from the store's cache, where it was
    kept; a no-op for any other dataset or one already here (a missing entry is reported
    by `load_dataset` when the data is asked for)."""
    if not is_user_data(spec):
        return
    with _LOCK:
        if spec.name in _GIVEN:
            return
    entry = cache.cache_get(_CACHE_PREFIX + spec.name[len(USER_PREFIX):])
    if entry is None:
        return
    tensors, meta = entry
    dataset = build_dataset(spec.name, ImageSet(tensors["train_images"], tensors["train_labels"]),
                            ImageSet(tensors["test_images"], tensors["test_labels"]),
                            tuple(meta["classes"]))
    with _LOCK:
        _GIVEN[spec.name] = dataset
