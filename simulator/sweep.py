"""`python -m simulator sweep`: vary one spec field (a dotted key) over values and seeds, each
run a campaign task (local processes or Ray, resumable), and plot each policy's mean with a 95%
confidence interval over seeds."""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path
from typing import Any

import yaml

# ci95 and metric_of live in campaign.stats (one implementation); re-exported for callers.
from campaign.stats import METRICS, ci95, metric_of  # noqa: F401


def _sweep_task(payload: tuple, _out_dir: Path | None) -> dict:
    from simulator.cells import Cell, run_cell

    spec, policies, requests = payload
    return run_cell(spec, Cell(None, None), policies, requests=requests).summary


def sweep_tasks(scenario: str, key: str, values: list[Any], seeds: list[int],
                policies: list[str] | None, requests: int | None) -> list:
    """One task per (value, seed); every spec is built (and validated) here, before any runs."""
    from campaign.tasks import Task
    from scenarios.spec import load_spec

    policies = policies or list(load_spec(scenario).policies)
    return [Task(key=f"value-{i}/seed-{seed}", fn=_sweep_task,
                 payload=(load_spec(scenario, **{key: value, "seed": seed}), policies, requests))
            for i, value in enumerate(values) for seed in seeds]


def run_sweep(scenario: str, key: str, values: list[Any], seeds: list[int],
              policies: list[str] | None, requests: int | None,
              processes: int | None = None, executor=None, store=None
              ) -> list[tuple[Any, int, dict]]:
    """(value, seed, summary) per run, in order; on `executor` (default: local processes),
    skipping runs whose outcome `store` holds. Raises CampaignFailed naming failed runs."""
    from campaign.store import run_all

    import simulator.cells  # noqa: F401 - imported once here, so forked tasks inherit it

    tasks = sweep_tasks(scenario, key, values, seeds, policies, requests)
    points = [(value, seed) for value in values for seed in seeds]
    outcomes = run_all(tasks, store, executor, processes or None)
    return [(value, seed, o.value) for (value, seed), o in zip(points, outcomes)]


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
    from campaign.executors import executor_from_name
    from campaign.store import CampaignStore
    from scenarios.results import new_run_dir
    from scenarios.spec import load_spec

    if args.metric not in METRICS:
        raise SystemExit(f"--metric: unknown {args.metric!r}; accepted: {', '.join(METRICS)}")
    values = [yaml.safe_load(v) for v in args.values.split(",")]
    base_seed = load_spec(args.scenario).seed if args.seed is None else args.seed
    seeds = [base_seed + i for i in range(args.seeds)]
    policies = [p for p in args.policies.split(",") if p] if args.policies else None
    if args.resume and not Path(args.resume).is_dir():
        raise SystemExit(f"--resume: {args.resume} is not a sweep's results folder")
    started = time.perf_counter()
    name = load_spec(args.scenario).name
    out = Path(args.resume) if args.resume else new_run_dir(f"{name}-sweep",
                                                               root=Path(args.results))
    store = CampaignStore(out)
    store.check_manifest({"kind": "sweep", "scenario": args.scenario, "key": args.key,
                          "values": values, "seeds": seeds, "policies": policies,
                          "requests": args.requests})
    with executor_from_name(args.executor, args.processes) as executor:
        rows = run_sweep(args.scenario, args.key, values, seeds, policies, args.requests,
                         executor=executor, store=store)
    table = tabulate(rows, args.metric)
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
    p.add_argument("--processes", type=int, help="local executor: parallel processes "
                                                  "(default: cores)")
    p.add_argument("--executor", default="local",
                   help="local (default), local:N, ray (a local Ray instance), ray:auto or "
                        "ray://HOST:PORT (join a cluster); docs/campaigns.md")
    p.add_argument("--resume", metavar="DIR", help="a sweep's results folder: run only the "
                                                   "runs it does not hold yet")
    p.add_argument("--results", default="results")
    p.set_defaults(fn=cmd_sweep)


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use: python -m simulator sweep ...")
