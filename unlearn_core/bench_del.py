"""`bench --suite del`: DEL's claims with the learning rate and epochs tuned per budget.

The paper tunes Reset + Finetune per budget ρ and strategy. Here the tuning runs on setup
seed 0 only: DEL's mask, the random control (DEL's per-layer counts, channels drawn at
random) and SalLoc, each at every ρ over `del_localized.TUNING_GRID`. Per (scenario,
strategy, ρ) the setting closest to seed 0's oracle (SalUn's average gap) is kept and run
on the held-out seeds 1..n-1, where the claims are read, so no number in the claims
table comes from a run its setting was chosen on. Runs go through the shared runner
(`bench.run_specs`), reused from the store on a second invocation.
"""

from __future__ import annotations

import time
from typing import Sequence

from .bench import render, run_specs, scenario_title, suite_header
from .config import MethodSpec, SetupSpec, canonical_json
from .errors import UserError
from .methods.del_localized import SWEEP_RHOS, TUNING_GRID, grid_settings
from .runs import RunStore
from .engine import Log, RunResult, format_stat, run_summary, stat, tabulate

DEL_STRATEGIES = ("del", "random", "salloc")
DEL_RHOS = (0.05, 0.1, 0.3)
DEL_SCENARIOS = ("non_iid",)


def tuning_specs(strategies: Sequence[str], rhos: Sequence[float]) -> list[MethodSpec]:
    return [MethodSpec("localized", {"strategy": strategy, "rho": rho, **setting})
            for strategy in strategies for rho in rhos for setting in grid_settings(TUNING_GRID)]


def chosen_settings(results: Sequence[RunResult]) -> dict[tuple, tuple[MethodSpec, float]]:
    """(scenario, strategy, ρ) -> the spec with the smallest average gap among the tuning
    runs, and that gap. A setting whose run failed cannot be chosen."""
    best: dict[tuple, tuple[MethodSpec, float]] = {}
    for r in results:
        gap = None if r.report is None else r.report["average_gap"]["unlearned"]
        if gap is None:
            continue
        key = (r.scenario, r.spec.params["strategy"], r.spec.params["rho"])
        if key not in best or gap < best[key][1]:
            best[key] = (r.spec, gap)
    return best


def _setting(spec: MethodSpec) -> str:
    return f"lr {spec.params['lr']:g}, {spec.params['epochs']} ep"


def claims_rows(chosen: dict[tuple, tuple[MethodSpec, float]],
                held_out: Sequence[RunResult]) -> list[dict]:
    """Per (scenario, ρ, strategy): the setting chosen on seed 0, its seed-0 gap, and on
    the held-out seeds mean ± std of forget / test accuracy, MIA and the average gap,
    plus the per-seed gap of each strategy for the head-to-head counts."""
    rows = []
    for (scenario, strategy, rho), (spec, tuned_gap) in sorted(chosen.items()):
        runs = [r for r in held_out if r.scenario == scenario and r.spec == spec
                and r.report is not None]
        reports = [r.report for r in runs]
        rows.append({
            "scenario": scenario, "rho": rho, "strategy": strategy, "setting": _setting(spec),
            "tuned_gap": tuned_gap, "n": len(reports),
            "forget": stat(rep["accuracy"]["unlearned"]["forget_train"] for rep in reports),
            "test": stat(rep["accuracy"]["unlearned"]["test"] for rep in reports),
            "mia": stat(rep["mia"]["efficacy"]["unlearned"]["confidence"] for rep in reports),
            "gap": stat(rep["average_gap"]["unlearned"] for rep in reports),
            "gap_by_seed": {r.seed: r.report["average_gap"]["unlearned"] for r in runs}})
    return rows


def _wins(rows: list[dict], scenario: str, rho: float, a: str, b: str) -> str:
    """How many held-out seeds `a` came closer to the oracle than `b`, e.g. "2 of 2"."""
    by_strategy = {r["strategy"]: r["gap_by_seed"] for r in rows
                   if r["scenario"] == scenario and r["rho"] == rho}
    if a not in by_strategy or b not in by_strategy:
        return "n/a"
    seeds = sorted(set(by_strategy[a]) & set(by_strategy[b]))
    wins = sum(by_strategy[a][s] < by_strategy[b][s] for s in seeds)
    return f"{wins} of {len(seeds)}"


def claims_markdown(rows: list[dict], oracle_rows: dict[str, dict]) -> str:
    if not rows:
        return "No finished tuning runs."
    out = []
    for scenario in dict.fromkeys(r["scenario"] for r in rows):
        oracle = oracle_rows.get(scenario, {})
        out += [f"### Claims, tuned per budget: {scenario_title(scenario, None)}", "",
                f"Oracle on the held-out seeds: forget {oracle.get('forget', 'n/a')}, "
                f"test {oracle.get('test', 'n/a')}, MIA {oracle.get('mia', 'n/a')}.", "",
                "| ρ | strategy | setting chosen on seed 0 | seed-0 gap (pp) | held-out seeds | "
                "forget % | test % | MIA-conf. % | avg gap (pp) |",
                "|---:|---|---|---:|---:|---:|---:|---:|---:|"]
        mine = [r for r in rows if r["scenario"] == scenario]
        for r in mine:
            out.append(f"| {r['rho']:g} | {r['strategy']} | {r['setting']} | "
                       f"{100 * r['tuned_gap']:.2f} | {r['n']} | {format_stat(r['forget'])} | "
                       f"{format_stat(r['test'])} | {format_stat(r['mia'])} | "
                       f"{format_stat(r['gap'], digits=2)} |")
        out += ["", "| ρ | DEL closer than the random control (seeds) | "
                    "DEL closer than SalLoc (seeds) |", "|---:|---|---|"]
        for rho in dict.fromkeys(r["rho"] for r in mine):
            out.append(f"| {rho:g} | {_wins(rows, scenario, rho, 'del', 'random')} | "
                       f"{_wins(rows, scenario, rho, 'del', 'salloc')} |")
        out.append("")
    return "\n".join(out)


def _oracle_rows(held_out: Sequence[RunResult]) -> dict[str, dict]:
    """Per scenario, the oracle's forget / test accuracy and MIA over the held-out seeds
    (one report per seed)."""
    first: dict[tuple[str, int], dict] = {}
    for r in held_out:
        if r.report is not None:
            first.setdefault((r.scenario, r.seed), r.report)
    out = {}
    for scenario in dict.fromkeys(s for s, _ in first):
        reports = [rep for (s, _), rep in first.items() if s == scenario]
        out[scenario] = {
            "forget": format_stat(stat(rep["accuracy"]["oracle"]["forget_train"] for rep in reports)),
            "test": format_stat(stat(rep["accuracy"]["oracle"]["test"] for rep in reports)),
            "mia": format_stat(stat(rep["mia"]["efficacy"]["oracle"]["confidence"]
                                    for rep in reports))}
    return out


LEGEND = (
    "Tuning: on setup seed 0, every strategy at every ρ ran with each setting of "
    + " × ".join(f"{k} ∈ {{{', '.join(f'{v:g}' for v in vs)}}}" for k, vs in TUNING_GRID.items())
    + "; the setting with the smallest average gap to seed 0's oracle was then run on the "
    "held-out seeds, whose numbers are the ones above (mean ± sample std). strategy: del = "
    "DEL's mask (|w·g|, channels), random = as many channels per tensor as DEL's mask, drawn "
    "at random, salloc = |g| per parameter (SalUn's saliency); all with Reset + Finetune. "
    "avg gap = mean |unlearned − oracle| over forget, retain, test accuracy and MIA-conf., "
    "in percentage points.")


def del_suite(base: SetupSpec, store: RunStore, *, seeds: int = 3,
              scenarios: Sequence[str] = DEL_SCENARIOS,
              strategies: Sequence[str] = DEL_STRATEGIES, rhos: Sequence[float] = DEL_RHOS,
              command: str | None = None, log: Log | None = None,
              retry_failed: bool = False) -> dict:
    if seeds < 2:
        raise UserError(f"--seeds: the del suite tunes on seed 0 and reads the claims on the "
                        f"others, so it needs at least 2; got {seeds}")
    unknown = sorted(set(rhos) - set(SWEEP_RHOS))
    if unknown:
        raise UserError(f"rhos: expected values among {list(SWEEP_RHOS)}, got {unknown}")
    started = time.perf_counter()
    tuning, tuning_refs = run_specs(base, scenarios, [0], tuning_specs(strategies, rhos), store,
                                    log, retry_failed=retry_failed)
    chosen = chosen_settings(tuning)
    held_out, held_refs = [], []
    for scenario in scenarios:
        specs = list({canonical_json(spec.params): spec
                      for (s, _, _), (spec, _) in chosen.items() if s == scenario}.values())
        results, refs = run_specs(base, (scenario,), range(1, seeds), specs, store, log,
                                  retry_failed=retry_failed)
        held_out += results
        held_refs += refs
    wall = time.perf_counter() - started
    summary = run_summary(tuning + held_out, tuning_refs + held_refs, wall)
    header = suite_header(base, list(range(seeds)), store, summary, wall, command)
    rows = tabulate(tuning, tuning_refs, rank=True)
    table = (render("DEL per budget: tuning on seed 0", header, rows) + "\n"
             + claims_markdown(claims_rows(chosen, held_out), _oracle_rows(held_out))
             + "\n" + LEGEND + "\n")
    return {"suite": "del", "header": header, "rows": rows, "summary": summary,
            "table": table, "chosen": {f"{k[0]}/{k[1]}/rho={k[2]:g}": v[0].params
                                       for k, v in chosen.items()}}
