"""`python -m simulator {run,sweep,calibrate,compare}`: the simulator's command line."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from campaign.tasks import CampaignConfigError, CampaignFailed
from scenarios.spec import SpecError, load_spec
from scheduler.energy_models import POWER_MODELS, TRANSMISSION_MODELS
from scheduler.information import RUN_INFORMATION


def _policies(value: str | None, default: list[str]) -> list[str]:
    if not value:
        return list(default)
    names = [p.strip() for p in value.split(",") if p.strip()]
    from scheduler.policies import POLICIES

    unknown = [p for p in names if p not in POLICIES]
    if unknown:
        raise SystemExit(f"--policies: unknown {unknown}; accepted: {', '.join(POLICIES.names())}")
    return names


def _matrix_mode(spec, args) -> bool:
    """The paper's matrix when the spec names its edge deployments (simulation.edge_profiles)."""
    if args.single:
        return False
    return "edge_profiles" in spec.simulation.model_fields_set


def cmd_run(args: argparse.Namespace) -> int:
    from campaign.executors import executor_from_name
    from campaign.store import CampaignStore
    from scenarios.results import format_ratios, format_table, new_run_dir
    from simulator.cells import CONDITIONS, Cell, run_cells
    from simulator.paper import format_aggregate, table1, write_matrix
    from simulator.world import load_calibration

    started = time.perf_counter()
    spec = load_spec(args.scenario, seed=args.seed,
                     **{"scheduler.information": args.information,
                        "scheduler.declared_error": args.declared_error,
                        "energy.model": args.energy_model,
                        "energy.transmission": args.transmission})
    policies = _policies(args.policies, spec.policies)
    calibration = load_calibration(args.calibration) if args.calibration else None
    matrix = _matrix_mode(spec, args)
    if matrix:
        conditions = [c for c in args.conditions.split(",") if c]
        bad = [c for c in conditions if c not in CONDITIONS]
        if bad:
            raise SystemExit(f"--conditions: unknown {bad}; accepted: {', '.join(CONDITIONS)}")
        cells = [Cell(profile, condition) for condition in conditions
                 for profile in spec.simulation.edge_profiles]
    else:
        cells = [Cell(None, None)]
    if args.seeds is not None and args.seeds < 1:
        raise SystemExit(f"--seeds: must be >= 1 (got {args.seeds})")
    if args.resume and not Path(args.resume).is_dir():
        raise SystemExit(f"--resume: {args.resume} is not a results folder of a run")
    if args.resume and args.no_write:
        raise SystemExit("--resume: resuming reads and writes a results folder; drop --no-write")
    requests = args.requests or spec.workload.requests
    run_dir = (Path(args.resume) if args.resume else
               None if args.no_write else new_run_dir(spec.name, root=Path(args.results)))
    store = CampaignStore(run_dir) if run_dir is not None else None
    seeds = [spec.seed + i for i in range(args.seeds)] if args.seeds else [spec.seed]
    if store is not None:
        store.check_manifest({"kind": "simulate", "scenario": args.scenario, "seeds": seeds,
                              "multi_seed": bool(args.seeds), "policies": policies,
                              "cells": [c.label for c in cells], "requests": args.requests,
                              "calibration": args.calibration,
                              "information": spec.scheduler.information,
                              "declared_error": spec.scheduler.declared_error})
    print(f"simulating {spec.name}: {len(cells)} cell(s) x {len(policies)} policies x "
          f"{requests} services, seed{'s' if args.seeds else ''} "
          f"{', '.join(map(str, seeds))}", file=sys.stderr)
    with executor_from_name(args.executor, args.processes) as executor:
        if args.seeds:
            return _run_seeds(args, spec, seeds, cells, policies, matrix, calibration, run_dir,
                              store, executor, started)

        def progress(result) -> None:
            wall = sum(result.wall_s.values())
            print(f"  done {result.cell.label or spec.name} ({wall:.2f} s simulated wall)",
                  file=sys.stderr)

        results = run_cells(spec, cells, policies, requests=args.requests,
                            calibration=calibration, run_dir=run_dir, plots=not args.no_plots,
                            processes=args.processes, executor=executor, store=store,
                            on_done=progress if len(cells) > 1 else None)
    total_s = time.perf_counter() - started
    if len(cells) > 1:
        print(table1(results, policies))
        print()
        from simulator.paper import aggregate

        print(format_aggregate(aggregate(results, policies)))
        if run_dir is not None:
            write_matrix(run_dir, spec.name, results, policies, extra={
                "seed": spec.seed, "requests_per_policy": requests,
                "total_wall_s": total_s, "calibration": args.calibration})
    else:
        summary = results[0].summary
        print(format_table(summary, results[0].ceiling))
        if format_ratios(summary):
            print("\n" + format_ratios(summary))
    if run_dir is not None:
        print(f"\nresults: {run_dir}")
    print(f"total wall time {total_s:.1f} s", file=sys.stderr)
    return 0


def _run_seeds(args, spec, seeds, cells, policies, matrix, calibration, run_dir, store,
               executor, started) -> int:
    """--seeds N: every (seed, cell) a task; the aggregate over seeds with 95% CIs."""
    import json

    from campaign.seeds import aggregate_seeds, format_seeds, run_seeds, write_seeds_report

    def progress(outcome) -> None:
        state = "done" if outcome.ok else f"FAILED: {outcome.error.splitlines()[0]}"
        print(f"  {outcome.key}: {state}", file=sys.stderr)

    results = run_seeds(spec, seeds, cells, policies, executor=executor, run_dir=run_dir,
                        store=store, requests=args.requests, calibration=calibration,
                        plots=not args.no_plots, on_done=progress)
    data = aggregate_seeds(spec.name, seeds, results, policies, matrix)
    print(format_seeds(data))
    if run_dir is not None:
        write_seeds_report(run_dir, data, results)
        print(f"\nresults: {run_dir}")
    print(f"total wall time {time.perf_counter() - started:.1f} s", file=sys.stderr)
    if args.json:
        print(json.dumps(data))
    return 1 if data["failed"] else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulator", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="Simulate a scenario (the paper's matrix for `paper`)")
    run.add_argument("scenario", help="scenario name (scenarios/NAME.yaml) or path")
    run.add_argument("--requests", type=int, help="services per policy (default: the spec's)")
    run.add_argument("--seed", type=int, help="seed (default: the spec's)")
    run.add_argument("--policies", help="comma-separated (default: the spec's)")
    run.add_argument("--calibration", help="calibration YAML from `simulator calibrate`")
    run.add_argument("--information", choices=RUN_INFORMATION,
                     help="what every policy knows (scheduler.information; default: the "
                          "spec's, measured unless it says otherwise)")
    run.add_argument("--declared-error", type=float, metavar="E",
                     help="nodes declare their rates off by up to ±E (a fraction; "
                          "scheduler.declared_error; default: the spec's)")
    run.add_argument("--energy-model", choices=POWER_MODELS.names(),
                     help="node power over busy slots (scheduler.energy_models; default: the "
                          "spec's energy.model, linear unless it says otherwise)")
    run.add_argument("--transmission", choices=TRANSMISSION_MODELS.names(),
                     help="upload energy: per-bit or nic-time (default: the spec's "
                          "energy.transmission, per-bit unless it says otherwise)")
    run.add_argument("--conditions", default="stable,fluctuating",
                     help="matrix mode: bandwidth conditions (stable, fluctuating)")
    run.add_argument("--single", action="store_true",
                     help="one cell with the spec's own edge profile and fluctuation")
    run.add_argument("--seeds", type=int, help="run N seeds (the spec's, +1, ...) as campaign "
                                               "tasks and report means with 95%% CIs")
    run.add_argument("--json", action="store_true",
                     help="with --seeds: the last line is the aggregate as a JSON object")
    run.add_argument("--processes", type=int, help="local executor: parallel processes "
                                                    "(default: cores)")
    run.add_argument("--executor", default="local",
                     help="local (default), local:N, ray (a local Ray instance), ray:auto or "
                          "ray://HOST:PORT (join a cluster); docs/campaigns.md")
    run.add_argument("--resume", metavar="DIR",
                     help="a results folder of this run: run only the cells it does not hold")
    run.add_argument("--results", default="results", help="results root folder")
    run.add_argument("--no-write", action="store_true", help="print only, write no results")
    run.add_argument("--no-plots", action="store_true", help="skip plots and report.md")
    run.set_defaults(fn=cmd_run)

    from simulator import calibrate, compare, sweep, validate

    sweep.add_parser(sub)
    calibrate.add_parser(sub)
    compare.add_parser(sub)
    validate.add_parser(sub)

    args = parser.parse_args(argv)
    try:
        return args.fn(args)
    except SpecError as exc:
        print(exc, file=sys.stderr)
        return 2
    except CampaignFailed as exc:
        print(f"error: {exc}\nthe other results are kept: rerun with --resume <results folder> "
              f"to run only what is missing", file=sys.stderr)
        return 1
    except CampaignConfigError as exc:  # a bad --executor, or --resume with other parameters
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
