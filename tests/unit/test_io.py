import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from unlearn_core import io
from unlearn_core.errors import UserError


class NotAWeight:
    """A custom class: weights-only loading must refuse to unpickle it."""

    def __init__(self):
        self.value = 3


def test_atomic_writes_leave_only_the_target(tmp_path):
    io.atomic_write_bytes(tmp_path / "a.bin", b"\x00\x01")
    io.atomic_write_text(tmp_path / "b.txt", "hello")
    io.write_json(tmp_path / "c.json", {"b": 1, "a": [1, 2]})
    io.save_state_dict(tmp_path / "d.safetensors", {"w": torch.ones(2)})
    io.save_arrays(tmp_path / "e.npz", {"x": np.arange(3)})
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "a.bin", "b.txt", "c.json", "d.safetensors", "e.npz"]
    assert (tmp_path / "a.bin").read_bytes() == b"\x00\x01"
    assert (tmp_path / "b.txt").read_text() == "hello"


def test_failed_write_keeps_the_old_file_and_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "data.json"
    io.write_json(target, {"version": 1})

    def broken_replace(src, dst):
        raise OSError("disk gone")

    monkeypatch.setattr(io.os, "replace", broken_replace)
    with pytest.raises(OSError):
        io.write_json(target, {"version": 2})
    assert io.read_json(target) == {"version": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["data.json"]


def test_json_is_sorted_indented_and_non_finite_becomes_null(tmp_path):
    path = tmp_path / "r.json"
    io.write_json(path, {"b": float("nan"), "a": np.float32(0.5), "c": (1, np.int64(2)),
                         "d": float("inf")})
    text = path.read_text()
    assert text.index('"a"') < text.index('"b"')
    assert "\n  " in text
    assert json.loads(text) == {"a": 0.5, "b": None, "c": [1, 2], "d": None}
    with pytest.raises(TypeError, match="set"):
        io.write_json(path, {"bad": {1, 2}})


def test_read_json_errors_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="not found"):
        io.read_json(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(UserError, match="not valid JSON"):
        io.read_json(tmp_path / "bad.json")


def test_state_dict_round_trip_with_shared_storage(tmp_path):
    base = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    state = {"weight": base, "tied": base, "row": base[1], "transposed": base.t(),
             "steps": torch.tensor(7)}
    path = tmp_path / "w.safetensors"
    io.save_state_dict(path, state)
    loaded = io.load_state_dict(path)
    assert set(loaded) == set(state)
    for key, tensor in state.items():
        assert torch.equal(loaded[key], tensor), key
        assert loaded[key].device.type == "cpu"
    # The saved copy is a snapshot: changing the source afterwards does not touch it.
    base.zero_()
    assert loaded["weight"].sum() > 0


def test_text_renamed_to_safetensors_is_a_user_error(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_text("this is not a checkpoint at all")
    with pytest.raises(UserError, match=r"model\.safetensors: not a valid safetensors file"):
        io.load_state_dict(path)


def test_missing_and_unknown_checkpoints_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="file not found"):
        io.load_state_dict(tmp_path / "none.pt")
    (tmp_path / "w.onnx").write_bytes(b"x")
    with pytest.raises(UserError, match="unknown file type"):
        io.load_state_dict(tmp_path / "w.onnx")
    (tmp_path / "garbage.pt").write_text("garbage")
    with pytest.raises(UserError, match="not a valid PyTorch checkpoint"):
        io.load_state_dict(tmp_path / "garbage.pt")


def test_pickle_with_python_objects_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"w": torch.ones(2), "obj": NotAWeight()}, path)
    with pytest.raises(UserError, match="refused.*weights-only") as caught:
        io.load_state_dict(path)
    assert "NotAWeight" in str(caught.value)


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".bin"])
@pytest.mark.parametrize("nest", [None, "state_dict", "model"])
def test_torch_checkpoints_plain_or_nested(tmp_path, suffix, nest):
    state = {"w": torch.randn(2, 3), "b": torch.zeros(2)}
    saved = state if nest is None else {nest: state, "epoch": 3}
    path = tmp_path / f"ckpt{suffix}"
    torch.save(saved, path)
    loaded = io.load_state_dict(path)
    assert set(loaded) == {"w", "b"}
    assert torch.equal(loaded["w"], state["w"])


def test_torch_checkpoint_that_is_not_a_dict_of_tensors(tmp_path):
    torch.save({"w": torch.ones(1), "note": "hello"}, tmp_path / "mixed.pt")
    with pytest.raises(UserError, match="not tensors: \\[note\\]"):
        io.load_state_dict(tmp_path / "mixed.pt")


def _small_net() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))


def test_load_into_model_fits():
    source, target = _small_net(), _small_net()
    io.load_into_model(target, source.state_dict(), "source.safetensors")
    for key, tensor in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], tensor)


def test_load_into_model_other_architecture_names_keys_and_keeps_model():
    model = _small_net()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    other = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 2), nn.Linear(2, 2))
    with pytest.raises(UserError) as caught:
        io.load_into_model(model, other.state_dict(), "other.pt")
    message = str(caught.value)
    assert message.startswith("checkpoint other.pt does not fit this model")
    assert "unexpected [3.weight, 3.bias]" in message
    assert "shape mismatch at 0.weight: checkpoint (5, 4) vs model (3, 4)" in message
    for key, tensor in model.state_dict().items():
        assert torch.equal(tensor, before[key])


def test_load_into_model_missing_keys():
    model = _small_net()
    partial = {k: v for k, v in model.state_dict().items() if not k.startswith("2.")}
    with pytest.raises(UserError, match=r"missing keys \[2\.weight, 2\.bias\]"):
        io.load_into_model(model, partial, "partial.pt")


def test_arrays_round_trip_without_pickle(tmp_path):
    arrays = {"mask": np.array([True, False]), "curve": np.linspace(0, 1, 5),
              "names": np.array(["a", "bc"])}
    path = tmp_path / "a.npz"
    io.save_arrays(path, arrays)
    loaded = io.load_arrays(path)
    assert set(loaded) == set(arrays)
    for key in arrays:
        np.testing.assert_array_equal(loaded[key], arrays[key])
    with pytest.raises(TypeError, match="dtype object"):
        io.save_arrays(path, {"bad": np.array([{"a": 1}], dtype=object)})
    assert math.isclose(float(io.load_arrays(path)["curve"][-1]), 1.0)
    with pytest.raises(UserError, match="file not found"):
        io.load_arrays(tmp_path / "none.npz")
