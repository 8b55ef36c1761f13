"""`python -m unlearn_core bench --suite evaluate`: how long `evaluate()` takes per run on
the embedded default, and where the time goes.

One unlearned model (a real run of EVALUATE_METHOD at its defaults) is evaluated `runs`
times in each of three states:

* first evaluation of a setup: nothing about the references is kept (the in-process
  cache is dropped before each evaluation and the store is not given), as for the first
  run after the references were trained;
* first run of a setup in a process: the in-process cache is dropped, the references'
  parts kept in the store are read, as in a fresh `unlearn` CLI call or the app's first
  run after a start;
* later runs: the in-process cache is kept, as for the second and later run of a setup
  in the app or in one bench or Tour process.

It prints the median, min and max of the totals and the median of each part
(report cost.evaluate_parts), with the machine, its load and the date, as measured.
"""

from __future__ import annotations

import datetime
import os
import statistics
from typing import Callable

from .config import MethodSpec, RunSpec, SetupSpec
from .errors import UserError
from .metrics.activations import clear_cache
from .metrics.report import evaluate
from .pipeline import resolve_run, train_references, unlearn_only
from .runs import RunStore
from .training import reference_key

EVALUATE_METHOD = "cf_k"  # a quick real method: the model evaluate() reads is a real run
# state -> (drop the in-process cache before each evaluation, give the store as parts cache)
STATES = {"first evaluation of a setup (nothing kept)": (True, False),
          "first run of a setup in a process (parts kept in the store)": (True, True),
          "later runs (reference parts cached in the process)": (False, True)}


def _load() -> str:
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "unknown"
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f} (1 / 5 / 15 min)"


def evaluate_suite(store: RunStore, *, runs: int = 5, device: str = "auto", command: str,
                   machine: str, log: Callable[[str], None] | None = None) -> dict:
    """Time `runs` evaluations in each state of STATES; the result's "table" is Markdown."""
    if runs < 1:
        raise UserError(f"--runs: expected an integer >= 1, got {runs}")
    log = log or (lambda line: None)
    setup = SetupSpec(device=device)
    method, resolved = resolve_run(RunSpec(setup, MethodSpec(EVALUATE_METHOD)))
    log("training or loading the references")
    refs = train_references(setup, store)
    method.accept(resolved.method.params, refs.original.model)
    outcome, _ = unlearn_only(resolved, refs)
    references = refs.models()
    models = {"unlearned": outcome.model, **references}
    keys = {role: reference_key(setup, role) for role in references}
    load_before = _load()
    measured = {}
    # The store keeps the references' parts from here on (the second state reads them).
    evaluate(models, refs.experiment, seconds=0.0, oracle_seconds=refs.oracle.meta["seconds"],
             reference_keys=keys, parts_cache=store)
    for state, (cold, kept) in STATES.items():
        totals, parts = [], []
        for attempt in range(runs):
            if cold:
                clear_cache()
            report, _ = evaluate(models, refs.experiment, seconds=0.0,
                                 oracle_seconds=refs.oracle.meta["seconds"], reference_keys=keys,
                                 parts_cache=store if kept else None)
            seconds = report["cost"]["evaluate_parts"]
            totals.append(sum(seconds.values()))
            parts.append(seconds)
            log(f"{state}, run {attempt + 1}/{runs}: {totals[-1]:.2f} s")
        measured[state] = {"totals": totals, "parts": parts}
    finished = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    header = [f"Command: `{command}`", "",
              f"Finished: {finished}. Machine: {machine}. Load average before: {load_before}; "
              f"after: {_load()}.", "",
              f"Setup: {setup.data.name} / {setup.model.name} / {setup.forget.describe()}, "
              f"unlearned model: {method.title} at its defaults; {runs} evaluations per state.",
              ""]
    return {"setup": setup.to_dict(), "runs": runs, "measured": measured,
            "table": "\n".join(header + _markdown(measured)) + "\n"}


def _markdown(measured: dict) -> list[str]:
    names = list(dict.fromkeys(name for m in measured.values() for p in m["parts"] for name in p))
    lines = ["| state | median s | min s | max s | " + " | ".join(f"{n} s" for n in names) + " |",
             "|---|---:|---:|---:|" + "---:|" * len(names)]
    for state, m in measured.items():
        medians = [statistics.median(p.get(name, 0.0) for p in m["parts"]) for name in names]
        lines.append(f"| {state} | {statistics.median(m['totals']):.2f} | {min(m['totals']):.2f} "
                     f"| {max(m['totals']):.2f} | " + " | ".join(f"{v:.2f}" for v in medians)
                     + " |")
    lines += ["", "Parts are medians over the runs, each run's wall seconds inside evaluate() "
                  "(report cost.evaluate_parts); the total is their sum."]
    return lines
