"""Grouping runs into tables: `tabulate` groups runs by hyperparameter setting over seeds;
with `rank`, the setting with the lowest mean avg gap to the oracle is marked best;
`table_records` and `markdown_table` write them out."""

from __future__ import annotations

from typing import Sequence


from ..config import MethodSpec, canonical_json
from ..metrics.report import average_gap
from .grid import method_label
from .runner import ReferenceCosts, RunResult
from .stats import CONFIDENCE, format_interval, format_stat, stat


# Accuracy keys of a row.
_ACC_KEYS = ("forget_train", "retain_train", "test", "test_forget", "test_retain")


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


def run_summary(results: Sequence[RunResult], references: Sequence[ReferenceCosts],
                wall_seconds: float) -> dict:
    """What one invocation did: runs, how many reused or failed, references trained."""
    return {"runs": len(results), "reused": sum(r.reused for r in results),
            "failed": sum(r.report is None for r in results),
            "reference_models_trained": sum(r.trained_now for r in references),
            "wall_seconds": wall_seconds}
