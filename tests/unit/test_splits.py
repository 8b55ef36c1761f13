"""Forget / retain / test splits and reading uploaded index lists."""

import numpy as np
import pytest
import torch

from unlearn_core.config import DataSpec, ForgetSpec
from unlearn_core.data import ImageSet, load_dataset, make_split, read_index_csv
from unlearn_core.data.registry import build_dataset
from unlearn_core.errors import UserError


def toy_dataset(train_labels, test_labels, num_classes=5, name="toy"):
    def image_set(labels):
        labels = torch.tensor(labels, dtype=torch.int64)
        return ImageSet(torch.zeros((len(labels), 1, 4, 4), dtype=torch.uint8), labels)

    return build_dataset(name, image_set(train_labels), image_set(test_labels),
                         tuple(f"class{c}" for c in range(num_classes)))


# 100 train examples, 25 in each of classes 0..3; 30 test examples, 6 in each of 0..4.
TRAIN_LABELS = [c for c in range(4) for _ in range(25)]
TEST_LABELS = [c % 5 for c in range(30)]
DATA = toy_dataset(TRAIN_LABELS, TEST_LABELS)


def assert_partitions(split, dataset=DATA):
    for part in (split.forget, split.retain, split.test_forget, split.test_retain):
        assert part.dtype == np.int64
        assert np.all(np.diff(part) > 0), "sorted without duplicates"
        assert not part.flags.writeable
    assert np.array_equal(np.union1d(split.forget, split.retain), np.arange(len(dataset.train)))
    assert np.array_equal(np.union1d(split.test_forget, split.test_retain),
                          np.arange(len(dataset.test)))
    assert len(split.forget) + len(split.retain) == len(dataset.train)
    assert len(split.test_forget) + len(split.test_retain) == len(dataset.test)


def test_classes_forgets_every_training_example_of_those_classes():
    split = make_split(DATA, ForgetSpec(kind="classes", classes=(1, 3)), seed=0)
    assert_partitions(split)
    labels = np.asarray(TRAIN_LABELS)
    assert split.forget.tolist() == np.flatnonzero(np.isin(labels, [1, 3])).tolist()
    assert split.forget_classes == (1, 3)
    assert set(np.asarray(TEST_LABELS)[split.test_forget]) == {1, 3}
    assert split.sizes() == {"forget": 50, "retain": 50, "test_forget": 12, "test_retain": 18}


def test_random_forgets_a_rounded_fraction_iid():
    split = make_split(DATA, ForgetSpec(kind="random", fraction=0.13), seed=0)
    assert_partitions(split)
    assert len(split.forget) == 13
    assert split.forget_classes == ()
    assert len(split.test_forget) == 0 and len(split.test_retain) == 30


def test_random_forgets_at_least_one_example():
    split = make_split(DATA, ForgetSpec(kind="random", fraction=0.001), seed=0)
    assert len(split.forget) == 1


def test_random_split_depends_only_on_the_seed():
    spec = ForgetSpec(kind="random", fraction=0.2)
    first = make_split(DATA, spec, seed=7)
    assert np.array_equal(first.forget, make_split(DATA, spec, seed=7).forget)
    assert not np.array_equal(first.forget, make_split(DATA, spec, seed=8).forget)


def test_non_iid_forgets_a_fraction_of_each_chosen_class():
    split = make_split(DATA, ForgetSpec(kind="non_iid", classes=(0, 2), fraction=0.3), seed=1)
    assert_partitions(split)
    forgotten = np.bincount(np.asarray(TRAIN_LABELS)[split.forget], minlength=4)
    assert forgotten.tolist() == [8, 0, 8, 0]  # round(0.3 * 25) = 8
    assert split.forget_classes == (0, 2)
    assert set(np.asarray(TEST_LABELS)[split.test_forget]) == {0, 2}
    again = make_split(DATA, ForgetSpec(kind="non_iid", classes=(0, 2), fraction=0.3), seed=1)
    assert np.array_equal(split.forget, again.forget)


def test_non_iid_forgets_at_least_one_per_class():
    split = make_split(DATA, ForgetSpec(kind="non_iid", classes=(3,), fraction=0.01), seed=0)
    assert len(split.forget) == 1 and TRAIN_LABELS[split.forget[0]] == 3


def test_indices_forgets_exactly_those_positions():
    split = make_split(DATA, ForgetSpec(kind="indices", indices=(99, 0, 5)), seed=0)
    assert_partitions(split)
    assert split.forget.tolist() == [0, 5, 99]
    assert split.forget_classes == ()
    assert split.sizes()["test_forget"] == 0


def test_class_out_of_range_is_named():
    data = toy_dataset(TRAIN_LABELS, TEST_LABELS, num_classes=10, name="mnist5k")
    with pytest.raises(UserError) as caught:
        make_split(data, ForgetSpec(kind="classes", classes=(12,)), seed=0)
    assert str(caught.value) == ("forget.classes: class 12 is out of range; dataset mnist5k "
                                 "has classes 0..9")
    with pytest.raises(UserError, match="forget.classes: class 10 is out of range"):
        make_split(data, ForgetSpec(kind="non_iid", classes=(1, 10)), seed=0)


def test_index_out_of_range_is_named():
    with pytest.raises(UserError, match=r"forget.indices: index 100 is out of range.*0..99"):
        make_split(DATA, ForgetSpec(kind="indices", indices=(3, 100)), seed=0)


@pytest.mark.parametrize("kind", ["classes", "non_iid"])
def test_class_without_training_examples_gives_an_empty_forget_set(kind):
    with pytest.raises(UserError, match="forget.classes: .*no training examples of class 4.*"
                                        "empty"):
        make_split(DATA, ForgetSpec(kind=kind, classes=(4,), fraction=0.5), seed=0)


def test_forgetting_every_class_leaves_no_retain_set():
    with pytest.raises(UserError, match="forget.classes: .*retain set would be empty"):
        make_split(DATA, ForgetSpec(kind="classes", classes=(0, 1, 2, 3)), seed=0)


def test_forgetting_every_index_leaves_no_retain_set():
    with pytest.raises(UserError, match="forget.indices: .*retain set would be empty"):
        make_split(DATA, ForgetSpec(kind="indices", indices=tuple(range(100))), seed=0)


def test_random_fraction_rounding_to_everything_leaves_no_retain_set():
    tiny = toy_dataset([0, 1, 1], [0, 1])
    with pytest.raises(UserError, match="forget.fraction: .*retain set would be empty"):
        make_split(tiny, ForgetSpec(kind="random", fraction=0.9), seed=0)


def test_split_on_an_embedded_dataset():
    digits = load_dataset(DataSpec(name="digits"))
    split = make_split(digits, ForgetSpec(kind="classes", classes=(0,)), seed=0)
    assert_partitions(split, digits)
    assert np.all(digits.train.labels.numpy()[split.forget] == 0)
    assert np.all(digits.test.labels.numpy()[split.test_retain] != 0)


# read_index_csv

@pytest.mark.parametrize("text, expected", [
    ("3\n1\n2\n", (1, 2, 3)),
    ("index\n5\n\n7\n", (5, 7)),
    ("1, 2,3\n4 5\t6\n", (1, 2, 3, 4, 5, 6)),
    ("idx\r\n0\r\n0\r\n9\r\n", (0, 9)),
    ('"index"\n"4"\n', (4,)),
    ("\n\n  train_index  \n10,\n", (10,)),
])
def test_read_index_csv_accepts(text, expected):
    assert read_index_csv(text) == expected
    assert read_index_csv(text.encode()) == expected


def test_read_index_csv_accepts_a_byte_order_mark():
    assert read_index_csv("\ufeffindex\n1\n".encode()) == (1,)


@pytest.mark.parametrize("text, message", [
    ("", "no indices"),
    ("index\n", "no indices"),
    ("\n  \n", "no indices"),
    ("1\n2.5\n", "line 2: 2.5 is not a whole number"),
    ("index\n1\n-3\n", "line 3: -3 is negative"),
    ("1\nfoo\n", "line 2: 'foo' is not a number"),
    ("index\nlabel\n", "line 2: 'label' is not a number"),
    ("index,label\n1,2\n", "line 1: the header has 2 columns"),
    ("1\n\n1e3\n", "line 3: 1e3 is not a whole number"),
])
def test_read_index_csv_rejects(text, message):
    with pytest.raises(UserError) as caught:
        read_index_csv(text)
    assert str(caught.value).startswith("forget.indices:")
    assert message in str(caught.value)


def test_read_index_csv_rejects_non_utf8_bytes():
    with pytest.raises(UserError, match="forget.indices: the file is not UTF-8"):
        read_index_csv(b"\xff\xfe\x00\x81")
