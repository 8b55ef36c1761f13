"""The vocabulary names what the split, the accuracies and the probe subset call the data
parts, and its part table gives each probe part the right examples."""

import dataclasses

import numpy as np
import pytest

from unlearn_core.data.splits import Split
from unlearn_core.metrics.accuracy import ACCURACY_KEYS
from unlearn_core.vocabulary import PARTS, REFERENCE_ROLES, ROLES, ROLES_BEFORE_AFTER, format_params


def test_each_part_names_a_split_array_an_accuracy_and_a_set():
    split_arrays = {f.name for f in dataclasses.fields(Split)} - {"forget_classes"}
    assert {p.split_attr for p in PARTS} == split_arrays
    assert {p.accuracy_key for p in PARTS} == set(ACCURACY_KEYS) - {"test"}
    assert {p.split_attr: p.from_set for p in PARTS} == {
        "forget": "train", "retain": "train", "test_forget": "test", "test_retain": "test"}


def test_the_role_orders_hold_the_same_roles():
    assert set(ROLES) == set(ROLES_BEFORE_AFTER) and len(ROLES) == len(ROLES_BEFORE_AFTER) == 3
    assert set(REFERENCE_ROLES) == set(ROLES) - {"unlearned"}


def test_params_read_in_the_given_order():
    assert format_params({"lr": 0.1, "epochs": 2}) == "lr=0.1, epochs=2"
    assert format_params({}) == ""


@pytest.mark.slow
def test_the_probe_subset_draws_each_part_from_its_split_array(tiny_refs):
    from unlearn_core.metrics.activations import probe_subset
    exp = tiny_refs.experiment
    subset = probe_subset(exp, per_part=20, seed=0)
    assert subset.parts == tuple(p.name for p in PARTS)
    for part in PARTS:
        rows = subset.mask(part.name)
        assert np.isin(subset.index[rows], getattr(exp.split, part.split_attr)).all()
        labels = getattr(exp.dataset, part.from_set).labels.numpy()[subset.index[rows]]
        assert (subset.labels[rows] == labels).all()
