"""`python -m simulator.bench`: the simulator's speed, printed as JSON (not a timed test).

requests_per_s: 10,000 services of the `paper` scenario through one policy (cs-ucb, LLaMA2-7B
edges, fluctuating bandwidth), simulation wall time only (world building and events; not the
workload generation or writing results). Best of three runs, to read past other load on the
machine.
paper_total_s: the whole `python -m simulator run paper` (every cell, every policy, results
written with plots), as `make simulate NAME=paper` runs it, into a temporary results folder.
"""

from __future__ import annotations

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
                          bandwidth_source=spec.scheduler.bandwidth_source, record_links=False)
        walls.append(result.wall_s)
    best = min(walls)
    return {"requests_per_s": round(len(items) / best, 1), "requests": len(items),
            "policy": POLICY, "simulation_wall_s": round(best, 4),
            "simulation_wall_s_runs": [round(w, 4) for w in walls]}


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


def main() -> int:
    out = {"benchmark": "simulator", "cores": os.cpu_count()}
    out.update(requests_per_s())
    out.update(paper_total_s())
    out["targets"] = {"requests_per_s": ">= 20000", "paper_total_s": "<= 60"}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
