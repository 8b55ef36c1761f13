"""Comparing stored runs: one table row per finished unlearning run, filters over the
table, and the side-by-side numbers of two runs. Everything comes from the stored
reports (docs/report-schema.md); nothing is recomputed."""

from __future__ import annotations

import time
from typing import Iterable

import pandas as pd

from .errors import UserError
from .runs import RunRecord
from .vocabulary import format_params

# Column -> label shown in the app. Accuracies, MIA and gaps stay fractions in [0, 1], as
# in the report: the app formats them, exports keep them exact.
COLUMNS = {
    "id": "Run", "dataset": "Dataset", "model": "Model", "forget_set": "Forget set",
    "seed": "Seed", "method": "Method", "params": "Hyperparameters",
    "forget_acc": "Forget acc.", "retain_acc": "Retain acc.", "test_acc": "Test acc.",
    "mia": "MIA (conf.)", "avg_gap": "Avg gap to oracle", "mean_depth": "Mean depth",
    "verdict": "Verdict", "seconds": "Time (s)", "speedup": "Speed-up ×",
    "oracle_test_acc": "Oracle test acc.", "original_test_acc": "Original test acc.",
    "original_avg_gap": "Original avg gap", "oracle_seconds": "Oracle time (s)",
    "asr": "ASR", "asr_head_refit": "ASR after head refit", "backdoor": "Backdoor",
    "oracle_asr": "Oracle ASR", "original_asr": "Original ASR",
    "setup": "Setup", "created": "Created",
}
PERCENT_COLUMNS = ("forget_acc", "retain_acc", "test_acc", "mia", "avg_gap",
                   "oracle_test_acc", "original_test_acc", "original_avg_gap",
                   "asr", "asr_head_refit", "oracle_asr", "original_asr")
# What the table can be filtered by: the columns that name a part of the setup or method.
FILTERS = ("dataset", "model", "method", "forget_set")
# The numbers shown side by side for runs A and B.
PAIR_METRICS = ("forget_acc", "retain_acc", "test_acc", "mia", "avg_gap", "mean_depth",
                "seconds", "speedup")


def run_row(record: RunRecord) -> dict:
    """One table row of a finished unlearning run, from the summary the store keeps of
    its report (runs.run_summary): no report is read."""
    summary = record.summary
    if record.status != "done" or summary is None:
        raise UserError(f"run {record.id} is {record.status}: only a finished run has a row")
    setup = f"{summary['dataset']} · {summary['model']} · {summary['forget_set']} · " \
            f"seed {summary['seed']}"
    return {**{column: summary.get(column) for column in COLUMNS},
            "id": record.id,
            "params": format_params(summary["params"]),
            # Runs share an original and an oracle exactly when they share this.
            "setup": setup,
            "created": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.created))}


def run_table(records: Iterable[RunRecord]) -> pd.DataFrame:
    """The rows of the finished unlearning runs among `records` (others are skipped: a
    failed run has no numbers), in the given order, with every column of COLUMNS."""
    rows = [run_row(r) for r in records
            if r.kind == "unlearn" and r.status == "done" and r.summary is not None]
    return pd.DataFrame(rows, columns=list(COLUMNS))


def filter_table(table: pd.DataFrame, **chosen: Iterable[str]) -> pd.DataFrame:
    """The rows whose value in each named column (one of FILTERS) is among the chosen
    values; an empty choice keeps every row."""
    keep = pd.Series(True, index=table.index)
    for column, values in chosen.items():
        if column not in FILTERS:
            raise UserError(f"{column}: not a filter; allowed: {', '.join(FILTERS)}")
        values = list(values)
        if values:
            keep &= table[column].isin(values)
    return table[keep]


def pair_table(table: pd.DataFrame, run_a: str, run_b: str) -> pd.DataFrame:
    """The PAIR_METRICS of runs A and B side by side, with B − A (None where either is
    missing)."""
    rows = {}
    for name, run_id in (("A", run_a), ("B", run_b)):
        match = table[table["id"] == run_id]
        if match.empty:
            raise UserError(f"run {name.lower()}: {run_id!r} is not in the table")
        rows[name] = match.iloc[0]
    out = pd.DataFrame({"metric": [COLUMNS[m] for m in PAIR_METRICS],
                        "A": [rows["A"][m] for m in PAIR_METRICS],
                        "B": [rows["B"][m] for m in PAIR_METRICS]})
    out["B − A"] = [None if pd.isna(a) or pd.isna(b) else b - a
                    for a, b in zip(out["A"], out["B"])]
    return out


def _shown(metric: str, value, difference: bool = False) -> str:
    if value is None or pd.isna(value):
        return "n/a"
    if metric in PERCENT_COLUMNS:
        return f"{100 * value:+.1f} pp" if difference else f"{100 * value:.1f}%"
    sign = "+" if difference else ""
    if metric == "seconds":
        return f"{value:{sign}.1f} s"
    if metric == "speedup":
        return f"{value:{sign}.1f}" if difference else f"{value:.1f}×"
    return f"{value:{sign}.2f}"


def pair_table_text(pair: pd.DataFrame) -> pd.DataFrame:
    """`pair_table` as the app shows it: accuracies, MIA and gaps in %, their differences
    in percentage points, times in seconds (the exports keep the exact fractions)."""
    out = pair.copy()
    for column, difference in (("A", False), ("B", False), ("B − A", True)):
        out[column] = [_shown(metric, value, difference)
                       for metric, value in zip(PAIR_METRICS, pair[column])]
    return out

