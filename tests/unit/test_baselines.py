"""Each baseline's defining behaviour, on a fake clock and fixed seeds."""

import json

import pytest

from scheduler.policies import POLICIES, NoNodeError, create_policy
from scheduler.service import Service
from tests.unit.conftest import make_cluster
from tests.unit.conftest import node_info as node


CLOUD = dict(kind="cloud", slots=4, decode=50.0, prefill=5000.0, rate=300.0, idle_w=60.0,
             max_w=400.0)


def three_nodes(edge2_decode=40.0, edge_power=(50.0, 100.0)):
    idle_w, max_w = edge_power
    return make_cluster(node("edge1", idle_w=idle_w, max_w=max_w),
                        node("edge2", decode=edge2_decode, idle_w=idle_w, max_w=max_w),
                        node("cloud", **CLOUD))


def svc(i, deadline_s=5.0):
    return Service(id=f"s{i}", prompt="hi", input_bytes=1000, max_new_tokens=10,
                   deadline_s=deadline_s, prompt_tokens=250)


def pick(policy, cluster, n, book=True, deadline_s=5.0):
    chosen = []
    for i in range(n):
        s = svc(i, deadline_s)
        d = policy.select(s, cluster)
        if book:
            cluster.on_assign(s, d.prediction)
        chosen.append(d.node_id)
    return chosen


# The project's policies (other tests may register their own).
PROJECT_POLICIES = ("cs-ucb", "cloud-only", "edge-only", "edge-cloud", "round-robin", "random",
                    "least-loaded", "clairvoyant", "slo-aware", "linucb")


@pytest.mark.parametrize("name", PROJECT_POLICIES)
def test_every_policy_raises_no_node_error_on_an_empty_cluster(name):
    with pytest.raises(NoNodeError, match=f"{name}: no "):
        create_policy(name).select(svc(0), make_cluster())


@pytest.mark.parametrize("name", PROJECT_POLICIES)
def test_every_policy_documents_what_it_models(name):
    doc = POLICIES.get(name).__doc__ or ""
    assert len(doc.split()) >= 10


# --- cloud-only (FineInfer-style) -----------------------------------------------------------
def test_cloud_only_sends_everything_to_the_cloud_even_when_an_edge_is_faster():
    cluster = make_cluster(node("edge1", decode=1000.0, prefill=10_000.0), node("cloud", **CLOUD))
    policy = create_policy("cloud-only", max_wait_s=0.0)
    assert cluster.predict(svc(0), "edge1").total_s < cluster.predict(svc(0), "cloud").total_s
    assert pick(policy, cluster, 10) == ["cloud"] * 10


def test_cloud_only_without_a_cloud_says_so():
    with pytest.raises(NoNodeError, match="cloud-only: no cloud node.*edge1"):
        create_policy("cloud-only").select(svc(0), make_cluster(node("edge1")))


def test_cloud_only_defers_until_the_batch_fills_or_the_wait_ends():
    cluster = make_cluster(node("edge1"), node("cloud", **CLOUD))  # 4 slots: batches of 4
    clock = cluster.clock
    policy = create_policy("cloud-only", max_wait_s=0.5)
    plain = cluster.predict(svc(0), "cloud")

    def defer(i):
        d = policy.select(svc(i), cluster)
        assert d.prediction.queueing_s == pytest.approx(max(plain.queueing_s, d.defer_s))
        assert d.prediction.total_s == pytest.approx(plain.total_s + d.defer_s)
        return round(d.defer_s, 9)

    assert defer(1) == 0.5  # opens a batch at t = 0
    clock.now_s = 0.1
    assert [defer(2), defer(3), defer(4)] == [0.4, 0.4, 0.0]  # the 4th fills it: all leave
    clock.now_s = 0.2
    assert defer(5) == 0.5  # a new batch
    clock.now_s = 0.8
    assert defer(6) == 0.5  # the previous one left at 0.7 half full


def test_cloud_only_deferral_counts_against_the_requirement():
    cluster = make_cluster(node("cloud", **CLOUD))
    d = create_policy("cloud-only", max_wait_s=0.5).select(svc(0, deadline_s=0.6), cluster)
    assert not d.prediction.feasible  # 0.25 s inference + 0.5 s held > 0.6 s
    assert d.any_feasible  # dispatched at once it would have met it


def test_cloud_only_batch_size_and_no_deferral_in_a_slot():
    cluster = make_cluster(node("cloud", **CLOUD))
    policy = create_policy("cloud-only", max_wait_s=1.0, batch_size=2)
    assert [policy.select(svc(i), cluster).defer_s for i in range(4)] == [1.0, 0.0, 1.0, 0.0]
    decisions = policy.select_batch([svc(i) for i in range(10, 15)], cluster)
    assert [d.defer_s for d in decisions] == [0.0] * 5
    assert {d.node_id for d in decisions} == {"cloud"}


def test_cloud_only_picks_the_faster_of_two_clouds():
    cluster = make_cluster(node("slow", **{**CLOUD, "decode": 10.0}), node("fast", **CLOUD))
    assert create_policy("cloud-only").select(svc(0), cluster).node_id == "fast"


# --- edge-only (AGOD-style) -----------------------------------------------------------------
def test_edge_only_never_uses_the_cloud_and_picks_the_fastest_edge():
    cluster = three_nodes()
    assert cluster.predict(svc(0), "cloud").total_s < cluster.predict(svc(0), "edge2").total_s
    # edge2 decodes twice as fast: 0.5 s; with it busy edge1 (0.75 s) beats its 0.5 + 0.5 s.
    assert pick(create_policy("edge-only"), cluster, 3) == ["edge2", "edge1", "edge2"]


def test_edge_only_ignores_the_deadline_but_reports_feasibility_honestly():
    cluster = three_nodes()
    d = create_policy("edge-only").select(svc(0, deadline_s=0.3), cluster)
    assert d.node_id == "edge2" and not d.prediction.feasible
    assert d.any_feasible  # the cloud would have met it


def test_edge_only_without_an_edge_says_so():
    with pytest.raises(NoNodeError, match="edge-only: no edge node.*cloud"):
        create_policy("edge-only").select(svc(0), make_cluster(node("cloud", **CLOUD)))


# --- edge-cloud (RewardlessGuidance-style) --------------------------------------------------
def test_edge_cloud_minimises_energy_among_nodes_meeting_the_requirement():
    # A frugal, slow edge: 10 W for 2.25 s = 22.5 J against the cloud's 145 W for 0.25 s.
    cluster = make_cluster(node("edge1", decode=5.0, idle_w=5.0, max_w=10.0),
                           node("cloud", **CLOUD))
    d = create_policy("edge-cloud").select(svc(0, deadline_s=3.0), cluster)
    assert (d.node_id, d.prediction.feasible) == ("edge1", True)
    assert d.score == pytest.approx(-22.5, rel=1e-3)
    # 2 s: the edge would miss it, so the cloud, though it costs more energy.
    d = create_policy("edge-cloud").select(svc(1, deadline_s=2.0), cluster)
    assert (d.node_id, d.prediction.feasible) == ("cloud", True)


def test_edge_cloud_spreads_load_through_queueing_energy():
    cluster = make_cluster(node("edge1", decode=5.0, idle_w=5.0, max_w=10.0),
                           node("cloud", **CLOUD))
    # Waiting 2.25 s more per queued service costs the edge 11.25 J of idle each time.
    decisions = create_policy("edge-cloud").select_batch([svc(i) for i in range(3)], cluster)
    assert [d.node_id for d in decisions] == ["edge1", "edge1", "cloud"]


# --- round-robin, random, least-loaded ------------------------------------------------------
def test_round_robin_cycles_and_skips_nodes_that_are_down():
    cluster = three_nodes()
    policy = create_policy("round-robin")
    assert pick(policy, cluster, 4, book=False) == ["edge1", "edge2", "cloud", "edge1"]
    cluster.heartbeat("edge2", serving=False)
    assert pick(policy, cluster, 2, book=False) == ["cloud", "edge1"]
    restored = create_policy("round-robin")
    restored.load_state_dict(json.loads(json.dumps(policy.state_dict())))
    cluster.heartbeat("edge2")
    assert pick(restored, cluster, 2, book=False) == pick(policy, cluster, 2, book=False) == [
        "edge2", "cloud"]


def test_random_is_reproducible_from_its_seed_and_covers_every_node():
    cluster = three_nodes()
    a = pick(create_policy("random", seed=5), cluster, 60, book=False)
    b = pick(create_policy("random", seed=5), cluster, 60, book=False)
    c = pick(create_policy("random", seed=6), cluster, 60, book=False)
    assert a == b and a != c
    assert set(a) == {"edge1", "edge2", "cloud"}


def test_random_state_round_trip_continues_the_sequence():
    cluster = three_nodes()
    policy = create_policy("random", seed=5)
    pick(policy, cluster, 7, book=False)
    restored = create_policy("random", seed=99)
    restored.load_state_dict(json.loads(json.dumps(policy.state_dict())))
    assert pick(restored, cluster, 20, book=False) == pick(policy, cluster, 20, book=False)


def test_least_loaded_fills_by_in_flight_per_slot():
    cluster = three_nodes()
    chosen = pick(create_policy("least-loaded"), cluster, 7)
    # edges: 1 slot each; cloud: 4 slots, so it takes four before it is as loaded as an edge.
    assert chosen == ["edge1", "edge2", "cloud", "cloud", "cloud", "cloud", "edge1"]


def test_least_loaded_counts_the_load_a_node_reports():
    cluster = three_nodes()
    cluster.heartbeat("edge1", queue_length=3, busy_slots=1)
    cluster.heartbeat("edge2", queue_length=0, busy_slots=1)
    assert pick(create_policy("least-loaded"), cluster, 1) == ["cloud"]


# --- clairvoyant ----------------------------------------------------------------------------
def test_clairvoyant_takes_the_least_energy_among_nodes_meeting_the_requirement():
    cluster = three_nodes(edge_power=(10.0, 20.0))
    clairvoyant = create_policy("clairvoyant")
    # Every node meets 5 s; the frugal edges beat the cloud's energy, edge2 (faster) first.
    d = clairvoyant.select(svc(0), cluster)
    assert (d.node_id, d.any_feasible) == ("edge2", True)
    # 0.4 s: only the cloud (0.25 s) meets it, though it costs more energy.
    assert clairvoyant.select(svc(1, deadline_s=0.4), cluster).node_id == "cloud"


def test_clairvoyant_takes_the_fastest_when_nothing_meets_the_requirement():
    cluster = three_nodes(edge_power=(10.0, 20.0))
    d = create_policy("clairvoyant").select(svc(0, deadline_s=0.01), cluster)
    assert (d.node_id, d.any_feasible) == ("cloud", False)


def test_clairvoyant_follows_fed_true_rates():
    cluster = make_cluster(node("edge1", idle_w=10.0, max_w=20.0), node("cloud", **CLOUD),
                           learn_rates=False)  # fed the truth
    clairvoyant = create_policy("clairvoyant")
    assert clairvoyant.select(svc(0, deadline_s=1.0), cluster).node_id == "edge1"
    cluster.set_rates("edge1", prefill_tok_s=1000.0, decode_tok_s=5.0)  # truly slower: 2.25 s
    assert clairvoyant.select(svc(1, deadline_s=1.0), cluster).node_id == "cloud"


@pytest.mark.parametrize("name", PROJECT_POLICIES)
def test_select_batch_releases_its_bookings_when_a_selection_raises(name):
    cluster = three_nodes()
    policy = create_policy(name)
    real_select = policy.select

    def select(service, cluster):  # the third decision (by deadline) fails
        if service.id == "s2":
            raise RuntimeError("selection failed for s2")
        return real_select(service, cluster)

    policy.select = select
    with pytest.raises(RuntimeError, match="s2"):
        policy.select_batch([svc(i, deadline_s=5.0 + i) for i in range(4)], cluster)
    for node_state in cluster.nodes.values():
        assert node_state.inflight == {} and node_state.finishes_s == []
        assert node_state.upload_ends_s == [] and node_state.assigned == 0
