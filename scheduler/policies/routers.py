"""SLO-aware routing in the manner of the Kubernetes Gateway API Inference Extension and llm-d.

What they do. The Gateway API Inference Extension (GIE, kubernetes-sigs/
gateway-api-inference-extension) puts an Endpoint Picker (EPP) beside an Envoy gateway; for
every request the EPP's scheduler runs Filter -> Score -> Pick over the model-server endpoints
of a pool, with pluggable filters and scorers (llm-d's inference scheduler, which extends
it: "Request Scheduler", llm-d.ai/docs/architecture/core/router/epp/scheduling). The default
profile scores endpoints by load signals scraped from the servers (queue-scorer: waiting
requests; kv-cache-utilization-scorer) and by prefix-cache affinity, as a weighted sum, and
picks the best. Its SLO-aware variant, predicted-latency-based scheduling (GIE issue #1443
"SLO Aware Routing"; llm-d guide "Predicted Latency based Load Balancing"; GIE guide
"Latency-Based Request Scheduling"), predicts the p90 time to first token and time per
output token of the request on every endpoint (an XGBoost model trained online on live
traffic, from each endpoint's queue depth, KV-cache utilisation and prefix-cache match and
the request's features), computes the headroom SLO − predicted per endpoint, directs the
request to endpoints with headroom (a weighted-random pick among them), and when none has
headroom sheds it or sends it to a pool weighted towards the lowest predicted latency.
"""

from __future__ import annotations

from scheduler.cluster import Cluster
from scheduler.policies.base import Decision, Policy, register_policy, require_candidates
from scheduler.policies.baselines import _decide, _predict
from scheduler.service import Service


@register_policy("slo-aware")
class SloAware(Policy):
    """SLO-aware router in the manner of the Gateway API Inference Extension / llm-d EPP.

    Models (see the module docstring for what GIE and llm-d do): filter the nodes predicted
    to meet the service's requirement (f >= 0 of eq. 3: predicted total time D-hat within
    the requirement, with compute and bandwidth headroom), then score by load: the fewest
    services in flight per slot (our bookings, or the node's reported queue + busy slots if
    more: queue depth and utilisation), ties to the least predicted total time, then
    registration order. If no node passes the filter, the node of least predicted total time
    (the llm-d fallback "favouring lower latency", without shedding). Predictions come from
    the cluster (learned rates, estimated output length), as for every policy.
    Simplifies: one SLO, the whole processing-time requirement (upload + queueing +
    inference), instead of TTFT and TPOT targets; the predictor is the cluster's D-hat, not a
    model trained online per endpoint; no prefix-cache or KV-cache signal (our nodes expose
    none; in-flight per slot stands for both load scorers); a deterministic pick of the best
    score instead of a weighted-random one; every service is placed (no shedding). No energy
    term: like the routers it follows, it ignores energy.
    """

    def select(self, service: Service, cluster: Cluster) -> Decision:
        candidates = require_candidates(self.name, cluster)
        scored = _predict(cluster, service, candidates)
        passing = [(n, p) for n, p in scored if p.f >= 0]
        if passing:
            node, p = min(passing, key=lambda np: (np[0].load() / np[0].info.slots,
                                                   np[1].total_s))
            return _decide(self, service, cluster, candidates, node, p,
                           -node.load() / node.info.slots, scored)
        node, p = min(scored, key=lambda np: np[1].total_s)
        return _decide(self, service, cluster, candidates, node, p, -p.total_s, scored)


__all__ = ["SloAware"]
