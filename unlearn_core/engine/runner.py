"""The runner: `run_cells` runs every method spec on every (scenario, seed, setup) cell,
reusing what the run store already has, in this process (progress and cancel through
`Progress`) or, with `ray_address`, as Ray tasks on a cluster of any number of nodes
(`engine.ray_executor`): the tasks never open the store, this process writes every run."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence


from ..config import MethodSpec, RunSpec, SetupSpec
from ..errors import Cancelled, UserError
from ..methods import get_method
from ..pipeline import resolve_run, run_unlearning, train_references
from ..progress import Progress
from ..runs import RunStore
from ..training import reference_key, resolve_device
from .grid import method_label


Log = Callable[[str], None]

# Errors of a failed run that say nothing about the method: such runs are run again.
_TRANSIENT_ERRORS = ("interrupted", "KeyboardInterrupt", "Cancelled", "OutOfMemoryError",
                     "MemoryError", "TaskCancelledError")


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
    writes it into `store` (`ray_executor`); `ray_stats` (a `ray_executor.RayStats`) then
    receives what that cost."""
    log = log or (lambda line: None)
    progress = progress or Progress()
    for spec in methods:  # bad parameters fail here, before anything trains
        get_method(spec.name).resolve_params(spec.params)
    previous = _previous_runs(store, retry_failed)
    if ray_address is not None:
        from .ray_executor import run_cells_ray  # Ray is optional: imported only when asked
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


def run_on_setup(setup: SetupSpec, methods: Sequence[MethodSpec], store: RunStore, *,
                 label: str = "setup", progress: Progress | None = None,
                 log: Log | None = None) -> list[RunResult]:
    """Every method spec on one setup (one cell of `run_cells`, the same reuse, progress
    and cancel): what a page runs on the setup of a run it shows, e.g. the Localization
    page's budget sweep."""
    return run_cells([Cell(label, setup.seed, setup)], methods, store, log=log,
                     progress=progress)[0]
