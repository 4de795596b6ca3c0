"""`python -m nodes {serve,build-tiny,profiles,derive-profile}`."""

from __future__ import annotations

import argparse
import logging
import sys

from nodes.config import NodeConfig
from scheduler.options import add_arguments, from_args


def _serve_parser(sub) -> None:
    p = sub.add_parser("serve", help="run an inference node (prints 'READY <port>')")
    add_arguments(p, NodeConfig)
    p.add_argument("--log-level", default="WARNING")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nodes", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _serve_parser(sub)
    b = sub.add_parser("build-tiny", help="build the tiny offline models (GGUF + transformers)")
    b.add_argument("--out", default="models/", help="output directory")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--force", action="store_true", help="rebuild even when up to date")
    # The profile commands parse their own arguments (nodes.profile, nodes.roofline).
    sub.add_parser("profiles", help="list the hardware profiles", add_help=False)
    sub.add_parser("derive-profile", help="derive a profile with the roofline model",
                   add_help=False)
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "profiles":
        from nodes.profile import cli_profiles
        return cli_profiles(argv[1:])
    if argv and argv[0] == "derive-profile":
        from nodes.roofline_cli import cli_derive
        return cli_derive(argv[1:])
    args = parser.parse_args(argv)
    if args.command == "build-tiny":
        return _build_tiny(args)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from nodes.server import serve
    return serve(from_args(NodeConfig, args))  # serve validates it


def _build_tiny(args: argparse.Namespace) -> int:
    import time

    from nodes.tiny import TinyConfig, build_tiny

    t0 = time.perf_counter()
    try:
        models = build_tiny(args.out, TinyConfig(seed=args.seed), force=args.force)
    except (OSError, ValueError) as e:
        print(f"build-tiny: {e}", file=sys.stderr)
        return 2
    state = "built" if models.built else "up to date"
    print(f"tiny models {state}: {models.gguf_path} and {models.hf_dir} "
          f"(seed {args.seed}, {time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
