"""`python -m scheduler serve ...`: run the SchedulerService until SIGTERM/SIGINT.

Prints one line `READY <port>` on stdout once serving (the port actually bound, so --port 0
works); errors in the arguments print one line on stderr and exit with status 2. The flags are
ServerConfig's fields (scheduler.config), so `serve_argv(config)` writes a command line for it.
"""

from __future__ import annotations

import argparse
import logging
import sys

from scheduler.config import SERVE_DEFAULTS, ServerConfig
from scheduler.options import add_arguments, from_args
from scheduler.server import serve
from scheduler.state_store import StateFileError


class _OneLineErrors(argparse.ArgumentParser):
    """argparse, but a bad argument is one `error: ...` line on stderr (exit status 2)."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _OneLineErrors(prog="python -m scheduler",
                            description="The perllm.v1 SchedulerService.")
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="serve SchedulerService, health and reflection")
    add_arguments(s, ServerConfig, defaults=SERVE_DEFAULTS)
    s.add_argument("--log-level", default="INFO", help="logging level on stderr")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s scheduler %(levelname)s %(message)s")

    def ready(port: int) -> None:
        print(f"READY {port}", flush=True)

    try:
        serve(from_args(ServerConfig, args), ready=ready)
    except (ValueError, StateFileError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
