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


def poisoned_dataset(dataset: Dataset, positions: np.ndarray, spec: PoisonSpec) -> Dataset:
    """`dataset` with the training examples at `positions` triggered and relabelled as
    `spec.target`. The test set and the normalisation statistics stay those of the clean
    data, so clean and poisoned models see inputs scaled alike."""
    check_target(spec, dataset)
    index = torch.tensor(np.asarray(positions), dtype=torch.int64)
    images = dataset.train.images.clone()
    labels = dataset.train.labels.clone()
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
