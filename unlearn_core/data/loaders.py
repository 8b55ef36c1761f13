"""Batches straight from in-memory tensors: no torch DataLoader, no per-sample Python."""

from __future__ import annotations

import copy
import math
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..config import AUGMENTATIONS
from .registry import ImageSet


class TensorLoader:
    """Normalised float32 batches `(x, y)` of `images` at `indices`, on `device`.

    The uint8 subset moves to the device once; each batch is converted there as
    (x / 255 - mean) / std. With `shuffle`, every pass uses a fresh permutation from a
    generator seeded once with `seed`, so a seed fixes the whole sequence of epochs.
    `augment` is one of AUGMENTATIONS: "crop" is a random crop with zero padding of
    max(1, H // 8); "crop_flip" adds a random horizontal flip (natural images, never
    digits). Done for the whole batch at once on the device.
    """

    def __init__(self, images: ImageSet, indices: Sequence[int] | np.ndarray | torch.Tensor,
                 *, mean: Sequence[float], std: Sequence[float], batch_size: int,
                 shuffle: bool = False, seed: int = 0, device: str | torch.device = "cpu",
                 augment: str = "none", drop_last: bool = False):
        if augment not in AUGMENTATIONS:
            raise ValueError(f"augment must be one of {AUGMENTATIONS}, got {augment!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        channels = images.images.shape[1]
        if not len(mean) == len(std) == channels:
            raise ValueError(f"mean and std need {channels} values, got {len(mean)} and "
                             f"{len(std)}")
        if isinstance(indices, torch.Tensor):
            positions = indices.to("cpu", torch.int64).reshape(-1)
        else:
            positions = torch.from_numpy(np.array(indices, dtype=np.int64).reshape(-1))
        if len(positions) and not 0 <= int(positions.min()) <= int(positions.max()) < len(images):
            raise ValueError(f"indices must lie in 0..{len(images) - 1}")

        self.device = torch.device(device)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.augment = augment
        self.drop_last = drop_last
        self.num_examples = len(positions)
        self._images = images.images.index_select(0, positions).to(self.device)
        self._labels = images.labels.index_select(0, positions).to(self.device)
        # (x / 255 - mean) / std == x * scale + shift, two cheap in-place ops per batch.
        std_tensor = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        mean_tensor = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        self._scale = (1.0 / (255.0 * std_tensor)).to(self.device)
        self._shift = (-mean_tensor / std_tensor).to(self.device)
        # Random draws happen on the CPU so a seed gives the same batches on any device.
        self._generator = torch.Generator().manual_seed(seed)

    def rebatched(self, batch_size: int) -> "TensorLoader":
        """The same examples (the device copy shared) in batches of `batch_size`."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        other = copy.copy(self)
        other.batch_size = batch_size
        return other

    def __len__(self) -> int:
        if self.drop_last:
            return self.num_examples // self.batch_size
        return math.ceil(self.num_examples / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = None
        if self.shuffle:
            order = torch.randperm(self.num_examples, generator=self._generator).to(self.device)
        for batch in range(len(self)):
            start = batch * self.batch_size
            stop = min(start + self.batch_size, self.num_examples)
            if order is None:
                images, labels = self._images[start:stop], self._labels[start:stop]
            else:
                chosen = order[start:stop]
                images = self._images.index_select(0, chosen)
                labels = self._labels.index_select(0, chosen)
            if self.augment != "none":
                images = self._crop_and_flip(images, flip=self.augment == "crop_flip")
            yield images.float().mul_(self._scale).add_(self._shift), labels

    def _crop_and_flip(self, images: torch.Tensor, flip: bool) -> torch.Tensor:
        """Random crop of the zero-padded batch and, if `flip`, a random horizontal
        flip, per image."""
        count, channels, height, width = images.shape
        pad = max(1, height // 8)
        padded = F.pad(images, (pad, pad, pad, pad))
        top = torch.randint(0, 2 * pad + 1, (count, 1, 1, 1), generator=self._generator)
        left = torch.randint(0, 2 * pad + 1, (count, 1, 1, 1), generator=self._generator)
        flipped = torch.rand((count, 1, 1, 1), generator=self._generator) < 0.5
        if not flip:
            flipped = torch.zeros_like(flipped)
        rows = top + torch.arange(height).view(1, 1, height, 1)
        columns = torch.arange(width).view(1, 1, 1, width)
        # A flipped image reads its columns right to left.
        columns = left + torch.where(flipped, width - 1 - columns, columns)
        rows = rows.to(self.device).expand(count, channels, height, padded.shape[3])
        columns = columns.to(self.device).expand(count, channels, height, width)
        return padded.gather(2, rows).gather(3, columns)
