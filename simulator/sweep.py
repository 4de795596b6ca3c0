"""`python -m simulator sweep`: vary one spec field (a dotted key) over values and seeds, in
parallel processes, and plot each policy's mean with a 95% confidence interval."""

from __future__ import annotations

import argparse
import csv
import json
import math
import multiprocessing
import os
import sys
import time
from pathlib import Path
from statistics import fmean, stdev
from typing import Any

import yaml

METRICS = ("success_rate", "mean_total_s", "p95_total_s", "throughput_tok_s", "energy_total_j")
# Two-sided 95% Student t quantiles by degrees of freedom (1..30); normal beyond.
_T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
        2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
        2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def ci95(values: list[float]) -> tuple[float, float]:
    """(mean, half-width of the 95% confidence interval of the mean; 0 for one value)."""
    mean = fmean(values)
    if len(values) < 2:
        return mean, 0.0
    df = len(values) - 1
    t = _T95[df - 1] if df <= len(_T95) else 1.96
    return mean, t * stdev(values) / math.sqrt(len(values))


def metric_of(stats: dict[str, Any], metric: str) -> float:
    if metric == "energy_total_j":
        return float(stats["energy_j"]["total"])
    value = stats[metric]
    return float("nan") if value is None else float(value)


def _job(args: tuple) -> tuple[Any, int, dict]:
    scenario, key, value, seed, policies, requests = args
    from scenarios.spec import load_spec
    from simulator.cells import Cell, run_cell

    spec = load_spec(scenario, **{key: value, "seed": seed})
    result = run_cell(spec, Cell(None, None), policies, requests=requests)
    return value, seed, result.summary


def run_sweep(scenario: str, key: str, values: list[Any], seeds: list[int],
              policies: list[str] | None, requests: int | None,
              processes: int | None = None) -> list[tuple[Any, int, dict]]:
    from scenarios.spec import load_spec

    base = load_spec(scenario)
    policies = policies or list(base.policies)
    for value in values:  # fail before starting processes if a value does not validate
        load_spec(scenario, **{key: value})
    jobs = [(scenario, key, v, s, policies, requests) for v in values for s in seeds]
    processes = processes or min(len(jobs), os.cpu_count() or 1)
    if processes <= 1:
        return [_job(j) for j in jobs]
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        return pool.map(_job, jobs)


def tabulate(rows: list[tuple[Any, int, dict]], metric: str) -> dict[str, dict[Any, tuple]]:
    """policy -> value -> (mean, ci half-width, n)."""
    samples: dict[str, dict[Any, list[float]]] = {}
    for value, _seed, summary in rows:
        for policy, stats in summary.items():
            samples.setdefault(policy, {}).setdefault(json.dumps(value), []).append(
                metric_of(stats, metric))
    return {p: {v: (*ci95(xs), len(xs)) for v, xs in by_value.items()}
            for p, by_value in samples.items()}


def plot(table: dict[str, dict[Any, tuple]], key: str, metric: str, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    numeric = all(isinstance(json.loads(v), (int, float))
                  for by_value in table.values() for v in by_value)
    for policy, by_value in table.items():
        labels = list(by_value)
        xs = [json.loads(v) for v in labels] if numeric else list(range(len(labels)))
        means = [by_value[v][0] for v in labels]
        errs = [by_value[v][1] for v in labels]
        ax.errorbar(xs, means, yerr=errs, marker="o", capsize=3, label=policy)
        if not numeric:
            ax.set_xticks(xs, labels)
    ax.set_xlabel(key)
    ax.set_ylabel(f"{metric} (mean, 95% CI)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def cmd_sweep(args: argparse.Namespace) -> int:
    from scenarios.results import new_run_dir
    from scenarios.spec import load_spec

    if args.metric not in METRICS:
        raise SystemExit(f"--metric: unknown {args.metric!r}; accepted: {', '.join(METRICS)}")
    values = [yaml.safe_load(v) for v in args.values.split(",")]
    base_seed = load_spec(args.scenario).seed if args.seed is None else args.seed
    seeds = [base_seed + i for i in range(args.seeds)]
    policies = [p for p in args.policies.split(",") if p] if args.policies else None
    started = time.perf_counter()
    rows = run_sweep(args.scenario, args.key, values, seeds, policies, args.requests,
                     args.processes)
    table = tabulate(rows, args.metric)
    name = load_spec(args.scenario).name
    out = new_run_dir(f"{name}-sweep", root=Path(args.results))
    with (out / "sweep.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["key", "value", "seed", "policy", *METRICS])
        for value, seed, summary in rows:
            for policy, stats in summary.items():
                writer.writerow([args.key, json.dumps(value), seed, policy,
                                 *(metric_of(stats, m) for m in METRICS)])
    (out / "sweep.json").write_text(json.dumps(
        {"world": "simulated", "scenario": name, "key": args.key, "values": values,
         "seeds": seeds, "metric": args.metric,
         "table": {p: {v: {"mean": m, "ci95": h, "n": n} for v, (m, h, n) in t.items()}
                   for p, t in table.items()}}, indent=2) + "\n")
    plot(table, args.key, args.metric, out / f"sweep-{args.metric}.png")
    print(f"{'policy':<14}{'value':>14}{'mean':>12}{'±95%':>10}{'n':>4}")
    for policy, by_value in table.items():
        for value, (mean, half, n) in by_value.items():
            print(f"{policy:<14}{value:>14}{mean:>12.4g}{half:>10.3g}{n:>4}")
    print(f"\nresults: {out}  ({time.perf_counter() - started:.1f} s)")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("sweep", help="Vary a spec field over values and seeds; plot means "
                                     "with 95%% confidence intervals")
    p.add_argument("scenario")
    p.add_argument("--key", required=True, help="dotted spec key, e.g. workload.arrival.rate_per_s")
    p.add_argument("--values", required=True, help="comma-separated values (YAML scalars)")
    p.add_argument("--seeds", type=int, default=3, help="seeds per value (spec seed, +1, ...)")
    p.add_argument("--seed", type=int, help="first seed (default: the spec's)")
    p.add_argument("--policies", help="comma-separated (default: the spec's)")
    p.add_argument("--requests", type=int, help="services per run (default: the spec's)")
    p.add_argument("--metric", default="success_rate", help=f"one of {', '.join(METRICS)}")
    p.add_argument("--processes", type=int, help="parallel processes (default: cores)")
    p.add_argument("--results", default="results")
    p.set_defaults(fn=cmd_sweep)


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use: python -m simulator sweep ...")
