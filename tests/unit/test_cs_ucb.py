"""CS-UCB with fixed seeds and scripted measured outcomes: the exact arms chosen; the energy
and reward model (eqs. 2 and 4); regret (eq. 5); state round-trip."""

import json
import math

import pytest

from scheduler.cluster import Cluster, NodeInfo
from scheduler.outcome import Energy, Outcome, Status
from scheduler.policies import NoNodeError, create_policy
from scheduler.policies.cs_ucb import CsUcb, CsUcbConfig
from scheduler.reward import (inference_power_w, measured_f, predicted_energy, reward,
                              service_energy, transmission_energy_j)
from scheduler.service import Service
from tests.unit.conftest import FakeClock, make_cluster
from tests.unit.conftest import node_info as node


def three_nodes(**kw):
    return make_cluster(node("edge1"), node("edge2"),
                        node("cloud", kind="cloud", slots=4, decode=50.0, prefill=5000.0,
                             rate=300.0), **kw)


def svc(i, deadline_s=5.0, cls="chat"):
    return Service(id=f"s{i}", prompt="hi", input_bytes=1000, max_new_tokens=10,
                   deadline_s=deadline_s, service_class=cls, prompt_tokens=250)


def outcome(service, node_id, total_s, energy=Energy(), status=None):
    return Outcome(service.id, node_id, status or Outcome.status_for(total_s, service.deadline_s),
                   service.deadline_s, total_s, service_class=service.service_class,
                   energy=energy)


def run(policy, cluster, rounds, total_s_of, start=0, cls="chat"):
    """Select and immediately learn a scripted measured total time per node."""
    chosen = []
    for i in range(start, start + rounds):
        s = svc(i, cls=cls)
        d = policy.select(s, cluster)
        chosen.append(d.node_id)
        policy.update(outcome(s, d.node_id, total_s_of[d.node_id]))
    return chosen


# --- exploration and exploitation -----------------------------------------------------------
def test_untried_feasible_arms_first_largest_headroom_first():
    cluster = three_nodes()
    policy = CsUcb(seed=1)
    chosen = run(policy, cluster, 3, {"edge1": 1.0, "edge2": 1.0, "cloud": 1.0})
    # The cloud is predicted fastest (largest f); the two equal edges in registration order.
    assert chosen == ["cloud", "edge1", "edge2"]


def test_pending_outcomes_count_as_plays_so_a_slot_explores_every_arm():
    cluster = three_nodes()
    decisions = CsUcb(seed=1).select_batch([svc(i) for i in range(3)], cluster)
    assert sorted(d.node_id for d in decisions) == ["cloud", "edge1", "edge2"]
    assert all(d.score == math.inf for d in decisions)


def test_stops_choosing_an_arm_whose_measured_outcomes_miss():
    cluster = three_nodes()
    policy = CsUcb(seed=1)
    # The cloud is predicted fastest and stays predicted feasible, but measures 10 s > 5 s.
    chosen = run(policy, cluster, 40, {"edge1": 1.0, "edge2": 1.0, "cloud": 10.0})
    assert chosen[:3] == ["cloud", "edge1", "edge2"]
    assert "cloud" not in chosen[3:]
    # Equal edges alternate: ties go to registration order, then the bonus favours fewer plays.
    assert chosen[3:9] == ["edge1", "edge2"] * 3
    assert policy.mean_reward("chat", "cloud") == pytest.approx(-1.0)


def test_an_arm_that_recovers_can_win_back_with_exploration():
    cluster = make_cluster(node("edge1"), node("edge2"))
    policy = CsUcb(CsUcbConfig(delta=2.0, theta=0.0), seed=1)
    chosen = run(policy, cluster, 2, {"edge1": 4.9, "edge2": 1.0})  # edge1: barely met
    assert chosen == ["edge1", "edge2"]
    later = run(policy, cluster, 60, {"edge1": 1.0, "edge2": 1.0}, start=2)
    assert "edge1" in later  # the bonus brings it back; it is not banned forever


def test_falls_back_to_the_most_resource_rich_node_when_none_is_feasible():
    cluster = three_nodes()
    policy = CsUcb(seed=1)
    d = policy.select(svc(0, deadline_s=0.01), cluster)
    assert (d.node_id, d.any_feasible) == ("cloud", False)
    assert d.prediction.f < 0


def test_fallback_ties_go_to_the_cloud_then_to_more_slots():
    # Identical rates and links: f is the same (time headroom dominates); the cloud wins.
    cluster = make_cluster(node("edge1"), node("big", kind="cloud"), node("edge2", slots=2))
    assert CsUcb().select(svc(0, deadline_s=0.01), cluster).node_id == "big"
    cluster = make_cluster(node("edge1"), node("edge2", slots=2))
    assert CsUcb().select(svc(0, deadline_s=0.01), cluster).node_id == "edge2"


def test_the_constraint_filter_comes_before_the_rewards():
    cluster = three_nodes()
    policy = CsUcb(seed=1)
    run(policy, cluster, 3, {"edge1": 1.0, "edge2": 1.0, "cloud": 10.0})
    # 0.6 s requirement: only the cloud is predicted in time (0.25 s; the edges need 0.75 s),
    # so it is chosen although its measured rewards are the worst.
    s = svc(99, deadline_s=0.6)
    d = policy.select(s, cluster)
    assert (d.node_id, d.any_feasible) == ("cloud", True)


def test_learns_from_measured_not_predicted_outcomes():
    # Rates stay as registered, so edge1 is predicted fast throughout: only the measured
    # outcomes can teach the policy that it is slow.
    cluster = make_cluster(node("edge1", decode=100.0), node("edge2", decode=20.0),
                           learn_rates=False)
    policy = CsUcb(seed=3)
    s0 = svc(0)
    d0 = policy.select(s0, cluster)
    assert d0.node_id == "edge1" and d0.prediction.f > 0.8  # predicted 0.35 s of 5 s
    r = policy.update(outcome(s0, "edge1", 8.0))  # measured: missed by 60 %
    assert r == pytest.approx(-0.6)
    assert r != pytest.approx(d0.prediction.f)
    chosen = run(policy, cluster, 30, {"edge1": 8.0, "edge2": 2.0}, start=1)
    assert chosen[0] == "edge2"
    assert chosen.count("edge1") == 0
    assert cluster.predict(svc(0), "edge1").f > cluster.predict(svc(0), "edge2").f


def test_classes_are_separate_contexts():
    cluster = three_nodes()
    policy = CsUcb(seed=1)
    run(policy, cluster, 10, {"edge1": 1.0, "edge2": 1.0, "cloud": 10.0})
    assert run(policy, cluster, 3, {"edge1": 1.0, "edge2": 1.0, "cloud": 1.0}, start=10,
               cls="summarise") == ["cloud", "edge1", "edge2"]


def test_energy_enters_the_reward():
    cluster = make_cluster(node("edge1"), node("edge2"))
    policy = CsUcb(CsUcbConfig(delta=0.1), seed=1)
    chosen = []
    for i in range(20):
        s = svc(i)
        d = policy.select(s, cluster)
        chosen.append(d.node_id)
        energy = Energy(inference_j=900.0 if d.node_id == "edge1" else 100.0)
        policy.update(outcome(s, d.node_id, 1.0, energy))
    assert chosen[:2] == ["edge1", "edge2"]
    assert chosen[2:] == ["edge2"] * 18


def test_no_candidate_raises():
    cluster = make_cluster()
    with pytest.raises(NoNodeError, match="cs-ucb.*no node"):
        CsUcb().select(svc(0), cluster)
    cluster = make_cluster(node("edge1"))
    cluster.heartbeat("edge1", serving=False)
    with pytest.raises(NoNodeError):
        CsUcb().select(svc(0), cluster)


# --- reward, energy and regret --------------------------------------------------------------
def test_reward_of_eq4_from_the_measured_outcome():
    config = CsUcbConfig(lam=2.0, omega_tran=1.0, omega_infer=2.0, omega_idle=0.5,
                         energy_ref_j=100.0)
    policy = CsUcb(config)
    s = Service("a", "hi", 10, 5, deadline_s=4.0)
    r = policy.update(outcome(s, "edge1", 2.0, Energy(10.0, 200.0, 40.0)))
    # -(10 + 400 + 20)/100 + 2 * (4 - 2)/4
    assert r == pytest.approx(-3.3)


def test_measured_f_sign_and_bounds():
    s = Service("a", "hi", 10, 5, deadline_s=4.0)
    assert measured_f(outcome(s, "n", 1.0)) == pytest.approx(0.75)
    assert measured_f(outcome(s, "n", 5.0)) == pytest.approx(-0.25)
    assert measured_f(outcome(s, "n", 100.0)) == -1.0
    assert measured_f(outcome(s, "n", 0.5, status=Status.FAILED)) == -1.0
    assert reward(Energy(), -0.25, lam=1, omega_tran=1, omega_infer=1, omega_idle=1,
                  energy_ref_j=1) < 0


def test_service_energy_parts_and_total():
    info = NodeInfo("e", "e:1", "edge", slots=4, link_rate_mbit=100.0, idle_power_w=40.0,
                    max_power_w=120.0, transmission_j_per_bit=1e-8)
    e = service_energy(info, input_bytes=1_000_000, transmission_s=0.5, queueing_s=1.5,
                       inference_s=2.0)
    assert e.transmission_j == pytest.approx(8e6 * 1e-8)
    assert e.inference_j == pytest.approx((40 + 80 / 4) * 2.0)
    assert e.idle_j == pytest.approx(40 * 2.0)
    assert e.total_j == e.transmission_j + e.inference_j + e.idle_j
    assert transmission_energy_j(1000, 2e-8) == pytest.approx(1.6e-4)


def test_concurrent_services_share_the_idle_floor():
    info = NodeInfo("e", "e:1", "edge", slots=4, link_rate_mbit=100.0, idle_power_w=40.0,
                    max_power_w=120.0)
    assert 4 * inference_power_w(info, concurrent=4) == pytest.approx(120.0)
    assert 2 * inference_power_w(info, concurrent=2) == pytest.approx(40 + 80 * 2 / 4)
    assert inference_power_w(info) == pytest.approx(60.0)


def test_service_energy_rejects_negative_times():
    info = NodeInfo("e", "e:1", "edge", slots=1, link_rate_mbit=100.0)
    with pytest.raises(ValueError, match="queueing_s.*-1"):
        service_energy(info, 0, 0.0, -1.0, 0.0)


def test_predicted_energy_uses_the_prediction_times():
    cluster = make_cluster(node("edge1"))
    p = cluster.predict(svc(0), "edge1")
    e = predicted_energy(cluster.node("edge1"), 1000, p)
    assert e.inference_j == pytest.approx(100.0 * p.inference_s)
    assert e.idle_j == pytest.approx(50.0 * (p.transmission_s + p.queueing_s))


def test_regret_against_the_best_fixed_arm_and_eq5_as_written():
    cluster = make_cluster(node("edge1"), node("edge2"))
    policy = CsUcb(CsUcbConfig(alpha=0.5, beta=0.8, delta=0.0), seed=1)
    run(policy, cluster, 4, {"edge1": 1.0, "edge2": 3.0})  # rewards 0.8 and 0.4
    # Chosen: edge1, edge2, edge1, edge1 -> T = 4, R* = 0.8, sum = 2.8: one suboptimal play.
    assert policy.regret == pytest.approx(4 * 0.8 - 2.8)
    assert policy.regret_eq5 == pytest.approx(4 * 0.4 * 0.8 - 2.8)


def test_regret_is_zero_for_optimal_play_where_eq5_is_not():
    # Rewards are negative (every service late): eq. 5's αβ < 1 makes even the best arm,
    # played throughout, show positive regret; the hindsight regret is exactly 0.
    cluster = make_cluster(node("edge1"))
    policy = CsUcb(CsUcbConfig(delta=0.0), seed=1)
    run(policy, cluster, 5, {"edge1": 8.0})
    assert policy.mean_reward("chat", "edge1") < 0
    assert policy.regret == pytest.approx(0.0, abs=1e-12)
    assert policy.regret_eq5 > 0


def test_the_penalty_only_variant_earns_nothing_for_slack():
    energy = Energy(inference_j=500.0)
    kw = dict(lam=1.0, omega_tran=1.0, omega_infer=1.0, omega_idle=1.0, energy_ref_j=1000.0)
    assert reward(energy, 0.6, **kw) == pytest.approx(-0.5 + 0.6)
    assert reward(energy, 0.6, penalty_only=True, **kw) == pytest.approx(-0.5)
    assert reward(energy, -0.2, penalty_only=True, **kw) == pytest.approx(-0.7)
    with pytest.raises(ValueError, match="constraint_term must be one of eq4, penalty-only"):
        CsUcbConfig(constraint_term="slack")


def test_arm_stats_report_plays_means_ucb_and_untried_arms():
    cluster = three_nodes()
    policy = CsUcb(CsUcbConfig(delta=0.5, theta=1.0), seed=1)
    run(policy, cluster, 2, {"edge1": 1.0, "edge2": 1.0, "cloud": 10.0})  # cloud, edge1
    stats = {(a.service_class, a.node_id): a for a in policy.arm_stats(cluster)}
    cloud, edge1, edge2 = stats["chat", "cloud"], stats["chat", "edge1"], stats["chat", "edge2"]
    assert (cloud.plays, cloud.mean_reward, cloud.success_rate) == (1, -1.0, 0.0)
    assert cloud.ucb == pytest.approx(-1.0 + 0.5 * math.sqrt(math.log(3)) - 1.0)
    assert (edge1.plays, edge1.success_rate) == (1, 1.0)
    assert edge1.ucb == pytest.approx(0.8 + 0.5 * math.sqrt(math.log(3)))
    assert (edge2.plays, edge2.ucb) == (0, math.inf)


# --- persistence ----------------------------------------------------------------------------
def test_state_round_trips_through_json_and_learning_continues():
    script = {"edge1": 1.0, "edge2": 3.0, "cloud": 10.0}
    cluster = three_nodes()
    original = CsUcb(CsUcbConfig(delta=1.0), seed=7)
    run(original, cluster, 12, script)
    s = svc(100)
    pending = original.select(s, cluster)  # in flight when the state is saved
    state = json.loads(json.dumps(original.state_dict()))

    restored = create_policy("cs-ucb", seed=0, delta=1.0)
    restored.load_state_dict(state)
    assert restored.state_dict() == state
    assert restored.t == original.t == 13
    assert restored.regret == pytest.approx(original.regret)
    assert restored.arm_stats(cluster) == original.arm_stats(cluster)
    for p in (original, restored):
        p.update(outcome(s, pending.node_id, 1.0))
    assert run(restored, cluster, 20, script, start=200) == run(original, cluster, 20, script,
                                                                 start=200)
    assert restored.rng.random() == original.rng.random()


def test_malformed_state_is_rejected_naming_the_key():
    policy = CsUcb()
    with pytest.raises(ValueError, match="state.classes"):
        policy.load_state_dict({"classes": {"chat": {"selections": 1}}})
    with pytest.raises(ValueError, match="state.policy.*'oracle'"):
        policy.load_state_dict({"policy": "oracle"})
    assert policy.state_dict()["classes"] == {}  # a failed load changes nothing
