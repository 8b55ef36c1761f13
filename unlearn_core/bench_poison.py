"""`bench --suite poison`: which methods remove a backdoor and which only hide it.

Every method that applies to the setup's model runs on the poison scenario (the default
backdoor of `PoisonSpec` unless the base setup has its own) over setup seeds 0..n-1,
through the shared runner (`bench.run_specs`, runs reused from the store). Besides the
standard table, one table of the backdoor numbers every report holds: forget accuracy on
the poisoned labels, ASR, ASR after a head refit, the trigger readout and CKA on
triggered inputs per layer, the verdicts and the unlearning time. The references' rows
come from the same reports.
"""

from __future__ import annotations

from typing import Sequence

from .bench import describe_setup, machine_description, render, run_specs
from .config import MethodSpec, SetupSpec, canonical_json
from .runs import RunStore
from .sweeps import Log, format_stat, method_label, run_summary, stat, tabulate

# Every registered method whose model the embedded default has: the DKVB methods need a
# "dkvb" model (a bottleneck on a frozen trunk) and `localized` is DEL's family, run as del.
POISON_METHODS = ("retrain", "finetune", "neggrad", "neggrad_plus", "l1_sparse", "cf_k", "eu_k",
                  "random_label", "salun", "boundary_shrink", "boundary_expand", "scrub", "ssd",
                  "ec", "lau", "del")


def _cells(values: Sequence[float | None], scale: float = 100.0, digits: int = 1) -> str:
    return format_stat(stat(values), scale=scale, digits=digits) or "n/a"


def poison_rows(results) -> list[dict]:
    """Per method spec (in run order), mean ± std over seeds of the backdoor numbers; the
    original and the oracle first, from the first report of each seed."""
    done = [r for r in results if r.report is not None and "poison" in r.report]
    if not done:
        return []
    names = done[0].report["poison"]["cka_triggered"]["names"]
    readout_layers = done[0].report["poison"]["readout_layers"]
    per_seed = {}
    for r in done:
        per_seed.setdefault(r.seed, r.report)
    rows = []
    for role in ("original", "oracle"):
        reports = list(per_seed.values())
        rows.append(_row(f"*{role}*", role, reports, readout_layers, names, None))
    groups: dict = {}
    for r in done:
        groups.setdefault((r.spec.name, canonical_json(r.spec.params)), []).append(r)
    for group in groups.values():
        rows.append(_row(method_label(group[0].spec), "unlearned", [r.report for r in group],
                         readout_layers, names, [r.report["cost"]["seconds"] for r in group]))
    return rows


def _row(label: str, role: str, reports: list[dict], readout_layers: list[str],
         names: list[str], seconds: list[float] | None) -> dict:
    poison = [rep["poison"] for rep in reports]
    verdicts: dict[str, int] = {}
    if role == "unlearned":
        for p in poison:
            verdicts[p["verdict"]["kind"]] = verdicts.get(p["verdict"]["kind"], 0) + 1
    cka_pair = "oracle_vs_original" if role == "oracle" else "unlearned_vs_original"
    return {
        "label": label, "role": role, "n": len(reports),
        "forget": _cells(rep["accuracy"][role]["forget_train"] for rep in reports),
        "test": _cells(rep["accuracy"][role]["test"] for rep in reports),
        "asr": _cells(p["asr"][role] for p in poison),
        "refit": _cells(p["asr_head_refit"][role] for p in poison),
        "readout": [_cells(p["readout"][role][i] for p in poison)
                    for i in range(len(readout_layers))],
        "cka": None if role == "original" else [
            _cells((p["cka_triggered"][cka_pair][i] for p in poison), scale=1.0, digits=3)
            for i in range(len(names) - 1)],
        "verdicts": ", ".join(f"{k} {v}" for k, v in sorted(verdicts.items())),
        "seconds": "" if seconds is None else _cells(seconds, scale=1.0, digits=1),
        "readout_layers": readout_layers, "names": names[:-1]}


def poison_markdown(rows: list[dict]) -> str:
    if not rows:
        return "No finished poison runs."
    layers, names = rows[0]["readout_layers"], rows[0]["names"]
    out = ["### The backdoor, method by method", "",
           "| method | seeds | forget (poisoned labels) % | clean test % | ASR % | "
           "ASR after head refit % | verdicts | unlearn s |",
           "|---|---:|---:|---:|---:|---:|---|---:|"]
    for r in rows:
        out.append(f"| {r['label']} | {r['n']} | {r['forget']} | {r['test']} | {r['asr']} | "
                   f"{r['refit']} | {r['verdicts']} | {r['seconds']} |")
    out += ["", "**Trigger readout per layer** (% of triggered held-out images a nearest-class-"
                "mean readout on clean features sends to the target)", "",
            "| method | " + " | ".join(layers) + " |", "|---|" + "---:|" * len(layers)]
    out += [f"| {r['label']} | " + " | ".join(r["readout"]) + " |" for r in rows]
    out += ["", "**CKA to the original on triggered inputs**", "",
            "| method | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    out += [f"| {r['label']} | " + " | ".join(r["cka"]) + " |" for r in rows if r["cka"]]
    return "\n".join(out)


def poison_suite(base: SetupSpec, store: RunStore, *, methods: Sequence[str] = POISON_METHODS,
                 seeds: int = 3, command: str | None = None, log: Log | None = None,
                 retry_failed: bool = False) -> dict:
    import time

    import torch
    seed_list = list(range(seeds))
    started = time.perf_counter()
    results, references = run_specs(base, ("poison",), seed_list,
                                    [MethodSpec(m) for m in methods], store, log,
                                    retry_failed=retry_failed)
    wall = time.perf_counter() - started
    summary = run_summary(results, references, wall)
    header = ([f"Command: `{command}`"] if command else []) + [
        f"Machine: {machine_description(base.device)}",
        f"Date: {time.strftime('%Y-%m-%d %H:%M %Z')}", f"torch: {torch.__version__}",
        f"Setup: {describe_setup(base, seed_list)}", f"Run store: {store.root}",
        f"This invocation: {summary['runs']} runs ({summary['reused']} reused from the store, "
        f"{summary['failed']} failed), {wall:.0f} s wall time"]
    rows = tabulate(results, references)
    table = render("Unlearning a backdoor", header, rows) + "\n" + poison_markdown(
        poison_rows(results)) + "\n"
    return {"suite": "poison", "header": header, "rows": rows, "summary": summary,
            "table": table}
