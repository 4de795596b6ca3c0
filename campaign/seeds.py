"""`python -m simulator run NAME --seeds N`: every (seed, cell) a campaign task, then per policy
the mean and 95% CI over seeds of success, processing time and energy, beside the per-service
ceiling (simulator.ceiling, computed by each cell). Matrix specs (paper, paper-q4) get the
aggregate per cell and overall (per seed the mean over cells, then the CI over seeds).
"""

from __future__ import annotations

from pathlib import Path
from statistics import fmean
from typing import Any, Sequence

from campaign.executors import Executor
from campaign.report import (aggregate_ceiling, aggregate_policies, failures_text,
                             format_aggregate, plot_aggregate, write_per_seed_csv, write_report)
from campaign.store import CampaignStore, run_campaign
from campaign.tasks import TaskOutcome
from scenarios.spec import ScenarioSpec


def seed_keys(seeds: Sequence[int], cells: Sequence) -> list[tuple[int, Any, str]]:
    return [(seed, cell, f"seed-{seed}" + (f"/{cell.label}" if cell.label else ""))
            for seed in seeds for cell in cells]


def run_seeds(spec: ScenarioSpec, seeds: Sequence[int], cells: Sequence, policies: Sequence[str],
              *, executor: Executor, run_dir: Path | None, store: CampaignStore | None,
              requests: int | None = None, calibration=None, plots: bool = False,
              on_done=None) -> list[tuple[int, Any, TaskOutcome]]:
    """(seed, cell, outcome) of every (seed, cell), in order."""
    from simulator.cells import cell_task

    keys = seed_keys(seeds, cells)
    tasks = [cell_task(spec.model_copy(update={"seed": seed}), cell, policies, key=key,
                       requests=requests, calibration=calibration, plots=plots,
                       out_dir=None if run_dir is None else Path(run_dir) / key)
             for seed, cell, key in keys]
    outcomes = run_campaign(executor, tasks, store, on_done=on_done)
    return [(seed, cell, o) for (seed, cell, _key), o in zip(keys, outcomes)]


def _mean_over_cells(summaries: Sequence[dict[str, Any]], policy: str) -> dict[str, Any]:
    """One seed's figures for a policy, averaged over the cells (as simulator.paper does)."""
    stats = [s[policy] for s in summaries]

    def mean(key: str) -> float | None:
        xs = [s[key] for s in stats if s[key] is not None]
        return fmean(xs) if xs else None
    return {"success_rate": mean("success_rate"), "mean_total_s": mean("mean_total_s"),
            "p95_total_s": mean("p95_total_s"), "throughput_tok_s": mean("throughput_tok_s"),
            "energy_j": {"total": fmean(s["energy_j"]["total"] for s in stats)}}


def _mean_ceiling(ceilings: Sequence[dict | None]) -> dict | None:
    present = [c for c in ceilings if c]
    if len(present) != len(ceilings) or not present:
        return None
    return {k: fmean(c[k] for c in present) for k in present[0]
            if all(isinstance(c.get(k), (int, float)) for c in present)}


def aggregate_seeds(name: str, seeds: Sequence[int],
                    results: Sequence[tuple[int, Any, TaskOutcome]], policies: Sequence[str],
                    matrix: bool) -> dict[str, Any]:
    """The JSON of `simulator run NAME --seeds N --json` (see the module's docstring)."""
    ok = [(seed, cell, o.value) for seed, cell, o in results if o.ok]
    data: dict[str, Any] = {"world": "simulated", "scenario": name, "seeds": list(seeds)}
    if not matrix:
        samples = [(seed, p, v["summary"][p]) for seed, _cell, v in ok for p in policies]
        data["policies"] = aggregate_policies(samples)
        data["ceiling"] = aggregate_ceiling([v["ceiling"] for _s, _c, v in ok])
    else:
        cells: dict[str, Any] = {}
        for label in dict.fromkeys(cell.label for _s, cell, _v in ok):
            here = [(seed, v) for seed, cell, v in ok if cell.label == label]
            cells[label] = {
                "policies": aggregate_policies((seed, p, v["summary"][p])
                                               for seed, v in here for p in policies),
                "ceiling": aggregate_ceiling([v["ceiling"] for _s, v in here])}
        per_seed = {}
        for seed in seeds:  # a seed counts overall only with every cell done
            values = [v for s, _c, v in ok if s == seed]
            if values and len(values) == len({c.label for _s, c, _o in results}):
                per_seed[seed] = values
        data["policies"] = aggregate_policies(
            (seed, p, _mean_over_cells([v["summary"] for v in vs], p))
            for seed, vs in per_seed.items() for p in policies)
        data["ceiling"] = aggregate_ceiling(
            [_mean_ceiling([v["ceiling"] for v in vs]) for vs in per_seed.values()])
        data["cells"] = cells
    data["failed"] = failures_text([o for _s, _c, o in results])
    return data


def format_seeds(data: dict[str, Any]) -> str:
    n = len(data["seeds"])
    blocks = []
    for label, cell in (data.get("cells") or {}).items():
        blocks.append(format_aggregate(cell["policies"], cell["ceiling"],
                                       f"{label}: mean ± 95% CI over {n} seeds"))
    overall = "overall (per seed the mean over cells)" if data.get("cells") else data["scenario"]
    blocks.append(format_aggregate(data["policies"], data["ceiling"],
                                   f"{overall}: mean ± 95% CI over {n} seeds"))
    if data["failed"]:
        blocks.append("FAILED (left out above):\n" + "\n".join(f"  {f}" for f in data["failed"]))
    return "\n\n".join(blocks)


def write_seeds_report(run_dir: Path, data: dict[str, Any],
                       results: Sequence[tuple[int, Any, TaskOutcome]]) -> Path:
    samples = [(seed, p, o.value["summary"][p], cell.label)
               for seed, cell, o in results if o.ok for p in o.value["summary"]]
    write_per_seed_csv(run_dir / "per_seed.csv", samples, extra=("cell",))
    plots = [plot_aggregate(data["policies"], run_dir / "aggregate.png",
                            f"{data['scenario']}: {len(data['seeds'])} seeds, simulated")]
    return write_report(run_dir, f"Simulated, {len(data['seeds'])} seeds: {data['scenario']}",
                        data, [format_seeds(data)], plots, data["failed"])
