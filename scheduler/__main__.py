"""`python -m scheduler serve ...`: run the SchedulerService until SIGTERM/SIGINT.

Prints one line `READY <port>` on stdout once serving (the port actually bound, so --port 0
works); errors in the arguments print one line on stderr and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from scheduler.server import ServerConfig, serve
from scheduler.state_store import StateFileError


def _parser() -> argparse.ArgumentParser:
    defaults = ServerConfig()
    parser = argparse.ArgumentParser(prog="python -m scheduler",
                                     description="The perllm.v1 SchedulerService.")
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="serve SchedulerService, health and reflection")
    s.add_argument("--host", default=defaults.host, help="address to bind (default %(default)s)")
    s.add_argument("--port", type=int, default=50051, help="port; 0 picks a free one")
    s.add_argument("--policy", default=defaults.policy, help="registered policy name")
    s.add_argument("--seed", type=int, default=defaults.seed, help="policy RNG seed")
    s.add_argument("--policy-params", default="{}", metavar="JSON",
                   help='policy hyperparameters as a JSON object, e.g. \'{"delta": 0.5}\'')
    s.add_argument("--state-file", default=None, metavar="PATH",
                   help="policy state, rewritten atomically after every outcome, loaded at start")
    s.add_argument("--bandwidth-feed", default=None, metavar="PATH",
                   help='JSON {"time_s": t, "rates_mbit": {node_id: rate}}, re-read on change')
    s.add_argument("--heartbeat-timeout-s", type=float, default=defaults.heartbeat_timeout_s,
                   help="exclude a node silent this long (default %(default)s)")
    s.add_argument("--grace-s", type=float, default=defaults.grace_s,
                   help="time in-flight calls get at shutdown (default %(default)s)")
    s.add_argument("--max-receive-bytes", type=int, default=defaults.max_receive_bytes,
                   help="larger messages get RESOURCE_EXHAUSTED (default %(default)s)")
    s.add_argument("--max-workers", type=int, default=defaults.max_workers,
                   help="RPC threads; bounds concurrent Submit calls (default %(default)s)")
    s.add_argument("--submit-margin-s", type=float, default=defaults.submit_margin_s,
                   help="Submit keeps trying this long past the requirement (default %(default)s)")
    s.add_argument("--booking-ttl-s", type=float, default=defaults.booking_ttl_s,
                   help="drop a booking with no outcome this long past its predicted finish "
                        "(default: its deadline_s + the heartbeat timeout)")
    s.add_argument("--log-level", default="INFO", help="logging level on stderr")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s scheduler %(levelname)s %(message)s")
    try:
        params = json.loads(args.policy_params)
    except json.JSONDecodeError as e:
        print(f"error: --policy-params is not valid JSON ({e}): {args.policy_params!r}",
              file=sys.stderr)
        return 2
    if not isinstance(params, dict):
        print(f"error: --policy-params must be a JSON object (got {args.policy_params!r})",
              file=sys.stderr)
        return 2
    config = ServerConfig(
        policy=args.policy, seed=args.seed, policy_params=params, host=args.host,
        port=args.port, state_file=args.state_file, bandwidth_feed=args.bandwidth_feed,
        heartbeat_timeout_s=args.heartbeat_timeout_s, grace_s=args.grace_s,
        max_receive_bytes=args.max_receive_bytes, max_workers=args.max_workers,
        submit_margin_s=args.submit_margin_s, booking_ttl_s=args.booking_ttl_s)

    def ready(port: int) -> None:
        print(f"READY {port}", flush=True)

    try:
        serve(config, ready=ready)
    except (ValueError, StateFileError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
