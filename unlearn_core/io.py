"""Every file the project writes or reads goes through here.

Writes are atomic: data goes to a temporary file in the target's folder, is flushed and
fsynced, and only then replaces the target with `os.replace`, so a crash leaves either
the old file or the new one, never half of one. Checkpoints are read with safetensors
or `torch.load(weights_only=True)`; a bare pickle load is never done, because a pickle
can run arbitrary code.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import math
import os
import pickle
import re
import struct
import tempfile
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping

import numpy as np
from safetensors import SafetensorError

from .errors import UserError

if TYPE_CHECKING:  # torch is imported where tensors are read or written: listing runs
    import torch    # and opening the app need none, and torch takes seconds to import

PathLike = str | os.PathLike

SAFETENSORS_SUFFIXES = (".safetensors",)
TORCH_SUFFIXES = (".pt", ".pth", ".bin")
# Keys under which training scripts commonly nest the weights in a checkpoint dict.
NESTED_STATE_DICT_KEYS = ("state_dict", "model")
_LISTED_KEYS = 5


# --- atomic writes -----------------------------------------------------------------

def fsync_dir(folder: PathLike) -> None:
    """Make a rename inside `folder` durable; a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on folders; the rename itself still happened
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


@contextlib.contextmanager
def atomic_target(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path` atomically,
    on failure it is removed. For writers that insist on a file name of their own."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Same folder as the target: os.replace is only atomic within one filesystem.
    fd, temp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.",
                                     suffix=".tmp")
    os.close(fd)
    temp = Path(temp_name)
    try:
        yield temp
        _fsync_file(temp)
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    fsync_dir(target.parent)


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    with atomic_target(path) as temp:
        with open(temp, "wb") as handle:
            handle.write(data)


def atomic_write_text(path: PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


# --- JSON ---------------------------------------------------------------------------

def to_json_safe(obj: Any, *, where: str = "value") -> Any:
    """Plain JSON types from `obj`: numpy scalars and arrays become numbers and lists,
    tuples become lists, and non-finite floats become None (JSON has no NaN; a metric
    that is undefined, such as an AUC over an empty set, is stored as null rather than
    failing the whole write). Anything else that JSON cannot hold raises TypeError
    naming where it sits."""
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, (np.generic, np.ndarray)):
        return to_json_safe(obj.tolist(), where=where)
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        safe = {}
        for key, value in obj.items():
            if not isinstance(key, str):
                raise TypeError(f"{where}: JSON keys must be strings, got {key!r}")
            safe[key] = to_json_safe(value, where=f"{where}.{key}")
        return safe
    if isinstance(obj, (list, tuple)):
        return [to_json_safe(item, where=f"{where}[{i}]") for i, item in enumerate(obj)]
    raise TypeError(f"{where}: {type(obj).__name__} cannot be stored as JSON")


def dumps_tagged_json(obj: Any) -> str:
    """JSON that `loads_tagged_json` turns back into the same value, exactly: numpy arrays
    (their bytes, dtype and shape), tuples, numpy scalars (as Python numbers) and
    non-finite floats survive, unlike in `to_json_safe`. For computed values kept in a
    cache, never for user files."""
    def tagged(value: Any) -> Any:
        if isinstance(value, np.ndarray):
            array = np.ascontiguousarray(value)
            return {"__ndarray__": base64.b64encode(array.tobytes()).decode("ascii"),
                    "dtype": array.dtype.str, "shape": list(array.shape)}
        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, tuple):
            return {"__tuple__": [tagged(item) for item in value]}
        if isinstance(value, list):
            return [tagged(item) for item in value]
        if isinstance(value, Mapping):
            if not all(isinstance(key, str) for key in value):
                raise TypeError(f"keys must be strings, got {list(value)!r}")
            return {key: tagged(item) for key, item in value.items()}
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        raise TypeError(f"{type(value).__name__} cannot be stored as tagged JSON")
    return json.dumps(tagged(obj))


def loads_tagged_json(text: str) -> Any:
    """The value `dumps_tagged_json` wrote; raises ValueError on anything else."""
    def untagged(value: Any) -> Any:
        if isinstance(value, list):
            return [untagged(item) for item in value]
        if isinstance(value, dict):
            if "__ndarray__" in value:
                dtype = np.dtype(value["dtype"])
                if dtype.hasobject:
                    raise ValueError("object arrays are not stored")
                data = base64.b64decode(value["__ndarray__"].encode("ascii"), validate=True)
                return np.frombuffer(data, dtype=dtype).reshape(value["shape"]).copy()
            if "__tuple__" in value:
                return tuple(untagged(item) for item in value["__tuple__"])
            return {key: untagged(item) for key, item in value.items()}
        return value
    try:
        return untagged(json.loads(text))
    except (KeyError, TypeError, AttributeError, binascii.Error) as error:
        raise ValueError(f"not tagged JSON ({error})") from None


def dumps_json(obj: Any, *, where: str = "value") -> str:
    return json.dumps(to_json_safe(obj, where=where), indent=2, sort_keys=True,
                      allow_nan=False)


def write_json(path: PathLike, obj: Any) -> None:
    """Atomic, indented, sorted keys; see `to_json_safe` for what is converted."""
    atomic_write_text(path, dumps_json(obj, where=Path(path).name) + "\n")


def read_json(path: PathLike) -> Any:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise UserError(f"{path}: not valid JSON ({error})") from None


# --- state dicts --------------------------------------------------------------------

def save_state_dict(path: PathLike, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Write tensors as safetensors, atomically. Each tensor is cloned to its own
    contiguous CPU storage first: safetensors refuses tensors that share memory (tied
    weights, views), and a clone also snapshots weights that training may still change."""
    import safetensors.torch
    import torch
    tensors = {}
    for key, tensor in state_dict.items():
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"state dict entry {key!r} is a {type(tensor).__name__}, "
                            "not a tensor")
        tensors[key] = tensor.detach().to("cpu").clone(memory_format=torch.contiguous_format)
    with atomic_target(path) as temp:
        safetensors.torch.save_file(tensors, str(temp))


def _unpickler_detail(message: str) -> str:
    """The one informative line of torch's long weights-only error message."""
    match = re.search(r"WeightsUnpickler error:\s*([^\n]+)", message)
    detail = match.group(1) if match else message.strip().splitlines()[0]
    return detail.split(". ")[0].strip()


def _load_torch_checkpoint(path: Path) -> Any:
    import torch
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        detail = _unpickler_detail(str(error))
        if "global" in detail.lower():
            raise UserError(
                f"checkpoint {path}: refused because only weights-only checkpoints are "
                f"accepted, and this file holds other Python objects ({detail}); "
                "re-save it with torch.save(model.state_dict(), path) or as .safetensors"
            ) from None
        raise UserError(f"checkpoint {path}: not a valid PyTorch checkpoint ({detail})") from None
    except (RuntimeError, EOFError, ValueError, zipfile.BadZipFile, SafetensorError) as error:
        reason = (str(error).strip().splitlines()[0][:200] if str(error).strip()
                  else type(error).__name__)
        raise UserError(f"checkpoint {path}: not a valid PyTorch checkpoint ({reason})") from None
    except (OSError, IndexError, KeyError, TypeError, AttributeError, OverflowError,
            MemoryError, RecursionError, struct.error) as error:
        # A truncated or garbled file trips the unpickler or the zip reader in many ways.
        raise UserError(f"checkpoint {path}: not a valid PyTorch checkpoint (damaged or "
                        f"truncated: {type(error).__name__})") from None


def _as_state_dict(loaded: Any, path: Path) -> dict[str, torch.Tensor]:
    import torch
    if isinstance(loaded, Mapping):
        for nested_key in NESTED_STATE_DICT_KEYS:
            if isinstance(loaded.get(nested_key), Mapping):
                loaded = loaded[nested_key]
                break
    if not isinstance(loaded, Mapping):
        raise UserError(f"checkpoint {path}: expected a dict of tensors, "
                        f"got {type(loaded).__name__}")
    not_tensors = [str(key) for key, value in loaded.items()
                   if not isinstance(key, str) or not isinstance(value, torch.Tensor)]
    if not_tensors:
        raise UserError(f"checkpoint {path}: expected a dict of tensors, but these entries "
                        f"are not tensors: {_first_few(not_tensors)}")
    return dict(loaded)


def load_state_dict(path: PathLike) -> dict[str, torch.Tensor]:
    """Tensors from a `.safetensors`, `.pt`, `.pth` or `.bin` file, on the CPU. A torch
    checkpoint may be the state dict itself or a dict holding it under "state_dict" or
    "model"."""
    import safetensors.torch
    path = Path(path)
    if path.is_dir():
        raise UserError(f"checkpoint {path}: is a folder; expected a weights file "
                        f"({', '.join(SAFETENSORS_SUFFIXES + TORCH_SUFFIXES)})")
    if not path.is_file():
        raise UserError(f"checkpoint {path}: file not found")
    suffix = path.suffix.lower()
    if suffix in SAFETENSORS_SUFFIXES:
        try:
            return safetensors.torch.load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as error:
            raise UserError(f"checkpoint {path}: not a valid safetensors file ({error})") from None
    if suffix in TORCH_SUFFIXES:
        return _as_state_dict(_load_torch_checkpoint(path), path)
    raise UserError(f"checkpoint {path}: unknown file type {suffix or '(no suffix)'!r}; "
                    f"allowed: {', '.join(SAFETENSORS_SUFFIXES + TORCH_SUFFIXES)}")


def _first_few(items: list[str]) -> str:
    shown = ", ".join(items[:_LISTED_KEYS])
    more = f", ... (+{len(items) - _LISTED_KEYS} more)" if len(items) > _LISTED_KEYS else ""
    return f"[{shown}{more}]"


def _shape(tensor: torch.Tensor) -> str:
    return "(" + ", ".join(str(size) for size in tensor.shape) + ")"


def load_into_model(model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor],
                    source: str) -> None:
    """Strict load that explains a misfit. Keys and shapes are checked before anything
    is copied, so on failure the model keeps its own weights."""
    expected = model.state_dict()
    missing = [key for key in expected if key not in state_dict]
    unexpected = [key for key in state_dict if key not in expected]
    mismatched = [key for key in expected
                  if key in state_dict and state_dict[key].shape != expected[key].shape]
    problems = []
    if missing:
        problems.append(f"missing keys {_first_few(missing)}")
    if unexpected:
        problems.append(f"unexpected {_first_few(unexpected)}")
    for key in mismatched[:_LISTED_KEYS]:
        problems.append(f"shape mismatch at {key}: checkpoint {_shape(state_dict[key])} "
                        f"vs model {_shape(expected[key])}")
    if problems:
        raise UserError(f"checkpoint {source} does not fit this model: " + ", ".join(problems))
    check_tensor_values(state_dict, expected, source)
    model.load_state_dict(state_dict, strict=True)


def check_tensor_values(state_dict: Mapping[str, torch.Tensor],
                        expected: Mapping[str, torch.Tensor], source: str) -> None:
    """Refuse, naming the tensor, a checkpoint whose weights would be cast silently
    (bool, integer or complex values where the model holds floats) or that holds NaN or
    infinity (which would fail much later, blamed on the learning rate)."""
    import torch
    for key, want in expected.items():
        got = state_dict[key]
        if want.is_floating_point():
            if got.is_complex() or not got.is_floating_point():
                raise UserError(f"checkpoint {source}: tensor {key} has dtype "
                                f"{str(got.dtype).removeprefix('torch.')}; the model expects "
                                f"floating-point weights ({str(want.dtype).removeprefix('torch.')})")
            if got.numel() and not bool(torch.isfinite(got).all()):
                bad = int((~torch.isfinite(got)).sum())
                raise UserError(f"checkpoint {source}: tensor {key} holds {bad:,} NaN or "
                                "infinite value(s); only finite weights can be imported")
        elif got.is_complex() or got.is_floating_point() or got.dtype == torch.bool:
            raise UserError(f"checkpoint {source}: tensor {key} has dtype "
                            f"{str(got.dtype).removeprefix('torch.')}; the model expects "
                            f"{str(want.dtype).removeprefix('torch.')}")


# --- arrays -------------------------------------------------------------------------

def save_arrays(path: PathLike, arrays: Mapping[str, np.ndarray]) -> None:
    """Compressed .npz, atomic. Object arrays are rejected because they would need a
    pickle to read back."""
    plain = {}
    for key, value in arrays.items():
        array = np.asarray(value)
        if array.dtype == object:
            raise TypeError(f"array {key!r} has dtype object; only numeric, bool and "
                            "string arrays can be saved")
        plain[key] = array
    with atomic_target(path) as temp:
        with open(temp, "wb") as handle:  # a file object: savez would append ".npz" to a name
            np.savez_compressed(handle, **plain)


def load_arrays(path: PathLike) -> dict[str, np.ndarray]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: file not found")
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except (ValueError, OSError, zipfile.BadZipFile) as error:
        raise UserError(f"{path}: not a valid .npz archive ({error})") from None
