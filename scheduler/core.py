"""The scheduler both front ends share: one Cluster, one Policy and its counts, under one lock.

gRPC calls the handlers from a thread pool and the policy objects are plain, unsynchronised
Python, so the advisor RPCs (scheduler.server) and the gateway's Submit (scheduler.gateway)
hold `Scheduler.lock` around every step whose name ends in `_locked`. State snapshots are
taken under the lock and written outside it (scheduler.snapshots).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from contextlib import contextmanager
from typing import Iterator

from scheduler.bandwidth_feed import DOWN_LINK_RATE_MBIT, BandwidthFeed
from scheduler.cluster import Cluster, NodeInfo
from scheduler.config import ServerConfig
from scheduler.metrics import SchedulerMetrics
from scheduler.information import CLAIRVOYANT, information_for, load_true_output_tokens
from scheduler.outcome import Outcome
from scheduler.policies.base import Decision, NoNodeError, Policy
from scheduler.service import Service
from scheduler.snapshots import Snapshot, StateSnapshots


class Scheduler:
    """One Cluster and one Policy, the outcome counters, the bandwidth feed and the state file."""

    def __init__(self, config: ServerConfig, policy: Policy) -> None:
        self.config = config
        self.policy = policy
        # What the policy may know (scheduler.information): the run's model, or the truth
        # for a clairvoyant policy, whose true output lengths come from the workload file.
        information = information_for(config.information, policy.information)
        truth = None
        if information == CLAIRVOYANT:
            if not config.true_output_tokens:
                raise ValueError(f"policy {policy.name!r} is clairvoyant: it needs "
                                 f"true_output_tokens (a workload file)")
            truth = load_true_output_tokens(config.true_output_tokens)
        elif config.true_output_tokens:
            raise ValueError(f"true_output_tokens is for a clairvoyant policy only "
                             f"(policy {policy.name!r})")
        self.cluster = Cluster(clock=config.clock, heartbeat_timeout_s=config.heartbeat_timeout_s,
                               information=information, booking_ttl_s=config.booking_ttl_s,
                               true_output_tokens=truth)
        self.counters = {"met": 0, "missed": 0, "failed": 0}
        self.lock = threading.Lock()  # cluster, policy, counters, Submit runs
        self.metrics = SchedulerMetrics(self)  # off unless config.metrics_port is set
        # service_id -> reward of the last outcomes recorded, oldest first: a repeated
        # ReportOutcome (a retry after a lost response) is answered from here, not re-counted.
        self._reported: OrderedDict[str, float] = OrderedDict()
        self._feed = BandwidthFeed(config.bandwidth_feed) if config.bandwidth_feed else None
        self._snapshots = StateSnapshots(config.state_file) if config.state_file else None
        if self._snapshots is not None:
            self._snapshots.load_into(policy, self.counters)

    # --- nodes -------------------------------------------------------------------------------
    def register_locked(self, info: NodeInfo) -> None:
        """Add a node, at the feed's rate for it when there is one; KeyError if it exists."""
        self.cluster.register(info)
        rate = self._feed.rates_mbit.get(info.node_id) if self._feed else None
        if rate is not None:
            self._set_fed_rate_locked(info.node_id, rate)

    def _set_fed_rate_locked(self, node_id: str, rate_mbit: float) -> None:
        self.cluster.set_bandwidth(node_id, max(rate_mbit, DOWN_LINK_RATE_MBIT))

    def refresh_locked(self) -> None:
        """Apply a changed bandwidth feed and exclude nodes whose heartbeats stopped."""
        if self._feed is not None and self._feed.poll():
            for node_id, rate in self._feed.rates_mbit.items():
                if node_id in self.cluster.nodes:
                    self._set_fed_rate_locked(node_id, rate)
        self.cluster.expire()

    def no_node_message_locked(self) -> str | None:
        """Why no node can be chosen, or None when some node is a candidate."""
        if not self.cluster.nodes:
            return "no node is registered: call RegisterNode first"
        if not self.cluster.candidates():
            return (f"no registered node is alive and serving (registered: "
                    f"{sorted(self.cluster.nodes)}; heartbeat timeout "
                    f"{self.config.heartbeat_timeout_s} s)")
        return None

    # --- decisions ---------------------------------------------------------------------------
    @contextmanager
    def _excluding_locked(self, node_ids: list[str]) -> Iterator[None]:
        """Hide nodes from the policy for one decision (Submit's retry on another node)."""
        saved = []
        for node_id in node_ids:
            node = self.cluster.nodes.get(node_id)
            if node is not None:
                saved.append((node, node.alive))
                node.alive = False
        try:
            yield
        finally:
            for node, alive in saved:
                node.alive = alive

    def decide_locked(self, service: Service, exclude: list[str] | None = None
                      ) -> tuple[Decision, str]:
        """Choose and book a node, with its address; NoNodeError when none is a candidate."""
        self.refresh_locked()
        try:
            if exclude:
                with self._excluding_locked(exclude):
                    decision = self.policy.select(service, self.cluster)
            else:  # the common path, kept free of the context manager's cost
                decision = self.policy.select(service, self.cluster)
        except NoNodeError:
            raise NoNodeError(self.no_node_message_locked() or "every node was excluded") \
                from None
        self.cluster.on_assign(service, decision.prediction)
        self.metrics.on_decision(decision)
        return decision, self.cluster.nodes[decision.node_id].info.address

    # --- outcomes ----------------------------------------------------------------------------
    def record_locked(self, outcome: Outcome, update_policy: bool
                      ) -> tuple[float, Snapshot | None]:
        """Release the outcome's booking, teach the policy if asked, count it; the reward."""
        self.cluster.on_complete(outcome)
        reward = self.policy.update(outcome) if update_policy else 0.0
        self.count_locked(outcome.service_id, outcome.status.value, reward)
        self.metrics.on_outcome(outcome)
        return reward, self.snapshot_locked()

    def count_locked(self, service_id: str, status: str, reward: float) -> None:
        """Count a service's outcome in the counters and remember its reward for repeats."""
        self.counters[status] += 1
        self.metrics.on_status(status)
        self._reported[service_id] = reward
        self._reported.move_to_end(service_id)
        if len(self._reported) > self.config.reported_ids_memory:
            self._reported.popitem(last=False)

    def counted_message_locked(self, service_ids: list[str]) -> str | None:
        """Why these services cannot be scheduled (one already has its outcome), or None.

        A service id names one service: scheduling it again after its outcome was counted
        would count it twice (GetStatsResponse's accounting identity)."""
        for service_id in service_ids:
            if service_id in self._reported:
                return (f"service.id {service_id!r} already has its outcome: give each "
                        f"service its own id")
        return None

    def reported_reward_locked(self, service_id: str) -> float | None:
        """The reward of an outcome already recorded for `service_id`, else None."""
        return self._reported.get(service_id)

    # --- the state file ----------------------------------------------------------------------
    def snapshot_locked(self) -> Snapshot | None:
        """The state to write (with write_snapshot, outside the lock); None without a file."""
        if self._snapshots is None:
            return None
        return self._snapshots.take(self.policy, self.counters)

    def write_snapshot(self, snapshot: Snapshot | None) -> None:
        if snapshot is not None and self._snapshots is not None:
            self._snapshots.write(snapshot)

    def save_state(self) -> None:
        """Write the current state now (at shutdown)."""
        with self.lock:
            snapshot = self.snapshot_locked()
        self.write_snapshot(snapshot)
