"""`python -m unlearn_core bench`: measured times and accuracies, printed as measured.

"seconds" is the training or unlearning itself; "report seconds" is `evaluate()` for the
run (accuracies, CKA on every probe layer with bootstrap bands, probes, MIA, PCA).

Speed targets live here, not in unit tests. Each bench uses a fresh temporary run store
so nothing comes from the cache.
"""

from __future__ import annotations

import os
import platform
import tempfile

import torch

from .config import DataSpec, ForgetSpec, MethodSpec, RunSpec, SetupSpec
from .methods import list_methods
from .pipeline import run_unlearning, train_references
from .runs import RunStore
from .training import resolve_device


def machine_description(device: str) -> str:
    dev = resolve_device(device)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu"
    return (f"{dev.type} ({name}), {os.cpu_count()} CPU cores, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads")


def _setups(quick: bool, device: str) -> list[SetupSpec]:
    setups = [SetupSpec(device=device)]
    if not quick:
        setups += [SetupSpec(forget=ForgetSpec("random", fraction=0.1), device=device),
                   SetupSpec(data=DataSpec("digits"), device=device)]
    return setups


def run_bench(quick: bool = True, device: str = "auto") -> dict:
    rows = []
    with tempfile.TemporaryDirectory(prefix="lens-bench-") as root:
        store = RunStore(root)
        for setup in _setups(quick, device):
            where = f"{setup.data.name} / {setup.model.name} / {setup.forget.describe()}"
            refs = train_references(setup, store)
            for role, trained in (("original", refs.original), ("oracle", refs.oracle)):
                rows.append({"setup": where, "what": f"train {role}",
                             "seconds": trained.meta["seconds"],
                             "test": trained.meta["test_accuracy"],
                             "forget_train": None, "retain_train": None})
            for method in list_methods():
                run_id = run_unlearning(RunSpec(setup, MethodSpec(method.name)), store)
                report = store.get(run_id).report
                acc = report["accuracy"]["unlearned"]
                rows.append({"setup": where, "what": method.name,
                             "seconds": report["cost"]["seconds"], "test": acc["test"],
                             "forget_train": acc["forget_train"],
                             "retain_train": acc["retain_train"],
                             "evaluate_seconds": report["cost"]["evaluate_seconds"]})
    machine = machine_description(device)
    return {"machine": machine, "rows": rows, "table": _markdown(rows, machine)}


def _markdown(rows: list[dict], machine: str) -> str:
    def pct(v):
        return "" if v is None else f"{100 * v:.1f}"

    lines = [f"Machine: {machine}", "",
             "| setup | what | seconds | test acc % | forget-train acc % | retain-train acc % "
             "| report seconds |",
             "|---|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['setup']} | {r['what']} | {r['seconds']:.2f} | {pct(r['test'])} | "
              f"{pct(r['forget_train'])} | {pct(r['retain_train'])} | "
              f"{r['evaluate_seconds']:.2f} |" if "evaluate_seconds" in r else
              f"| {r['setup']} | {r['what']} | {r['seconds']:.2f} | {pct(r['test'])} | | | |"
              for r in rows]
    return "\n".join(lines)
