"""`python -m simulator compare RUN_DIR`: simulate an emulated run's scenario with the same seed
(so the same services and the same bandwidth trace) and print, per policy, success rate, mean
processing time and energy in both worlds with their differences (simulated − emulated)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import yaml

from scenarios.results import CONFIG_YAML, read_rows, read_summary, summarise
from scenarios.spec import ScenarioSpec


def compare(run_dir: Path, calibration_path: str | None = None) -> dict[str, Any]:
    from simulator.cells import Cell, run_cell
    from simulator.world import load_calibration

    run_dir = Path(run_dir)
    spec = ScenarioSpec.model_validate(yaml.safe_load((run_dir / CONFIG_YAML).read_text()))
    meta = read_summary(run_dir)
    if meta.get("world") == "simulated":
        raise ValueError(f"{run_dir}: this is a simulated run; compare needs an emulated one")
    # Recomputed from the CSVs with the same summarise() as the simulated side, so both are
    # measured the same way.
    request_rows, node_rows, _links = read_rows(run_dir)
    emulated = {"policies": summarise(request_rows, node_rows)}
    policies = list(emulated["policies"])
    if not policies:
        raise ValueError(f"{run_dir}: requests.csv has no outcomes")
    requests = int(meta.get("requests_per_policy") or spec.workload.requests)
    calibration = load_calibration(calibration_path) if calibration_path else None
    simulated = run_cell(spec, Cell(None, None), policies, requests=requests,
                         calibration=calibration).summary
    rows = {}
    for policy in policies:
        emu, sim = emulated["policies"][policy], simulated[policy]
        rows[policy] = {}
        for key, get in (("success_rate", lambda s: s["success_rate"]),
                         ("mean_total_s", lambda s: s["mean_total_s"]),
                         ("energy_total_j", lambda s: s["energy_j"]["total"]),
                         ("energy_transmission_j", lambda s: s["energy_j"]["transmission"]),
                         ("energy_inference_j", lambda s: s["energy_j"]["inference"]),
                         ("energy_idle_j", lambda s: s["energy_j"]["idle"])):
            e, s = get(emu), get(sim)
            rows[policy][key] = {"emulated": e, "simulated": s,
                                 "difference": None if e is None or s is None else s - e}
    return {"run_dir": str(run_dir), "scenario": spec.name, "seed": spec.seed,
            "requests_per_policy": requests, "calibration": calibration_path,
            "policies": rows}


def format_comparison(result: dict[str, Any]) -> str:
    def f(v, spec):
        return "-" if v is None else format(v, spec)

    head = (f"{'policy':<14}{'success emu':>12}{'sim':>7}{'diff':>8}"
            f"{'mean s emu':>12}{'sim':>8}{'diff':>8}{'energy J emu':>14}{'sim':>11}{'diff %':>8}")
    lines = [f"{result['scenario']} (seed {result['seed']}, {result['requests_per_policy']} "
             f"services per policy): simulated vs emulated", head, "-" * len(head)]
    for policy, r in result["policies"].items():
        sr, mt, en = r["success_rate"], r["mean_total_s"], r["energy_total_j"]
        pct = (100 * en["difference"] / en["emulated"]) if en["emulated"] else None
        lines.append(
            f"{policy:<14}{100 * sr['emulated']:>11.1f}%{100 * sr['simulated']:>6.1f}%"
            f"{100 * sr['difference']:>+7.1f}%"
            f"{f(mt['emulated'], '.2f'):>12}{f(mt['simulated'], '.2f'):>8}"
            f"{f(mt['difference'], '+.2f'):>8}"
            f"{en['emulated']:>14.1f}{en['simulated']:>11.1f}{f(pct, '+.1f'):>8}")
    return "\n".join(lines)


def cmd_compare(args: argparse.Namespace) -> int:
    result = compare(Path(args.run_dir), args.calibration)
    print(format_comparison(result))
    out = Path(args.out) if args.out else Path(args.run_dir) / "compare-simulated.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("compare", help="Simulate an emulated run's scenario with its seed and "
                                       "print the differences per policy")
    p.add_argument("run_dir", help="results/<scenario>/<timestamp> of an emulated run")
    p.add_argument("--calibration", help="calibration YAML (python -m simulator calibrate)")
    p.add_argument("--out", help="JSON output (default: RUN_DIR/compare-simulated.json)")
    p.set_defaults(fn=cmd_compare)
