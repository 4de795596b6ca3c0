"""A node's options: `NodeConfig` is the one list of what `python -m nodes serve` can set.

Each field carries its help text (and, for the node kind and the backend, the function that
lists the accepted names), so `scheduler.options` derives the CLI flags from it and the
emulated runner writes a node's command line from a config (`serve_argv`).
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass

from nodes.backends import BACKENDS, DEFAULT_BACKEND, describe_models
from scheduler.energy_models import DEFAULT_POWER, POWER_MODELS
from scheduler.options import option, to_argv
from scheduler.security import SecurityOptions

# The node kinds, with the slots a node of that kind runs unless --slots says otherwise.
DEFAULT_SLOTS = {"edge": 1, "cloud": 4}


def node_kinds() -> list[str]:
    return sorted(DEFAULT_SLOTS)


@dataclass(frozen=True)
class NodeConfig(SecurityOptions):
    """Everything `python -m nodes serve` can set (TLS and token: SecurityOptions)."""

    node_id: str = option("node", "node id, e.g. edge1", flag="--id", metavar="ID",
                          required=True)
    kind: str = option("edge", "node kind (sets the default --slots)", choices=node_kinds)
    backend: str = option(DEFAULT_BACKEND, "inference backend", choices=BACKENDS.names)
    model: str = option("", f"local model: {describe_models()}", metavar="PATH",
                        required=True)
    profile: str = option(
        "", "hardware profile name or .yaml path; omit for native speed")
    host: str = option(
        "0.0.0.0",  # inside a Mininet host the scheduler and users reach its interface
        "address to bind")
    port: int = option(0, "port to bind; 0: any free port (printed as READY <port>)")
    metrics_port: int | None = option(
        None, "serve Prometheus metrics on this port at /metrics (0: any free one); "
              "off when unset")
    slots: int = option(0, "concurrent requests (0: by kind, " + ", ".join(
        f"{kind} {n}" for kind, n in DEFAULT_SLOTS.items()) + ")")
    queue_capacity: int = option(
        64, "requests waiting for a slot; more get RESOURCE_EXHAUSTED")
    chunk_tokens: int = option(
        32,  # python -m nodes.bench: 8 cost 10-15% of tiny-model throughput
        "most tokens per streamed message")
    chunk_interval_s: float = option(
        0.02, "send a partial chunk once its oldest token is this old")
    n_threads: int = option(1, "backend threads")
    context_length: int = option(0, "tokens per request, prompt included (0: the model's own)")
    warmup_tokens: int = option(
        8, "tokens generated at load, so the first request is not cold (0: none)")
    grace_s: float = option(5.0, "in-flight requests get this long at SIGTERM")
    scheduler: str = option("", "the SchedulerService to register with; omit to not register",
                            metavar="HOST:PORT")
    advertise: str = option("", "address the scheduler should call "
                            "(default: derived from --host and the bound port)",
                            metavar="IP:PORT")
    link_rate_mbit: float = option(100.0, "nominal rate of the node's link (Mbit/s), "
                                   "declared at registration")
    j_per_bit: float = option(0.0, "transmission energy of the node's link type (J/bit)")
    declared_rate_factor: float = option(
        1.0, "rates declared at registration = the profile's x this factor (a misspecified "
             "profile: scheduler.information); the node still paces at the profile's")
    heartbeat_interval_s: float = option(0.5, "seconds between heartbeats to the scheduler")
    power_model: str = option(
        DEFAULT_POWER, "modelled node power over busy slots (scheduler/energy_models.py)",
        choices=POWER_MODELS.names)
    max_context_tokens: int = option(
        0, "longest service (prompt + answer, tokens) each slot must hold: the profile's "
           "model, slots and this must fit the hardware's memory (0: the model's own window)")
    slowdown_file: str = option(
        "", "JSON file {\"factor\": F} polled while pacing: every step takes F times as long "
            "(the slow-node fault writes it; nodes/slowdown.py); needs --profile", metavar="PATH")

    def resolved_slots(self) -> int:
        return self.slots or DEFAULT_SLOTS.get(self.kind, 1)

    def validate(self) -> None:
        if not self.node_id:
            raise ValueError(f"node_id must not be empty (got {self.node_id!r})")
        if self.kind not in DEFAULT_SLOTS:
            raise ValueError(f"kind must be one of {', '.join(DEFAULT_SLOTS)} (got {self.kind!r})")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS.names())} "
                             f"(got {self.backend!r})")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be in [0, 65535] (got {self.port})")
        if self.metrics_port is not None and not 0 <= self.metrics_port <= 65535:
            raise ValueError(f"metrics_port must be in [0, 65535] or None "
                             f"(got {self.metrics_port})")
        for name in ("slots", "queue_capacity", "context_length", "warmup_tokens",
                     "max_context_tokens"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0 (got {getattr(self, name)})")
        for name in ("chunk_tokens", "n_threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1 (got {getattr(self, name)})")
        for name in ("chunk_interval_s", "grace_s", "j_per_bit"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0 (got {value})")
        for name in ("link_rate_mbit", "heartbeat_interval_s", "declared_rate_factor"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0 (got {value})")
        if self.slowdown_file and not self.profile:
            raise ValueError(f"slowdown_file needs a profile: an unpaced node runs at its "
                             f"machine's own speed (got slowdown_file={self.slowdown_file!r} "
                             f"and no profile)")
        if self.power_model not in POWER_MODELS:
            raise ValueError(f"power_model must be one of {', '.join(POWER_MODELS.names())} "
                             f"(got {self.power_model!r})")
        if self.profile:
            self._check_memory()
        if self.scheduler and ":" not in self.scheduler:
            raise ValueError(f"scheduler must be HOST:PORT (got {self.scheduler!r})")
        if self.advertise and ":" not in self.advertise:
            raise ValueError(f"advertise must be IP:PORT (got {self.advertise!r})")


    def _check_memory(self) -> None:
        """The profile's model at resolved_slots() slots of max_context_tokens (the model's
        window when 0) must fit its hardware's memory (nodes/memory.py)."""
        from nodes.memory import check_memory
        from nodes.profile import load_profile

        context = self.max_context_tokens or 10**9  # clipped to the model's window
        try:
            check_memory(load_profile(self.profile), self.resolved_slots(), context,
                         node=f"node {self.node_id}")
        except ValueError as exc:
            raise ValueError(f"{exc} (set --slots or --max-context-tokens)") from None


def serve_argv(config: NodeConfig, python: str = sys.executable) -> list[str]:
    """The command line that runs `python -m nodes serve` with `config`."""
    return [python, "-m", "nodes", "serve", *to_argv(config)]
