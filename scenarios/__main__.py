"""`python -m scenarios run NAME` runs an emulated scenario (root; `--seeds N`: as a campaign
of N seeds); `campaign NAME --seeds N` runs policies x seeds as campaign tasks on an executor
(local, or a Ray cluster: docs/campaigns.md); `list` shows the scenarios."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from nodes.backends import BACKENDS, backend_class
from scenarios.spec import SpecError, available, load_spec

TINY_MODELS_DIR = Path("models")  # where `make setup` builds them (python -m nodes build-tiny)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scenarios", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a scenario on the emulated testbed (needs root)")
    campaign = sub.add_parser("campaign", help="policies x seeds, each a fresh testbed, as "
                                               "campaign tasks; an aggregate with 95%% CIs")
    for p in (run, campaign):
        p.add_argument("name", help="scenario name (scenarios/NAME.yaml) or a YAML path")
        p.add_argument("--policies", help="comma-separated policy names (default: the spec's)")
        p.add_argument("--seed", type=int, help="the (first) seed (default: the spec's)")
        p.add_argument("--requests", type=int, help="services per policy")
        p.add_argument("--backend", choices=BACKENDS.names(),
                       help="backend of every node")
        p.add_argument("--model", help="local model path for every node")
        p.add_argument("--mode", choices=("gateway", "advisor"))
        p.add_argument("--results", type=Path, default=Path("results"))
    run.add_argument("--seeds", type=int, help="run as a campaign of N seeds (seed, +1, ...) "
                                               "with the local executor")
    campaign.add_argument("--seeds", type=int, required=True,
                          help="seeds per policy (seed, +1, ...)")
    campaign.add_argument("--executor", default="local",
                          help="local (default: this host's testbed), ray (a local Ray "
                               "instance), ray:auto or ray://HOST:PORT (join a cluster)")
    campaign.add_argument("--resume", type=Path, metavar="DIR",
                          help="a campaign's folder: run only the runs it does not hold")
    sub.add_parser("list", help="list the shipped scenarios")
    args = parser.parse_args(argv)

    if args.command == "list":
        print("\n".join(available()))
        return 0
    if args.seeds is not None and args.seeds < 1:
        print(f"error: --seeds must be >= 1 (got {args.seeds})", file=sys.stderr)
        return 2
    overrides = {"seed": args.seed, "workload.requests": args.requests, "mode": args.mode,
                 "policies": args.policies.split(",") if args.policies else None}
    model = args.model
    if args.backend and not model:  # the backend's own tiny model unless one is given
        model = str(TINY_MODELS_DIR / backend_class(args.backend).tiny_model)
    for group in ("edge", "cloud"):
        overrides[f"nodes.{group}.backend"] = args.backend
        overrides[f"nodes.{group}.model"] = model
    try:
        spec = load_spec(args.name, **overrides)
    except SpecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    executor_name = getattr(args, "executor", "local")
    # A cluster's hosts need root and the models; this host needs them only to run here.
    runs_here = executor_name == "ray" or executor_name.startswith("local")
    if runs_here and os.geteuid() != 0:
        print("error: an emulated scenario needs root (Mininet): run 'sudo make scenario "
              f"NAME={args.name}'", file=sys.stderr)
        return 2
    for group in (spec.nodes.edge, spec.nodes.cloud):
        if runs_here and not group.model.exists():
            print(f"error: model {group.model} not found: run 'make setup' (tiny models) or "
                  "pass MODEL=/path/to/a/local/model", file=sys.stderr)
            return 2
    if args.command == "campaign" or args.seeds:
        from campaign.emulated import campaign_main

        return campaign_main(spec, args.seeds, executor_name, args.results,
                             getattr(args, "resume", None))

    from scenarios.emulate import RunInterrupted, emulated_ceiling, run_scenario
    from scenarios.results import format_ratios, format_table

    try:
        run_dir, summary = run_scenario(spec, spec.policies, spec.mode, args.results)
    except RunInterrupted as exc:
        if exc.summary:
            print(format_table(exc.summary))
        print(f"results (incomplete): {exc.run_dir}")
        return 130
    print(format_table(summary, emulated_ceiling(spec)))
    if format_ratios(summary):
        print(format_ratios(summary))
    print(f"results: {run_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
