"""Statistics over seeds: mean, sample std and a Student-t interval (`stat`), and how they
are written in tables."""

from __future__ import annotations

import math
import statistics
from typing import Iterable

from scipy import stats as scipy_stats



CONFIDENCE = 0.95


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
