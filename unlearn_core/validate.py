"""Validators at the boundary, shared by the CLI, the app and the library.

Each one turns a raw value from a user (a flag, a form field, a JSON or TOML field, a
file) into a clean value, or raises `UserError` with one line that names the field and
what is allowed. Nothing here lets a Python exception other than UserError escape for
bad input: numbers too large or too long, wrong types, nesting too deep, text that is
not UTF-8 and paths the operating system refuses all end here.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any

from .errors import UserError

# Deeper than any setup, spec or sweep file needs; far below Python's recursion limit,
# so a hostile file is refused before the parser or a later walk can overflow.
MAX_NESTING = 32
# Python refuses int(str) beyond 4,300 digits; a number this long is a typo or an attack.
MAX_NUMBER_CHARS = 100
_PATH_MAX_CHARS = 4096


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 5] + "...'" + f" ({len(text)} chars)"


def user_path(value: Any, name: str) -> Path:
    """A path typed by a user: a non-empty string without NUL, `~` expanded only when a
    home directory is known."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str):
        raise UserError(f"{name}: expected a path (text), got {type(value).__name__}")
    if not value.strip():
        raise UserError(f"{name}: expected a path, got an empty string")
    if "\x00" in value:
        raise UserError(f"{name}: the path contains a NUL character, which no file system "
                        f"allows: {_short(value)}")
    if len(value) > _PATH_MAX_CHARS:
        raise UserError(f"{name}: the path is {len(value):,} characters long; at most "
                        f"{_PATH_MAX_CHARS:,} are allowed")
    try:
        value.encode(sys.getfilesystemencoding(), "surrogateescape")
    except UnicodeEncodeError:
        raise UserError(f"{name}: the path holds characters this file system cannot "
                        f"store: {_short(value)}") from None
    if value.startswith("~"):
        home = os.environ.get("HOME", "").strip()
        if value == "~" or value.startswith("~/"):
            if not home:
                raise UserError(f"{name}: {_short(value)} starts with '~' but HOME is not "
                                "set; write the full path")
        try:
            expanded = os.path.expanduser(value)
        except (RuntimeError, KeyError):
            expanded = value
        if expanded.startswith("~"):
            raise UserError(f"{name}: cannot expand {_short(value)} (no such user or no home "
                            "directory); write the full path")
        value = expanded
    return Path(value)


def check_nesting(obj: Any, name: str, limit: int = MAX_NESTING) -> Any:
    """Refuse JSON/TOML data nested deeper than `limit` (iteratively: no recursion)."""
    stack = [(obj, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list, tuple)):
            if depth > limit:
                raise UserError(f"{name}: nested more than {limit} levels deep; expected a "
                                "flat setup")
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return obj


def _too_deep(text: str, limit: int = MAX_NESTING) -> bool:
    depth = deepest = 0
    for char in text:
        if char in "[{":
            depth += 1
            deepest = max(deepest, depth)
            if deepest > limit:
                return True
        elif char in "]}":
            depth -= 1
    return False


def decode_text(data: bytes, name: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise UserError(f"{name}: not UTF-8 text (byte 0x{data[error.start]:02x} at offset "
                        f"{error.start}); save the file as UTF-8") from None


def _parse_constant(token: str):
    raise ValueError(token)


def load_json_text(text: str | bytes, name: str, *, allow_nan: bool = True) -> Any:
    """JSON from a user: UTF-8, not deeper than MAX_NESTING, numbers of at most
    MAX_NUMBER_CHARS characters; any failure is one line naming `name`."""
    if isinstance(text, bytes):
        text = decode_text(text, name)
    if _too_deep(text):
        raise UserError(f"{name}: nested more than {MAX_NESTING} levels deep; expected a "
                        "flat setup")

    def number(token: str, kind):
        if len(token) > MAX_NUMBER_CHARS:
            raise UserError(f"{name}: a number of {len(token):,} characters; at most "
                            f"{MAX_NUMBER_CHARS} are allowed")
        value = kind(token)
        if isinstance(value, float) and not math.isfinite(value):
            raise UserError(f"{name}: the number {_short(token)} is too large for a float")
        return value

    try:
        return json.loads(text, parse_int=lambda t: number(t, int),
                          parse_float=lambda t: number(t, float),
                          **({} if allow_nan else {"parse_constant": _parse_constant}))
    except UserError:
        raise
    except (ValueError, RecursionError) as error:
        raise UserError(f"{name}: not valid JSON ({str(error)[:120]})") from None


def load_toml_text(data: str | bytes, name: str) -> dict:
    """TOML from a user, with the same limits as `load_json_text`."""
    import tomllib
    text = decode_text(data, name) if isinstance(data, bytes) else data
    if _too_deep(text):
        raise UserError(f"{name}: nested more than {MAX_NESTING} levels deep")
    try:
        parsed = tomllib.loads(text, parse_float=lambda t: _toml_float(t, name))
    except UserError:
        raise
    except (tomllib.TOMLDecodeError, ValueError, RecursionError) as error:
        raise UserError(f"{name} is not valid TOML ({str(error)[:120]})") from None
    check_nesting(parsed, name)
    _check_ints(parsed, name)
    return parsed


def _toml_float(token: str, name: str) -> float:
    if len(token) > MAX_NUMBER_CHARS:
        raise UserError(f"{name}: a number of {len(token):,} characters; at most "
                        f"{MAX_NUMBER_CHARS} are allowed")
    value = float(token)
    if math.isinf(value) and "inf" not in token:
        raise UserError(f"{name}: the number {_short(token)} is too large for a float")
    return value


def _check_ints(obj: Any, name: str) -> None:
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, int) and not isinstance(item, bool) and abs(item) > 2 ** 63:
            raise UserError(f"{name}: the integer {_short(str(item))} is too large; "
                            "at most 2**63")


def parse_value(raw: str, name: str) -> Any:
    """A `key=value` value: JSON (number, true/false, list) when it parses, else text.
    Too long or too large numbers and deep nesting are refused naming `name`."""
    stripped = raw.strip()
    if stripped[:1] in "[{" and _too_deep(stripped):
        raise UserError(f"{name}: nested more than {MAX_NESTING} levels deep")
    try:
        return load_json_text(raw, name)
    except UserError as error:
        if "not valid JSON" in str(error):
            return raw  # plain text: the method's own check says what is allowed
        raise


def finite_float(value: Any, name: str) -> float:
    """A float that fits: ints too large for a float and non-finite values refused."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UserError(f"{name}: expected a number, got {_short(value)}")
    try:
        number = float(value)
    except OverflowError:
        raise UserError(f"{name}: the number {_short(str(value))} is too large for a "
                        "float") from None
    if not math.isfinite(number):
        raise UserError(f"{name}: expected a finite number, got {number}")
    return number


def setup_from_raw(raw: Any, name: str = "setup"):
    """A SetupSpec from parsed JSON/TOML, with every failure one UserError naming
    `name` and the field: wrong types (a number where a list was expected), numbers
    too large for a float, nesting too deep."""
    from .config import SetupSpec
    check_nesting(raw, name)
    if not isinstance(raw, dict):
        raise UserError(f"{name}: expected a JSON object with the setup's fields, got "
                        f"{type(raw).__name__}")
    try:
        return SetupSpec.from_dict(raw)
    except UserError:
        raise
    except (TypeError, ValueError, OverflowError, AttributeError, KeyError,
            RecursionError) as error:
        raise UserError(f"{name}: a field has the wrong type or size ({type(error).__name__}: "
                        f"{str(error)[:120]})") from None
