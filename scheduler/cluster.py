"""Cluster state as the scheduler sees it: registered nodes, their load, learned rates and
bandwidth, and the processing-time prediction behind the constraint mechanism (PerLLM eq. 3).

Pure bookkeeping with an injected clock: the gRPC service, the emulated runs and the simulator
all feed it the same events (register, heartbeat, assign, complete).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Iterable

from scheduler.outcome import Outcome, Status
from scheduler.service import Service

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

    def validate(self) -> None:
        if not self.node_id:
            raise ValueError(f"node_id must not be empty (got {self.node_id!r})")
        if not self.address:
            raise ValueError(f"address must not be empty (got {self.address!r})")
        if self.kind not in NODE_KINDS:
            raise ValueError(f"kind must be one of {NODE_KINDS} (got {self.kind!r})")
        if self.slots <= 0:
            raise ValueError(f"slots must be > 0 (got {self.slots})")
        if not self.link_rate_mbit > 0:
            raise ValueError(f"link_rate_mbit must be > 0 (got {self.link_rate_mbit})")
        for name in ("idle_power_w", "max_power_w", "prefill_tok_s", "decode_tok_s",
                     "transmission_j_per_bit"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0 (got {getattr(self, name)})")
        if self.max_power_w < self.idle_power_w:
            raise ValueError(
                f"max_power_w must be >= idle_power_w (got {self.max_power_w} < {self.idle_power_w})")
        if self.queue_capacity < 0:
            raise ValueError(f"queue_capacity must be >= 0 (got {self.queue_capacity})")


@dataclass(frozen=True, slots=True)
class Prediction:
    """Predicted processing time D-hat of one service on one node, and eq. 3's f."""

    node_id: str
    transmission_s: float
    queueing_s: float
    inference_s: float
    compute_headroom: float  # (Cmax - C) / Cmax
    bandwidth_headroom: float  # (Bmax - B) / Bmax
    time_headroom: float  # (D - D-hat) / D

    @property
    def total_s(self) -> float:
        return self.transmission_s + self.queueing_s + self.inference_s

    @property
    def f(self) -> float:
        """PerLLM eq. 3: feasible iff f >= 0."""
        return min(self.time_headroom, self.compute_headroom, self.bandwidth_headroom)

    @property
    def feasible(self) -> bool:
        return self.f >= 0.0


@dataclass
class NodeState:
    info: NodeInfo
    prefill_tok_s: float
    decode_tok_s: float
    bandwidth_mbit: float  # current estimate (true or measured, by configuration)
    alive: bool = True
    serving: bool = True
    last_heartbeat_s: float = 0.0
    queue_length: int = 0  # as last reported by the node
    busy_slots: int = 0
    # Services assigned here and not yet completed: id -> (predicted inference s, upload end s)
    inflight: dict[str, tuple[float, float]] = field(default_factory=dict)
    assigned: int = 0

    @property
    def node_id(self) -> str:
        return self.info.node_id

    @property
    def kind(self) -> str:
        return self.info.kind

    def uploads_active(self, now_s: float) -> int:
        return sum(1 for _, upload_end in self.inflight.values() if upload_end > now_s)


# Defaults for a node that registered no rates: a deliberately modest guess that the
# measured outcomes overwrite after the first completion.
DEFAULT_PREFILL_TOK_S = 200.0
DEFAULT_DECODE_TOK_S = 10.0


class Cluster:
    """Registered nodes plus the estimates the policies read."""

    def __init__(self, clock: Callable[[], float], rate_smoothing: float = 0.3,
                 heartbeat_timeout_s: float = 5.0) -> None:
        if not 0 < rate_smoothing <= 1:
            raise ValueError(f"rate_smoothing must be in (0, 1] (got {rate_smoothing})")
        self.clock = clock
        self.rate_smoothing = rate_smoothing  # EWMA weight of a new measurement
        self.heartbeat_timeout_s = heartbeat_timeout_s
        self.nodes: dict[str, NodeState] = {}

    # --- events -------------------------------------------------------------------------
    def register(self, info: NodeInfo) -> NodeState:
        info.validate()
        existing = self.nodes.get(info.node_id)
        if existing is not None and existing.info.address != info.address:
            raise KeyError(f"node_id {info.node_id!r} already registered at "
                           f"{existing.info.address!r} (got {info.address!r})")
        state = NodeState(
            info=info,
            prefill_tok_s=info.prefill_tok_s or DEFAULT_PREFILL_TOK_S,
            decode_tok_s=info.decode_tok_s or DEFAULT_DECODE_TOK_S,
            bandwidth_mbit=info.link_rate_mbit,
            last_heartbeat_s=self.clock(),
        )
        if existing is not None:  # re-registration keeps what was learned
            state.inflight, state.assigned = existing.inflight, existing.assigned
            state.prefill_tok_s, state.decode_tok_s = existing.prefill_tok_s, existing.decode_tok_s
        self.nodes[info.node_id] = state
        return state

    def heartbeat(self, node_id: str, *, queue_length: int = 0, busy_slots: int = 0,
                  prefill_tok_s: float = 0.0, decode_tok_s: float = 0.0,
                  link_rate_mbit: float = 0.0, serving: bool = True) -> None:
        node = self.node(node_id)
        node.last_heartbeat_s = self.clock()
        node.queue_length, node.busy_slots, node.serving = queue_length, busy_slots, serving
        if prefill_tok_s > 0:
            node.prefill_tok_s = self._smooth(node.prefill_tok_s, prefill_tok_s)
        if decode_tok_s > 0:
            node.decode_tok_s = self._smooth(node.decode_tok_s, decode_tok_s)
        if link_rate_mbit > 0:
            node.bandwidth_mbit = link_rate_mbit

    def set_bandwidth(self, node_id: str, rate_mbit: float) -> None:
        """Feed the current bandwidth of a node's link (the true or a measured rate)."""
        if not rate_mbit > 0:
            raise ValueError(f"rate_mbit must be > 0 (got {rate_mbit})")
        self.node(node_id).bandwidth_mbit = rate_mbit

    def on_assign(self, service: Service, prediction: Prediction) -> None:
        node = self.node(prediction.node_id)
        now = self.clock()
        node.inflight[service.id] = (prediction.inference_s, now + prediction.transmission_s)
        node.assigned += 1

    def on_complete(self, outcome: Outcome) -> None:
        """Learn rates from the measured outcome and release the service's place."""
        node = self.nodes.get(outcome.node_id)
        if node is None:
            return
        node.inflight.pop(outcome.service_id, None)
        if outcome.status is Status.FAILED:
            return
        if outcome.inference_s > 0 and outcome.tokens_out > 0:
            # Effective decode rate including prefill: what the next prediction needs.
            measured = outcome.tokens_out / max(
                1e-6, outcome.inference_s - outcome.tokens_in / node.prefill_tok_s)
            if math.isfinite(measured) and measured > 0:
                node.decode_tok_s = self._smooth(node.decode_tok_s, measured)
        if outcome.transmission_s > 0 and outcome.input_bytes > 0:
            pass  # bandwidth comes from the link's rate feed, not from one noisy transfer

    def expire(self) -> list[str]:
        """Mark nodes whose heartbeats stopped as dead; return their ids."""
        now = self.clock()
        dead = []
        for node in self.nodes.values():
            was = node.alive
            node.alive = (now - node.last_heartbeat_s) <= self.heartbeat_timeout_s
            if was and not node.alive:
                dead.append(node.node_id)
        return dead

    # --- queries ------------------------------------------------------------------------
    def node(self, node_id: str) -> NodeState:
        try:
            return self.nodes[node_id]
        except KeyError:
            raise KeyError(f"unknown node_id {node_id!r}; registered: {sorted(self.nodes)}") from None

    def candidates(self) -> list[NodeState]:
        """Nodes a policy may choose: alive and serving, in registration order."""
        return [n for n in self.nodes.values() if n.alive and n.serving]

    def predict(self, service: Service, node_id: str) -> Prediction:
        """D-hat = upload at the current bandwidth share + queueing + inference (eq. 3)."""
        node = self.node(node_id)
        now = self.clock()
        uploads = node.uploads_active(now)
        share_mbit = node.bandwidth_mbit / (uploads + 1)
        transmission_s = service.input_bytes * 8 / (share_mbit * 1e6)
        inference_s = (service.estimated_prompt_tokens / node.prefill_tok_s
                       + service.max_new_tokens / node.decode_tok_s)
        busy = len(node.inflight)
        slots = node.info.slots
        queued_work_s = sum(work for work, _ in node.inflight.values())
        queueing_s = 0.0 if busy < slots else queued_work_s / slots
        d_hat = transmission_s + queueing_s + inference_s
        c_max = slots + node.info.queue_capacity
        compute_headroom = (c_max - (busy + 1)) / c_max
        # Bandwidth this upload needs to leave the rest of the requirement for inference.
        time_for_upload_s = service.deadline_s - queueing_s - inference_s
        b_need_mbit = (service.input_bytes * 8 / 1e6 / time_for_upload_s
                       if time_for_upload_s > 0 else math.inf)
        bandwidth_headroom = ((share_mbit - b_need_mbit) / share_mbit
                              if math.isfinite(b_need_mbit) else -1.0)
        return Prediction(
            node_id=node_id, transmission_s=transmission_s, queueing_s=queueing_s,
            inference_s=inference_s, compute_headroom=compute_headroom,
            bandwidth_headroom=bandwidth_headroom,
            time_headroom=(service.deadline_s - d_hat) / service.deadline_s)

    def predict_all(self, service: Service, nodes: Iterable[NodeState] | None = None
                    ) -> list[Prediction]:
        return [self.predict(service, n.node_id) for n in (nodes or self.candidates())]

    def _smooth(self, old: float, new: float) -> float:
        return (1 - self.rate_smoothing) * old + self.rate_smoothing * new
