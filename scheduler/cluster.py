"""Cluster state as the scheduler sees it: registered nodes, their load, learned rates and
bandwidth, and the processing-time prediction behind the constraint mechanism (PerLLM eq. 3).

Pure bookkeeping with an injected clock: the gRPC service, the emulated runs and the simulator
all feed it the same events (register, heartbeat, assign, complete).

The prediction D-hat of a service on node j (all in seconds):
- transmission: input bytes at j's current bandwidth shared equally with the uploads still
  running to j (processor sharing);
- queueing: j serves `slots` services at a time, first come first served. Every booked
  service carries the finish time predicted when it was assigned, so with k booked and
  k >= slots a new service gets a slot when the (k − slots + 1)-th earliest of those finishes
  (a finish already overdue counts as "now"); queueing is the part of that wait not hidden
  behind its own upload;
- inference: prompt tokens / prefill rate + max new tokens / decode rate, slowed by the
  concurrency it will run at: rate_n = rate_1 / (1 + s·(n − 1)) (hardware profiles' model).
What the rates, the bandwidth and the output lengths come from is the information model
(scheduler.information): under `measured` (the default) rates start as declared and are learned
from outcomes (measured inference time against the prediction for its actual tokens) and a
link's bandwidth is learned from its transfers; under `perfect` and `clairvoyant` the caller
feeds the true rates (`set_rates`, or the rates nodes report in heartbeats) and bandwidth
(`set_bandwidth`), and nothing is learned.

Bookings are released by the outcome. An advisor-mode client that crashes never reports one, so
a booking is also dropped when it is long overdue (its predicted finish more than its
requirement plus the heartbeat timeout in the past, or `booking_ttl_s` when set) and when its
node dies; `abandoned` counts those whose outcome has not arrived since.
"""

from __future__ import annotations

import heapq
import math
from bisect import bisect_left, bisect_right, insort
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, NamedTuple

from scheduler.information import (CLAIRVOYANT, MEASURED, TransferBandwidth,
                                   check_information)
from scheduler.limits import (MAX_RATE_MBIT, MAX_RATE_TOK_S, MIN_RATE_MBIT, MIN_RATE_TOK_S,
                              check_number)
# NodeInfo and the node kinds live in scheduler.node_info; most callers import them from here.
from scheduler.node_info import CLOUD, EDGE, NODE_KINDS, NodeInfo  # noqa: F401
from scheduler.outcome import Outcome, Status
from scheduler.output_length import OutputLengthEstimator
from scheduler.service import Service

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


class Booking(NamedTuple):
    """A service assigned to a node and not yet completed, as predicted at assignment."""

    inference_s: float
    upload_end_s: float
    finish_s: float
    concurrency: int  # services running on the node when it was predicted to run
    # When it is dropped if no outcome came (see the module docstring); inf: never.
    expires_s: float = math.inf
    cap_tokens: int = 0  # the service's declared max_new_tokens (the output-length estimate)
    input_bytes: int = 0
    sharing: int = 1  # uploads to the node in flight when its upload started, itself included


@dataclass
class NodeState:
    info: NodeInfo
    prefill_tok_s: float
    decode_tok_s: float
    bandwidth_mbit: float  # current estimate (true or measured: scheduler.information)
    alive: bool = True
    serving: bool = True
    last_heartbeat_s: float = 0.0
    queue_length: int = 0  # as last reported by the node
    busy_slots: int = 0
    inflight: dict[str, Booking] = field(default_factory=dict)
    assigned: int = 0
    # Sorted views of the bookings so a prediction costs O(log k), not O(k).
    finishes_s: list[float] = field(default_factory=list)
    upload_ends_s: list[float] = field(default_factory=list)
    transfers: TransferBandwidth | None = None  # the measured bandwidth (information model)

    @property
    def node_id(self) -> str:
        return self.info.node_id

    @property
    def kind(self) -> str:
        return self.info.kind

    def load(self) -> int:
        """Services on the node: our bookings, or what it reported if that is more."""
        return max(len(self.inflight), self.queue_length + self.busy_slots)


# Dropped bookings remembered so a late outcome can take its service out of `abandoned`; the
# count itself is exact, only an outcome later than this many drops is counted twice.
ABANDONED_MEMORY = 100_000

# Defaults for a node that registered no rates: a deliberately modest guess that the
# measured outcomes overwrite after the first completion.
DEFAULT_PREFILL_TOK_S = 200.0
DEFAULT_DECODE_TOK_S = 10.0


def bandwidth_headroom_of(transmission_s: float, time_for_upload_s: float) -> float:
    """Eq. 3's bandwidth term for one upload, in [-1, 1].

    B_i = bits / time_for_upload_s is the rate the upload needs; B_max our share of the link,
    so transmission_s = bits / B_max. Met (B_i <= B_max): (B_max − B_i)/B_max, eq. 3 exactly.
    Violated: (B_max − B_i)/B_i, which has the same sign but stays in (−1, 0) and tends to −1
    as the time left for the upload tends to 0 (no time left: −1). Eq. 3's own form is
    unbounded there (→ −∞ as the time left → 0+), and a constant −1 for "no time left" would
    rank a hopeless node as less violating than one a fraction of a second short.
    """
    if transmission_s <= 0:
        return 1.0  # nothing to upload: no bandwidth needed
    if time_for_upload_s <= 0:
        return -1.0
    if transmission_s <= time_for_upload_s:
        return 1.0 - transmission_s / time_for_upload_s
    return time_for_upload_s / transmission_s - 1.0


def _remove(sorted_list: list[float], value: float) -> None:
    i = bisect_left(sorted_list, value)
    if i < len(sorted_list) and sorted_list[i] == value:
        del sorted_list[i]


class Cluster:
    """Registered nodes plus the estimates the policies read.

    information: what the estimates come from (scheduler.information; the module docstring).
    true_output_tokens: service id -> true output length, for a clairvoyant cluster only.
    booking_ttl_s: how long past its predicted finish a booking without outcome is kept;
    None: its service's deadline_s + heartbeat_timeout_s; math.inf: forever.
    """

    def __init__(self, clock: Callable[[], float], rate_smoothing: float = 0.3,
                 heartbeat_timeout_s: float = 5.0, information: str = MEASURED,
                 booking_ttl_s: float | None = None,
                 true_output_tokens: dict[str, int] | None = None) -> None:
        if not 0 < rate_smoothing <= 1:
            raise ValueError(f"rate_smoothing must be in (0, 1] (got {rate_smoothing})")
        if not heartbeat_timeout_s > 0:
            raise ValueError(f"heartbeat_timeout_s must be > 0 (got {heartbeat_timeout_s})")
        if booking_ttl_s is not None and not booking_ttl_s >= 0:  # also rejects NaN
            raise ValueError(f"booking_ttl_s must be >= 0 or None (got {booking_ttl_s})")
        self.clock = clock
        self.rate_smoothing = rate_smoothing  # EWMA weight of a new measurement
        self.heartbeat_timeout_s = heartbeat_timeout_s
        self.information = check_information(information)
        # Only under `measured` does the cluster learn; otherwise the caller feeds the truth.
        self.learn_rates = information == MEASURED
        if (true_output_tokens is not None) != (information == CLAIRVOYANT):
            raise ValueError("true_output_tokens is given to a clairvoyant cluster, and only "
                             f"to one (information {information!r})")
        self._true_output_tokens = true_output_tokens
        self.booking_ttl_s = booking_ttl_s
        self.nodes: dict[str, NodeState] = {}
        # (expires_s, seq, node_id, service_id) of every booking made; entries whose booking
        # was released or replaced are skipped when they come up (lazy deletion).
        self._expiries: list[tuple[float, int, str, str]] = []
        self._booking_seq = 0
        self._abandoned = 0
        # service_id -> node_id of its booking, and of its dropped booking (abandoned): a
        # service id names one service, booked on one node at a time.
        self._booked_on: dict[str, str] = {}
        # Output lengths are predicted from measured ones, never from the workload's truth.
        self.output_length = OutputLengthEstimator()
        self._abandoned_ids: OrderedDict[str, str] = OrderedDict()

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
            transfers=(TransferBandwidth(info.link_rate_mbit, self.rate_smoothing)
                       if self.learn_rates else None),
        )
        if existing is not None:  # re-registration keeps what was learned and booked
            state.inflight, state.assigned = existing.inflight, existing.assigned
            state.finishes_s, state.upload_ends_s = existing.finishes_s, existing.upload_ends_s
            if self.learn_rates or not (info.prefill_tok_s and info.decode_tok_s):
                state.prefill_tok_s = existing.prefill_tok_s
                state.decode_tok_s = existing.decode_tok_s
            if self.learn_rates:
                state.transfers, state.bandwidth_mbit = (existing.transfers,
                                                         existing.bandwidth_mbit)
        self.nodes[info.node_id] = state
        return state

    def heartbeat(self, node_id: str, *, queue_length: int = 0, busy_slots: int = 0,
                  prefill_tok_s: float = 0.0, decode_tok_s: float = 0.0,
                  link_rate_mbit: float = 0.0, serving: bool = True) -> None:
        node = self.node(node_id)
        node.last_heartbeat_s = self.clock()
        node.alive = True
        node.queue_length, node.busy_slots, node.serving = queue_length, busy_slots, serving
        # A rate outside (0, max] (NaN included) is "unknown", the proto's meaning of unset.
        # What a node reports of itself is the truth only to a perfect-information cluster
        # (the emulation's nodes measure their own paced tokens); a measuring scheduler
        # learns from its own outcomes and transfers instead (scheduler.information).
        if self.learn_rates:
            return
        if MIN_RATE_TOK_S <= prefill_tok_s <= MAX_RATE_TOK_S:
            node.prefill_tok_s = prefill_tok_s
        if MIN_RATE_TOK_S <= decode_tok_s <= MAX_RATE_TOK_S:
            node.decode_tok_s = decode_tok_s
        if MIN_RATE_MBIT <= link_rate_mbit <= MAX_RATE_MBIT:
            node.bandwidth_mbit = link_rate_mbit

    def set_bandwidth(self, node_id: str, rate_mbit: float) -> None:
        """Feed the current bandwidth of a node's link (the true or a measured rate)."""
        check_number("rate_mbit", rate_mbit, MIN_RATE_MBIT, MAX_RATE_MBIT)
        self.node(node_id).bandwidth_mbit = rate_mbit

    def set_rates(self, node_id: str, prefill_tok_s: float, decode_tok_s: float) -> None:
        """Feed a node's single-request rates directly (the true rates, `perfect` information)."""
        for name, value in (("prefill_tok_s", prefill_tok_s), ("decode_tok_s", decode_tok_s)):
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be > 0 (got {value})")
        node = self.node(node_id)
        node.prefill_tok_s, node.decode_tok_s = prefill_tok_s, decode_tok_s

    def on_assign(self, service: Service, prediction: Prediction) -> None:
        """Book a decided service on its node so the next predictions see the load."""
        node = self.node(prediction.node_id)
        now = self.clock()
        # Booked again (a client's retry, maybe on another node): replace, never count twice.
        previous = self._booked_on.get(service.id)
        if previous is not None:
            self._release(self.nodes[previous], service.id)
        if self._abandoned_ids.pop(service.id, None) is not None:
            self._abandoned -= 1  # counted by its new booking from now on
        finish_s = now + prediction.total_s
        upload_ends = node.upload_ends_s
        sharing = len(upload_ends) - bisect_right(upload_ends, now) + 1
        ttl_s = (service.deadline_s + self.heartbeat_timeout_s if self.booking_ttl_s is None
                 else self.booking_ttl_s)
        booking = Booking(
            inference_s=prediction.inference_s,
            upload_end_s=now + prediction.transmission_s,
            finish_s=finish_s,
            concurrency=min(len(node.inflight) + 1, node.info.slots),
            expires_s=finish_s + ttl_s, cap_tokens=service.max_new_tokens,
            input_bytes=service.input_bytes, sharing=sharing)
        node.inflight[service.id] = booking
        self._booked_on[service.id] = node.node_id
        insort(node.finishes_s, booking.finish_s)
        insort(node.upload_ends_s, booking.upload_end_s)
        node.assigned += 1
        if booking.expires_s < math.inf:  # also skips a NaN prediction, which never expires
            self._booking_seq += 1
            heapq.heappush(self._expiries, (booking.expires_s, self._booking_seq,
                                            node.node_id, service.id))

    def unassign(self, service_id: str, node_id: str) -> bool:
        """Undo `on_assign` of a decision that was never handed out (no outcome will come).

        Releases the booking and takes it out of `assigned`; False if none was found.
        """
        node = self.node(node_id)
        if self._release(node, service_id) is None:
            return False
        node.assigned -= 1
        return True

    def on_complete(self, outcome: Outcome) -> None:
        """Learn rates from the measured outcome and release the service's place."""
        node = self.nodes.get(outcome.node_id)
        if node is None:
            return
        booking = self._release(node, outcome.service_id)
        if booking is None and self._abandoned_ids.get(outcome.service_id) == outcome.node_id:
            # Its booking was dropped as abandoned, but the outcome came after all: it counts
            # once, as this outcome.
            del self._abandoned_ids[outcome.service_id]
            self._abandoned -= 1
        if outcome.status is Status.FAILED:
            return
        if booking is not None:  # a finished answer: its whole length
            self.output_length.observe(outcome.service_class, booking.cap_tokens,
                                       outcome.tokens_out)
        if not self.learn_rates:
            return
        if booking is not None and node.transfers is not None:
            if node.transfers.observe(booking.input_bytes, outcome.transmission_s,
                                      booking.sharing) is not None:
                node.bandwidth_mbit = node.transfers.rate_mbit
        if outcome.inference_s > 0 and outcome.tokens_out > 0:
            # What we would have predicted for the tokens it actually processed, at the
            # concurrency it was booked at; the ratio scales both rates (robust when the
            # prefill part alone exceeds the measured time, unlike solving for one rate).
            concurrency = booking.concurrency if booking is not None else 1
            slowdown = 1 + node.info.concurrency_slowdown * (concurrency - 1)
            predicted_s = (outcome.tokens_in / node.prefill_tok_s
                           + outcome.tokens_out / node.decode_tok_s) * slowdown
            ratio = outcome.inference_s / predicted_s  # > 1: the node is slower than believed
            prefill, decode = node.prefill_tok_s / ratio, node.decode_tok_s / ratio
            # Learned rates stay in the range a node may declare (scheduler.limits): finite.
            if (MIN_RATE_TOK_S <= prefill <= MAX_RATE_TOK_S
                    and MIN_RATE_TOK_S <= decode <= MAX_RATE_TOK_S):
                node.prefill_tok_s = self._smooth(node.prefill_tok_s, prefill)
                node.decode_tok_s = self._smooth(node.decode_tok_s, decode)

    def expire(self) -> list[str]:
        """Mark nodes whose heartbeats stopped as dead and drop their bookings (their services
        will not finish there) and overdue ones; return the ids that just died."""
        now = self.clock()
        dead = []
        for node in self.nodes.values():
            was = node.alive
            node.alive = (now - node.last_heartbeat_s) <= self.heartbeat_timeout_s
            if not node.alive:
                if was:
                    dead.append(node.node_id)
                for service_id in list(node.inflight):
                    self._abandon(node, service_id)
        self.drop_overdue(now)
        return dead

    def drop_overdue(self, now_s: float | None = None) -> int:
        """Drop the bookings past their expiry (no outcome came); return how many."""
        expiries = self._expiries
        if not expiries:
            return 0
        if now_s is None:
            now_s = self.clock()
        dropped = 0
        while expiries and expiries[0][0] < now_s:
            expires_s, _, node_id, service_id = heapq.heappop(expiries)
            node = self.nodes.get(node_id)
            booking = node.inflight.get(service_id) if node is not None else None
            # Skip entries of bookings released or replaced since (another expiry).
            if booking is not None and booking.expires_s == expires_s:
                self._abandon(node, service_id)
                dropped += 1
        return dropped

    def awaits_outcome(self, service_id: str, node_id: str) -> bool:
        """Whether `service_id` was scheduled on `node_id` and its outcome has not come:
        booked there, or its booking dropped as abandoned (a late outcome still counts)."""
        node = self.nodes.get(node_id)
        return node is not None and (service_id in node.inflight
                                     or self._abandoned_ids.get(service_id) == node_id)

    @property
    def abandoned(self) -> int:
        """Bookings dropped (overdue, or their node died) whose outcome has not arrived."""
        return self._abandoned

    def _abandon(self, node: NodeState, service_id: str) -> None:
        self._release(node, service_id)
        self._abandoned += 1
        self._abandoned_ids[service_id] = node.node_id
        if len(self._abandoned_ids) > ABANDONED_MEMORY:
            self._abandoned_ids.popitem(last=False)

    def _release(self, node: NodeState, service_id: str) -> Booking | None:
        booking = node.inflight.pop(service_id, None)
        if booking is not None:
            del self._booked_on[service_id]
            _remove(node.finishes_s, booking.finish_s)
            _remove(node.upload_ends_s, booking.upload_end_s)
        return booking

    # --- queries ------------------------------------------------------------------------
    def node(self, node_id: str) -> NodeState:
        try:
            return self.nodes[node_id]
        except KeyError:
            raise KeyError(f"unknown node_id {node_id!r}; registered: {sorted(self.nodes)}") from None

    def candidates(self) -> list[NodeState]:
        """Nodes a policy may choose: alive and serving, in registration order."""
        self.drop_overdue()
        return [n for n in self.nodes.values() if n.alive and n.serving]

    def predict(self, service: Service, node_id: str) -> Prediction:
        """D-hat and eq. 3's headrooms of `service` on `node_id` (see the module docstring)."""
        return self.predict_node(service, self.node(node_id), self.clock())

    def predict_node(self, service: Service, node: NodeState, now: float) -> Prediction:
        """`predict` for a NodeState already in hand and a clock already read (hot path)."""
        if self._expiries and self._expiries[0][0] < now:
            self.drop_overdue(now)
        info = node.info
        slots = info.slots
        upload_ends = node.upload_ends_s
        uploads = len(upload_ends) - bisect_right(upload_ends, now)
        share_mbit = node.bandwidth_mbit / (uploads + 1)
        bits = service.input_bytes * 8
        transmission_s = bits / (share_mbit * 1e6)
        booked = len(node.inflight)
        concurrency = booked + 1 if booked < slots else slots
        if self._true_output_tokens is None:
            output_tokens = self.output_length.estimate(service.service_class,
                                                        service.max_new_tokens)
        else:  # clairvoyant: the true length (scheduler.information)
            output_tokens = self._true_output_tokens.get(service.id, service.max_new_tokens)
        inference_s = (service.estimated_prompt_tokens / node.prefill_tok_s
                       + output_tokens / node.decode_tok_s)
        if concurrency > 1 and info.concurrency_slowdown:
            inference_s *= 1 + info.concurrency_slowdown * (concurrency - 1)
        if booked < slots:
            queueing_s = 0.0
        else:
            slot_free_s = node.finishes_s[booked - slots]
            queueing_s = max(0.0, slot_free_s - now - transmission_s)
        deadline_s = service.deadline_s
        c_max = slots + info.queue_capacity
        load = node.queue_length + node.busy_slots
        if load < booked:
            load = booked
        compute_headroom = (c_max - (load + 1)) / c_max
        # Bandwidth this upload needs so that the rest of the requirement covers the wait and
        # the inference: B_i = bits / (D − queueing − inference); headroom against our share.
        bandwidth_headroom = bandwidth_headroom_of(
            transmission_s, deadline_s - queueing_s - inference_s)
        d_hat = transmission_s + queueing_s + inference_s
        return Prediction(node.info.node_id, transmission_s, queueing_s, inference_s,
                          compute_headroom, bandwidth_headroom, (deadline_s - d_hat) / deadline_s)

    def _smooth(self, old: float, new: float) -> float:
        return (1 - self.rate_smoothing) * old + self.rate_smoothing * new
