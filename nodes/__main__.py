"""`python -m nodes {serve,build-tiny,profiles,derive-profile}`."""

from __future__ import annotations

import argparse
import logging
import sys

from nodes.server import DEFAULT_SLOTS, NodeConfig


def _serve_parser(sub) -> None:
    d = NodeConfig()
    p = sub.add_parser("serve", help="run an inference node (prints 'READY <port>')")
    p.add_argument("--id", dest="node_id", required=True, help="node id, e.g. edge1")
    p.add_argument("--kind", choices=sorted(DEFAULT_SLOTS), default=d.kind)
    p.add_argument("--backend", choices=["llama-cpp", "transformers"], default=d.backend)
    p.add_argument("--model", required=True,
                   help="GGUF file (llama-cpp) or model directory (transformers)")
    p.add_argument("--profile", default=d.profile,
                   help="hardware profile name or .yaml path; omit for native speed")
    p.add_argument("--host", default=d.host, help="address to bind")
    p.add_argument("--port", type=int, default=d.port, help="0: any free port")
    p.add_argument("--slots", type=int, default=d.slots,
                   help="concurrent requests (0: edge 1, cloud 4)")
    p.add_argument("--queue-capacity", type=int, default=d.queue_capacity)
    p.add_argument("--chunk-tokens", type=int, default=d.chunk_tokens,
                   help="most tokens per streamed message")
    p.add_argument("--chunk-interval-s", type=float, default=d.chunk_interval_s,
                   help="send a partial chunk once its oldest token is this old")
    p.add_argument("--n-threads", type=int, default=d.n_threads, help="backend threads")
    p.add_argument("--context-length", type=int, default=d.context_length,
                   help="0: the model's own")
    p.add_argument("--warmup-tokens", type=int, default=d.warmup_tokens)
    p.add_argument("--grace-s", type=float, default=d.grace_s,
                   help="in-flight requests get this long at SIGTERM")
    p.add_argument("--scheduler", default=d.scheduler, help="HOST:PORT to register with")
    p.add_argument("--advertise", default=d.advertise,
                   help="IP:PORT the scheduler should call (default: derived from --host)")
    p.add_argument("--link-rate-mbit", type=float, default=d.link_rate_mbit)
    p.add_argument("--j-per-bit", type=float, default=d.j_per_bit,
                   help="transmission energy of the node's link type")
    p.add_argument("--heartbeat-interval-s", type=float, default=d.heartbeat_interval_s)
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
    fields = {k: v for k, v in vars(args).items() if k not in ("command", "log_level")}
    try:
        config = NodeConfig(**fields)
        config.validate()
    except ValueError as e:
        print(f"nodes serve: {e}", file=sys.stderr)
        return 2
    return serve(config)


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
