"""`python -m simulator.bench`: the simulator's speed, printed as JSON (not a timed test).

requests_per_s: 10,000 services of the `paper` scenario through one policy (cs-ucb, LLaMA2-7B
edges, fluctuating bandwidth), simulation wall time only (world building and events; not the
workload generation or writing results). Best of three runs, to read past other load on the
machine.
paper_total_s: the whole `python -m simulator run paper` (every cell, every policy, results
written with plots), as `make simulate NAME=paper` runs it, into a temporary results folder.

`--campaign` instead: the `paper` matrix (8 cells x its policies x 10,000 services, results
and plots written, as `python -m simulator run paper` does) run serially (one process) and
then as parallel campaign tasks (`--executor`, default local: one process per core), one JSON
line of serial_s, parallel_s, speedup and whether both gave identical summaries.

`--trace NAME` instead: a trace-driven scenario (azure-conv: the whole Azure conversation
trace, 19,366 services) through cs-ucb as `python -m simulator run` runs it (its give-up
time, heartbeats and rate schedule), one JSON line of services, wall_s (simulation wall time,
best of three) and services_per_s.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REQUESTS = 10_000
POLICY = "cs-ucb"


def requests_per_s(runs: int = 3) -> dict:
    from scenarios.spec import load_spec
    from simulator import world
    from simulator.cells import FLUCTUATING, Cell, cell_spec
    from simulator.runner import simulate

    spec = cell_spec(load_spec("paper"), Cell("xeon-4214r/llama2-7b", FLUCTUATING))
    setups = world.node_setups(spec)
    items = world.arrivals(spec, requests=REQUESTS)
    walls = []
    for _ in range(runs):
        result = simulate(POLICY, setups, items, seed=spec.seed,
                          rate_changes=world.rate_changes(spec),
                          information=spec.scheduler.information,
                          declared_error=spec.scheduler.declared_error, record_links=False)
        walls.append(result.wall_s)
    best = min(walls)
    return {"requests_per_s": round(len(items) / best, 1), "requests": len(items),
            "policy": POLICY, "simulation_wall_s": round(best, 4),
            "simulation_wall_s_runs": [round(w, 4) for w in walls]}


def trace_services_per_s(name: str, runs: int = 3) -> dict:
    from scenarios.spec import load_spec
    from simulator import world
    from simulator.runner import simulate

    spec = load_spec(name)
    setups = world.node_setups(spec)
    items = world.arrivals(spec)
    walls = []
    for _ in range(runs):
        result = simulate(
            POLICY, setups, items, seed=spec.seed, rate_changes=world.rate_changes(spec),
            information=spec.scheduler.information,
            declared_error=spec.scheduler.declared_error,
            heartbeat_interval_s=spec.scheduler.heartbeat_interval_s,
            heartbeat_timeout_s=spec.scheduler.heartbeat_timeout_s, faults=world.faults(spec),
            policy_params=spec.policy_params.get(POLICY, {}), record_links=False,
            give_up_s=spec.workload.give_up_s)
        walls.append(result.wall_s)
    best = min(walls)
    return {"benchmark": "simulator-trace", "scenario": name, "policy": POLICY,
            "cores": os.cpu_count(), "services": len(items), "wall_s": round(best, 3),
            "services_per_s": round(len(items) / best, 1),
            "wall_s_runs": [round(w, 3) for w in walls],
            "simulated_s": round(result.makespan_s, 1), "target": {"services_per_s": ">= 20000"}}


def paper_total_s() -> dict:
    with tempfile.TemporaryDirectory(prefix="simbench-") as tmp:
        started = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "simulator", "run", "paper",
                               "--results", tmp], capture_output=True, text=True,
                              env={**os.environ})
        total = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"simulator run paper failed ({proc.returncode}):\n{proc.stderr}")
    return {"paper_total_s": round(total, 2)}


def _lpt_makespan_s(durations_s: list[float], workers: int) -> float:
    """Longest-processing-time-first schedule of the tasks on `workers`: what the parallel
    run would take on an otherwise idle machine, from each task's own wall time."""
    loads = [0.0] * workers
    for d in sorted(durations_s, reverse=True):
        loads[loads.index(min(loads))] += d
    return max(loads)


def campaign_speedup(executor_name: str = "local", requests: int | None = None,
                     plots: bool = True) -> dict:
    from campaign.executors import LocalExecutor, executor_from_name
    from campaign.store import run_campaign
    from scenarios.spec import load_spec
    from simulator.cells import CONDITIONS, Cell, cell_task

    spec = load_spec("paper")
    cells = [Cell(profile, condition) for condition in CONDITIONS
             for profile in spec.simulation.edge_profiles]
    policies = list(spec.policies)
    walls, summaries, task_s = {}, {}, {}
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="campaignbench-") as tmp:
        started = time.perf_counter()
        parallel = executor_from_name(executor_name)  # a Ray instance starts here, untimed
        start_s = time.perf_counter() - started
        try:
            for label, executor in (("serial", LocalExecutor(1)), ("parallel", parallel)):
                tasks = [cell_task(spec, cell, policies, key=cell.label, requests=requests,
                                   out_dir=Path(tmp) / label / cell.label, plots=plots)
                         for cell in cells]
                started = time.perf_counter()
                outcomes = run_campaign(executor, tasks)
                walls[label] = time.perf_counter() - started
                failed = [o for o in outcomes if not o.ok]
                if failed:
                    raise SystemExit(f"{label}: {failed[0].key}: {failed[0].error}")
                summaries[label] = [o.value["summary"] for o in outcomes]
                task_s[label] = [o.wall_s for o in outcomes]
        finally:
            parallel.close()
    cores = os.cpu_count() or 1
    return {"benchmark": "simulator-campaign", "matrix": "paper", "cells": len(cells),
            "policies": len(policies), "requests_per_policy": requests or spec.workload.requests,
            "plots": plots, "cores": cores, "executor": executor_name,
            "executor_start_s": round(start_s, 2), "serial_s": round(walls["serial"], 2),
            "parallel_s": round(walls["parallel"], 2),
            "speedup": round(walls["serial"] / walls["parallel"], 3),
            "identical": summaries["serial"] == summaries["parallel"],
            # Each cell's wall time in the serial run, and the parallel time they allow on an
            # idle machine: the bound when other jobs hold the cores.
            "serial_task_s": [round(t, 2) for t in task_s["serial"]],
            "idle_parallel_s_estimate": round(_lpt_makespan_s(task_s["serial"], cores), 2),
            "loadavg_1min_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
            "targets": {"parallel_s": "<= 8", "speedup": ">= 1.7"}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulator.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trace", metavar="SCENARIO",
                        help="benchmark this trace-driven scenario instead (e.g. azure-conv)")
    parser.add_argument("--campaign", action="store_true",
                        help="the paper matrix serial and as parallel campaign tasks")
    parser.add_argument("--executor", default="local",
                        help="with --campaign: local (default), local:N, ray, ray:auto, ...")
    parser.add_argument("--requests", type=int,
                        help="with --campaign: services per policy (default: the spec's)")
    parser.add_argument("--no-plots", action="store_true", help="with --campaign: no plots")
    args = parser.parse_args(argv)
    if args.campaign:
        print(json.dumps(campaign_speedup(args.executor, args.requests, not args.no_plots)))
        return 0
    if args.trace:
        print(json.dumps(trace_services_per_s(args.trace)))
        return 0
    out = {"benchmark": "simulator", "cores": os.cpu_count()}
    out.update(requests_per_s())
    out.update(paper_total_s())
    out["targets"] = {"requests_per_s": ">= 20000", "paper_total_s": "<= 60"}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
