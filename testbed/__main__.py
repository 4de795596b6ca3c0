"""`python -m testbed up|verify|clean`: the network from a scenario, its benchmark, its cleanup."""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
from pathlib import Path

from testbed.spec import TopologySpec, load_topology


def _load(spec_path: str | None) -> tuple[TopologySpec, int]:
    if spec_path is None:
        return TopologySpec(), 0
    return load_topology(spec_path)


def cmd_up(args) -> int:
    from mininet.cli import CLI

    from testbed.net import Testbed

    spec, seed = _load(args.spec)
    if args.seed is not None:
        seed = args.seed
    with Testbed(spec, seed=seed, run_dir=args.run_dir) as tb:
        tb.start_fluctuation()
        print(f"fluctuation '{spec.fluctuation.profile}' running (seed {seed}); bandwidth feed "
              f"{tb.bandwidth_feed_path}; type 'exit' to tear down", flush=True)
        CLI(tb.net)
        tb.stop_fluctuation()
        if args.run_dir is not None:
            path = Path(args.run_dir) / "rate_log.csv"
            with path.open("w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(["time_s", "link", "rate_mbit"])
                writer.writerows(tb.rate_log)
            print(f"rate log: {path}")
    return 0


def cmd_verify(args) -> int:
    from testbed import verify

    spec, _ = _load(args.spec)
    result = verify.run(spec, duration_s=args.duration_s, parallel=not args.sequential)
    print(json.dumps(result, indent=1) if args.json else verify.format_table(result))
    return 0


def cmd_clean(args) -> int:
    from testbed.clean import clean

    done = clean(force=args.force)
    print("\n".join(done) if done else "nothing to clean")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testbed", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="open the Mininet CLI on a scenario's network, fluctuating")
    up.add_argument("--spec", help="scenario YAML (its topology: and seed: keys)")
    up.add_argument("--seed", type=int, help="override the scenario's seed")
    up.add_argument("--run-dir", type=Path, help="where the bandwidth feed and rate log go")
    up.set_defaults(fn=cmd_up)
    ver = sub.add_parser("verify", help="measure every link with iperf3 (benchmark)")
    ver.add_argument("--spec", help="scenario YAML (default: 5 edges at 100, cloud at 300)")
    ver.add_argument("--json", action="store_true", help="print the figures as JSON")
    ver.add_argument("--duration-s", type=float, default=2.0, help="iperf3 time per run")
    ver.add_argument("--sequential", action="store_true", help="one link at a time")
    ver.set_defaults(fn=cmd_verify)
    cl = sub.add_parser("clean", help="remove what a crashed testbed left (ours only)")
    cl.add_argument("--force", action="store_true", help="also a testbed that is still running")
    cl.set_defaults(fn=cmd_clean)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        from mininet.log import lg

        lg.propagate = False  # Mininet prints its own messages; do not repeat them
    except ImportError:
        pass  # Testbed reports it with what to do
    from testbed.net import TestbedError

    try:
        return args.fn(args)
    except TestbedError as exc:
        print(f"testbed: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
