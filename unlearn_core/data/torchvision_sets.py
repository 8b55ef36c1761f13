"""torchvision datasets read from a local folder (`data.root`).

torchvision touches the network only when `data.download` is true. The arrays are read
straight from the dataset objects (`.data`, `.targets`, `.labels`), never image by image.
"""

from __future__ import annotations

import os
import numpy as np
import torch
from torchvision import datasets

from ..config import DataSpec
from ..errors import UserError
from .embedded import DIGIT_CLASSES
from .registry import Dataset, ImageSet, build_dataset, register_dataset

_IDX_FILES = ("train-images-idx3-ubyte, train-labels-idx1-ubyte, "
              "t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte")


def _checked_root(spec: DataSpec, expected_files: str) -> str:
    """The folder to read from, or a UserError saying how to provide one."""
    how_to_fix = (f"point data.root to a folder that holds the files ({expected_files}), "
                  f"or tick data.download to fetch them into it")
    if spec.root is None or not spec.root.strip():
        raise UserError(f"data.root: dataset {spec.name!r} is read from a folder and none is "
                        f"set; {how_to_fix}")
    root = os.path.expanduser(spec.root)
    if os.path.exists(root) and not os.path.isdir(root):
        raise UserError(f"data.root: {root!r} is a file, not a folder; {how_to_fix}")
    if not os.path.isdir(root) and not spec.download:
        raise UserError(f"data.root: folder {root!r} does not exist; {how_to_fix}")
    return root


def _open(dataset_class: type, spec: DataSpec, root: str, expected_files: str, **kwargs):
    """Construct a torchvision dataset, turning any failure into a UserError."""
    try:
        return dataset_class(root, download=spec.download, **kwargs)
    except Exception as exc:  # torchvision raises many types for missing or bad files
        hint = "" if spec.download else (
            f"; tick data.download to fetch the files, or point data.root to a folder "
            f"that holds them ({expected_files})")
        raise UserError(f"data.root: could not load {spec.name} from {root!r}: "
                        f"{exc}{hint}") from exc


def _mnist_like(spec: DataSpec, dataset_class: type,
                classes: tuple[str, ...] | None) -> Dataset:
    expected = f"{dataset_class.__name__}/raw/{_IDX_FILES}"
    root = _checked_root(spec, expected)
    parts = []
    for train in (True, False):
        source = _open(dataset_class, spec, root, expected, train=train)
        parts.append(ImageSet(source.data.unsqueeze(1).contiguous(),
                              source.targets.to(torch.int64)))
    return build_dataset(spec.name, *parts, classes or tuple(source.classes))


def _cifar(spec: DataSpec, dataset_class: type, folder: str) -> Dataset:
    root = _checked_root(spec, f"{folder}/")
    parts = []
    for train in (True, False):
        source = _open(dataset_class, spec, root, f"{folder}/", train=train)
        # torchvision keeps CIFAR as (N, H, W, C).
        images = torch.from_numpy(source.data).permute(0, 3, 1, 2).contiguous()
        parts.append(ImageSet(images, torch.tensor(source.targets, dtype=torch.int64)))
    return build_dataset(spec.name, *parts, tuple(source.classes))


@register_dataset("mnist", embedded=False, needs_root=True,
                  description="MNIST digits (28x28, grayscale), 60,000 train / 10,000 test")
def load_mnist(spec: DataSpec) -> Dataset:
    return _mnist_like(spec, datasets.MNIST, DIGIT_CLASSES)


@register_dataset("fashion_mnist", embedded=False, needs_root=True,
                  description="Fashion-MNIST clothing (28x28, grayscale), "
                              "60,000 train / 10,000 test")
def load_fashion_mnist(spec: DataSpec) -> Dataset:
    return _mnist_like(spec, datasets.FashionMNIST, None)


@register_dataset("cifar10", embedded=False, needs_root=True,
                  description="CIFAR-10 objects (32x32, colour), 10 classes, "
                              "50,000 train / 10,000 test")
def load_cifar10(spec: DataSpec) -> Dataset:
    return _cifar(spec, datasets.CIFAR10, "cifar-10-batches-py")


@register_dataset("cifar100", embedded=False, needs_root=True,
                  description="CIFAR-100 objects (32x32, colour), 100 classes, "
                              "50,000 train / 10,000 test")
def load_cifar100(spec: DataSpec) -> Dataset:
    return _cifar(spec, datasets.CIFAR100, "cifar-100-python")


@register_dataset("svhn", embedded=False, needs_root=True,
                  description="SVHN house-number digits (32x32, colour), "
                              "73,257 train / 26,032 test")
def load_svhn(spec: DataSpec) -> Dataset:
    expected = "train_32x32.mat, test_32x32.mat"
    root = _checked_root(spec, expected)
    parts = []
    for split in ("train", "test"):
        source = _open(datasets.SVHN, spec, root, expected, split=split)
        # torchvision already stores SVHN as (N, C, H, W) and maps label 10 to digit 0.
        parts.append(ImageSet(torch.from_numpy(np.ascontiguousarray(source.data)),
                              torch.from_numpy(source.labels.astype(np.int64))))
    return build_dataset(spec.name, *parts, DIGIT_CLASSES)
