"""Sweeps on a Ray cluster, the driver owning the run store.

The run store (SQLite in WAL mode plus run folders) must stay on the driver's local
disk, so no Ray task opens it: tasks receive what they need through Ray's object store
and return what they made; only the driver (`run_cells_ray`) writes.

* references: one task per setup whose original or oracle the store's cache lacks
  trains them (`pipeline.train_reference_entries`, seeded with what the cache has) and
  returns them as one object; the driver writes the new entries into the cache. A setup
  the cache already has is `ray.put` once by the driver. Either way that one object is
  passed by reference to every run task of the setup, so Ray copies it at most once to
  each node.
* runs: one task per (setup, method spec) not already in the store; it rebuilds the
  references from that object, unlearns and evaluates (`pipeline.compute_run`) and
  returns the finished run; the driver `create`s and `finish`es it in the store.
* resources: each task reserves this process's torch thread count in CPUs (and sets it:
  CPU kernels sum in another order with another count, and the same seeds must give the
  same numbers on either executor), and one GPU when the cluster has GPUs and the setup
  is not pinned to the CPU.
* faults: a task whose worker dies is retried by Ray (`max_retries`); its run reaches
  the driver once, so it is stored once. Errors of a run (a UserError from the method's
  checks, a diverged run) come back as values, are not retried, and are recorded as the
  local executor records them. A driver stopped mid-sweep leaves the finished runs in the
  store; the next sweep reuses them (`runner.run_cells`). A cancel (Progress) or Ctrl-C
  cancels the outstanding tasks.
"""

from __future__ import annotations

import pickle
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from ..config import MethodSpec, RunSpec, SetupSpec
from ..errors import UserError
from ..pipeline import (CacheEntry, MemoryCache, RunOutput, compute_run, reference_cache_keys,
                       reference_roles, resolve_run, run_label, train_reference_entries,
                       train_references)
from ..progress import Progress
from ..runs import RunStore
from ..training import reference_key
from ..vocabulary import REFERENCE_ROLES

RAY_INSTALL_HINT = "install requirements-ray.txt (pip install -r requirements-ray.txt)"
# Ray reruns a task whose worker process or node died this many times.
TASK_RETRIES = 3
GPU_DEVICES = ("auto", "cuda")  # setup devices whose tasks reserve a GPU where there are any


def import_ray():
    """Ray, or a UserError naming the optional requirements file."""
    try:
        import ray
    except ImportError:
        raise UserError(f"--ray: Ray is not installed; {RAY_INSTALL_HINT}") from None
    return ray


def runtime_env() -> dict:
    """What every worker gets: this process's unlearn_core, uploaded by Ray, so nodes
    need the same requirements installed but not this checkout."""
    return {"py_modules": [str(Path(__file__).resolve().parents[1])]}


_joined: str | None = None  # the address this module joined, if it initialised Ray
CONNECT_TIMEOUT_S = 5.0


def _unreachable(address: str) -> str | None:
    """Why HOST:PORT (or ray://HOST:PORT) takes no TCP connection, or None. Checked first
    because ray.init retries an unreachable head for minutes before it gives up."""
    if address in ("auto", "local"):
        return None  # found through this machine's Ray session (ray.init says if not)
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit():
        return "expected HOST:PORT, ray://HOST:PORT or auto"
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        return f"no answer at {host}:{port}: {exc.strerror or exc}"
    return None


def connect(ray, address: str) -> None:
    """Join the cluster at `address`. Where Ray is already initialised by someone else
    (tests, a notebook: they chose the cluster and the runtime env) it is used as it is;
    where this module joined another address (the app's field changed), it leaves first."""
    global _joined
    if ray.is_initialized():
        if _joined is None or _joined == address:
            return
        ray.shutdown()
    if not isinstance(address, str) or not address.strip():
        raise UserError("--ray: expected a Ray cluster address (HOST:PORT, ray://HOST:PORT "
                        "or auto)")
    address = address.strip()
    why = _unreachable(address)
    if why is not None:
        raise UserError(f"--ray (Ray cluster address) {address!r}: {why}; start a cluster "
                        "with `ray start --head`, or leave out --ray to run here")
    _joined = None
    try:
        ray.init(address=address, log_to_driver=False, runtime_env=runtime_env())
        _joined = address
    except (ConnectionError, ValueError, TimeoutError, RuntimeError) as exc:
        detail = " ".join(str(exc).split())[:200]
        raise UserError(f"--ray (Ray cluster address) {address!r}: cannot connect to a Ray "
                        f"cluster ({detail}); start "
                        "one with `ray start --head`, or leave out --ray to run here") from None


# --- resources --------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """What each task reserves and how many fit on the cluster at once."""

    threads: int          # torch threads = Ray CPUs per task
    gpus: bool            # one GPU per task of a GPU_DEVICES setup
    at_once: int
    why: str              # "(4 CPUs / 2 threads per task)"

    def device_type(self, setup: SetupSpec) -> str:
        """The device type a task runs this setup on: what finished runs are matched by."""
        if setup.device == "auto":
            return "cuda" if self.gpus else "cpu"
        return str(setup.device)

    def options(self, setup: SetupSpec) -> dict:
        use_gpu = self.gpus and setup.device in GPU_DEVICES
        return {"num_cpus": self.threads, "num_gpus": 1 if use_gpu else 0,
                "max_retries": TASK_RETRIES}


def plan(ray, cells: Sequence[Any]) -> Plan:
    threads = torch.get_num_threads()
    nodes = [node["Resources"] for node in ray.nodes() if node["Alive"]]
    largest = max((node.get("CPU", 0) for node in nodes), default=0)
    if threads > largest:
        raise UserError(f"--ray: each run uses {threads} torch threads (this process's; set "
                        f"OMP_NUM_THREADS to change it) but the largest Ray node has "
                        f"{largest:g} CPUs")
    cpus = sum(node.get("CPU", 0) for node in nodes)
    gpus = sum(node.get("GPU", 0) for node in nodes)
    use_gpus = gpus > 0 and any(cell.setup.device in GPU_DEVICES for cell in cells)
    for cell in cells:
        # Ray shows each task only the GPU it reserved (as cuda:0): "cuda" finds it.
        device = str(cell.setup.device)
        if device == "cuda" and gpus == 0:
            raise UserError(f"setup.device: {device!r} but the Ray cluster reports no GPUs; "
                            "use \"auto\" or \"cpu\"")
    if use_gpus:
        at_once = sum(min(int(n.get("CPU", 0) // threads), int(n.get("GPU", 0))) for n in nodes)
        why = f"({gpus:g} GPUs, one per task; {cpus:g} CPUs / {threads} threads per task)"
    else:
        at_once = sum(int(n.get("CPU", 0) // threads) for n in nodes)
        why = f"({cpus:g} CPUs / {threads} threads per task)"
    return Plan(threads, use_gpus, at_once, why)


# --- the tasks (run on the workers; they never open the store) -------------------------


@dataclass
class ReferenceModels:
    """A setup's references as one object: the cache entries a run needs (and, for a
    model on an encoder, the encoder's), and which of them were trained now."""

    entries: dict[str, CacheEntry]
    trained: list[str] = field(default_factory=list)


@dataclass
class RunOutcome:
    """A run task's answer: the finished run, or an error and whether the local executor
    would have recorded the run as failed (it does once the method accepted the model)."""

    output: RunOutput | None
    error: str | None
    recorded: bool
    spec: dict          # the run spec, parameters resolved when they could be
    label: str
    wall_seconds: float


def _references_task(setup: dict, known: dict[str, CacheEntry], threads: int):
    torch.set_num_threads(threads)
    try:
        cache = train_reference_entries(SetupSpec.from_dict(setup), known)
    except UserError as exc:  # e.g. an imported original the cache lacks: not retried
        return f"{type(exc).__name__}: {exc}"
    return ReferenceModels(cache.entries, cache.added)


def _run_task(setup: dict, spec: dict, references: ReferenceModels, threads: int) -> RunOutcome:
    torch.set_num_threads(threads)
    started = time.perf_counter()
    run_spec = RunSpec(SetupSpec.from_dict(setup), MethodSpec.from_dict(spec))
    label = ""
    try:
        method, resolved = resolve_run(run_spec)
        label = run_label(method, resolved.setup)
        # Loaded from the entries (nothing to train: the references task cached them).
        refs = train_references(resolved.setup, MemoryCache(references.entries))
        method.accept(resolved.method.params, refs.original.model)
    except Exception as exc:  # refused before the run would be recorded (as locally)
        return RunOutcome(None, f"{type(exc).__name__}: {exc}", False, run_spec.to_dict(),
                          label, time.perf_counter() - started)
    try:
        output = compute_run(resolved, refs)
    except Exception as exc:  # DivergedError, a method's own error: recorded as failed
        return RunOutcome(None, f"{type(exc).__name__}: {exc}", True, resolved.to_dict(),
                          label, time.perf_counter() - started)
    return RunOutcome(output, None, True, resolved.to_dict(), label,
                      time.perf_counter() - started)


# --- the driver -------------------------------------------------------------------------


def payload_bytes(value: Any) -> int:
    """Bytes of an object as Ray serialises it (pickle 5; tensors and arrays dominate)."""
    return len(pickle.dumps(value, protocol=5))


@dataclass
class RayStats:
    """What the driver measured: its store writes, and the objects that went through the
    object store (each reference object once, however many nodes copied it)."""

    plan: Plan | None = None
    write_seconds: float = 0.0
    reference_objects: int = 0
    reference_bytes: int = 0
    results: int = 0
    result_bytes: int = 0

    def to_dict(self) -> dict:
        return {"at_once": self.plan.at_once if self.plan else None,
                "why": self.plan.why if self.plan else None,
                "threads_per_task": self.plan.threads if self.plan else None,
                "gpu_per_task": self.plan.gpus if self.plan else None,
                "driver_write_seconds": self.write_seconds,
                "reference_objects": self.reference_objects,
                "reference_bytes": self.reference_bytes,
                "results": self.results, "result_bytes": self.result_bytes}


def _known_entries(store: RunStore, setup: SetupSpec) -> dict[str, CacheEntry]:
    known = {}
    for key in reference_cache_keys(setup):
        entry = store.cache_get(key)
        if entry is not None:
            known[key] = entry
    return known


def _store_references(store: RunStore, refs: ReferenceModels) -> None:
    for key in refs.trained:
        state, meta = refs.entries[key]
        store.cache_put(key, state, meta)


def _store_run(store: RunStore, outcome: RunOutcome) -> str | None:
    """Write a task's run as `pipeline.run_unlearning` would have: finished, or failed
    when it got as far as being recorded; the run id of a finished run."""
    if not outcome.recorded:
        return None
    run_id = store.create("unlearn", outcome.spec, label=outcome.label)
    if outcome.output is None:
        store.fail(run_id, outcome.error)
        return None
    out = outcome.output
    store.finish(run_id, out.report, weights=out.weights, arrays=out.arrays)
    return run_id


def run_cells_ray(cells, methods: Sequence[MethodSpec], store: RunStore, address: str,
                  previous: dict, log, progress: Progress, stats: RayStats | None = None):
    """`runner.run_cells` on Ray (see the module docstring); returns (results,
    references) as the local executor does, in the same order."""
    from . import runner  # the runner's records and logs (the runner imports this lazily)

    ray = import_ray()
    connect(ray, address)
    stats = stats if stats is not None else RayStats()
    stats.plan = the_plan = plan(ray, cells)
    references_task = ray.remote(_references_task)
    run_task = ray.remote(_run_task)

    results: list[Any] = []
    for cell in cells:
        for spec in methods:
            results.append(runner._reused(cell, spec, previous, the_plan.device_type(cell.setup)))
    total = len(results)
    todo = {c: [m for m in range(len(methods)) if results[c * len(methods) + m] is None]
            for c in range(len(cells))}
    references: list[Any] = [None] * len(cells)
    pending: dict[Any, tuple[str, int]] = {}  # Ray future -> ("references", cell) or ("run", i)
    done_count = total - sum(len(v) for v in todo.values())

    def submit_runs(c: int, refs_object) -> None:
        cell = cells[c]
        for m in todo[c]:
            future = run_task.options(**the_plan.options(cell.setup)).remote(
                cell.setup.to_dict(), methods[m].to_dict(), refs_object, the_plan.threads)
            pending[future] = ("run", c * len(methods) + m)

    def reference_row(c: int, refs: ReferenceModels, trained_now: int) -> None:
        cell = cells[c]
        meta = {role: refs.entries[reference_key(cell.setup, role)][1] for role in REFERENCE_ROLES}
        references[c] = runner.ReferenceCosts(cell.scenario, cell.seed, meta["original"].get("seconds"),
                                          meta["oracle"].get("seconds"), trained_now)
        runner._log_references(log, references[c],
                               runner._device_type(meta["oracle"].get("device", "cpu")),
                               the_plan.device_type(cell.setup))

    def references_done(future, c: int) -> None:
        cell = cells[c]
        try:
            refs = ray.get(future)
        except ray.exceptions.RayError as exc:  # retries spent: the cell's runs fail
            refs = f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
            for m in todo[c]:
                finish(c * len(methods) + m, runner.RunResult(
                    cell.scenario, cell.seed, methods[m], None, None,
                    f"references: {refs}", reused=False, wall_seconds=0.0))
            return
        if isinstance(refs, str):  # a UserError: stops the sweep, as it does locally
            raise UserError(f"{cell.scenario} seed {cell.seed}: {refs}")
        stats.reference_objects += 1
        stats.reference_bytes += payload_bytes(refs)
        started = time.perf_counter()
        _store_references(store, refs)
        stats.write_seconds += time.perf_counter() - started
        reference_row(c, refs, sum(reference_key(cell.setup, r) in refs.trained for r in REFERENCE_ROLES))
        submit_runs(c, future)  # the task's own object: not put again

    def run_done(future, index: int) -> None:
        cell, spec = cells[index // len(methods)], methods[index % len(methods)]
        try:
            outcome = ray.get(future)
        except ray.exceptions.RayError as exc:  # retries spent (node lost, out of memory)
            finish(index, runner.RunResult(
                cell.scenario, cell.seed, spec, None, None,
                f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}",
                reused=False, wall_seconds=0.0))
            return
        stats.results += 1
        stats.result_bytes += payload_bytes(outcome)
        started = time.perf_counter()
        run_id = _store_run(store, outcome)
        stats.write_seconds += time.perf_counter() - started
        finish(index, runner.RunResult(cell.scenario, cell.seed, spec, run_id,
                                       store.get(run_id).report if run_id else None,
                                       outcome.error, reused=False,
                                       wall_seconds=outcome.wall_seconds))

    def finish(index: int, result) -> None:
        nonlocal done_count
        done_count += 1
        results[index] = result
        runner._log_result(log, result, done_count, total)

    reference_tasks = 0
    try:
        for c, cell in enumerate(cells):
            known = _known_entries(store, cell.setup)
            needed = [reference_key(cell.setup, role) for role in reference_roles(cell.setup)]
            if all(key in known for key in needed):
                refs = ReferenceModels({key: known[key] for key in needed})
                reference_row(c, refs, 0)
                if todo[c]:
                    stats.reference_objects += 1
                    stats.reference_bytes += payload_bytes(refs)
                    submit_runs(c, ray.put(refs))  # once; every run task gets the reference
            else:
                # Also when every run is reused: the table's reference rows need them.
                reference_tasks += 1
                future = references_task.options(**the_plan.options(cell.setup)).remote(
                    cell.setup.to_dict(), known, the_plan.threads)
                pending[future] = ("references", c)
        log(f"ray: {sum(len(v) for v in todo.values())} runs submitted ({done_count} reused), "
            f"{reference_tasks} reference tasks, {the_plan.threads} torch thread(s) each, "
            f"at most {the_plan.at_once} at once {the_plan.why}")
        for index, result in enumerate(results):
            if result is not None:
                runner._log_result(log, result, index + 1, total)
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
            progress.check()  # a cancel stops the sweep here (see the except below)
            for future in ready:
                kind, index = pending.pop(future)
                if kind == "references":
                    references_done(future, index)
                else:
                    run_done(future, index)
            progress.update(done_count / total if total else 1.0,
                            f"{done_count}/{total} runs done on Ray, at most "
                            f"{the_plan.at_once} at once {the_plan.why}")
    except BaseException:
        # Cancelled, Ctrl-C, a lost cluster, a UserError: stop what is queued or running.
        # Nothing of theirs is in the store; the next sweep runs them again.
        for future in pending:
            ray.cancel(future)
        raise
    progress.update(1.0, f"{total} runs done")
    return results, [r for r in references if r is not None]
