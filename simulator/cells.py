"""Runs of a scenario in the simulator: one cell (edge deployment × bandwidth condition) runs
every policy on the same workload and writes an ordinary results folder; a matrix of cells
(the paper's evaluation) runs as campaign tasks (campaign/: local processes or Ray).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from campaign.executors import Executor
from campaign.store import CampaignStore, run_all
from campaign.tasks import Task, TaskOutcome
from scenarios.results import (LinkRow, NodeRow, RequestRow, summarise, write_config,
                               write_rows, write_summary)
from scenarios.spec import ScenarioSpec
from simulator import world
from simulator.ceiling import ceiling
from simulator.runner import simulate
from testbed.spec import FluctuationSpec

# The paper's two bandwidth conditions (section 5.1): stable, and varying within ±20%.
STABLE = "stable"
FLUCTUATING = "fluctuating"
CONDITIONS = (STABLE, FLUCTUATING)
PAPER_FLUCTUATION = FluctuationSpec(profile="uniform", amplitude=0.2, period_s=1.0)


@dataclass(frozen=True)
class Cell:
    """One (edge deployment, bandwidth condition) of a scenario; label names its folder."""

    edge_profile: str | None  # None: the spec's nodes.edge.profile
    condition: str | None  # None: the spec's own fluctuation

    @property
    def label(self) -> str:
        parts = []
        if self.edge_profile:
            parts.append(self.edge_profile.rsplit("/", 1)[-1])
        if self.condition:
            parts.append(self.condition)
        return "/".join(parts)


@dataclass
class CellResult:
    cell: Cell
    summary: dict[str, dict[str, Any]]
    run_dir: Path | None
    wall_s: dict[str, float] = field(default_factory=dict)  # simulation wall time per policy
    ceiling: dict[str, Any] = field(default_factory=dict)  # simulator.ceiling of the workload


def cell_spec(spec: ScenarioSpec, cell: Cell) -> ScenarioSpec:
    """The spec with the cell's edge profile and bandwidth condition applied."""
    update: dict[str, Any] = {}
    if cell.edge_profile:
        edge = spec.nodes.edge.model_copy(update={"profile": cell.edge_profile})
        update["nodes"] = spec.nodes.model_copy(update={"edge": edge})
    if cell.condition == STABLE:
        fluctuation = FluctuationSpec(profile="stable")
    elif cell.condition == FLUCTUATING:
        own = spec.topology.fluctuation
        fluctuation = own if own.profile != "stable" else PAPER_FLUCTUATION
    elif cell.condition is None:
        fluctuation = spec.topology.fluctuation
    else:
        raise ValueError(f"condition must be one of {CONDITIONS} (got {cell.condition!r})")
    update["topology"] = spec.topology.model_copy(update={"fluctuation": fluctuation})
    return spec.model_copy(update=update)


def run_cell(spec: ScenarioSpec, cell: Cell, policies: Sequence[str], *,
             requests: int | None = None, calibration: world.Calibration | None = None,
             out_dir: Path | None = None, plots: bool = True) -> CellResult:
    """Every policy on the cell's workload; writes the results layout under out_dir if given."""
    spec = cell_spec(spec, cell)
    if requests is not None:
        spec = spec.model_copy(update={"workload": spec.workload.model_copy(
            update={"requests": requests})})
    setups = world.node_setups(spec, calibration)
    items = world.arrivals(spec)
    all_requests: list[RequestRow] = []
    all_nodes: list[NodeRow] = []
    all_links: list[LinkRow] = []
    wall: dict[str, float] = {}
    for policy in policies:
        result = simulate(
            policy, setups, items, seed=spec.seed, rate_changes=world.rate_changes(spec),
            information=spec.scheduler.information,
            declared_error=spec.scheduler.declared_error,
            heartbeat_interval_s=spec.scheduler.heartbeat_interval_s,
            heartbeat_timeout_s=spec.scheduler.heartbeat_timeout_s,
            faults=world.faults(spec), policy_params=spec.policy_params.get(policy, {}),
            record_links=out_dir is not None, give_up_s=spec.workload.give_up_s,
            energy=spec.energy.to_model())
        wall[policy] = result.wall_s
        all_requests += result.requests
        all_nodes += result.nodes
        all_links += result.links
    summary = summarise(all_requests, all_nodes, generated=len(items))
    bound = ceiling(setups, items, world.rate_changes(spec), world.faults(spec)).as_dict()
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_config(out_dir, spec)
        write_rows(out_dir, all_requests, all_nodes, all_links)
        write_summary(out_dir, summary, extra={
            "world": "simulated", "seed": spec.seed,
            "requests_per_policy": len(items), "edge_profile": spec.nodes.edge.profile,
            "cloud_profile": spec.nodes.cloud.profile,
            "fluctuation": spec.topology.fluctuation.model_dump(mode="json"),
            "calibrated_nodes": sorted(calibration.nodes) if calibration else [],
            "simulation_wall_s": wall, "ceiling": bound})
        if plots:
            _plots_and_report(out_dir, spec, all_requests, all_links, summary, bound)
    return CellResult(cell, summary, out_dir, wall, bound)


def _plots_and_report(out_dir: Path, spec: ScenarioSpec, requests: list[RequestRow],
                      links: list[LinkRow], summary: dict, bound: dict) -> None:
    from scenarios.plots import write_plots
    from scenarios.report import write_report

    plots = write_plots(out_dir, requests, links, summary)
    write_report(out_dir, spec, summary, plots, spec.seed, incomplete=False, ceiling=bound)


def _cell_task(payload: tuple, out_dir: Path | None) -> dict[str, Any]:
    """A cell as a campaign task: its summary, simulation wall times and ceiling (JSON)."""
    spec, cell, policies, requests, calibration, plots = payload
    result = run_cell(spec, cell, policies, requests=requests, calibration=calibration,
                      out_dir=out_dir, plots=plots)
    return {"summary": result.summary, "wall_s": result.wall_s, "ceiling": result.ceiling}


def cell_task(spec: ScenarioSpec, cell: Cell, policies: Sequence[str], *, key: str,
              requests: int | None = None, calibration: world.Calibration | None = None,
              out_dir: Path | None = None, plots: bool = True) -> Task:
    """The task that runs one cell (every policy) and writes its results folder to out_dir."""
    return Task(key=key, fn=_cell_task, out_dir=out_dir,
                payload=(spec, cell, list(policies), requests, calibration, plots))


def cell_result(cell: Cell, outcome: TaskOutcome, out_dir: Path | None) -> CellResult:
    value = outcome.value
    return CellResult(cell, value["summary"], out_dir, value["wall_s"], value["ceiling"] or {})


def run_cells(spec: ScenarioSpec, cells: Sequence[Cell], policies: Sequence[str], *,
              requests: int | None = None, calibration: world.Calibration | None = None,
              run_dir: Path | None = None, plots: bool = True, processes: int | None = None,
              on_done=None, executor: Executor | None = None,
              store: CampaignStore | None = None) -> list[CellResult]:
    """Run cells as campaign tasks: on `executor` (default: local processes, one per core, at
    most one per cell), skipping cells whose outcome `store` holds. Each cell's results are
    those of a serial run (one cell, one process, the same seed). Raises CampaignFailed,
    naming every failed cell and why, after the others have finished."""
    out_dirs = [(run_dir / cell.label) if (run_dir is not None and cell.label) else run_dir
                for cell in cells]
    tasks = [cell_task(spec, cell, policies, key=cell.label or "cell", requests=requests,
                       calibration=calibration, out_dir=out_dir, plots=plots)
             for cell, out_dir in zip(cells, out_dirs)]
    by_key = {task.key: (cell, out_dir) for task, cell, out_dir in zip(tasks, cells, out_dirs)}

    def done(outcome: TaskOutcome) -> None:
        if on_done and outcome.ok:
            cell, out_dir = by_key[outcome.key]
            on_done(cell_result(cell, outcome, out_dir))

    outcomes = run_all(tasks, store, executor,
                       processes or min(len(cells), os.cpu_count() or 1), on_done=done)
    return [cell_result(cell, o, out_dir) for cell, o, out_dir in zip(cells, outcomes, out_dirs)]
