"""`python -m simulator.bench`: the simulator's speed, printed as JSON (not a timed test).

requests_per_s: 10,000 services of the `paper` scenario through one policy (cs-ucb, LLaMA2-7B
edges, fluctuating bandwidth), simulation wall time only (world building and events; not the
workload generation or writing results). Best of three runs, to read past other load on the
machine.
paper_total_s: the whole `python -m simulator run paper` (every cell, every policy, results
written with plots), as `make simulate NAME=paper` runs it, into a temporary results folder.

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulator.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trace", metavar="SCENARIO",
                        help="benchmark this trace-driven scenario instead (e.g. azure-conv)")
    args = parser.parse_args(argv)
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
