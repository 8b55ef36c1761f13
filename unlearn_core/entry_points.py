"""Entry points: "module:function" names of a user's code (a model builder, a method).

Kept free of torch so the specs can check and hash them cheaply.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import re
import sys
from pathlib import Path
from typing import Callable

from .errors import UserError

# "package.module:function" or "path/to/file.py:function"; the attribute may be dotted
# ("module:Class.build").
_ATTRIBUTE = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


def _split_entry_point(text: object, field: str) -> tuple[str, str]:
    if not isinstance(text, str):
        raise UserError(f"{field}: expected 'module:function' (text), got {type(text).__name__}")
    module, colon, attribute = text.strip().rpartition(":")
    if not colon or not module or _ATTRIBUTE.fullmatch(attribute) is None:
        raise UserError(f"{field}: expected 'module:function' (e.g. 'mypackage.models:build' "
                        f"or 'path/to/file.py:build'), got {text!r}")
    return module, attribute


def check_entry_point_text(text: object, field: str) -> str:
    """`text` stripped, when it has the form "module:function"; nothing is imported."""
    module, attribute = _split_entry_point(text, field)
    path = _module_file(module)
    if path is not None:
        # A relative file means another file from another working directory under the
        # same spec: the resolved path is what is stored and hashed.
        module = os.path.realpath(path)
    return f"{module}:{attribute}"


def _module_file(module: str) -> Path | None:
    return Path(module).expanduser() if module.endswith(".py") else None


def _import(module: str, field: str):
    path = _module_file(module)
    try:
        if path is None:
            return importlib.import_module(module)
        if not path.is_file():
            raise UserError(f"{field}: no such Python file {str(path)!r}")
        # One module object per file content: loading the same file twice gives the same
        # functions, and an edited file (a new source hash, so a new setup) is run anew
        # rather than served from the first import.
        key = f"{path.resolve()}\0{hashlib.sha256(path.read_bytes()).hexdigest()}"
        name = "unlearn_lens_user_" + hashlib.sha256(key.encode()).hexdigest()[:12]
        if name in sys.modules:
            return sys.modules[name]
        spec = importlib.util.spec_from_file_location(name, path)
        loaded = importlib.util.module_from_spec(spec)
        sys.modules[name] = loaded
        try:
            spec.loader.exec_module(loaded)
        except BaseException:
            del sys.modules[name]
            raise
        return loaded
    except UserError:
        raise
    except ModuleNotFoundError as exc:
        raise UserError(f"{field}: cannot import module {module!r} ({exc}); is it installed "
                        f"or on the Python path?") from None
    except Exception as exc:  # the user's module raised while importing: say what and where
        raise UserError(f"{field}: importing {module!r} failed: "
                        f"{type(exc).__name__}: {one_line(exc)}") from None


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 200 else text[:197] + "..."


def load_entry_point(text: str, *, field: str = "entry_point") -> Callable:
    """The callable named by `text`, "module:function" (a module importable from the Python
    path, or a .py file by its path), or a UserError naming `field` that says why not."""
    module_name, attribute = _split_entry_point(text, field)
    target = _import(module_name, field)
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise UserError(f"{field}: {module_name!r} has no attribute {attribute!r}")
        target = getattr(target, part)
    if not callable(target):
        raise UserError(f"{field}: {text.strip()!r} is a {type(target).__name__}, "
                        f"not a function or class")
    return target


def entry_point_source_hash(text: str, *, field: str = "entry_point") -> str:
    """A short hash of the source file of the entry point's module: what identifies the
    user's code beyond its name, so an edited model file does not reuse models trained
    from the old one. Empty when the module has no source file (a compiled extension)."""
    module_name, _ = _split_entry_point(text, field)
    path = _module_file(module_name)
    if path is None:
        module = _import(module_name, field)
        origin = getattr(module, "__file__", None)
        path = Path(origin) if origin else None
    if path is None or path.suffix != ".py" or not path.is_file():
        return ""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]
