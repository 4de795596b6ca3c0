"""`python -m scenarios run NAME` runs an emulated scenario (root); `list` shows them."""

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
    run.add_argument("name", help="scenario name (scenarios/NAME.yaml) or a YAML path")
    run.add_argument("--policies", help="comma-separated policy names (default: the spec's)")
    run.add_argument("--seed", type=int)
    run.add_argument("--requests", type=int, help="services per policy")
    run.add_argument("--backend", choices=BACKENDS.names(),
                     help="backend of every node")
    run.add_argument("--model", help="local model path for every node")
    run.add_argument("--mode", choices=("gateway", "advisor"))
    run.add_argument("--results", type=Path, default=Path("results"))
    sub.add_parser("list", help="list the shipped scenarios")
    args = parser.parse_args(argv)

    if args.command == "list":
        print("\n".join(available()))
        return 0
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
    if os.geteuid() != 0:
        print("error: an emulated scenario needs root (Mininet): run 'sudo make scenario "
              f"NAME={args.name}'", file=sys.stderr)
        return 2
    for group in (spec.nodes.edge, spec.nodes.cloud):
        if not group.model.exists():
            print(f"error: model {group.model} not found: run 'make setup' (tiny models) or "
                  "pass MODEL=/path/to/a/local/model", file=sys.stderr)
            return 2

    from scenarios.emulate import RunInterrupted, run_scenario
    from scenarios.results import format_ratios, format_table

    try:
        run_dir, summary = run_scenario(spec, spec.policies, spec.mode, args.results)
    except RunInterrupted as exc:
        if exc.summary:
            print(format_table(exc.summary))
        print(f"results (incomplete): {exc.run_dir}")
        return 130
    print(format_table(summary))
    if format_ratios(summary):
        print(format_ratios(summary))
    print(f"results: {run_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
