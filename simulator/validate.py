"""`python -m simulator validate`: the simulator against the emulation over a grid of regimes.

Each cell of GRID is simulator/validation/base.yaml with a requirement range, a burst size,
link rates and an upload size applied. `--run` (root, one testbed: wrap it in
`flock /tmp/perllm-testbed.lock`) runs every cell emulated (both policies, fresh testbeds)
and keeps a small JSON of each run under simulator/validation/ (per-policy figures, the run's
fidelity, and per service: node, upload and processing time, status), so the table rebuilds
without root. Without `--run` it reads those files, simulates every cell with the same seed
and prints, per cell and policy, simulated − emulated success (points), mean processing time
(%) and energy (%); then the errors' summary in the manner of Vidur's error tables (median and
largest |error| per metric, over the faithful cells and over all), and as its last line a JSON
object (cells, faithful_cells, max_abs_success_diff_points, max_mean_time_diff_pct,
max_energy_diff_pct over faithful cells, and the run-to-run spread of repeated cells).

The grid is a fraction of the 2 x 3 x 2 x 2 x 2 = 48 combinations of requirement [1, 3] or
[2, 6] s, bursts of 1, 30 or 50, cloud link 300 or 1000 Mbit/s, edge links 50 or 100 Mbit/s,
uploads <= 10 KB or 2-5 MB: eight cells in which every two-level factor takes each level four
times (uploads: 3 small, 5 large, since large uploads are the regime in question) and every
burst size appears with both upload sizes where it matters (a burst of one is the control).
The issue's disagreement regime (tight requirements, bursts of 30-50 multi-MB uploads, fast
cloud link) is cells 5 and 6; those and the quiet control are run twice (REPEATED).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DATA_DIR = Path(__file__).resolve().parent / "validation"
BASE_SPEC = DATA_DIR / "base.yaml"
POLICIES = ("cs-ucb", "cloud-only")
SMALL_BYTES = (100, 10_000)
LARGE_BYTES = (2_000_000, 5_000_000)
BURST_EVERY_S = 10.0  # two bursts of 30 in a cell of 60: the second meets learned rates
POISSON_RATE_PER_S = 2.0  # a burst of one: Poisson arrivals, the quiet control
# The issue's targets, in faithful cells.
TARGET_SUCCESS_POINTS = 3.0
TARGET_MEAN_TIME_PCT = 10.0
TARGET_ENERGY_PCT = 5.0
TARGET_REPEAT_POINTS = 2.0


@dataclass(frozen=True)
class GridCell:
    """One regime of the matrix."""

    deadline_s: tuple[float, float]
    burst: int
    cloud_mbit: float
    edge_mbit: float
    large: bool  # 2-5 MB uploads (else <= 10 KB)

    @property
    def name(self) -> str:
        return (f"req{self.deadline_s[0]:g}-{self.deadline_s[1]:g}_burst{self.burst}"
                f"_cloud{self.cloud_mbit:g}_edge{self.edge_mbit:g}"
                f"_{'2-5MB' if self.large else '10KB'}")

    @property
    def requests(self) -> int:
        return 50 if self.burst == 50 else 60  # one burst of 50; two of 30; 30 s of Poisson


GRID: tuple[GridCell, ...] = (
    GridCell((1.0, 3.0), 1, 300, 100, False),    # 1 control: quiet, small
    GridCell((2.0, 6.0), 1, 1000, 50, True),     # 2 multi-MB one at a time
    GridCell((1.0, 3.0), 30, 300, 50, False),    # 3 a burst of small: compute-bound
    GridCell((2.0, 6.0), 30, 300, 100, True),    # 4 the paper's link, bursts (`congested`)
    GridCell((1.0, 3.0), 30, 1000, 100, True),   # 5 the issue's regime, bursts of 30
    GridCell((1.0, 3.0), 50, 1000, 50, True),    # 6 the issue's regime, a burst of 50
    GridCell((2.0, 6.0), 50, 1000, 100, False),  # 7 a big burst of small
    GridCell((2.0, 6.0), 50, 300, 50, True),     # 8 a big burst of multi-MB on 300 Mbit/s
)
REPEATED = (GRID[0].name, GRID[4].name, GRID[5].name)


def cell_spec(cell: GridCell, seed: int | None = None):
    """base.yaml with the cell's regime applied."""
    from scenarios.spec import load_spec

    arrival = ({"process": "poisson", "rate_per_s": POISSON_RATE_PER_S} if cell.burst == 1
               else {"process": "bursts", "burst_size": cell.burst,
                     "burst_every_s": BURST_EVERY_S})
    spec = load_spec(str(BASE_SPEC), seed=seed)
    upload = spec.workload.classes[0].model_copy(
        update={"input_bytes": LARGE_BYTES if cell.large else SMALL_BYTES})
    workload = spec.workload.model_copy(update={
        "requests": cell.requests, "deadline_s": cell.deadline_s, "classes": [upload],
        "arrival": spec.workload.arrival.model_copy(update=arrival)})
    topology = spec.topology.model_copy(update={"cloud_rate_mbit": cell.cloud_mbit,
                                                "edge_rate_mbit": cell.edge_mbit})
    spec = spec.model_copy(update={"name": f"validation-{cell.name}", "workload": workload,
                                   "topology": topology, "policies": list(POLICIES)})
    # Through the validator again, so a regime the spec refuses is refused here too.
    return type(spec).model_validate(spec.model_dump(mode="json"))


def _figures(stats: dict[str, Any]) -> dict[str, Any]:
    return {"success_rate": stats["success_rate"], "mean_total_s": stats["mean_total_s"],
            "energy_j": stats["energy_j"]["total"], "services": stats.get("services")}


def compact_run(cell: GridCell, run_dir: Path, repeat: int) -> dict[str, Any]:
    """The small JSON kept of one emulated run of a cell."""
    from scenarios.fidelity import headline
    from scenarios.results import read_rows, read_summary

    summary = read_summary(run_dir)
    fidelity = summary.get("fidelity") or {}
    requests, _, _ = read_rows(run_dir)
    timings: dict[str, dict] = {}
    services: dict[str, list] = {}
    for row in requests:
        timing_path = run_dir / "logs" / row.policy / "driver-timing.json"
        if row.policy not in timings:
            timings[row.policy] = (json.loads(timing_path.read_text())
                                   if timing_path.exists() else {})
        timing = timings[row.policy].get(row.service_id) or {}
        services.setdefault(row.policy, []).append(
            [row.service_id, row.node_id, round(row.arrival_s, 4), row.input_bytes,
             round(row.transmission_s, 4), round(row.queueing_s, 4), round(row.inference_s, 4),
             round(row.total_s, 4), row.status, _round(timing.get("late_s")),
             _round(timing.get("e2e_s"))])
    return {"cell": cell.name, "repeat": repeat, "seed": summary.get("seed"),
            "written": time.strftime("%Y-%m-%d %H:%M:%S"),
            "incomplete": summary.get("incomplete", False),
            "policies": {p: _figures(s) for p, s in summary["policies"].items()},
            "fidelity": {"status": fidelity.get("status", "unmonitored"),
                         "reasons": fidelity.get("reasons", ["no fidelity in summary.json"]),
                         "policies": {p: headline(f) for p, f in
                                      fidelity.get("policies", {}).items()}},
            # per policy: [id, node, arrival_s, input_bytes, transmission_s, queueing_s,
            # inference_s, total_s, status, driver late_s, client-waited e2e_s]
            "services": services}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def run_emulated(cells: list[GridCell], repeats: int | None, results_root: Path,
                 data_dir: Path = DATA_DIR) -> None:
    """Every cell emulated `repeats` times (default: REPEATED cells twice, the others once),
    each run kept as <cell>.run<k>.json with k after the runs already kept."""
    from scenarios.emulate import run_scenario

    for cell in cells:
        times = repeats if repeats is not None else (2 if cell.name in REPEATED else 1)
        for _ in range(times):
            k = 1 + len(list(data_dir.glob(f"{cell.name}.run*.json")))
            spec = cell_spec(cell)
            started = time.monotonic()
            run_dir, _ = run_scenario(spec, list(POLICIES), spec.mode, results_root)
            record = compact_run(cell, run_dir, k)
            path = data_dir / f"{cell.name}.run{k}.json"
            data_dir.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(record, separators=(",", ":")) + "\n")
            print(f"  {cell.name} run {k}: {time.monotonic() - started:.0f} s, fidelity "
                  f"{record['fidelity']['status']}, results {run_dir}", file=sys.stderr)


def load_runs(data_dir: Path = DATA_DIR) -> dict[str, list[dict[str, Any]]]:
    runs: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(data_dir.glob("*.run*.json")):
        record = json.loads(path.read_text())
        runs.setdefault(record["cell"], []).append(record)
    return runs


def simulate_cell(cell: GridCell, seed: int) -> dict[str, dict[str, Any]]:
    from simulator.cells import Cell, run_cell

    result = run_cell(cell_spec(cell, seed), Cell(None, None), list(POLICIES))
    return {p: _figures(s) for p, s in result.summary.items()}


def _pct(sim: float | None, emu: float | None) -> float | None:
    if sim is None or emu is None or emu == 0:
        return None
    return 100.0 * (sim - emu) / emu


def matrix(runs: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One row per (cell, policy) with emulated runs: the emulated mean over its runs, the
    simulated figure and their differences; the run-to-run spread where run more than once."""
    rows = []
    for cell in GRID:
        records = [r for r in runs.get(cell.name, []) if not r.get("incomplete")]
        if not records:
            continue
        faithful = all(r["fidelity"]["status"] == "faithful" for r in records)
        sim = simulate_cell(cell, records[0]["seed"])
        for policy in POLICIES:
            emus = [r["policies"][policy] for r in records if policy in r["policies"]]
            if not emus:
                continue
            emu = {k: statistics.fmean(e[k] for e in emus if e[k] is not None)
                   for k in ("success_rate", "mean_total_s", "energy_j")}
            s = sim[policy]
            spread = (100 * (max(e["success_rate"] for e in emus)
                             - min(e["success_rate"] for e in emus)) if len(emus) > 1 else None)
            rows.append({
                "cell": cell.name, "policy": policy, "runs": len(emus), "faithful": faithful,
                "reasons": sorted({reason for r in records
                                   for reason in r["fidelity"]["reasons"]}),
                "emulated": emu, "simulated": s,
                "success_diff_points": 100 * (s["success_rate"] - emu["success_rate"]),
                "mean_time_diff_pct": _pct(s["mean_total_s"], emu["mean_total_s"]),
                "energy_diff_pct": _pct(s["energy_j"], emu["energy_j"]),
                "repeat_success_spread_points": spread})
    return rows


def _abs_max(values) -> float | None:
    values = [abs(v) for v in values if v is not None]
    return round(max(values), 2) if values else None


def _abs_median(values) -> float | None:
    values = [abs(v) for v in values if v is not None]
    return round(statistics.median(values), 2) if values else None


def summary_line(rows: list[dict[str, Any]]) -> dict[str, Any]:
    cells = sorted({r["cell"] for r in rows})
    faithful = [r for r in rows if r["faithful"]]
    return {
        "cells": len(cells),
        "faithful_cells": len({r["cell"] for r in faithful}),
        "max_abs_success_diff_points": _abs_max(r["success_diff_points"] for r in faithful),
        "max_mean_time_diff_pct": _abs_max(r["mean_time_diff_pct"] for r in faithful),
        "max_energy_diff_pct": _abs_max(r["energy_diff_pct"] for r in faithful),
        "max_abs_success_diff_points_all": _abs_max(r["success_diff_points"] for r in rows),
        "max_mean_time_diff_pct_all": _abs_max(r["mean_time_diff_pct"] for r in rows),
        "max_energy_diff_pct_all": _abs_max(r["energy_diff_pct"] for r in rows),
        "repeated_cells": len({r["cell"] for r in rows if r["runs"] > 1}),
        "max_repeat_success_spread_points": _abs_max(r["repeat_success_spread_points"]
                                                     for r in rows),
        "max_repeat_success_spread_points_faithful": _abs_max(
            r["repeat_success_spread_points"] for r in faithful),
        "targets": {"success_points": TARGET_SUCCESS_POINTS,
                    "mean_time_pct": TARGET_MEAN_TIME_PCT, "energy_pct": TARGET_ENERGY_PCT,
                    "repeat_points": TARGET_REPEAT_POINTS},
    }


def format_matrix(rows: list[dict[str, Any]]) -> str:
    def f(v, spec):
        return "-" if v is None else format(v, spec)

    head = (f"{'cell':<40}{'policy':<12}{'fidelity':<10}{'succ emu':>9}{'sim':>7}{'Δ pts':>7}"
            f"{'mean emu':>9}{'sim':>7}{'Δ %':>7}{'E emu J':>10}{'sim':>10}{'Δ %':>7}"
            f"{'rep pts':>8}")
    lines = [head, "-" * len(head)]
    for r in rows:
        e, s = r["emulated"], r["simulated"]
        lines.append(
            f"{r['cell']:<40}{r['policy']:<12}{'faithful' if r['faithful'] else 'degraded':<10}"
            f"{100 * e['success_rate']:>8.1f}%{100 * s['success_rate']:>6.1f}%"
            f"{r['success_diff_points']:>+7.1f}"
            f"{f(e['mean_total_s'], '.2f'):>9}{f(s['mean_total_s'], '.2f'):>7}"
            f"{f(r['mean_time_diff_pct'], '+.1f'):>7}"
            f"{e['energy_j']:>10.0f}{s['energy_j']:>10.0f}{f(r['energy_diff_pct'], '+.1f'):>7}"
            f"{f(r['repeat_success_spread_points'], '.1f'):>8}")
    lines += ["", "Error summary (|simulated - emulated|, median / max over (cell, policy)):",
              f"{'':<22}{'success pts':>14}{'mean time %':>14}{'energy %':>12}"]
    for label, subset in (("faithful cells", [r for r in rows if r["faithful"]]),
                          ("all cells", rows)):
        cols = []
        for key in ("success_diff_points", "mean_time_diff_pct", "energy_diff_pct"):
            values = [r[key] for r in subset]
            cols.append(f"{f(_abs_median(values), '.1f')} / {f(_abs_max(values), '.1f')}")
        lines.append(f"{label:<22}{cols[0]:>14}{cols[1]:>14}{cols[2]:>12}")
    degraded = {r["cell"]: r["reasons"] for r in rows if not r["faithful"]}
    for cell, reasons in degraded.items():
        lines.append(f"degraded {cell}: {'; '.join(reasons[:3])}"
                     + (f" (+{len(reasons) - 3} more)" if len(reasons) > 3 else ""))
    return "\n".join(lines)


def cmd_validate(args: argparse.Namespace) -> int:
    data_dir = Path(args.data)
    cells = list(GRID)
    if args.cells:
        wanted = {c.strip() for c in args.cells.split(",") if c.strip()}
        names = {c.name for c in GRID}
        unknown = sorted(wanted - names)
        if unknown:
            raise SystemExit(f"--cells: unknown {unknown}; accepted: {', '.join(sorted(names))}")
        cells = [c for c in GRID if c.name in wanted]
    if args.run:
        run_emulated(cells, args.repeats, Path(args.results), data_dir)
    runs = load_runs(data_dir)
    rows = matrix({name: records for name, records in runs.items()
                   if name in {c.name for c in cells}})
    if not rows:
        print(f"no emulated runs in {data_dir}: run `flock /tmp/perllm-testbed.lock python -m "
              f"simulator validate --run` as root first", file=sys.stderr)
        return 1
    print(format_matrix(rows))
    print(json.dumps(summary_line(rows)))
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("validate", help="The simulator against emulated runs over a grid of "
                                        "regimes (reads simulator/validation/; --run: root)")
    p.add_argument("--run", action="store_true",
                   help="run the emulated cells first (root; one testbed at a time)")
    p.add_argument("--cells", help="comma-separated cell names (default: the whole grid)")
    p.add_argument("--repeats", type=int,
                   help="--run: emulated runs of every selected cell (default: the repeated "
                        "cells twice, the others once), added to the runs already kept")
    p.add_argument("--data", default=str(DATA_DIR), help="folder of the kept run JSONs")
    p.add_argument("--results", default="results", help="--run: results root of the runs")
    p.set_defaults(fn=cmd_validate)
