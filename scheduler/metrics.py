"""The scheduler's Prometheus metrics: what it decided, what came of it, and the cluster as it
sees it.

Counters and histograms move where decisions and outcomes are recorded, under the scheduler's
lock: `on_decision` (Scheduler.decide_locked, ScheduleBatch), `on_status` (every counted
outcome, Scheduler.count_locked) and `on_outcome` (outcomes with a node's measurements,
Scheduler.record_locked). Gauges are read from the cluster at scrape time, under the same lock,
so they cost nothing between scrapes. The README's "Metrics" section lists every name.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import TYPE_CHECKING, Callable, Iterable, Iterator

from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric

from scheduler.metrics_http import TIME_BUCKETS_S, Labelled, MetricsExporter
from scheduler.outcome import Outcome, Status
from scheduler.policies.base import Decision

if TYPE_CHECKING:
    from scheduler.cluster import NodeState
    from scheduler.core import Scheduler

# measured - predicted processing time (s): negative when a service finished early.
ERROR_BUCKETS_S = (-30.0, -10.0, -5.0, -2.0, -1.0, -0.5, -0.25, -0.1, 0.0, 0.1, 0.25, 0.5,
                   1.0, 2.0, 5.0, 10.0, 30.0, 120.0)

# Predictions kept for the prediction error, oldest dropped first: a service whose outcome
# never comes (an advisor-mode client that crashed) must not grow memory without bound.
PREDICTIONS_MEMORY = 100_000

ENERGY_PARTS = ("transmission", "inference", "idle")

# Per-node gauges read at scrape time: (name, help, value of a NodeState).
NODE_GAUGES: tuple[tuple[str, str, Callable[["NodeState"], float]], ...] = (
    ("perllm_scheduler_booked_services",
     "services booked on the node whose outcome has not arrived", lambda n: len(n.inflight)),
    ("perllm_scheduler_node_queue_length",
     "requests waiting for a slot, as the node's last heartbeat said", lambda n: n.queue_length),
    ("perllm_scheduler_node_busy_slots",
     "slots running a request, as the node's last heartbeat said", lambda n: n.busy_slots),
    ("perllm_scheduler_node_bandwidth_mbit",
     "the node's link rate the scheduler predicts with (Mbit/s)", lambda n: n.bandwidth_mbit),
    ("perllm_scheduler_node_prefill_tok_s",
     "the node's single-request prefill rate the scheduler predicts with (tokens/s: declared, "
     "then learned, or fed; scheduler.information)", lambda n: n.prefill_tok_s),
    ("perllm_scheduler_node_decode_tok_s",
     "the node's single-request decode rate the scheduler predicts with (tokens/s)",
     lambda n: n.decode_tok_s),
    ("perllm_scheduler_node_up",
     "1 while the node is alive and serving (a candidate), else 0",
     lambda n: float(n.alive and n.serving)),
)


class SchedulerMetrics(MetricsExporter):
    """The scheduler's counters and histograms, and a collector of its cluster's gauges."""

    def __init__(self, scheduler: "Scheduler") -> None:
        super().__init__(scheduler.config.metrics_port)
        registry = self.registry
        self._decisions = Labelled(Counter(
            "perllm_scheduler_decisions", "nodes chosen, by policy and node (a Submit retry "
            "is another decision)", ["policy", "node"], registry=registry))
        self._outcomes = Labelled(Counter(
            "perllm_scheduler_outcomes", "services counted, by status (met, missed, failed)",
            ["status"], registry=registry))
        # The three histograms observe the same services (completed, met or missed, on the
        # node they were booked on), so the mean error is the difference of the first two
        # means: the error histogram has negative buckets, for which no _sum is exposed.
        self._predicted = Labelled(Histogram(
            "perllm_scheduler_predicted_total_seconds",
            "processing time D-hat predicted when the service was booked, of each completed "
            "service, by node", ["node"], buckets=TIME_BUCKETS_S, registry=registry))
        self._measured = Labelled(Histogram(
            "perllm_scheduler_measured_total_seconds",
            "measured processing time of each completed service, by node",
            ["node"], buckets=TIME_BUCKETS_S, registry=registry))
        self._error = Labelled(Histogram(
            "perllm_scheduler_prediction_error_seconds",
            "measured minus predicted processing time of each completed service, by node",
            ["node"], buckets=ERROR_BUCKETS_S, registry=registry))
        self._energy = Labelled(Counter(
            "perllm_scheduler_energy_joules", "energy of the outcomes recorded, by part",
            ["part"], registry=registry))
        # service_id -> (node_id, D-hat in s) of its latest booking
        self._predictions: OrderedDict[str, tuple[str, float]] = OrderedDict()
        registry.register(_ClusterCollector(scheduler))

    def on_decision(self, decision: Decision) -> None:
        """A node was chosen and booked for a service."""
        if not self.enabled:
            return
        node_id, total_s = decision.node_id, decision.prediction.total_s
        self._decisions(decision.policy, node_id).inc()
        if math.isfinite(total_s):
            self._predictions[decision.service_id] = (node_id, total_s)
            self._predictions.move_to_end(decision.service_id)
            if len(self._predictions) > PREDICTIONS_MEMORY:
                self._predictions.popitem(last=False)

    def on_decisions(self, decisions: Iterable[Decision]) -> None:
        for decision in decisions:
            self.on_decision(decision)

    def on_status(self, status: str) -> None:
        """A service's outcome was counted (met, missed or failed)."""
        if self.enabled:
            self._outcomes(status).inc()

    def on_outcome(self, outcome: Outcome) -> None:
        """An outcome with the node's measurements was recorded (counted by on_status)."""
        if not self.enabled:
            return
        node_id, predicted_s = self._predictions.pop(outcome.service_id, (None, 0.0))
        if outcome.status is not Status.FAILED and node_id == outcome.node_id:
            self._predicted(node_id).observe(predicted_s)
            self._measured(node_id).observe(outcome.total_s)
            self._error(node_id).observe(outcome.total_s - predicted_s)
        energy = outcome.energy
        for part, joules in zip(ENERGY_PARTS, (energy.transmission_j, energy.inference_j,
                                               energy.idle_j)):
            if joules > 0:
                self._energy(part).inc(joules)


class _ClusterCollector:
    """The cluster's per-node gauges and the abandoned bookings, read at scrape time."""

    def __init__(self, scheduler: "Scheduler") -> None:
        self.scheduler = scheduler

    def collect(self) -> Iterator[Metric]:
        s = self.scheduler
        with s.lock:
            s.refresh_locked()  # as GetStats: dead nodes excluded, the bandwidth feed applied
            rows = [(node.node_id, [value(node) for _, _, value in NODE_GAUGES])
                    for node in s.cluster.nodes.values()]
            abandoned = s.cluster.abandoned
        for i, (name, help_text, _) in enumerate(NODE_GAUGES):
            family = GaugeMetricFamily(name, help_text, labels=["node"])
            for node_id, values in rows:
                family.add_metric([node_id], values[i])
            yield family
        yield GaugeMetricFamily(
            "perllm_scheduler_abandoned_services",
            "bookings dropped (overdue, or their node died) whose outcome has not arrived",
            value=abandoned)
