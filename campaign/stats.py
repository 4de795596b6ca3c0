"""Means with 95% confidence intervals over independent runs (seeds), and the metrics of a
results summary that campaigns aggregate. One implementation, shared by the sweep, the
simulator's multi-seed runs and the emulated campaign."""

from __future__ import annotations

import math
from statistics import fmean, stdev
from typing import Any, Sequence

# The metrics of a summary's per-policy entry (scenarios.results.summarise) a campaign reports.
METRICS = ("success_rate", "mean_total_s", "p95_total_s", "throughput_tok_s", "energy_total_j")
# Two-sided 95% Student t quantiles by degrees of freedom (1..30); normal beyond.
_T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
        2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
        2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def ci95(values: Sequence[float]) -> tuple[float, float]:
    """(mean, half-width of the 95% confidence interval of the mean; 0 for one value)."""
    mean = fmean(values)
    if len(values) < 2:
        return mean, 0.0
    df = len(values) - 1
    t = _T95[df - 1] if df <= len(_T95) else 1.96
    return mean, t * stdev(values) / math.sqrt(len(values))


def metric_of(stats: dict[str, Any], metric: str) -> float:
    """One metric of a policy's summary entry; NaN where the run has no value (no service
    finished, so no mean time)."""
    if metric not in METRICS:
        raise ValueError(f"metric: unknown {metric!r}; accepted: {', '.join(METRICS)}")
    if metric == "energy_total_j":
        return float(stats["energy_j"]["total"])
    value = stats[metric]
    return float("nan") if value is None else float(value)


def mean_ci(values: Sequence[float]) -> dict[str, float | int | None]:
    """{"mean", "ci95", "n"} over the finite values (a seed without a value is left out and
    counted out of n); mean and ci95 are None when no value is finite."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return {"mean": None, "ci95": None, "n": 0}
    mean, half = ci95(finite)
    return {"mean": mean, "ci95": half, "n": len(finite)}
