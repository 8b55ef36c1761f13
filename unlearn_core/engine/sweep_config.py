"""Sweep configs: `load_config` reads a sweep TOML (method, grid, seeds, setup, store);
`estimate` sizes it; `run_sweep` runs it and renders its table."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping


from ..config import MethodSpec, SetupSpec
from ..errors import UserError
from ..progress import Progress
from ..runs import RunStore
from .grid import grid_from_values, grid_specs
from .runner import Cell, Log, _previous_runs, _resolved, run_cells
from .tables import LEGEND, markdown_table, run_summary, table_records, tabulate


CONFIG_KEYS = {"method": "the method to sweep (see `list methods`)",
               "grid": "a table: parameter = [values]",
               "seeds": "a number of setup seeds n (0..n-1) or a list of seeds",
               "setup": "dataset, forget set, model, training (as `runs show` prints a "
                        "run's setup; default: the embedded default)",
               "store": "run store folder"}
MAX_SEEDS = 100


def _seed_list(raw: Any) -> tuple[int, ...]:
    if isinstance(raw, int) and not isinstance(raw, bool):
        if not 1 <= raw <= MAX_SEEDS:
            raise UserError(f"seeds: expected a number of seeds in [1, {MAX_SEEDS}] or a "
                            f"list of seeds, got {raw!r}")
        return tuple(range(raw))
    if (isinstance(raw, list) and raw and len(raw) <= MAX_SEEDS
            and all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s < 2**31
                    for s in raw) and len(set(raw)) == len(raw)):
        return tuple(raw)
    raise UserError(f"seeds: expected a number of seeds in [1, {MAX_SEEDS}] or a list of "
                    f"distinct seeds in [0, 2^31), got {raw!r}")


@dataclass(frozen=True)
class SweepConfig:
    """A method, a grid of its hyperparameters, setup seeds and the setup they vary."""

    method: str
    grid: dict
    seeds: tuple[int, ...] = (0, 1, 2)
    setup: SetupSpec = dataclasses.field(default_factory=SetupSpec)
    store: Path | None = None

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> "SweepConfig":
        """Checked key by key; a bad one raises UserError naming it and what is allowed."""
        unknown = sorted(set(raw) - set(CONFIG_KEYS))
        if unknown:
            raise UserError(f"unknown key(s) {unknown}; allowed: " + "; ".join(
                f"{k} ({v})" for k, v in CONFIG_KEYS.items()))
        if not isinstance(raw.get("method"), str):
            raise UserError("method: expected a method name, e.g. method = \"finetune\"")
        if "grid" in raw and isinstance(raw["grid"], Mapping) and not raw["grid"]:
            raise UserError("grid: the [grid] table is empty, so the sweep would run only "
                            "the method's defaults; add parameter = [values] lines (e.g. "
                            "lr = [0.01, 0.1]) or remove [grid] to run the defaults")
        grid = grid_from_values(raw["method"], raw.get("grid", {}))
        seeds = _seed_list(raw.get("seeds", 3))
        setup_raw = raw.get("setup", {})
        if not isinstance(setup_raw, Mapping):
            raise UserError(f"setup: expected a table, got {type(setup_raw).__name__}")
        if "seed" in setup_raw:
            raise UserError("setup.seed: the seeds are the sweep's own; use the top-level "
                            "key seeds = N or seeds = [..]")
        try:
            setup = SetupSpec.from_dict(setup_raw)
        except UserError as exc:
            raise UserError(f"setup: {exc}") from None
        store = raw.get("store")
        if store is not None and not (isinstance(store, str) and store.strip()):
            raise UserError(f"store: expected a folder path, got {store!r}")
        return cls(method=raw["method"], grid=grid,
                   seeds=seeds, setup=setup,
                   store=_store_path(store) if store is not None else None)

    @property
    def specs(self) -> list[MethodSpec]:
        return grid_specs(self.method, self.grid)

    @property
    def scenario(self) -> str:
        return f"forget {self.setup.forget.describe()}"

    def cells(self) -> list[Cell]:
        return [Cell(self.scenario, seed, dataclasses.replace(self.setup, seed=seed))
                for seed in self.seeds]


def _store_path(value: str) -> Path:
    from ..runs import checked_store_path
    return checked_store_path(value, "store")


def load_config(path: str | Path) -> SweepConfig:
    """A sweep TOML file (examples/sweep-finetune-lr.toml)."""
    from ..validate import load_toml_text, user_path
    path = user_path(path, "config")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UserError(f"config: cannot read {path} ({exc.strerror or exc})") from None
    raw = load_toml_text(data, f"config {path}")
    try:
        return SweepConfig.from_dict(raw)
    except UserError as exc:
        raise UserError(f"{path}: {exc}") from None


# Above this many runs a sweep asks before it starts (the CLI's --yes goes ahead).
CONFIRM_ABOVE_RUNS = 200


def estimate(config: SweepConfig, store: RunStore | None = None) -> dict:
    """How big a sweep is before it starts: runs (settings × seeds), how many the store
    already has (reused), and a rough time from this method's earlier runs in the store."""
    runs = len(config.specs) * len(config.seeds)
    reused, seconds = 0, []
    if store is not None:
        previous = _previous_runs(store, retry_failed=False)
        for cell in config.cells():
            for spec in config.specs:
                resolved = _resolved(cell.setup, spec)
                if any(key[0] == resolved.hash for key in previous):
                    reused += 1
        for record in store.list(kind="unlearn", status="done"):
            method = (record.report or {}).get("method") or {}
            cost = (record.report or {}).get("cost") or {}
            if method.get("name") == config.method and isinstance(cost.get("seconds"), (int, float)):
                seconds.append(cost["seconds"] + (cost.get("evaluate_seconds") or 0.0))
    per_run = sorted(seconds)[len(seconds) // 2] if seconds else None
    return {"runs": runs, "reused": reused, "new": runs - reused, "seconds_per_run": per_run,
            "seconds": None if per_run is None else per_run * (runs - reused)}


def describe_config(config: SweepConfig) -> str:
    s = config.setup
    grid = "; ".join(f"{k} = {', '.join(map(str, v))}" for k, v in config.grid.items())
    return (f"{config.method} over {len(config.specs)} setting(s) ({grid or 'defaults'}) × "
            f"{len(config.seeds)} seed(s) ({', '.join(map(str, config.seeds))}) on "
            f"{s.data.name} / {s.model.name} / forget {s.forget.describe()} / trained "
            f"{s.train.epochs} epochs")


def run_sweep(config: SweepConfig, store: RunStore, *, log: Log | None = None,
              progress: Progress | None = None, ray_address: str | None = None,
              retry_failed: bool = False) -> dict:
    """Run a sweep (runs already in the store are reused) and group it: {"rows" (see
    `tabulate`, ranked), "records" (`table_records`), "summary", "table" (markdown)}."""
    started = time.perf_counter()
    ray_stats = None
    if ray_address is not None:
        from .ray_executor import RayStats
        ray_stats = RayStats()
    results, references = run_cells(config.cells(), config.specs, store, log=log,
                                     progress=progress, retry_failed=retry_failed,
                                     ray_address=ray_address, ray_stats=ray_stats)
    wall = time.perf_counter() - started
    rows = tabulate(results, references, rank=True)
    summary = {**run_summary(results, references, wall),
               "executor": f"ray ({ray_address})" if ray_address else "local"}
    header = [f"Sweep: {describe_config(config)}", f"Run store: {store.root}",
              f"This invocation ({summary['executor']}): {summary['runs']} runs "
              f"({summary['reused']} reused from the store, {summary['failed']} failed), "
              f"{summary['reference_models_trained']} reference models trained, "
              f"{wall:.0f} s wall time"]
    if ray_stats is not None:
        summary["ray"] = ray = ray_stats.to_dict()
        header.append(f"Ray: at most {ray['at_once']} tasks at once {ray['why']}; the "
                      f"driver wrote the store in {ray['driver_write_seconds']:.1f} s; "
                      f"{ray['reference_objects']} reference objects "
                      f"({ray['reference_bytes'] / 1e6:.1f} MB) and {ray['results']} "
                      f"results ({ray['result_bytes'] / 1e6:.1f} MB) through the object store")
    table = "\n".join([*(f"{line}  " for line in header), "", markdown_table(rows), "",
                       LEGEND, ""])
    return {"config": {"method": config.method, "grid": config.grid,
                       "seeds": list(config.seeds), "setup": config.setup.to_dict()},
            "rows": rows, "records": table_records(rows), "summary": summary,
            "run_ids": [r.run_id for r in results if r.run_id], "table": table}
