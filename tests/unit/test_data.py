"""Dataset registry, embedded datasets, torchvision sets from generated files, ImageFolder."""

import struct

import numpy as np
import pytest
import torch
from PIL import Image

from unlearn_core.config import DataSpec
from unlearn_core.data import Dataset, ImageSet, list_datasets, load_dataset
from unlearn_core.data.embedded import load_digits
from unlearn_core.data.registry import channel_stats, stratified_holdout
from unlearn_core.errors import UserError

ALL_NAMES = ["mnist5k", "digits", "mnist", "fashion_mnist", "cifar10", "cifar100", "svhn",
             "imagefolder"]


def assert_proportional_per_class(labels: torch.Tensor, total: int, counts: np.ndarray):
    """Each class's count in `labels` is within 1 of its share of `total`."""
    expected = counts * total / counts.sum()
    actual = np.bincount(labels.numpy(), minlength=len(counts))
    assert np.all(np.abs(actual - expected) <= 1), (actual, expected)


# Registry

def test_list_datasets_names_and_flags():
    infos = {info.name: info for info in list_datasets()}
    assert list(infos) == ALL_NAMES
    assert infos["mnist5k"].embedded and not infos["mnist5k"].needs_root
    assert infos["digits"].embedded and not infos["digits"].needs_root
    for name in ALL_NAMES[2:]:
        assert infos[name].needs_root and not infos[name].embedded
        assert infos[name].description


def test_unknown_dataset_lists_allowed_names():
    with pytest.raises(UserError, match="data.name: unknown dataset 'nope'") as caught:
        load_dataset(DataSpec(name="nope"))
    for name in ALL_NAMES:
        assert name in str(caught.value)


def test_load_is_memoised_and_ignores_fields_embedded_data_does_not_use():
    first = load_dataset(DataSpec(name="digits"))
    assert load_dataset(DataSpec(name="digits")) is first
    assert load_dataset(DataSpec(name="digits", root="/elsewhere", image_size=64)) is first


def test_dataset_rejects_labels_out_of_range():
    images = torch.zeros((2, 1, 4, 4), dtype=torch.uint8)
    part = ImageSet(images, torch.tensor([0, 2]))
    with pytest.raises(ValueError, match="labels"):
        Dataset("bad", part, part, ("a", "b"), (0.0,), (1.0,))


def test_channel_stats_match_numpy_and_guard_constant_channels():
    images = torch.randint(0, 256, (5, 2, 3, 3), dtype=torch.uint8)
    images[:, 1] = 7
    mean, std = channel_stats(images)
    scaled = images.numpy() / 255.0
    assert mean == pytest.approx(scaled.mean(axis=(0, 2, 3)))
    assert std[0] == pytest.approx(scaled[:, 0].std())
    assert std[1] == 1.0


def test_stratified_holdout_is_stratified_disjoint_and_deterministic():
    labels = np.repeat(np.arange(4), [10, 7, 1, 2])
    train, test = stratified_holdout(labels, 0.2, seed=0)
    assert sorted(np.concatenate([train, test])) == list(range(len(labels)))
    assert np.bincount(labels[test], minlength=4).tolist() == [2, 1, 0, 1]
    again_train, again_test = stratified_holdout(labels, 0.2, seed=0)
    assert np.array_equal(train, again_train) and np.array_equal(test, again_test)


# Embedded datasets

def test_mnist5k_shapes_split_and_stats():
    data = load_dataset(DataSpec(name="mnist5k"))
    assert data.train.images.shape == (4000, 1, 28, 28)
    assert data.test.images.shape == (1000, 1, 28, 28)
    assert data.train.images.dtype == torch.uint8 and data.train.labels.dtype == torch.int64
    assert data.classes == tuple("0123456789")
    assert (data.num_classes, data.in_channels, data.image_size) == (10, 1, 28)
    assert data.image_shape == (1, 28, 28)
    assert_proportional_per_class(data.train.labels, 4000, np.full(10, 500))
    assert_proportional_per_class(data.test.labels, 1000, np.full(10, 500))
    # MNIST's well-known statistics: mean about 0.13, std about 0.31.
    assert 0.10 < data.mean[0] < 0.16 and 0.27 < data.std[0] < 0.35
    # The source is sorted by class; the fixed split seed mixes the positions.
    assert len(set(data.train.labels[:50].tolist())) > 5
    assert int(data.train.images.max()) == 255


def test_digits_shapes_split_determinism_and_stats():
    data = load_dataset(DataSpec(name="digits"))
    assert data.train.images.shape[1:] == (1, 8, 8)
    assert len(data.train) + len(data.test) == 1797
    assert len(data.test) == pytest.approx(0.2 * 1797, abs=5)
    counts = np.bincount(np.concatenate([data.train.labels.numpy(), data.test.labels.numpy()]))
    assert_proportional_per_class(data.test.labels, len(data.test), counts)
    assert int(data.train.images.max()) == 255
    assert 0.2 < data.mean[0] < 0.4 and 0.2 < data.std[0] < 0.5
    again = load_digits(DataSpec(name="digits"))
    assert torch.equal(again.train.images, data.train.images)
    assert torch.equal(again.test.labels, data.test.labels)


# torchvision datasets from generated idx files

def write_idx(path, array: np.ndarray):
    """Write `array` (uint8) in the big-endian idx format MNIST is distributed in."""
    header = struct.pack(">I", 0x0800 + array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def write_mnist_files(root, folder: str, n_train=60, n_test=20, seed=0):
    rng = np.random.default_rng(seed)
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    arrays = {}
    for prefix, count in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
        labels = np.arange(count) % 10
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
        arrays[prefix] = (images, labels)
    return arrays


@pytest.mark.parametrize("name, folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_mnist_like_reads_raw_idx_files(tmp_path, name, folder):
    arrays = write_mnist_files(tmp_path, folder)
    data = load_dataset(DataSpec(name=name, root=str(tmp_path)))
    assert data.train.images.shape == (60, 1, 28, 28)
    assert data.test.images.shape == (20, 1, 28, 28)
    assert np.array_equal(data.train.images[:, 0].numpy(), arrays["train"][0])
    assert np.array_equal(data.test.labels.numpy(), arrays["t10k"][1])
    assert data.train.labels.dtype == torch.int64
    assert data.mean[0] == pytest.approx(arrays["train"][0].mean() / 255)
    assert data.num_classes == 10
    assert data.classes[0] == ("0" if name == "mnist" else "T-shirt/top")


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10", "cifar100", "svhn"])
def test_torchvision_sets_without_root_say_how_to_fix(name):
    with pytest.raises(UserError, match="data.root") as caught:
        load_dataset(DataSpec(name=name))
    assert "data.download" in str(caught.value)


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10", "cifar100", "svhn"])
def test_torchvision_sets_with_missing_folder_say_how_to_fix(tmp_path, name):
    with pytest.raises(UserError, match="data.root.*does not exist") as caught:
        load_dataset(DataSpec(name=name, root=str(tmp_path / "absent")))
    assert "data.download" in str(caught.value)


@pytest.mark.parametrize("name", ["mnist", "cifar10", "svhn"])
def test_torchvision_sets_with_files_absent_say_how_to_fix(tmp_path, name):
    with pytest.raises(UserError, match="data.root: could not load") as caught:
        load_dataset(DataSpec(name=name, root=str(tmp_path)))
    assert "data.download" in str(caught.value)


def test_root_that_is_a_file_is_rejected(tmp_path):
    not_a_folder = tmp_path / "file.txt"
    not_a_folder.write_text("x")
    with pytest.raises(UserError, match="not a folder"):
        load_dataset(DataSpec(name="mnist", root=str(not_a_folder)))


def test_corrupt_idx_file_becomes_a_user_error(tmp_path):
    write_mnist_files(tmp_path, "MNIST")
    (tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x0d\x09junk")
    with pytest.raises(UserError, match="data.root: could not load mnist"):
        load_dataset(DataSpec(name="mnist", root=str(tmp_path)))


# ImageFolder

def save_image(path, color, mode="RGB", size=(12, 10)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path)


def make_class_folders(root, counts: dict, mode="RGB"):
    colors = {"RGB": [(255, 0, 0), (0, 255, 0), (0, 0, 255)], "L": [30, 120, 220]}[mode]
    for index, (name, count) in enumerate(counts.items()):
        for i in range(count):
            save_image(root / name / f"{i:03d}.png", colors[index], mode)


def test_imagefolder_reads_resizes_and_splits_by_class(tmp_path):
    make_class_folders(tmp_path, {"cat": 10, "dog": 5, "owl": 5})
    (tmp_path / "cat" / "broken.png").write_bytes(b"not an image at all")
    (tmp_path / "dog" / "readme.txt").write_text("not an image file, ignored")
    data = load_dataset(DataSpec(name="imagefolder", root=str(tmp_path), image_size=16))
    assert data.classes == ("cat", "dog", "owl")
    assert data.image_shape == (3, 16, 16)
    assert len(data.train) + len(data.test) == 20
    assert np.bincount(data.test.labels.numpy()).tolist() == [2, 1, 1]
    assert data.notes == ("skipped 1 unreadable image(s): cat/broken.png",)
    # Pure red images belong to class 0 (cat).
    red = data.train.images[data.train.labels == 0]
    assert torch.all(red[:, 0] == 255) and torch.all(red[:, 1:] == 0)


def test_imagefolder_keeps_one_channel_when_every_image_is_grayscale(tmp_path):
    make_class_folders(tmp_path, {"a": 4, "b": 4}, mode="L")
    data = load_dataset(DataSpec(name="imagefolder", root=str(tmp_path), image_size=8))
    assert data.image_shape == (1, 8, 8)
    assert set(data.train.images[data.train.labels == 1].unique().tolist()) == {120}


def test_imagefolder_converts_mixed_modes_to_rgb(tmp_path):
    make_class_folders(tmp_path, {"a": 3, "b": 3}, mode="L")
    save_image(tmp_path / "b" / "colour.png", (255, 0, 0))
    data = load_dataset(DataSpec(name="imagefolder", root=str(tmp_path), image_size=8))
    assert data.in_channels == 3
    gray = torch.cat([data.train.images, data.test.images])[
        torch.cat([data.train.labels, data.test.labels]) == 0]
    assert torch.all(gray == 30)


def test_imagefolder_uses_train_and_test_subfolders(tmp_path):
    make_class_folders(tmp_path / "train", {"x": 3, "y": 4})
    make_class_folders(tmp_path / "val", {"x": 2, "y": 1})
    (tmp_path / "train" / "empty_class").mkdir()
    data = load_dataset(DataSpec(name="imagefolder", root=str(tmp_path), image_size=8))
    assert data.classes == ("x", "y")
    assert data.train.labels.tolist() == [0, 0, 0, 1, 1, 1, 1]
    assert data.test.labels.tolist() == [0, 0, 1]
    assert any("empty_class" in note for note in data.notes)


def test_imagefolder_test_classes_must_exist_in_train(tmp_path):
    make_class_folders(tmp_path / "train", {"x": 2, "y": 2})
    make_class_folders(tmp_path / "test", {"x": 1, "z": 1})
    with pytest.raises(UserError, match=r"data.root: test/ has class folders \['z'\]"):
        load_dataset(DataSpec(name="imagefolder", root=str(tmp_path)))


def test_imagefolder_without_images_is_a_user_error(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "notes.txt").write_text("no images here")
    with pytest.raises(UserError, match="data.root: no readable images"):
        load_dataset(DataSpec(name="imagefolder", root=str(tmp_path)))


def test_imagefolder_needs_two_classes(tmp_path):
    make_class_folders(tmp_path, {"only": 3})
    with pytest.raises(UserError, match="data.root: .*at least 2 class"):
        load_dataset(DataSpec(name="imagefolder", root=str(tmp_path)))


@pytest.mark.parametrize("root", [None, "file", "absent"])
def test_imagefolder_root_must_be_a_folder(tmp_path, root):
    (tmp_path / "file").write_text("x")
    spec_root = None if root is None else str(tmp_path / root)
    with pytest.raises(UserError, match="data.root"):
        load_dataset(DataSpec(name="imagefolder", root=spec_root))
