"""The baselines CS-UCB is compared against, each named for what it is.

Every baseline reads the same cluster predictions (scheduler.cluster) and energy model
(scheduler.reward) as CS-UCB, so a difference in results comes from the decision rule alone.
Each class docstring says what it models and what it simplifies. `Decision.any_feasible` is
computed over all candidates for every policy, so it means the same thing in every result.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from scheduler.cluster import (CLOUD, EDGE, Cluster, NodeState, Prediction,
                               bandwidth_headroom_of)
from scheduler.policies.base import (Decision, NoNodeError, Policy, PolicyConfig,
                                     register_policy, require_candidates)
from scheduler.reward import predicted_energy
from scheduler.service import Service


def _predict(cluster: Cluster, service: Service, nodes: list[NodeState]
             ) -> list[tuple[NodeState, Prediction]]:
    now = cluster.clock()
    return [(n, cluster.predict_node(service, n, now)) for n in nodes]


def _any_feasible(cluster: Cluster, service: Service, candidates: list[NodeState],
                  known: list[tuple[NodeState, Prediction]] = ()) -> bool:
    if any(p.f >= 0 for _, p in known):
        return True
    seen = {n.node_id for n, _ in known}
    now = cluster.clock()
    return any(cluster.predict_node(service, n, now).f >= 0
               for n in candidates if n.node_id not in seen)


def _of_kind(policy: str, kind: str, candidates: list[NodeState]) -> list[NodeState]:
    nodes = [n for n in candidates if n.kind == kind]
    if not nodes:
        raise NoNodeError(f"{policy}: no {kind} node is alive and serving "
                          f"(candidates: {[n.node_id for n in candidates]})")
    return nodes


def _decide(policy: Policy, service: Service, cluster: Cluster, candidates: list[NodeState],
            node: NodeState, prediction: Prediction | None = None, score: float = 0.0,
            known: list[tuple[NodeState, Prediction]] = ()) -> Decision:
    if prediction is None:
        prediction = cluster.predict_node(service, node, cluster.clock())
    policy.t += 1
    return Decision(service.id, node.node_id, prediction,
                    _any_feasible(cluster, service, candidates, known), policy.name, score)


def _with_deferral(p: Prediction, defer_s: float, deadline_s: float) -> Prediction:
    """The prediction of a service held `defer_s` before dispatch.

    Its wait beyond the upload becomes max(queueing, defer): slots that free during the
    deferral are no longer waited for. The bandwidth headroom is recomputed from the time left
    for the upload (scheduler.cluster.bandwidth_headroom_of).
    """
    queueing_s = max(p.queueing_s, defer_s)
    time_for_upload_s = deadline_s - queueing_s - p.inference_s
    bandwidth = bandwidth_headroom_of(p.transmission_s, time_for_upload_s)
    d_hat = p.transmission_s + queueing_s + p.inference_s
    return Prediction(p.node_id, p.transmission_s, queueing_s, p.inference_s,
                      p.compute_headroom, bandwidth, (deadline_s - d_hat) / deadline_s)


@dataclass(frozen=True)
class CloudOnlyConfig(PolicyConfig):
    """max_wait_s: longest a service is held to fill a batch (s, >= 0; 0 disables deferral).
    batch_size: services per batch (>= 0); 0 means the chosen cloud node's slots."""

    max_wait_s: float = 0.25
    batch_size: int = 0

    def __post_init__(self) -> None:
        self._real("max_wait_s", low=0.0)
        if (isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int)
                or self.batch_size < 0):
            raise ValueError(f"CloudOnlyConfig.batch_size must be an integer >= 0 "
                             f"(got {self.batch_size!r})")
        super().__post_init__()


class _Window:
    __slots__ = ("open_s", "count", "size")

    def __init__(self, open_s: float, size: int) -> None:
        self.open_s, self.count, self.size = open_s, 0, size


@register_policy("cloud-only")
class CloudOnly(Policy):
    """FineInfer-style cloud-only serving with deferred batching.

    Models: every service goes to the cloud; services are held until a batch fills the cloud
    node's slots (or `batch_size`) or until `max_wait_s` after the batch's first service,
    then dispatched together. Among several cloud nodes, the one with the least predicted
    total time (deferral included) is chosen. A slot of services (select_batch) is itself a
    batch and is not deferred.
    Simplifies: the deferral is enacted by the caller, which holds each service
    `Decision.defer_s` seconds (it is also in the prediction's queueing). That value is fixed
    when the service is decided: if a later service fills the batch early, the earlier ones
    still wait their full `defer_s` (FineInfer would release them at once). No deadline
    awareness, as in FineInfer's cloud-only setting.
    Deferral window, measured (2026-12-03, measured information model; `python -m simulator
    sweep paper-q4 --key policy_params.cloud-only.max_wait_s --values 0,0.05,0.1,0.25,0.5
    --seeds 3 --policies cloud-only`, sweep.csv, mean ± 95% CI over seeds 42-44, 10,000
    services each): success 99.72±0.04 / 99.66±0.06 / 99.66±0.09 / 99.59±0.11 /
    99.35±0.14%, mean time 0.61 / 0.65 / 0.69 / 0.79 / 0.95 s, energy 520.1 / 520.1 / 520.1
    / 520.2 / 520.4 kJ (±4.0 kJ) at 0 / 0.05 / 0.1 / 0.25 / 0.5 s: the window costs time and
    deadlines and buys no energy, because the cloud batches its slots' services anyway.
    """

    config_class = CloudOnlyConfig
    config: CloudOnlyConfig

    def __init__(self, config: CloudOnlyConfig | None = None, seed: int = 0) -> None:
        super().__init__(config, seed)
        self._windows: dict[str, _Window] = {}
        self._in_slot = False

    def _defer_s(self, node: NodeState, now: float, commit: bool) -> float:
        if self._in_slot or self.config.max_wait_s == 0:
            return 0.0
        size = self.config.batch_size or node.info.slots
        w = self._windows.get(node.node_id)
        if w is None or w.count >= w.size or now >= w.open_s + self.config.max_wait_s:
            w = _Window(now, size)  # the previous batch has left: open a new one
            if commit:
                self._windows[node.node_id] = w
        if commit:
            w.count += 1
        filled = w.count + (0 if commit else 1) >= w.size
        return 0.0 if filled else w.open_s + self.config.max_wait_s - now

    def select(self, service: Service, cluster: Cluster) -> Decision:
        candidates = require_candidates(self.name, cluster)
        clouds = _of_kind(self.name, CLOUD, candidates)
        now = cluster.clock()
        best = None
        for node, p in _predict(cluster, service, clouds):
            defer_s = self._defer_s(node, now, commit=False)
            p = _with_deferral(p, defer_s, service.deadline_s) if defer_s else p
            if best is None or p.total_s < best[1].total_s:
                best = (node, p)
        node, _ = best
        defer_s = self._defer_s(node, now, commit=True)
        p = cluster.predict_node(service, node, now)
        p = _with_deferral(p, defer_s, service.deadline_s) if defer_s else p
        self.t += 1
        return Decision(service.id, node.node_id, p,
                        _any_feasible(cluster, service, candidates), self.name,
                        -p.total_s, defer_s)

    def select_batch(self, services: list[Service], cluster: Cluster) -> list[Decision]:
        self._in_slot = True
        try:
            return super().select_batch(services, cluster)
        finally:
            self._in_slot = False


@register_policy("edge-only")
class EdgeOnly(Policy):
    """AGOD-style edge-only offloading.

    Models: services go only to edge nodes, to the edge with the least predicted processing
    time (upload at its current bandwidth share + queueing + inference); ties to the less
    loaded edge, then registration order.
    Simplifies: AGOD learns its offloading with a diffusion model and deep RL; here the
    decision is the greedy optimum of the same predictions CS-UCB reads, which is at least as
    good as a learned approximation of it. No deadline or energy term.
    """

    def select(self, service: Service, cluster: Cluster) -> Decision:
        candidates = require_candidates(self.name, cluster)
        scored = _predict(cluster, service, _of_kind(self.name, EDGE, candidates))
        node, p = min(scored, key=lambda np: (np[1].total_s, np[0].load() / np[0].info.slots))
        return _decide(self, service, cluster, candidates, node, p, -p.total_s, scored)


def _least_energy_meeting_requirement(policy: Policy, service: Service,
                                      cluster: Cluster) -> Decision:
    """Least predicted energy among the nodes predicted to meet eq. 3 (f >= 0; ties: least
    total time, then registration order); the least predicted total time if none does.

    The one implementation of the rule shared by edge-cloud and clairvoyant; the score is
    minus the energy (J) or minus the total time (s) that decided."""
    candidates = require_candidates(policy.name, cluster)
    scored = _predict(cluster, service, candidates)
    feasible = [(n, p) for n, p in scored if p.f >= 0]
    if feasible:
        pairs = [(predicted_energy(n, service.input_bytes, p).total_j, p.total_s, i)
                 for i, (n, p) in enumerate(feasible)]
        energy_j, _, i = min(pairs)
        node, p = feasible[i]
        return _decide(policy, service, cluster, candidates, node, p, -energy_j, scored)
    node, p = min(scored, key=lambda np: np[1].total_s)
    return _decide(policy, service, cluster, candidates, node, p, -p.total_s, scored)


@register_policy("edge-cloud")
class EdgeCloud(Policy):
    """RewardlessGuidance-style latency-aware edge-cloud offloading.

    The cited work: J. Fang, Y. He, F. R. Yu, J. Li, V. C. M. Leung, "LLMs inference
    offloading and resource allocation in cloud-edge networks: an active inference approach",
    IEEE VTC 2023 (PerLLM's [11]), extended as Y. He, J. Fang, F. R. Yu, V. C. M. Leung,
    "Large language models (LLMs) inference offloading and resource allocation in cloud-edge
    computing: an active inference approach", IEEE Trans. Mobile Computing, 2024,
    pp. 11253-11264, doi:10.1109/TMC.2024.3415661. Its agent chooses, per LLM inference task,
    the server (edge or cloud) and the resources allocated to it; instead of a reward it is
    guided by preferred outcomes (expected free energy), and it presents itself as the
    latency-aware answer to DRL offloading (which it finds "insensitive to latency
    requirements"): tasks are to be completed within their latency requirement at low cost.
    Models: among edge and cloud nodes alike, the least predicted energy (scheduler.reward:
    transmission + inference + idle while uploading and queueing) among the nodes predicted
    to meet the requirement (f >= 0 of eq. 3: time, compute and bandwidth headroom, the test
    CS-UCB applies); if none is, the node of least predicted total time. The predictions
    come from the cluster, which learns node rates from measured outcomes as it does for
    every policy.
    Simplifies: no generative model or free-energy minimisation: the decision is the greedy
    optimum of the same predictions CS-UCB reads (at least as good as a learned
    approximation of it when the predictions are right); no resource allocation (a node's
    slots are fixed); myopic (no capacity is held back for later services).
    """

    def select(self, service: Service, cluster: Cluster) -> Decision:
        return _least_energy_meeting_requirement(self, service, cluster)


@register_policy("round-robin")
class RoundRobin(Policy):
    """Round-robin: each service to the next candidate after the last one chosen, in
    registration order, skipping nodes that are down. Reads no prediction to decide."""

    def __init__(self, config: PolicyConfig | None = None, seed: int = 0) -> None:
        super().__init__(config, seed)
        self._last: str | None = None

    def select(self, service: Service, cluster: Cluster) -> Decision:
        candidates = require_candidates(self.name, cluster)
        ids = list(cluster.nodes)
        start = ids.index(self._last) + 1 if self._last in cluster.nodes else 0
        up = {n.node_id: n for n in candidates}
        node = next(up[i] for i in ids[start:] + ids[:start] if i in up)
        self._last = node.node_id
        return _decide(self, service, cluster, candidates, node)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "last": self._last}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        last = state.get("last")
        if last is not None and not isinstance(last, str):
            raise ValueError(f"state.last must be a node id or null (got {last!r})")
        super().load_state_dict(state)
        self._last = last


@register_policy("random")
class RandomChoice(Policy):
    """Uniformly random candidate, from the policy's seeded RNG. Reads no prediction."""

    def select(self, service: Service, cluster: Cluster) -> Decision:
        candidates = require_candidates(self.name, cluster)
        return _decide(self, service, cluster, candidates, self.rng.choice(candidates))


@register_policy("least-loaded")
class LeastLoaded(Policy):
    """Least-loaded: the candidate with the fewest services in flight per slot (our bookings,
    or the node's reported queue + busy slots if more); ties to registration order.
    Ignores bandwidth, rates, deadlines and energy."""

    def select(self, service: Service, cluster: Cluster) -> Decision:
        candidates = require_candidates(self.name, cluster)
        node = min(candidates, key=lambda n: n.load() / n.info.slots)
        return _decide(self, service, cluster, candidates, node,
                       score=-node.load() / node.info.slots)


@register_policy("clairvoyant")
class Clairvoyant(EdgeCloud):
    """A clairvoyant reference: edge-cloud's rule with the truth in hand.

    Models: the caller hands its cluster the truth (information = "clairvoyant": true output
    lengths, true node rates, the true current bandwidth of every link), so its predictions
    are exact up to the queueing model. It takes the least energy among the truly feasible
    nodes (f >= 0 of eq. 3), or the least total time if none is: edge-cloud's rule, one
    implementation.
    Simplifies: greedy per service (myopic: it does not hold capacity back for later
    services), and only as exact as the queueing model of scheduler.cluster; so it is not a
    bound: a policy may beat it on a run.
    """

    information = "clairvoyant"


__all__ = ["CloudOnly", "CloudOnlyConfig", "EdgeOnly", "EdgeCloud", "RoundRobin",
           "RandomChoice", "LeastLoaded", "Clairvoyant"]
