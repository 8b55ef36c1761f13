"""TensorLoader: normalisation, coverage, deterministic shuffling, augmentation."""

import itertools

import numpy as np
import pytest
import torch

from unlearn_core.data import ImageSet, TensorLoader

MEAN = (0.2, 0.5, 0.7)
STD = (0.3, 0.25, 0.1)


@pytest.fixture
def images():
    """50 random 3x8x8 images whose label is their position, to trace every example."""
    generator = torch.Generator().manual_seed(0)
    pixels = torch.randint(0, 256, (50, 3, 8, 8), dtype=torch.uint8, generator=generator)
    return ImageSet(pixels, torch.arange(50))


def loader(images, indices, **options):
    defaults = dict(mean=MEAN, std=STD, batch_size=7)
    return TensorLoader(images, indices, **{**defaults, **options})


def normalised(pixels):
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return (pixels.double() / 255 - mean.double()) / std.double()


def epoch_labels(batches):
    return torch.cat([labels for _, labels in batches]).tolist()


def test_batches_are_normalised_float32_in_index_order(images):
    indices = np.array([4, 9, 0, 33, 12, 8, 41, 2, 17, 25])
    batches = list(loader(images, indices))
    assert [len(labels) for _, labels in batches] == [7, 3]
    x, y = batches[0]
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert x.device.type == "cpu"
    assert y.tolist() == indices[:7].tolist()
    torch.testing.assert_close(x.double(), normalised(images.images[indices[:7]]),
                               atol=1e-5, rtol=0)


def test_len_counts_batches_with_and_without_drop_last(images):
    every = np.arange(50)
    assert len(loader(images, every)) == 8
    dropping = loader(images, every, drop_last=True)
    assert len(dropping) == 7
    assert [len(labels) for _, labels in dropping] == [7] * 7
    assert loader(images, every).num_examples == 50


def test_shuffled_epoch_covers_every_index_exactly_once(images):
    indices = np.arange(0, 50, 3)
    shuffled = loader(images, indices, shuffle=True, seed=1)
    for _ in range(2):
        labels = epoch_labels(shuffled)
        assert sorted(labels) == indices.tolist()
    assert labels != indices.tolist()


def test_shuffle_sequence_is_fixed_by_the_seed(images):
    every = np.arange(50)
    first = loader(images, every, shuffle=True, seed=3)
    second = loader(images, every, shuffle=True, seed=3)
    first_epochs = [epoch_labels(first) for _ in range(2)]
    assert first_epochs == [epoch_labels(second) for _ in range(2)]
    assert first_epochs[0] != first_epochs[1]
    assert epoch_labels(loader(images, every, shuffle=True, seed=4)) != first_epochs[0]


def test_augment_crops_from_zero_padding_and_flips(images):
    augmented = loader(images, np.arange(50), augment="crop_flip", shuffle=True, seed=5)
    pad = 1  # max(1, 8 // 8)
    # Zero padding is added to the uint8 pixels, so it normalises to -mean/std.
    padded = torch.nn.functional.pad(images.images, (pad, pad, pad, pad))
    flips_seen = set()
    for x, y in augmented:
        assert x.shape[1:] == (3, 8, 8) and x.dtype == torch.float32
        for image, label in zip(x.double(), y.tolist()):
            candidates = {
                (top, left, flip): normalised(crop.flip(-1) if flip else crop)[0]
                for top, left, flip in itertools.product(range(3), range(3), (False, True))
                for crop in [padded[label:label + 1, :, top:top + 8, left:left + 8]]
            }
            matches = [key for key, value in candidates.items()
                       if torch.allclose(image, value, atol=1e-5)]
            assert matches, f"example {label} is not a padded crop of its image"
            flips_seen.update(flip for _, _, flip in matches)
    assert flips_seen == {False, True}


def test_augment_is_deterministic_per_seed(images):
    def first_batch(seed):
        return next(iter(loader(images, np.arange(50), augment="crop_flip", seed=seed)))[0]

    assert torch.equal(first_batch(2), first_batch(2))
    assert not torch.equal(first_batch(2), first_batch(9))


def test_empty_indices_give_no_batches(images):
    empty = loader(images, np.array([], dtype=np.int64), shuffle=True)
    assert len(empty) == 0 and list(empty) == []


def test_accepts_lists_and_tensors_of_indices(images):
    assert epoch_labels(loader(images, [3, 1])) == [3, 1]
    assert epoch_labels(loader(images, torch.tensor([5, 6]))) == [5, 6]


def test_rejects_bad_arguments(images):
    with pytest.raises(ValueError, match="mean and std"):
        TensorLoader(images, [0], mean=(0.5,), std=(0.5,), batch_size=2)
    with pytest.raises(ValueError, match="batch_size"):
        loader(images, [0], batch_size=0)
    with pytest.raises(ValueError, match="indices"):
        loader(images, [50])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_batches_arrive_on_the_requested_device(images):
    x, y = next(iter(loader(images, np.arange(50), device="cuda", augment="crop_flip", shuffle=True)))
    assert x.device.type == "cuda" and y.device.type == "cuda"
    cpu_x, _ = next(iter(loader(images, np.arange(50), augment="crop_flip", shuffle=True)))
    torch.testing.assert_close(x.cpu(), cpu_x)
