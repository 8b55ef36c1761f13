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

import time
from typing import Sequence

from .bench import render, run_specs, suite_header
from .config import MethodSpec, SetupSpec, canonical_json
from .runs import RunStore
from .engine import Log, format_stat, method_label, run_summary, stat, tabulate
from .vocabulary import REFERENCE_ROLES

# Every registered method whose model the embedded default has: the DKVB methods need a
# "dkvb" model (a bottleneck on a frozen trunk) and `localized` is DEL's family, run as del.
POISON_METHODS = ("retrain", "finetune", "neggrad", "neggrad_plus", "l1_sparse", "cf_k", "eu_k",
                  "random_label", "salun", "boundary_shrink", "boundary_expand", "scrub", "ssd",
                  "ec", "lau", "del")


def _cells(values: Sequence[float | None], scale: float = 100.0, digits: int = 1) -> str:
    return format_stat(stat(values), scale=scale, digits=digits) or "n/a"


def relearn_results(store: RunStore, results, log: Log | None = None) -> dict[str, dict]:
    """The relearning test (pipeline.relearn_of_run: the attack success rate after each
    of a few steps on k poisoned examples) of every finished backdoor run, by run id;
    kept with each run, so a second bench reads them."""
    from .pipeline import relearn_of_run
    out = {}
    done = [r for r in results if r.report is not None and "asr" in r.report.get("poison", {})]
    for i, r in enumerate(done, start=1):
        out[r.run_id] = relearn_of_run(store, r.run_id)
        if log is not None:
            log(f"[{i}/{len(done)}] relearning test of {method_label(r.spec)} seed {r.seed}")
    return out


def poison_rows(results, relearn: dict[str, dict] | None = None) -> list[dict]:
    """Per method spec (in run order), mean ± std over seeds of the backdoor numbers; the
    original and the oracle first, from the first report of each seed."""
    relearn = relearn or {}
    done = [r for r in results if r.report is not None and "asr" in r.report.get("poison", {})]
    if not done:
        return []
    names = done[0].report["poison"]["cka_triggered"]["names"]
    readout_layers = done[0].report["poison"]["readout_layers"]
    per_seed = {}
    for r in done:
        per_seed.setdefault(r.seed, r)
    rows = []
    for role in REFERENCE_ROLES:
        firsts = list(per_seed.values())
        rows.append(_row(f"*{role}*", role, [r.report for r in firsts], readout_layers, names,
                         None, [relearn.get(r.run_id) for r in firsts]))
    groups: dict = {}
    for r in done:
        groups.setdefault((r.spec.name, canonical_json(r.spec.params)), []).append(r)
    for group in groups.values():
        rows.append(_row(method_label(group[0].spec), "unlearned", [r.report for r in group],
                         readout_layers, names, [r.report["cost"]["seconds"] for r in group],
                         [relearn.get(r.run_id) for r in group]))
    return rows


def _relearned(tests: list[dict | None], role: str) -> tuple[str, str]:
    """(ASR after the last relearning step, steps to reach the target) over seeds."""
    known = [t for t in tests if t is not None]
    if not known:
        return "n/a", "n/a"
    steps = known[0]["params"]["steps"]
    reached = [t["steps_to_target"][role] for t in known]
    return (_cells(t["curves"][role]["scores"][-1] for t in known),
            ", ".join("never" if n is None else str(n) for n in reached) + f" (of {steps})")


def _row(label: str, role: str, reports: list[dict], readout_layers: list[str],
         names: list[str], seconds: list[float] | None, relearn: list[dict | None]) -> dict:
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
        "relearned": _relearned(relearn, role),
        "verdicts": ", ".join(f"{k} {v}" for k, v in sorted(verdicts.items())),
        "seconds": "" if seconds is None else _cells(seconds, scale=1.0, digits=1),
        "readout_layers": readout_layers, "names": names[:-1]}


RELEARN_LEGEND = (
    "Relearning: a copy of each model is fine-tuned for a few SGD steps on k poisoned "
    "examples (each step mixed with k fresh retain examples; metrics/relearn.py defaults) "
    "and the ASR measured after each; 'steps to relearn' is the first step at which the ASR "
    "reaches the target (the original's ASR before any step, capped at 50%), per seed. "
    "Knowledge that comes back much faster than to the oracle was hidden, not removed.")


def poison_markdown(rows: list[dict]) -> str:
    if not rows:
        return "No finished poison runs."
    layers, names = rows[0]["readout_layers"], rows[0]["names"]
    out = ["### The backdoor, method by method", "",
           "| method | seeds | forget (poisoned labels) % | clean test % | ASR % | "
           "ASR after head refit % | ASR after relearning % | steps to relearn (per seed) | "
           "verdicts | unlearn s |",
           "|---|---:|---:|---:|---:|---:|---:|---|---|---:|"]
    for r in rows:
        relearned, steps = r["relearned"]
        out.append(f"| {r['label']} | {r['n']} | {r['forget']} | {r['test']} | {r['asr']} | "
                   f"{r['refit']} | {relearned} | {steps} | {r['verdicts']} | {r['seconds']} |")
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
    seed_list = list(range(seeds))
    started = time.perf_counter()
    results, references = run_specs(base, ("poison",), seed_list,
                                    [MethodSpec(m) for m in methods], store, log,
                                    retry_failed=retry_failed)
    wall = time.perf_counter() - started
    summary = run_summary(results, references, wall)
    header = suite_header(base, seed_list, store, summary, wall, command)
    rows = tabulate(results, references)
    relearn = relearn_results(store, results, log)
    table = render("Unlearning a backdoor", header, rows) + "\n" + poison_markdown(
        poison_rows(results, relearn)) + "\n" + RELEARN_LEGEND + "\n"
    return {"suite": "poison", "header": header, "rows": rows, "summary": summary,
            "table": table}
