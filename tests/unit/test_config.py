import json
import subprocess
import sys

import pytest

from unlearn_core.config import (DataSpec, ForgetSpec, MethodSpec, ModelSpec, RunSpec,
                                 SetupSpec, TrainSpec)
from unlearn_core.errors import UserError


@pytest.mark.parametrize("make, field", [
    (lambda: DataSpec(name=""), "data.name"),
    (lambda: DataSpec(image_size=2), "data.image_size"),
    (lambda: ForgetSpec(kind="everything"), "forget.kind"),
    (lambda: ForgetSpec(kind="classes", classes=()), "forget.classes"),
    (lambda: ForgetSpec(kind="classes", classes=(-1,)), "forget.classes"),
    (lambda: ForgetSpec(kind="random", fraction=0.0), "forget.fraction"),
    (lambda: ForgetSpec(kind="random", fraction=1.0), "forget.fraction"),
    (lambda: ForgetSpec(kind="non_iid", classes=(1,), fraction=1.5), "forget.fraction"),
    (lambda: ForgetSpec(kind="random", fraction=float("nan")), "forget.fraction"),
    (lambda: ForgetSpec(kind="indices"), "forget.indices"),
    (lambda: ModelSpec(width=0), "model.width"),
    (lambda: TrainSpec(epochs=0), "train.epochs"),
    (lambda: TrainSpec(lr=-0.1), "train.lr"),
    (lambda: TrainSpec(lr=float("inf")), "train.lr"),
    (lambda: TrainSpec(augment="mixup"), "train.augment"),
    (lambda: SetupSpec(seed=-1), "seed"),
    (lambda: SetupSpec(device="tpu"), "device"),
    (lambda: SetupSpec(original="mine"), "original"),
    (lambda: MethodSpec(params={"lr": float("nan")}), "method.params.lr"),
])
def test_invalid_specs_name_the_parameter(make, field):
    with pytest.raises(UserError, match=field.replace(".", r"\.")):
        make()


def test_json_round_trip_keeps_every_field():
    spec = RunSpec(SetupSpec(data=DataSpec("digits"), forget=ForgetSpec("non_iid", (3, 1), 0.5),
                             model=ModelSpec("resnet18", 0.5), train=TrainSpec(epochs=2),
                             seed=7, device="cpu"),
                   MethodSpec("neggrad_plus", {"lr": 0.01, "epochs": 2}))
    again = RunSpec.from_json(spec.to_json())
    assert again == spec
    assert again.hash == spec.hash


def test_unknown_fields_and_bad_json_are_rejected():
    with pytest.raises(UserError, match="unknown field"):
        SetupSpec.from_dict({"sed": 1})
    with pytest.raises(UserError, match="not valid JSON"):
        SetupSpec.from_json("{")


@pytest.mark.parametrize("raw, message", [
    ({"data": 5}, "data: expected an object, got int"),
    ({"train": {"foo": 1}}, r"train: unknown field\(s\) \['foo'\]"),
    ({"forget": {"kind": "poison", "poison": {"size": 3}}},
     r"forget\.poison: unknown field\(s\) \['size'\]"),
    ({"model": {"name": "dkvb", "encoder": "small_cnn", "bottleneck": 1}},
     r"model\.bottleneck: expected an object"),
    ({"original": 5}, "original: expected 'trained' or 'imported:<16 hex digits>', got 5"),
    ({"oracle": {}}, "oracle: expected 'trained'"),
])
def test_a_nested_field_of_the_wrong_shape_is_named_by_its_path(raw, message):
    with pytest.raises(UserError, match=f"^{message}"):
        SetupSpec.from_dict(raw)
    with pytest.raises(UserError, match="^method: expected an object"):
        RunSpec.from_dict({"setup": {}, "method": 3})


def test_hash_is_stable_across_processes():
    code = ("from unlearn_core.config import SetupSpec, ForgetSpec;"
            "print(SetupSpec(forget=ForgetSpec('classes', (2, 1))).hash)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == SetupSpec(forget=ForgetSpec("classes", (1, 2))).hash


def test_hash_changes_with_what_matters_only():
    base = SetupSpec()
    assert SetupSpec(device="cpu").hash == base.hash  # the device does not change weights
    assert SetupSpec(seed=1).hash != base.hash
    assert SetupSpec(train=TrainSpec(lr=0.01)).hash != base.hash
    # The original does not depend on the forget set; the oracle does.
    other_forget = SetupSpec(forget=ForgetSpec("classes", (3,)))
    assert other_forget.original_key == base.original_key
    assert other_forget.oracle_key != base.oracle_key
    # An imported original is keyed by its content, not by the recipe.
    imported = SetupSpec(original="imported:" + "a" * 16)
    assert imported.original_key != base.original_key
    assert SetupSpec(original="imported:" + "a" * 16, seed=3).original_key == imported.original_key


def test_forget_fields_a_kind_ignores_are_normalised():
    assert ForgetSpec("classes", (0,), fraction=0.3) == ForgetSpec("classes", (0,), fraction=0.7)
    assert ForgetSpec("random", (5,), 0.2).classes == ()
    assert ForgetSpec("classes", (3, 1, 3)).classes == (1, 3)
    assert json.loads(ForgetSpec("indices", indices=(5, 2)).to_json())["indices"] == [2, 5]
