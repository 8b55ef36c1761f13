"""Any folder of images with one sub-folder per class.

If the root holds `train/` and `test/` (or `val/`) sub-folders those are the split;
otherwise a stratified 80/20 split with the fixed split seed 0 is made. Images are
resized to `data.image_size` square and kept as RGB, or as grayscale when every image
is grayscale. Files that cannot be read as images are skipped and counted in `notes`.
Images are decoded with PIL only; nothing is unpickled.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from ..config import DataSpec
from ..errors import UserError
from .embedded import SPLIT_SEED, TEST_FRACTION
from .registry import Dataset, ImageSet, build_dataset, register_dataset, stratified_holdout

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp",
                    ".ppm", ".pgm", ".pbm")
GRAYSCALE_MODES = ("1", "L", "LA", "I", "I;16", "F")
TEST_FOLDER_NAMES = ("test", "val")
_MAX_NAMED_SKIPS = 3


@dataclass
class _Images:
    """Images read so far: RGB arrays with labels, and what was skipped."""

    pixels: list[np.ndarray] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    all_grayscale: bool = True
    skipped: list[str] = field(default_factory=list)


def _class_folders(folder: str) -> list[str]:
    return sorted(entry.name for entry in os.scandir(folder)
                  if entry.is_dir() and not entry.name.startswith("."))


def _image_files(folder: str) -> list[str]:
    """Image files under `folder`, in nested folders too, in a stable order."""
    found = []
    for parent, subfolders, files in os.walk(folder):
        subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
        found += [os.path.join(parent, name) for name in sorted(files)
                  if name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")]
    return found


def _read_into(into: _Images, path: str, label: int, size: int, root: str) -> None:
    try:
        with Image.open(path) as image:
            image.load()
            grayscale = image.mode in GRAYSCALE_MODES
            rgb = image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
    # PIL reports unreadable or corrupt files with any of these.
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        into.skipped.append(os.path.relpath(path, root))
        return
    into.pixels.append(np.asarray(rgb, dtype=np.uint8))
    into.labels.append(label)
    into.all_grayscale &= grayscale


def _read_classes(folder: str, classes: list[str], size: int, root: str,
                  into: _Images) -> list[int]:
    """Read every class sub-folder of `folder`; returns the image count per class."""
    counts = []
    for label, name in enumerate(classes):
        before = len(into.labels)
        for path in _image_files(os.path.join(folder, name)):
            _read_into(into, path, label, size, root)
        counts.append(len(into.labels) - before)
    return counts


def _to_tensors(images: _Images, positions: np.ndarray, channels: int) -> ImageSet:
    if len(positions) == 0:
        size = images.pixels[0].shape[0]
        return ImageSet(torch.zeros((0, channels, size, size), dtype=torch.uint8),
                        torch.zeros(0, dtype=torch.int64))
    stacked = np.stack([images.pixels[i] for i in positions])[..., :channels]
    return ImageSet(torch.from_numpy(stacked).permute(0, 3, 1, 2).contiguous(),
                    torch.tensor([images.labels[i] for i in positions], dtype=torch.int64))


def _check_classes(root: str, classes: list[str], counts: list[int]) -> None:
    if sum(counts) == 0:
        raise UserError(f"data.root: no readable images found in {root!r}; expected one "
                        f"sub-folder per class holding image files "
                        f"({', '.join(IMAGE_EXTENSIONS)})")
    with_images = [name for name, count in zip(classes, counts) if count]
    if len(with_images) < 2:
        raise UserError(f"data.root: {root!r} needs at least 2 class sub-folders with "
                        f"images, found {len(with_images)} ({with_images})")


@register_dataset("imagefolder", embedded=False, needs_root=True,
                  description="Your own images: a folder with one sub-folder per class "
                              "(optionally inside train/ and test/); resized to "
                              "data.image_size")
def load_imagefolder(spec: DataSpec) -> Dataset:
    if spec.root is None or not spec.root.strip():
        raise UserError("data.root: dataset 'imagefolder' needs a folder with one "
                        "sub-folder of images per class; none is set")
    root = os.path.expanduser(spec.root)
    if not os.path.isdir(root):
        raise UserError(f"data.root: {root!r} is not a folder; expected a folder with one "
                        f"sub-folder of images per class")

    images = _Images()
    subfolders = _class_folders(root)
    test_name = next((name for name in TEST_FOLDER_NAMES if name in subfolders), None)
    if "train" in subfolders and test_name is not None:
        train_dir, test_dir = os.path.join(root, "train"), os.path.join(root, test_name)
        classes = _class_folders(train_dir)
        unknown = sorted(set(_class_folders(test_dir)) - set(classes))
        if unknown:
            raise UserError(f"data.root: {test_name}/ has class folders {unknown} that "
                            f"train/ lacks; both must use the same class names")
        train_counts = _read_classes(train_dir, classes, spec.image_size, root, images)
        _check_classes(train_dir, classes, train_counts)
        n_train = len(images.labels)
        test_counts = _read_classes(test_dir, classes, spec.image_size, root, images)
        train_positions = np.arange(n_train)
        test_positions = np.arange(n_train, len(images.labels))
        counts = [a + b for a, b in zip(train_counts, test_counts)]
    else:
        classes = subfolders
        counts = _read_classes(root, classes, spec.image_size, root, images)
        _check_classes(root, classes, counts)
        train_positions, test_positions = stratified_holdout(
            np.asarray(images.labels), TEST_FRACTION, SPLIT_SEED)

    notes = []
    if images.skipped:
        named = ", ".join(images.skipped[:_MAX_NAMED_SKIPS])
        more = ", ..." if len(images.skipped) > _MAX_NAMED_SKIPS else ""
        notes.append(f"skipped {len(images.skipped)} unreadable image(s): {named}{more}")
    # Class indices must stay dense, so a class folder without images is dropped.
    empty = [name for name, count in zip(classes, counts) if count == 0]
    if empty:
        notes.append(f"ignored {len(empty)} class folder(s) without images: {empty}")
        keep = [label for label, count in enumerate(counts) if count]
        relabel = {old: new for new, old in enumerate(keep)}
        images.labels = [relabel[label] for label in images.labels]
        classes = [classes[label] for label in keep]

    channels = 1 if images.all_grayscale else 3
    return build_dataset(spec.name, _to_tensors(images, train_positions, channels),
                         _to_tensors(images, test_positions, channels), tuple(classes),
                         tuple(notes))
