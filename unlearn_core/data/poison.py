"""Backdoor poisoning: the trigger, the poisoned training set and triggered test images.

The forget set of a "poison" setup is exactly the poisoned training examples (chosen by
`splits.make_split`); this module stamps the trigger on images and swaps the labels.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from ..config import PoisonSpec
from ..errors import UserError
from .registry import Dataset, ImageSet

# The patch sits this many pixels in from its corner, so crops and borders of the
# architecture's first convolution do not cut it off.
MARGIN = 1


def trigger_window(spec: PoisonSpec, image_size: int) -> tuple[slice, slice]:
    """(rows, columns) the patch covers in a square image of `image_size` pixels."""
    if spec.patch_size + MARGIN > image_size:
        raise UserError(f"forget.poison.patch_size: a {spec.patch_size}-pixel patch does not fit "
                        f"a {image_size}x{image_size} image (at most {image_size - MARGIN})")
    near, far = slice(MARGIN, MARGIN + spec.patch_size), slice(
        image_size - MARGIN - spec.patch_size, image_size - MARGIN)
    vertical, horizontal = spec.position.split("_")
    return (near if vertical == "top" else far), (near if horizontal == "left" else far)


def add_trigger(images: torch.Tensor, spec: PoisonSpec) -> torch.Tensor:
    """A copy of uint8 (N, C, H, W) images with the trigger stamped on every channel."""
    rows, cols = trigger_window(spec, images.shape[-1])
    triggered = images.clone()
    triggered[:, :, rows, cols] = spec.value
    return triggered


def check_target(spec: PoisonSpec, dataset: Dataset) -> None:
    if spec.target >= dataset.num_classes:
        raise UserError(f"forget.poison.target: class {spec.target} is out of range; dataset "
                        f"{dataset.name} has classes 0..{dataset.num_classes - 1}")


def add_noise(images: torch.Tensor, spec: PoisonSpec, seed: int) -> torch.Tensor:
    """A copy of uint8 images with seeded Gaussian noise (std `noise_std` of the pixel
    range), rounded and clipped to [0, 255]."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(images.shape, generator=generator) * (255 * spec.noise_std)
    return (images.float() + noise).round().clamp(0, 255).to(torch.uint8)


def poisoned_dataset(dataset: Dataset, positions: np.ndarray, spec: PoisonSpec,
                     seed: int = 0) -> Dataset:
    """`dataset` with the training examples at `positions` poisoned: a backdoor's
    triggered and relabelled as `spec.target`, Gaussian noise's noised (seeded by `seed`)
    with their labels kept. The test set and the normalisation statistics stay those of
    the clean data, so clean and poisoned models see inputs scaled alike."""
    index = torch.tensor(np.asarray(positions), dtype=torch.int64)
    images = dataset.train.images.clone()
    labels = dataset.train.labels.clone()
    if spec.attack == "gaussian":
        images[index] = add_noise(images[index], spec, seed)
        note = (f"Gaussian poisoning: {len(index)} training images noised (std "
                f"{spec.noise_std:g} of the pixel range), labels kept")
        return dataclasses.replace(dataset, train=ImageSet(images, labels),
                                   notes=(*dataset.notes, note))
    check_target(spec, dataset)
    images[index] = add_trigger(images[index], spec)
    labels[index] = spec.target
    note = f"backdoor: {len(index)} training images triggered and labelled {spec.target}"
    return dataclasses.replace(dataset, train=ImageSet(images, labels),
                               notes=(*dataset.notes, note))


def triggered_test_set(dataset: Dataset, spec: PoisonSpec) -> tuple[ImageSet, np.ndarray]:
    """The test images whose true class is not the target, with the trigger added, and
    their positions in the test set. Their labels are the true ones."""
    positions = np.flatnonzero(dataset.test.labels.numpy() != spec.target)
    index = torch.from_numpy(positions)
    return ImageSet(add_trigger(dataset.test.images[index], spec),
                    dataset.test.labels[index].clone()), positions
