"""Eq. 3's bandwidth term: bounded, monotone in the time left, eq. 3 exactly when met; and the
CS-UCB fallback it feeds ("assigned to a more resource-rich server") no longer prefers a node
that cannot come close to the requirement over one a fraction of a second short."""

import pytest

from scheduler.cluster import CLOUD, EDGE, Cluster, NodeInfo, Prediction, bandwidth_headroom_of
from scheduler.policies.base import create_policy
from scheduler.service import Service


def test_headroom_is_eq3_when_met_and_bounded_monotone_when_violated():
    # met: (B_max − B_i)/B_max with B_i = bits/time_left and B_max = bits/transmission_s
    assert bandwidth_headroom_of(0.25, 1.0) == pytest.approx(0.75)
    assert bandwidth_headroom_of(1.0, 1.0) == pytest.approx(0.0)
    assert bandwidth_headroom_of(0.0, -3.0) == 1.0  # nothing to upload
    lefts = [2.0, 1.0, 0.5, 0.2, 0.1, 0.01, 1e-6, 0.0, -1.0]
    values = [bandwidth_headroom_of(0.5, t) for t in lefts]
    assert all(-1.0 <= v <= 1.0 for v in values)
    # less time left never looks less violating, and "no time left" is the worst
    assert values == sorted(values, reverse=True)
    assert values[-1] == values[-2] == -1.0
    assert values[-3] > -1.0
    assert bandwidth_headroom_of(0.5, 0.25) < 0 < bandwidth_headroom_of(0.5, 0.75)


def _cluster() -> Cluster:
    cluster = Cluster(clock=lambda: 0.0)
    cluster.register(NodeInfo("edge1", "sim:edge1", EDGE, slots=1, link_rate_mbit=100,
                              idle_power_w=25, max_power_w=100, prefill_tok_s=35.0,
                              decode_tok_s=22.0))
    cluster.register(NodeInfo("cloud", "sim:cloud", CLOUD, slots=1, link_rate_mbit=300,
                              idle_power_w=40, max_power_w=250, prefill_tok_s=2300.0,
                              decode_tok_s=38.0))
    return cluster


def test_cs_ucb_fallback_prefers_the_node_just_short_over_a_hopeless_one():
    cluster = _cluster()
    # 10 MB upload, 200 tokens to read, 39 out, 3.42 s requirement:
    #   edge: 0.8 s upload + 200/35 + 39/22 s inference = 8.3 s (f = −1.43)
    #   cloud: 0.267 s upload, a slot frees at 2.477 s, 1.11 s inference = 3.59 s, i.e. 5%
    #   over, with 0.1 s of the requirement left for a 0.267 s upload.
    service = Service("s1", "summarise this", 10_000_000, 39, 3.42, "document",
                      prompt_tokens=200)
    cluster.on_assign(Service("busy", "x", 0, 1, 10.0),
                      Prediction("cloud", 0.0, 0.0, 2.477, 1.0, 1.0, 1.0))
    cloud = cluster.predict(service, "cloud")
    edge = cluster.predict(service, "edge1")
    assert cloud.time_headroom == pytest.approx(-0.049, abs=0.002)
    assert edge.time_headroom == pytest.approx(-1.43, abs=0.01)
    # The old constant −1 for "no time left" and the unbounded (B_max − B_i)/B_max beside it
    # scored the cloud's bandwidth at 1 − 0.267/0.1 = −1.67, below the hopeless edge.
    tx_s, inference_s = 8e7 / 300e6, 200 / 2300 + 39 / 38
    left_s = 3.42 - (2.477 - tx_s) - inference_s  # ≈ 0.096 s
    assert cloud.bandwidth_headroom == pytest.approx(left_s / tx_s - 1)
    assert 1 - tx_s / left_s < edge.f  # what the old formula gave
    assert cloud.f > edge.f
    decision = create_policy("cs-ucb", seed=0).select(service, cluster)
    assert not decision.any_feasible
    assert decision.node_id == "cloud"
