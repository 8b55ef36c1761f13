"""Sweeps: a method over a grid of hyperparameters and over setup seeds, grouped.

The engine under `bench` and `python -m unlearn_core sweep config.toml`:

* grids: `parse_grid` (CLI text, "lr=0.01,0.1"), `grid_from_values` (TOML arrays, the
  app's text fields), each value typed and range-checked by the method's own `Param`;
  `grid_specs` expands a grid into its Cartesian product.
* the runner: `run_cells` runs every method spec on every (scenario, seed, setup) cell,
  reusing what the run store already has, in this process (progress and cancel through
  `Progress`) or, with `ray_address`, as Ray tasks on a cluster of any number of nodes
  (`sweeps_ray`): the tasks never open the store, this process writes every run.
* grouping: `tabulate` groups runs by hyperparameter setting over seeds; `stat` gives
  mean, sample std and a 95% t-interval; with `rank`, the setting with the lowest mean
  avg gap to the oracle is marked best.
* config: `load_config` reads a sweep TOML; `run_sweep` runs it and renders its table.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from scipy import stats as scipy_stats

from .config import MethodSpec, RunSpec, SetupSpec, canonical_json
from .errors import Cancelled, UserError
from .methods import get_method
from .metrics.report import average_gap
from .pipeline import resolve_run, run_unlearning, train_references
from .progress import Progress
from .runs import RunStore
from .training import reference_key, resolve_device

Log = Callable[[str], None]

# Errors of a failed run that say nothing about the method: such runs are run again.
_TRANSIENT_ERRORS = ("interrupted", "KeyboardInterrupt", "Cancelled", "OutOfMemoryError",
                     "MemoryError", "TaskCancelledError")
# Accuracy keys of a row.
_ACC_KEYS = ("forget_train", "retain_train", "test", "test_forget", "test_retain")
CONFIDENCE = 0.95


# --- grids ------------------------------------------------------------------------------


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


# --- statistics -------------------------------------------------------------------------


def stat(values: Iterable[float | None], confidence: float = CONFIDENCE) -> dict:
    """Mean, sample standard deviation (ddof=1) and a two-sided Student-t interval of
    the mean over the finite values. With fewer than two values there is no spread to
    estimate: std and the interval are None, not zero."""
    vals = [float(v) for v in values if v is not None and math.isfinite(v)]
    n = len(vals)
    mean = statistics.fmean(vals) if vals else None
    std = statistics.stdev(vals) if n > 1 else None
    ci = None
    if std is not None:
        half = scipy_stats.t.ppf(0.5 + confidence / 2, n - 1) * std / math.sqrt(n)
        ci = [mean - half, mean + half]
    return {"mean": mean, "std": std, "ci": ci, "n": n, "values": vals}


# --- the runner -------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    """One setup of a sweep: a scenario name (rows are grouped by it), a setup seed and
    the setup itself (its seed equal to `seed`)."""

    scenario: str
    seed: int
    setup: SetupSpec


@dataclass
class RunResult:
    """One (scenario, seed, method spec): a finished run, a failure, or a reuse."""

    scenario: str
    seed: int
    spec: MethodSpec  # as asked (only the parameters given); the run has them resolved
    run_id: str | None
    report: dict | None
    error: str | None
    reused: bool
    wall_seconds: float


@dataclass
class ReferenceCosts:
    """What a sweep cell's original and oracle cost (pipeline.References holds the models)."""

    scenario: str
    seed: int
    original_seconds: float | None
    oracle_seconds: float | None
    trained_now: int  # how many of the two were trained by this invocation


def _device_type(name: str) -> str:
    return str(name).split(":")[0]


def _lookup_key(spec: RunSpec, device_type: str | None) -> tuple:
    return (spec.hash, spec.setup.original_key, device_type)


def _resolved(setup: SetupSpec, spec: MethodSpec) -> RunSpec:
    # As the pipeline resolves it (a user's method adds its source hash), so the lookup
    # finds the runs it stored.
    return resolve_run(RunSpec(setup, spec))[1]


def _previous_runs(store: RunStore, retry_failed: bool) -> dict[tuple, Any]:
    """Finished runs by (run spec hash, original key, device type); failed runs (not
    interrupted or out of memory) by device type None, so they are not retried unless
    asked. Newest first wins."""
    found: dict[tuple, Any] = {}
    for record in store.list(kind="unlearn"):
        try:
            spec = RunSpec.from_dict(record.spec)
        except (UserError, TypeError):
            continue
        if record.status == "done" and record.summary and record.summary["device"]:
            # From the index's summary: finding previous runs reads no report.
            key = _lookup_key(spec, _device_type(record.summary["device"]))
        elif (record.status == "failed" and not retry_failed and record.error
              and not record.error.startswith(_TRANSIENT_ERRORS)):
            key = _lookup_key(spec, None)
        else:
            continue
        found.setdefault(key, record)
    return found


def _reused(cell: Cell, spec: MethodSpec, previous: dict, device_type: str) -> RunResult | None:
    resolved = _resolved(cell.setup, spec)
    for key in (_lookup_key(resolved, device_type), _lookup_key(resolved, None)):
        record = previous.get(key)
        if record is not None:
            return RunResult(cell.scenario, cell.seed, spec, record.id, record.report,
                             record.error, reused=True, wall_seconds=0.0)
    return None


def stored_results(store: RunStore,
                   wanted: Sequence[tuple[Cell, MethodSpec]]) -> list[RunResult | None]:
    """For each (cell, method spec), the run `run_cells` would reuse instead of running
    it (finished on the cell's device type, or a failure that says something about the
    method), or None; runs nothing. For views that show what a sweep left in the store."""
    previous = _previous_runs(store, retry_failed=False)
    return [_reused(cell, spec, previous, resolve_device(cell.setup.device).type)
            for cell, spec in wanted]


def _execute(setup: SetupSpec, spec: MethodSpec, store: RunStore,
             progress: Progress | None = None) -> tuple[str | None, str | None, float]:
    """Run one (setup, spec) into the store: (run id, None, seconds) or, for a failure
    that says something about the method, (None, error, seconds)."""
    started = time.perf_counter()
    try:
        run_id = run_unlearning(_resolved(setup, spec), store, progress)
    except Cancelled:
        raise
    except Exception as exc:  # DivergedError, a method's own error, ...: shown, not fatal
        return None, f"{type(exc).__name__}: {exc}", time.perf_counter() - started
    return run_id, None, time.perf_counter() - started


def _references(setup: SetupSpec, store: RunStore,
                progress: Progress | None = None) -> tuple[float | None, float | None, int, str]:
    """Train (or load) a setup's original and oracle: their training seconds, how many
    were trained now, and the oracle's device type."""
    cached = [store.cache_has(reference_key(setup, role)) for role in ("original", "oracle")]
    refs = train_references(setup, store, progress)
    return (refs.original.meta.get("seconds"), refs.oracle.meta.get("seconds"),
            sum(not hit for hit in cached), _device_type(refs.oracle.meta.get("device", "cpu")))


def _seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} s"


def _log_references(log: Log, ref: ReferenceCosts, oracle_device: str, device_type: str,
                    seconds: float | None = None) -> None:
    took = "" if seconds is None else f" ({seconds:.1f} s)"
    log(f"{ref.scenario} seed {ref.seed} references{took}: "
        f"{ref.trained_now} of 2 trained now; original {_seconds(ref.original_seconds)}, "
        f"oracle {_seconds(ref.oracle_seconds)} to train, on {oracle_device}")
    if oracle_device != device_type:
        log(f"  warning: the cached oracle was trained on {oracle_device}, not "
            f"{device_type}; speed-ups mix devices (use a fresh --store)")


def _log_result(log: Log, r: RunResult, index: int, total: int) -> None:
    head = f"[{index}/{total}] {r.scenario} seed {r.seed} {method_label(r.spec)}:"
    if r.report is not None:
        body = (f"unlearn {r.report['cost']['seconds']:.1f} s"
                + (" (reused)" if r.reused else
                   f", with evaluation {r.wall_seconds:.1f} s"))
    else:
        body = f"FAILED{' (reused)' if r.reused else f' after {r.wall_seconds:.1f} s'}: {r.error}"
    log(f"{head} {body}")


def run_cells(cells: Sequence[Cell], methods: Sequence[MethodSpec], store: RunStore, *,
              log: Log | None = None, progress: Progress | None = None,
              retry_failed: bool = False, ray_address: str | None = None,
              ray_stats: Any = None) -> tuple[list[RunResult], list[ReferenceCosts]]:
    """Run every method spec on every cell, reusing runs the store already has; a
    failing run is recorded and the rest go on. Progress: one line per run on `log`,
    and a fraction on `progress`, whose cancel stops the sweep at the next step.

    Locally the runs go one after another in this process. With `ray_address` ("auto",
    an address, or anything when Ray is already initialised in this process) the
    references and runs are Ray tasks that return what they made, and this process
    writes it into `store` (`sweeps_ray`); `ray_stats` (a `sweeps_ray.RayStats`) then
    receives what that cost."""
    log = log or (lambda line: None)
    progress = progress or Progress()
    for spec in methods:  # bad parameters fail here, before anything trains
        get_method(spec.name).resolve_params(spec.params)
    previous = _previous_runs(store, retry_failed)
    if ray_address is not None:
        from .sweeps_ray import run_cells_ray  # Ray is optional: imported only when asked
        return run_cells_ray(cells, methods, store, ray_address, previous, log, progress,
                             ray_stats)
    total = len(cells) * len(methods)
    results: list[RunResult] = []
    references: list[ReferenceCosts] = []
    for c, cell in enumerate(cells):
        device_type = resolve_device(cell.setup.device).type
        steps = len(methods) + 1  # the references, then each method
        cell_progress = progress.stage(c / len(cells), (c + 1) / len(cells))
        started = time.perf_counter()
        *ref_values, oracle_device = _references(cell.setup, store,
                                                 cell_progress.stage(0.0, 1 / steps))
        references.append(ReferenceCosts(cell.scenario, cell.seed, *ref_values))
        _log_references(log, references[-1], oracle_device, device_type,
                        time.perf_counter() - started)
        for m, spec in enumerate(methods, 1):
            progress.check()
            result = _reused(cell, spec, previous, device_type)
            if result is None:
                run_id, error, wall = _execute(cell.setup, spec, store,
                                               cell_progress.stage(m / steps, (m + 1) / steps))
                result = RunResult(cell.scenario, cell.seed, spec, run_id,
                                   store.get(run_id).report if run_id else None, error,
                                   reused=False, wall_seconds=wall)
            results.append(result)
            cell_progress.update((m + 1) / steps, f"{len(results)}/{total} runs: "
                                                  f"{method_label(spec)}, seed {cell.seed}")
            _log_result(log, result, len(results), total)
    return results, references


# --- grouping ---------------------------------------------------------------------------


def role_metrics(report: dict, role: str) -> dict:
    """One role's ("unlearned", "original" or "oracle") accuracies, MIA-confidence
    efficacy and SalUn's avg gap to the oracle, from a run's report: what sweeps rank by
    and the Compare page shows."""
    acc = report["accuracy"][role]
    oracle = report["accuracy"]["oracle"]
    out = {k: acc[k] for k in _ACC_KEYS}
    out["mia"] = report["mia"]["efficacy"][role]["confidence"]
    out["avg_gap"] = average_gap(report, role)
    # signed, unlearned minus oracle: the x axis of the trade-off plot
    out["forget_gap"] = (None if acc["forget_train"] is None or oracle["forget_train"] is None
                         else acc["forget_train"] - oracle["forget_train"])
    return out


_METRIC_KEYS = (*_ACC_KEYS, "mia", "avg_gap", "forget_gap")


def _spec_key(spec: MethodSpec) -> tuple:
    return spec.name, canonical_json(spec.params)


def tabulate(results: Sequence[RunResult], references: Sequence[ReferenceCosts],
             rank: bool = False) -> list[dict]:
    """Rows, scenario by scenario: the original and the oracle (reference rows, from the
    runs' reports), then one row per method spec, `stat` over seeds. With `rank`, method
    rows are sorted by mean avg gap (failed last) and the first is marked best."""
    rows: list[dict] = []
    for scenario in dict.fromkeys(r.scenario for r in results):
        mine = [r for r in results if r.scenario == scenario]
        seeds = list(dict.fromkeys(r.seed for r in mine))
        forget = None
        first_report = {}  # per seed: the first report, for the reference rows
        for r in mine:
            if r.report is not None:
                first_report.setdefault(r.seed, r.report)
        if first_report:
            forget = next(iter(first_report.values())).get("forget_classes")
        refs = {ref.seed: ref for ref in references if ref.scenario == scenario}
        for role in ("original", "oracle"):
            per_seed = [role_metrics(rep, role) for rep in first_report.values()]
            metrics = {k: stat(m[k] for m in per_seed) for k in _METRIC_KEYS}
            oracle_secs = [refs[s].oracle_seconds for s in first_report if s in refs]
            metrics["seconds"] = stat(oracle_secs if role == "oracle" else [])
            metrics["speedup"] = stat([1.0] * len(oracle_secs) if role == "oracle" else [])
            rows.append({"scenario": scenario, "forget_classes": forget, "kind": role,
                         "method": role, "params": {}, "label": role, "seeds": seeds,
                         "n_ok": len(per_seed), "failures": [], "run_ids": [],
                         "metrics": metrics})
        method_rows = []
        for key in dict.fromkeys(_spec_key(r.spec) for r in mine):
            group = [r for r in mine if _spec_key(r.spec) == key]
            ok = [r for r in group if r.report is not None]
            per_seed = [role_metrics(r.report, "unlearned") for r in ok]
            metrics = {k: stat(m[k] for m in per_seed) for k in _METRIC_KEYS}
            metrics["seconds"] = stat(r.report["cost"]["seconds"] for r in ok)
            metrics["speedup"] = stat(r.report["cost"]["speedup"] for r in ok)
            spec = group[0].spec
            method_rows.append({
                "scenario": scenario, "forget_classes": forget, "kind": "method",
                "method": spec.name, "params": dict(spec.params), "label": method_label(spec),
                "seeds": [r.seed for r in group], "n_ok": len(ok),
                "failures": [{"seed": r.seed, "error": r.error} for r in group if r.report is None],
                "run_ids": [r.run_id for r in group if r.run_id],
                "reused": sum(r.reused for r in group), "metrics": metrics})
        if rank:
            method_rows.sort(key=lambda row: (row["metrics"]["avg_gap"]["mean"] is None,
                                              row["metrics"]["avg_gap"]["mean"] or 0.0))
            for i, row in enumerate(method_rows, 1):
                row["rank"] = i if row["metrics"]["avg_gap"]["mean"] is not None else None
                row["best"] = i == 1 and row["rank"] == 1
        rows += method_rows
    return rows


# --- tables -----------------------------------------------------------------------------


def format_stat(stat_: dict, scale: float = 100.0, digits: int = 1) -> str:
    """"mean ± std" (just the mean with one value; "" with none)."""
    if stat_["mean"] is None:
        return ""
    text = f"{scale * stat_['mean']:.{digits}f}"
    if stat_["std"] is not None:
        text += f" ± {scale * stat_['std']:.{digits}f}"
    return text


def format_interval(stat_: dict, scale: float = 100.0, digits: int = 1) -> str:
    """"[low, high]", or why there is none."""
    if stat_["ci"] is not None:
        low, high = stat_["ci"]
        return f"[{scale * low:.{digits}f}, {scale * high:.{digits}f}]"
    return "n/a (1 seed: no spread)" if stat_["n"] == 1 else "n/a (no finished run)"


def table_records(rows: Sequence[dict]) -> list[dict]:
    """The grouped table as flat records of text, for markdown and the app: per setting
    mean ± std over seeds, the 95% interval of the avg gap, the best setting marked;
    the original and the oracle first, as references."""
    records = []
    for r in rows:
        m = r["metrics"]
        reference = r["kind"] != "method"
        setting = (f"{r['label']} (reference)" if reference else
                   ", ".join(f"{k}={v}" for k, v in r["params"].items()) or "defaults")
        failures = "; ".join(f"seed {f['seed']}: {f['error']}" for f in r["failures"])
        records.append({
            "rank": "" if reference else "1 (best)" if r.get("best")
            else str(r.get("rank") or "–"),
            "setting": setting,
            "seeds ok": f"{r['n_ok']}/{len(r['seeds'])}",
            "avg gap (pp)": format_stat(m["avg_gap"], digits=2),
            f"avg gap {CONFIDENCE:.0%} CI (pp)": format_interval(m["avg_gap"], digits=2),
            "forget %": format_stat(m["forget_train"]),
            "retain %": format_stat(m["retain_train"]),
            "test %": format_stat(m["test"]),
            "MIA-conf. %": format_stat(m["mia"]),
            "unlearn s": format_stat(m["seconds"], scale=1.0, digits=2),
            "failures": " ".join(failures.split()).replace("|", "/")[:160],
            "best": bool(r.get("best"))})
    return records


def markdown_table(rows: Sequence[dict]) -> str:
    records = table_records(rows)
    columns = [c for c in records[0] if c != "best"]
    lines = ["| " + " | ".join(columns) + " |",
             "|" + "|".join("---" if c in ("rank", "setting", "failures") else "---:"
                            for c in columns) + "|"]
    for rec in records:
        cells = [str(rec[c]) for c in columns]
        if rec["best"]:
            cells = [f"**{c}**" if c else c for c in cells]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


LEGEND = (f"Grouped by hyperparameter setting over setup seeds (each seed has its own "
          f"original and oracle): mean ± sample std (ddof 1), and a {CONFIDENCE:.0%} Student-t "
          "interval of the mean avg gap. avg gap = mean |unlearned − oracle| over forget, "
          "retain and test accuracy and MIA-conf., in percentage points; the best setting "
          "(lowest mean avg gap) is in bold. unlearn s = the unlearning itself, not "
          "evaluation.")


# --- sweep configs ----------------------------------------------------------------------


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
    from .runs import checked_store_path
    return checked_store_path(value, "store")


def load_config(path: str | Path) -> SweepConfig:
    """A sweep TOML file (examples/sweep-finetune-lr.toml)."""
    from .validate import load_toml_text, user_path
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


def run_summary(results: Sequence[RunResult], references: Sequence[ReferenceCosts],
                wall_seconds: float) -> dict:
    """What one invocation did: runs, how many reused or failed, references trained."""
    return {"runs": len(results), "reused": sum(r.reused for r in results),
            "failed": sum(r.report is None for r in results),
            "reference_models_trained": sum(r.trained_now for r in references),
            "wall_seconds": wall_seconds}


def run_sweep(config: SweepConfig, store: RunStore, *, log: Log | None = None,
              progress: Progress | None = None, ray_address: str | None = None,
              retry_failed: bool = False) -> dict:
    """Run a sweep (runs already in the store are reused) and group it: {"rows" (see
    `tabulate`, ranked), "records" (`table_records`), "summary", "table" (markdown)}."""
    started = time.perf_counter()
    ray_stats = None
    if ray_address is not None:
        from .sweeps_ray import RayStats
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
