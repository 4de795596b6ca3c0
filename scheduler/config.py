"""ServerConfig: the one list of the scheduler server's options, with their help texts.

`python -m scheduler serve` derives its flags from these fields (scheduler.options), and
`serve_argv` writes the command line that rebuilds a config, so an option is declared once.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from scheduler.information import RUN_INFORMATION
from scheduler.options import option, to_argv
from scheduler.security import SecurityOptions

# The gateway's connections per node (scheduler.node_channels), also the scenario spec's default.
DEFAULT_NODE_CONNECTIONS = 8

# Where `python -m scheduler serve` departs from the config's defaults: a CLI user expects a
# well-known port, while tests and in-process servers bind any free one (port 0).
SERVE_DEFAULTS: Mapping[str, Any] = {"port": 50051}


def _policy_names() -> list[str]:
    import scheduler.policies  # registers every policy (the package imports them all)
    return scheduler.policies.POLICIES.names()


@dataclass(frozen=True)
class ServerConfig(SecurityOptions):
    """Everything `python -m scheduler serve` can set (TLS and token: SecurityOptions)."""

    policy: str = option("cs-ucb", "registered policy name", choices=_policy_names)
    seed: int = option(0, "policy RNG seed")
    policy_params: Mapping[str, Any] = option(
        default_factory=dict,
        help='policy hyperparameters as a JSON object, e.g. \'{"delta": 0.5}\'')
    # Inside a Mininet host the nodes reach us on its interface, hence every address.
    host: str = option("0.0.0.0", "address to bind")
    port: int = option(0, "port; 0 picks a free one (READY and create_server say which)")
    metrics_port: int | None = option(
        None, "serve Prometheus metrics on this port at /metrics (0: any free one); "
              "off when unset")
    state_file: str | None = option(
        None, "policy state, rewritten atomically after every outcome, loaded at start",
        metavar="PATH")
    information: str = option(
        "measured", "what the scheduler knows (scheduler.information): measured = declared "
                    "rates learned from outcomes and bandwidth learned from transfers; "
                    "perfect = the rates nodes report and the bandwidth feed taken as truth",
        choices=lambda: list(RUN_INFORMATION))
    true_output_tokens: str | None = option(
        None, "workload JSON whose true output lengths a clairvoyant policy is handed "
              "(required by it, refused for any other)", metavar="PATH")
    bandwidth_feed: str | None = option(
        None, 'JSON {"time_s": t, "rates_mbit": {node_id: rate}}, re-read on change',
        metavar="PATH")
    heartbeat_timeout_s: float = option(3.0, "exclude a node silent this long")
    grace_s: float = option(5.0, "time in-flight calls get at shutdown")
    max_receive_bytes: int = option(64 * 1024 * 1024,
                                    "larger messages get RESOURCE_EXHAUSTED")
    # Submit holds a worker thread for a whole generation, so the pool bounds concurrent Submits.
    max_workers: int = option(64, "RPC threads; bounds concurrent Submit calls")
    node_connections: int = option(
        DEFAULT_NODE_CONNECTIONS,
        "gateway: most TCP connections to one node; calls beyond share the least busy")
    prestart_threads: int = option(
        0, "RPC threads started with the server, so a burst's first calls wait for none to "
           "start (at most max_workers)")
    # Past the requirement a late answer (MISSED) is still worth more to the user than none
    # (FAILED).
    submit_margin_s: float = option(1.0, "Submit keeps trying this long past the requirement")
    booking_ttl_s: float | None = option(
        None, "drop a booking with no outcome this long past its predicted finish "
              "(default: its deadline_s + the heartbeat timeout)")
    reported_ids_memory: int = option(
        100_000, "ReportOutcome ignores a service_id among the last this many outcomes "
                 "(a client's retry)")
    clock: Callable[[], float] = option(time.monotonic, cli=False)

    def validate(self) -> None:
        if self.information not in RUN_INFORMATION:
            raise ValueError(f"information must be one of {', '.join(RUN_INFORMATION)} "
                             f"(got {self.information!r})")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be in [0, 65535] (got {self.port})")
        if self.metrics_port is not None and not 0 <= self.metrics_port <= 65535:
            raise ValueError(f"metrics_port must be in [0, 65535] or None "
                             f"(got {self.metrics_port})")
        for name in ("heartbeat_timeout_s", "grace_s", "submit_margin_s"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a finite number >= 0 (got {value})")
        if self.heartbeat_timeout_s <= 0:
            raise ValueError(f"heartbeat_timeout_s must be > 0 (got {self.heartbeat_timeout_s})")
        if self.max_receive_bytes <= 0:
            raise ValueError(f"max_receive_bytes must be > 0 (got {self.max_receive_bytes})")
        if self.max_workers <= 0:
            raise ValueError(f"max_workers must be > 0 (got {self.max_workers})")
        if self.node_connections < 1:
            raise ValueError(f"node_connections must be >= 1 (got {self.node_connections})")
        if not 0 <= self.prestart_threads <= self.max_workers:
            raise ValueError(f"prestart_threads must be in [0, max_workers={self.max_workers}] "
                             f"(got {self.prestart_threads})")
        if self.booking_ttl_s is not None and not self.booking_ttl_s >= 0:
            raise ValueError(f"booking_ttl_s must be >= 0 or None (got {self.booking_ttl_s})")
        if self.reported_ids_memory <= 0:
            raise ValueError(
                f"reported_ids_memory must be > 0 (got {self.reported_ids_memory})")


def serve_argv(config: ServerConfig, python: str = sys.executable) -> list[str]:
    """The command line that runs `python -m scheduler serve` with `config` (clock aside)."""
    return [python, "-m", "scheduler", "serve", *to_argv(config, always=SERVE_DEFAULTS)]
