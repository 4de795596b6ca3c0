"""One simulated run: a scenario's workload through one policy in the simulated world.

The policy is built with scheduler.policies.create_policy and sees a scheduler.cluster.Cluster
on the simulator's clock, exactly as in the gRPC scheduler: after each decision the runner
calls cluster.on_assign; when a service completes (or fails) it calls cluster.on_complete and
then policy.update with the measured outcome — delayed feedback at completion time.

The path of a service (simulator.flight): arrival → decision (held `defer_s` if the policy asks) → upload over
the node's link (processor sharing with the other uploads at the link's current rate) → FIFO
queue for a slot → inference (processor sharing among the slots, slowed by the profile's
concurrency factor) → outcome. The answer's download is not modelled (tens of bytes of tokens
against kilobytes to megabytes of input). At arrival + give_up_s an unfinished service leaves
wherever it is (link, queue, slot) and fails, as the emulated driver cancels its call.
"""

from __future__ import annotations

import gc
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, Sequence

import simpy

from scheduler.cluster import CLOUD, EDGE, Cluster, NodeInfo
from scheduler.information import CLAIRVOYANT, MEASURED, declared_factors, information_for
from scheduler.outcome import Energy, Outcome, Status, failed_outcome
from scheduler.policies.base import NoNodeError, Policy, create_policy
from scheduler.energy_models import DEFAULT_ENERGY, EnergyModel
from scenarios.results import LinkRow, NodeRow, RequestRow
from scenarios.workload import WorkloadItem
from testbed.fluctuation import RateChange
from simulator.flight import Flight
from simulator.model import NodeModel, SimLink, SimNode



@dataclass(frozen=True, slots=True)
class NodeSetup:
    """One node of the simulated world and its link."""

    node_id: str
    kind: str  # edge | cloud
    model: NodeModel
    slots: int
    queue_capacity: int
    link_rate_mbit: float
    j_per_bit: float
    profile: str = ""
    # Goodput / applied rate of the link (TCP and shaping overheads; 1 = ideal), calibrated.
    link_efficiency: float = 1.0


@dataclass(frozen=True, slots=True)
class Fault:
    at_s: float
    kind: str  # kill-node | link-down | slow-node (scenarios.spec.FaultSpec says what each does)
    target: str
    duration_s: float = 0.0
    factor: float = 1.0  # slow-node: every step takes this many times as long


@dataclass
class SimResult:
    policy: str
    requests: list[RequestRow]
    nodes: list[NodeRow]
    links: list[LinkRow]
    wall_s: float  # simulation wall time (building the world and running the events)
    makespan_s: float
    decisions: list[tuple[str, str]] = field(default_factory=list)  # (service id, node id)


def simulate(policy: Policy | str, nodes: Sequence[NodeSetup], arrivals: Sequence[WorkloadItem],
             *, seed: int = 0, rate_changes: Iterable[RateChange] = (),  # time-ordered, may be endless
             information: str = MEASURED, declared_error: float = 0.0,
             heartbeat_interval_s: float = 0.5,
             heartbeat_timeout_s: float = 3.0, faults: Sequence[Fault] = (),
             policy_params: Mapping[str, object] | None = None,
             record_links: bool = True, trace: list[tuple] | None = None,
             give_up_s: float = math.inf, energy: EnergyModel = DEFAULT_ENERGY) -> SimResult:
    """Run every arrival through `policy` and return the rows of the results layout.

    trace: if a list, every event the cluster and the policy saw is appended to it, in order:
    ("decide", t, service, node_id), ("heartbeat", t, node_id, queue_length, busy_slots),
    ("bandwidth", t, node_id, rate_mbit), ("outcome", t, outcome) — enough to replay the run
    through another front end (the gRPC scheduler) and compare decisions.

    information, declared_error: the information model (scheduler.information) and the
    spread of the rates nodes declare; a clairvoyant policy gets the truth whatever the run's.

    energy: the power curve of each node kind and the transmission energy of an upload
    (scheduler.energy_models); the outcomes' and nodes' energies follow it."""
    if not heartbeat_interval_s > 0:
        raise ValueError(f"heartbeat_interval_s must be > 0 (got {heartbeat_interval_s})")
    if not nodes:
        raise ValueError("nodes: the simulated world needs at least one node")
    started = time.perf_counter()
    if isinstance(policy, str):
        policy = create_policy(policy, seed=seed, **dict(policy_params or {}))
    # The run allocates millions of short-lived objects and few cycles; the cyclic collector's
    # repeated passes over the growing result rows cost more than the run itself.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        run = _Run(policy, nodes, arrivals, rate_changes, information, declared_error, seed,
                   heartbeat_interval_s, heartbeat_timeout_s, faults, record_links, energy)
        run.trace = trace
        run.give_up_s = give_up_s
        run.env.run(until=run.all_done)
        return run.result(time.perf_counter() - started)
    finally:
        if gc_was_enabled:
            gc.enable()


class _Run:
    def __init__(self, policy: Policy, setups: Sequence[NodeSetup],
                 arrivals: Sequence[WorkloadItem], rate_changes: Iterable[RateChange],
                 information: str, declared_error: float, seed: int,
                 heartbeat_interval_s: float,
                 heartbeat_timeout_s: float, faults: Sequence[Fault],
                 record_links: bool, energy: EnergyModel = DEFAULT_ENERGY) -> None:
        self.give_up_s = math.inf  # set by simulate()
        self.energy = energy
        self.env = env = simpy.Environment()
        self.policy = policy
        # What the policy may know (scheduler.information). The true output lengths exist
        # only in the arrivals; a clairvoyant cluster is handed them, no other.
        self.information = information_for(information, policy.information)
        truth = ({a.service.id: a.output_tokens for a in arrivals}
                 if self.information == CLAIRVOYANT else None)
        self.cluster = Cluster(clock=lambda: env.now, heartbeat_timeout_s=heartbeat_timeout_s,
                               information=self.information, true_output_tokens=truth)
        # Perfect information is fed the true bandwidth and rates as they change; a measuring
        # cluster learns both from its outcomes.
        self.feed_truth = self.information != MEASURED
        declared = declared_factors([s.node_id for s in setups],
                                    declared_error if not self.feed_truth else 0.0, seed)
        self.heartbeat_interval_s = heartbeat_interval_s
        self.setups = {s.node_id: s for s in setups}
        if len(self.setups) != len(setups):
            raise ValueError(f"nodes: duplicate node_id in {[s.node_id for s in setups]}")
        self.links: dict[str, SimLink] = {}
        self.nodes: dict[str, SimNode] = {}
        self.dead: set[str] = set()
        self.down: dict[str, float] = {}  # links that are down -> rate to restore
        self.reported: dict[str, tuple[int, int]] = {}  # last heartbeat per node
        for s in setups:
            if s.kind not in (EDGE, CLOUD):
                raise ValueError(f"node {s.node_id}: kind must be edge or cloud (got {s.kind!r})")
            self.links[s.node_id] = SimLink(env, s.node_id, s.link_rate_mbit, s.j_per_bit,
                                            s.link_efficiency)
            self.nodes[s.node_id] = SimNode(env, s.node_id, s.kind, s.model, s.slots,
                                            s.queue_capacity, energy.curve(s.kind))
            self.cluster.register(NodeInfo(
                node_id=s.node_id, address=f"unix:/sim/{s.node_id}", kind=s.kind, slots=s.slots,
                link_rate_mbit=s.link_rate_mbit, profile=s.profile,
                idle_power_w=s.model.idle_power_w, max_power_w=s.model.max_power_w,
                prefill_tok_s=s.model.prefill_tok_s * declared[s.node_id],
                decode_tok_s=s.model.decode_tok_s * declared[s.node_id],
                queue_capacity=s.queue_capacity, transmission_j_per_bit=s.j_per_bit,
                concurrency_slowdown=s.model.concurrency_slowdown))
        self.policy_name = policy.name
        self.arrivals = sorted(arrivals, key=lambda a: a.arrival_s)
        self.remaining = len(self.arrivals)
        self.rows: list[RequestRow] = []
        self.link_rows: list[LinkRow] = []
        self.record_links = record_links
        self.decisions: list[tuple[str, str]] = []
        self.trace: list[tuple] | None = None
        self.end_s = 0.0
        self.all_done = env.event()
        if record_links:
            for s in setups:
                self.link_rows.append(LinkRow(policy.name, 0.0, s.node_id, s.link_rate_mbit))
        self._schedule_rates(rate_changes)
        for fault in faults:
            self._schedule_fault(fault)
        if self.arrivals:
            self._at(self.arrivals[0].arrival_s, self._arrive, 0)
            self._at(0.0, self._heartbeat)
        else:
            self.all_done.succeed()

    # --- scheduling helpers ---------------------------------------------------------------
    def _at(self, time_s: float, fn: Callable, *args) -> None:
        timer = self.env.timeout(max(0.0, time_s - self.env.now))
        timer.callbacks.append(lambda _e: fn(*args))

    def _schedule_rates(self, rate_changes: Iterable[RateChange]) -> None:
        # Pulled lazily, one pending timer at a time: the testbed's schedules are endless
        # (testbed.fluctuation.iter_schedule), and a long one must not keep the run alive.
        changes = iter(rate_changes)
        pending = next(changes, None)
        if pending is None:
            return

        def apply(change: RateChange) -> None:
            while change is not None:
                if self.all_done.triggered:
                    return
                if change.link not in self.links:
                    raise ValueError(f"rate change for unknown link {change.link!r}; links: "
                                     f"{sorted(self.links)}")
                if change.time_s > self.env.now:
                    self._at(change.time_s, apply, change)
                    return
                self._set_rate(change.link, change.rate_mbit)
                change = next(changes, None)

        self._at(pending.time_s, apply, pending)

    def _set_rate(self, link: str, rate_mbit: float) -> None:
        sim_link = self.links[link]
        if link in self.down:
            self.down[link] = rate_mbit  # applied when the link comes back up
            return
        sim_link.set_rate(rate_mbit)
        if self.feed_truth and rate_mbit > 0:
            self.cluster.set_bandwidth(link, rate_mbit)
            if self.trace is not None:
                self.trace.append(("bandwidth", self.env.now, link, rate_mbit))
        if self.record_links:
            self.link_rows.append(LinkRow(self.policy_name, self.env.now, link, rate_mbit))

    def _schedule_fault(self, fault: Fault) -> None:
        if fault.target not in self.nodes:
            raise ValueError(f"fault target {fault.target!r} unknown; nodes: {sorted(self.nodes)}")
        if fault.kind == "kill-node":
            self._at(fault.at_s, self._kill, fault.target)
        elif fault.kind == "link-down":
            self._at(fault.at_s, self._link_down, fault.target)
            self._at(fault.at_s + fault.duration_s, self._link_up, fault.target)
        elif fault.kind == "slow-node":
            self._at(fault.at_s, self._slow_node, fault.target, fault.factor, True)
            self._at(fault.at_s + fault.duration_s, self._slow_node, fault.target, fault.factor,
                     False)
        else:
            raise ValueError(f"fault kind must be kill-node, link-down or slow-node (got "
                             f"{fault.kind!r})")

    def _slow_node(self, node_id: str, factor: float, begins: bool) -> None:
        # The node's service rate changes, also for the work it is running (SimNode).
        node = self.nodes[node_id]
        (node.begin_slowdown if begins else node.end_slowdown)(factor)
        self._slowdown_changed(node_id)

    # (time_s, node_id, slowdown now) at both ends of every slow-node period, in time order.
    slowdown_changes: tuple[tuple[float, str, float], ...] = ()

    def _slowdown_changed(self, node_id: str) -> None:
        """A node's true speed changed (self.nodes[node_id].slowdown): recorded, and fed to a
        perfect-information cluster as its true rates (a measuring one has to notice)."""
        slowdown = self.nodes[node_id].slowdown
        self.slowdown_changes += ((self.env.now, node_id, slowdown),)
        if self.feed_truth:
            model = self.setups[node_id].model
            self.cluster.set_rates(node_id, model.prefill_tok_s / slowdown,
                                   model.decode_tok_s / slowdown)

    def _kill(self, node_id: str) -> None:
        # The node stops: its heartbeats stop (the cluster expires it after the timeout) and
        # each service it held fails at that service's next event (upload or inference end),
        # as a client sees a reset connection.
        self.dead.add(node_id)

    def _link_down(self, link: str) -> None:
        current = self.links[link].rate_mbit
        self.links[link].set_rate(0.0)
        self.down[link] = current
        if self.record_links:
            self.link_rows.append(LinkRow(self.policy_name, self.env.now, link, 0.0))

    def _link_up(self, link: str) -> None:
        rate = self.down.pop(link, self.setups[link].link_rate_mbit)
        self._set_rate(link, rate)

    def _heartbeat(self) -> None:
        if self.all_done.triggered:
            return
        # What a node reports every interval. An unchanged report from a live node is skipped
        # (it would only refresh last_heartbeat_s, which matters only to expire(), and expire()
        # runs only after a node was killed, when every live node reports).
        reports = self.reported
        for node_id, node in self.nodes.items():
            if node_id in self.dead:
                continue
            report = (len(node.queue), node.running)
            if self.dead or reports.get(node_id) != report:
                reports[node_id] = report
                self.cluster.heartbeat(node_id, queue_length=report[0], busy_slots=report[1])
                if self.trace is not None:
                    self.trace.append(("heartbeat", self.env.now, node_id, *report))
        if self.dead:
            self.cluster.expire()
        self._at(self.env.now + self.heartbeat_interval_s, self._heartbeat)

    # --- the path of one service ------------------------------------------------------------
    def _arrive(self, index: int) -> None:
        arrival = self.arrivals[index]
        if index + 1 < len(self.arrivals):
            self._at(self.arrivals[index + 1].arrival_s, self._arrive, index + 1)
        service = arrival.service
        try:
            decision = self.policy.select(service, self.cluster)
        except NoNodeError as exc:
            self._finish_failed(arrival, "", 0.0, 0.0, 0, str(exc), learn=False)
            return
        self.cluster.on_assign(service, decision.prediction)
        node_id = decision.node_id
        self.decisions.append((service.id, node_id))
        if self.trace is not None:
            self.trace.append(("decide", self.env.now, service, node_id))
        flight = Flight(self, arrival, node_id, decision.prediction.f,
                         decision.prediction.total_s)
        if self.give_up_s < math.inf:
            # The emulated driver's call deadline: at arrival + give_up_s the service leaves
            # wherever it is (a no-op if it has finished by then).
            self._at(arrival.arrival_s + self.give_up_s, flight.give_up)
        if decision.defer_s > 0:
            self._at(self.env.now + decision.defer_s, flight.dispatch)
        else:
            flight.dispatch()

    def _finish_failed(self, arrival: WorkloadItem, node_id: str, transmission_s: float,
                       waited_s: float, sent_bytes: int, error: str, learn: bool = True,
                       constraint_f: float = 0.0, predicted_total_s: float = 0.0) -> None:
        j_per_bit = self.setups[node_id].j_per_bit if node_id else 0.0
        energy = Energy(transmission_j=self.energy.transmission_j(sent_bytes, j_per_bit,
                                                                  transmission_s))
        outcome = failed_outcome(
            arrival.service, node_id, total_s=transmission_s + waited_s, error=error,
            transmission_s=transmission_s, queueing_s=waited_s, energy=energy,
            constraint_f=constraint_f, predicted_total_s=predicted_total_s)
        self._record(arrival, outcome, learn)

    def _record(self, arrival: WorkloadItem, outcome: Outcome, learn: bool = True) -> None:
        if learn:
            if self.trace is not None:
                self.trace.append(("outcome", self.env.now, outcome))
            self.cluster.on_complete(outcome)
            self.policy.update(outcome)
        self.rows.append(RequestRow.from_outcome(self.policy_name, outcome, arrival.arrival_s))
        if outcome.status is not Status.FAILED:
            self.end_s = max(self.end_s, self.env.now)
        self.remaining -= 1
        if self.remaining == 0:
            self.end_s = max(self.end_s, self.env.now)
            self.all_done.succeed()

    # --- results ----------------------------------------------------------------------------
    def result(self, wall_s: float) -> SimResult:
        end_s = self.end_s
        node_rows = []
        for node_id, node in self.nodes.items():
            busy_s = min(node.busy_s, end_s)
            idle_s = max(0.0, end_s - busy_s)
            node_rows.append(NodeRow(
                policy=self.policy_name, node_id=node_id, kind=node.kind, busy_s=busy_s,
                idle_s=idle_s, inference_j=node.inference_j,
                idle_j=node.model.idle_power_w * idle_s, method="modelled"))
        return SimResult(self.policy_name, self.rows, node_rows, self.link_rows, wall_s,
                         end_s, self.decisions)
