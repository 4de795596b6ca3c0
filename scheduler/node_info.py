"""What a node declares when it registers (NodeInfo), checked against scheduler.limits."""

from __future__ import annotations

from dataclasses import dataclass

from scheduler.limits import (MAX_J_PER_BIT, MAX_POWER_W, MAX_RATE_MBIT, MAX_RATE_TOK_S,
                              MAX_SLOTS, MAX_SLOWDOWN, MIN_RATE_MBIT, MIN_RATE_TOK_S,
                              check_number)

EDGE = "edge"
CLOUD = "cloud"
NODE_KINDS = (EDGE, CLOUD)


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """What a node declares when it registers."""

    node_id: str
    address: str
    kind: str  # "edge" or "cloud"
    slots: int
    link_rate_mbit: float  # nominal bandwidth of its link
    profile: str = ""
    idle_power_w: float = 0.0
    max_power_w: float = 0.0
    prefill_tok_s: float = 0.0  # 0: unknown until measured
    decode_tok_s: float = 0.0
    queue_capacity: int = 64
    transmission_j_per_bit: float = 0.0
    # Relative per-request rate loss per extra concurrent request (hardware profile's s).
    concurrency_slowdown: float = 0.0

    def validate(self) -> None:
        if not self.node_id:
            raise ValueError(f"node_id must not be empty (got {self.node_id!r})")
        if not self.address:
            raise ValueError(f"address must not be empty (got {self.address!r})")
        if self.kind not in NODE_KINDS:
            raise ValueError(f"kind must be one of {NODE_KINDS} (got {self.kind!r})")
        # Ranges: scheduler.limits (every number finite, so every prediction is too).
        check_number("slots", self.slots, 1, MAX_SLOTS)
        check_number("queue_capacity", self.queue_capacity, 0, MAX_SLOTS)
        check_number("link_rate_mbit", self.link_rate_mbit, MIN_RATE_MBIT, MAX_RATE_MBIT)
        for name, high in (("idle_power_w", MAX_POWER_W), ("max_power_w", MAX_POWER_W),
                           ("transmission_j_per_bit", MAX_J_PER_BIT),
                           ("concurrency_slowdown", MAX_SLOWDOWN)):
            check_number(name, getattr(self, name), 0, high)
        for name in ("prefill_tok_s", "decode_tok_s"):  # 0: unknown until measured
            if getattr(self, name) != 0:
                check_number(name, getattr(self, name), MIN_RATE_TOK_S, MAX_RATE_TOK_S)
        if self.max_power_w < self.idle_power_w:
            raise ValueError(
                f"max_power_w must be >= idle_power_w (got {self.max_power_w} < {self.idle_power_w})")
