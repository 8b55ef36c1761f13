"""Grids of hyperparameters: from CLI text (`parse_grid`, "lr=0.01,0.1") or TOML arrays and
the app's fields (`grid_from_values`), each value typed and range-checked by the method's
own `Param`; `grid_specs` expands a grid into its Cartesian product."""

from __future__ import annotations

import itertools
from typing import Any, Mapping, Sequence


from ..config import MethodSpec
from ..errors import UserError
from ..methods import get_method


def _method(method_name: str, option: str):
    try:
        return get_method(method_name)
    except UserError as exc:
        raise UserError(f"{option}: {exc}") from None


def _grid_param(method, key: str, where: str):
    params = {p.name: p for p in method.params}
    if key not in params:
        raise UserError(f"{where}: {method.name} has no parameter {key!r}; allowed: "
                        f"{', '.join(sorted(params)) or 'none'}")
    return params[key]


def _grid_value(param, raw: Any, where: str) -> Any:
    """One grid value: text (the CLI's --grid, the app's fields) parsed with the param's
    type, or a typed value (TOML); either way validated against the param's range."""
    bad = UserError(f"{where}: {param.name} expects {param.allowed()}, got {raw!r}")
    try:
        value = raw
        if isinstance(raw, str):
            text = raw.strip()
            if param.kind == "int":
                try:
                    value = int(text)
                except ValueError:
                    value = float(text)  # "1e3" is fine; validate() rejects 2.5
            elif param.kind == "float":
                value = float(text)
            elif param.kind == "bool":
                value = {"true": True, "false": False}[text.lower()]
            elif param.kind == "choice":
                matches = [c for c in param.choices if str(c) == text]
                value = matches[0] if matches else text
        return param.validate(value)
    except (ValueError, KeyError, OverflowError, UserError):
        raise bad from None


def _grid_values(param, raws: Sequence[Any], where: str) -> list:
    # dict.fromkeys: a value given twice runs once (after typing: "2" and "2.0" are one)
    return list(dict.fromkeys(_grid_value(param, raw, where) for raw in raws))


def parse_grid(method_name: str, entries: Sequence[str]) -> dict[str, list]:
    """`["lr=0.01,0.1", "epochs=2,4"]` -> {"lr": [0.01, 0.1], "epochs": [2, 4]}, each
    value parsed with the method's Param type and validated against its range."""
    method = _method(method_name, "--method")
    grid: dict[str, list] = {}
    for entry in entries:
        key, sep, raw = entry.partition("=")
        key = key.strip()
        where = f"--grid {entry!r}"
        if not sep or not key or not raw.strip():
            names = ", ".join(sorted(p.name for p in method.params)) or "none"
            raise UserError(f"{where}: expected NAME=V1,V2,... (parameters of "
                            f"{method.name}: {names})")
        param = _grid_param(method, key, where)
        if key in grid:
            raise UserError(f"{where}: {key} is given twice")
        texts = [t.strip() for t in raw.split(",")]
        if any(t == "" for t in texts):
            raise UserError(f"{where}: an empty value; expected {param.allowed()}")
        grid[key] = _grid_values(param, texts, where)
    return grid


def grid_from_values(method_name: str, values: Mapping[str, Any],
                     where: str = "grid") -> dict[str, list]:
    """A grid from a mapping of parameter name to a list of values (a TOML table) or to
    comma-separated text (the app's fields); errors name `where`.<parameter>."""
    method = _method(method_name, "method")
    if not isinstance(values, Mapping):
        raise UserError(f"{where}: expected a table of parameter = [values], got "
                        f"{type(values).__name__}")
    grid: dict[str, list] = {}
    for key, raw in values.items():
        at = f"{where}.{key}"
        param = _grid_param(method, key, at)
        if isinstance(raw, str):
            raw = [t for t in (t.strip() for t in raw.split(",")) if t]
        if not isinstance(raw, list) or not raw:
            raise UserError(f"{at}: expected a non-empty list of values, each "
                            f"{param.allowed()}, e.g. [{param.default!r}]")
        grid[key] = _grid_values(param, raw, at)
    return grid


def grid_specs(method_name: str, grid: Mapping[str, Sequence]) -> list[MethodSpec]:
    """One MethodSpec per point of the grid's Cartesian product (parameters not in the
    grid keep their defaults)."""
    keys = list(grid)
    return [MethodSpec(method_name, dict(zip(keys, values)))
            for values in itertools.product(*(grid[k] for k in keys))]


def method_label(spec: MethodSpec) -> str:
    if not spec.params:
        return spec.name
    return spec.name + " " + " ".join(f"{k}={v}" for k, v in spec.params.items())
