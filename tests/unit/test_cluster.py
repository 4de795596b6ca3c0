"""Cluster bookkeeping and the processing-time prediction behind eq. 3, on a fake clock."""

import math

import pytest

from scheduler.cluster import Cluster, NodeInfo
from scheduler.outcome import Outcome, Status
from scheduler.service import Service
from tests.unit.conftest import FakeClock


def edge(node_id="edge1", **kw) -> NodeInfo:
    args = dict(node_id=node_id, address=f"{node_id}:50061", kind="edge", slots=1,
                link_rate_mbit=100.0, idle_power_w=50.0, max_power_w=100.0,
                prefill_tok_s=1000.0, decode_tok_s=20.0)
    args.update(kw)
    return NodeInfo(**args)


def service(sid="s1", input_bytes=1000, tokens=10, deadline_s=5.0, prompt_tokens=250, **kw):
    return Service(id=sid, prompt="hi", input_bytes=input_bytes, max_new_tokens=tokens,
                   deadline_s=deadline_s, prompt_tokens=prompt_tokens, **kw)


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def cluster(clock):
    return Cluster(clock)


def test_prediction_parts_and_f(cluster):
    cluster.register(edge())
    p = cluster.predict(service(input_bytes=1_250_000), "edge1")  # 10 Mbit at 100 Mbit/s
    assert p.transmission_s == pytest.approx(0.1)
    assert p.queueing_s == 0.0
    assert p.inference_s == pytest.approx(250 / 1000 + 10 / 20)
    assert p.total_s == pytest.approx(0.85)
    assert p.time_headroom == pytest.approx((5 - 0.85) / 5)
    assert p.compute_headroom == pytest.approx((65 - 1) / 65)  # slots 1 + queue capacity 64
    # Needs 10 Mbit in 5 - 0.75 s = 2.353 Mbit/s of a 100 Mbit/s share.
    assert p.bandwidth_headroom == pytest.approx(1 - (10 / 4.25) / 100)
    assert p.f == min(p.time_headroom, p.compute_headroom, p.bandwidth_headroom)
    assert p.feasible


def test_missed_deadline_prediction_is_infeasible(cluster):
    cluster.register(edge())
    p = cluster.predict(service(deadline_s=0.5), "edge1")
    assert p.time_headroom == pytest.approx((0.5 - 0.75008) / 0.5)
    assert p.bandwidth_headroom == -1.0  # no time left for the upload at all
    assert not p.feasible


def test_upload_shares_bandwidth_until_it_ends(cluster, clock):
    cluster.register(edge(slots=4))
    big = service("a", input_bytes=1_250_000)
    cluster.on_assign(big, cluster.predict(big, "edge1"))  # upload ends at t = 0.1
    assert cluster.predict(big, "edge1").transmission_s == pytest.approx(0.2)
    clock.now_s = 0.1
    assert cluster.predict(big, "edge1").transmission_s == pytest.approx(0.1)


def test_queueing_waits_for_the_earliest_slot_and_shrinks_with_elapsed_time(cluster, clock):
    cluster.register(edge(slots=2))
    s = service(input_bytes=0)
    first = cluster.predict(s, "edge1")
    cluster.on_assign(service("a", input_bytes=0), first)  # finishes at 0.75
    assert cluster.predict(s, "edge1").queueing_s == 0.0  # a slot is free
    cluster.on_assign(service("b", input_bytes=0), cluster.predict(s, "edge1"))
    # Both slots busy: the next one starts when the earliest booked service finishes.
    b_finish = cluster.node("edge1").inflight["b"].finish_s
    p = cluster.predict(s, "edge1")
    assert p.queueing_s == pytest.approx(min(0.75, b_finish))
    clock.now_s = 0.5
    assert cluster.predict(s, "edge1").queueing_s == pytest.approx(min(0.75, b_finish) - 0.5)
    clock.now_s = 10.0  # overdue bookings count as finishing now
    assert cluster.predict(s, "edge1").queueing_s == 0.0


def test_third_service_on_two_slots_waits_for_the_second_finish(cluster):
    cluster.register(edge(slots=1))
    s = service(input_bytes=0)
    for sid in ("a", "b"):
        cluster.on_assign(service(sid, input_bytes=0), cluster.predict(s, "edge1"))
    # FIFO on one slot: a ends at 0.75, b at 1.5; a third starts at 1.5.
    assert cluster.predict(s, "edge1").queueing_s == pytest.approx(1.5)


def test_queueing_is_hidden_behind_the_own_upload(cluster):
    cluster.register(edge(slots=1))
    cluster.on_assign(service("a", input_bytes=0), cluster.predict(service(input_bytes=0), "edge1"))
    p = cluster.predict(service(input_bytes=6_250_000), "edge1")  # 0.5 s upload, 0.75 s wait
    assert p.transmission_s == pytest.approx(0.5)
    assert p.queueing_s == pytest.approx(0.25)


def test_concurrency_slowdown_stretches_inference(cluster):
    cluster.register(edge(slots=4, concurrency_slowdown=0.5))
    s = service(input_bytes=0)
    alone = cluster.predict(s, "edge1").inference_s
    cluster.on_assign(service("a", input_bytes=0), cluster.predict(s, "edge1"))
    assert cluster.predict(s, "edge1").inference_s == pytest.approx(alone * 1.5)


def test_compute_headroom_uses_the_larger_of_booked_and_reported_load(cluster):
    cluster.register(edge(queue_capacity=3))  # C_max = 4
    cluster.heartbeat("edge1", queue_length=2, busy_slots=1)
    assert cluster.predict(service(), "edge1").compute_headroom == pytest.approx(0.0)
    cluster.heartbeat("edge1", queue_length=3, busy_slots=1)
    assert cluster.predict(service(), "edge1").compute_headroom == pytest.approx(-0.25)
    assert not cluster.predict(service(), "edge1").feasible


def test_completion_releases_the_booking(cluster):
    cluster.register(edge())
    s = service("a")
    cluster.on_assign(s, cluster.predict(s, "edge1"))
    assert cluster.predict(service("b"), "edge1").queueing_s > 0
    cluster.on_complete(Outcome("a", "edge1", Status.FAILED, 5.0, 1.0))
    node = cluster.node("edge1")
    assert node.inflight == {} and node.finishes_s == [] and node.upload_ends_s == []
    assert cluster.predict(service("b"), "edge1").queueing_s == 0.0


def test_assigning_the_same_service_twice_books_it_once(cluster):
    cluster.register(edge(slots=4))
    s = service("a")
    cluster.on_assign(s, cluster.predict(s, "edge1"))
    cluster.on_assign(s, cluster.predict(s, "edge1"))
    node = cluster.node("edge1")
    assert len(node.inflight) == 1 and len(node.finishes_s) == 1 and len(node.upload_ends_s) == 1


def test_measured_outcome_updates_rates_in_proportion():
    cluster = Cluster(FakeClock(), rate_smoothing=1.0)
    cluster.register(edge())
    s = service("a")
    cluster.on_assign(s, cluster.predict(s, "edge1"))
    # 250 prompt + 10 new tokens were predicted at 0.75 s; they took 1.5 s: half the speed.
    cluster.on_complete(Outcome("a", "edge1", Status.MET, 5.0, 1.6, inference_s=1.5,
                                tokens_in=250, tokens_out=10))
    node = cluster.node("edge1")
    assert node.prefill_tok_s == pytest.approx(500.0)
    assert node.decode_tok_s == pytest.approx(10.0)


def test_rate_learning_is_smoothed_and_ignores_failures(cluster):
    cluster.register(edge())
    cluster.on_complete(Outcome("a", "edge1", Status.MET, 5.0, 1.6, inference_s=1.5,
                                tokens_in=250, tokens_out=10))
    assert cluster.node("edge1").decode_tok_s == pytest.approx(0.7 * 20 + 0.3 * 10)
    before = cluster.node("edge1").decode_tok_s
    cluster.on_complete(Outcome("b", "edge1", Status.FAILED, 5.0, 9.0, inference_s=9.0,
                                tokens_in=250, tokens_out=10))
    assert cluster.node("edge1").decode_tok_s == before


def test_perfect_information_keeps_fed_rates_and_learns_nothing():
    cluster = Cluster(FakeClock(), information="perfect")
    cluster.register(edge())
    cluster.set_rates("edge1", prefill_tok_s=2000.0, decode_tok_s=40.0)
    cluster.on_complete(Outcome("a", "edge1", Status.MET, 5.0, 1.6, inference_s=1.5,
                                tokens_in=250, tokens_out=10))
    node = cluster.node("edge1")
    assert (node.prefill_tok_s, node.decode_tok_s) == (2000.0, 40.0)
    # What a node reports of itself is its truth to a perfect-information cluster.
    cluster.heartbeat("edge1", decode_tok_s=30.0, link_rate_mbit=80.0)
    assert (node.decode_tok_s, node.bandwidth_mbit) == (30.0, 80.0)


def test_a_measuring_cluster_does_not_take_reported_rates_on_trust(cluster):
    cluster.register(edge())
    cluster.heartbeat("edge1", decode_tok_s=30.0, link_rate_mbit=80.0)
    node = cluster.node("edge1")
    assert (node.decode_tok_s, node.bandwidth_mbit) == (20.0, 100.0)  # as declared
    cluster.set_bandwidth("edge1", 50.0)  # an external measurement feed is applied
    p = cluster.predict(service(input_bytes=1_250_000), "edge1")
    assert p.transmission_s == pytest.approx(0.2)


@pytest.mark.parametrize("rate", [0.0, -1.0, math.nan, math.inf])
def test_bad_bandwidth_and_rates_are_rejected(cluster, rate):
    cluster.register(edge())
    with pytest.raises(ValueError, match="rate_mbit"):
        cluster.set_bandwidth("edge1", rate)
    with pytest.raises(ValueError, match="decode_tok_s"):
        cluster.set_rates("edge1", 100.0, rate)


def test_missed_heartbeats_expire_and_a_heartbeat_revives(cluster, clock):
    cluster.register(edge())
    cluster.register(edge("edge2"))
    clock.now_s = 4.0
    cluster.heartbeat("edge2")
    clock.now_s = 6.0
    assert cluster.expire() == ["edge1"]
    assert [n.node_id for n in cluster.candidates()] == ["edge2"]
    cluster.heartbeat("edge1")
    assert [n.node_id for n in cluster.candidates()] == ["edge1", "edge2"]


def test_not_serving_is_not_a_candidate(cluster):
    cluster.register(edge())
    cluster.heartbeat("edge1", serving=False)
    assert cluster.candidates() == []


def test_reregistration_keeps_learned_state_and_other_address_is_rejected(cluster):
    cluster.register(edge())
    s = service("a")
    cluster.on_assign(s, cluster.predict(s, "edge1"))
    cluster.heartbeat("edge1", decode_tok_s=30.0)
    learned = cluster.node("edge1").decode_tok_s
    cluster.register(edge())
    assert "a" in cluster.node("edge1").inflight
    assert cluster.node("edge1").decode_tok_s == learned
    with pytest.raises(KeyError, match="edge1.*other:1"):
        cluster.register(edge(address="other:1"))


def test_unknown_node_names_the_registered_ones(cluster):
    cluster.register(edge())
    with pytest.raises(KeyError, match="'nope'.*edge1"):
        cluster.predict(service(), "nope")


@pytest.mark.parametrize("field,value", [
    ("slots", 0), ("link_rate_mbit", 0.0), ("kind", "fog"), ("node_id", ""),
    ("concurrency_slowdown", -0.1), ("idle_power_w", math.nan), ("queue_capacity", -1)])
def test_node_info_validation_names_the_field(cluster, field, value):
    with pytest.raises(ValueError, match=field):
        cluster.register(edge(**{field: value}))


# --- bookings without an outcome (advisor mode: a client that never reports) -----------------
def test_an_overdue_booking_is_dropped_for_prediction_and_capacity(cluster, clock):
    cluster.register(edge(queue_capacity=1))  # c_max 2: one booking leaves room for one more
    s = service("lost", deadline_s=5.0)
    p = cluster.predict(s, "edge1")
    cluster.on_assign(s, p)
    finish_s = p.total_s
    # Kept until deadline_s + heartbeat_timeout_s (5 + 5 s) past its predicted finish ...
    clock.now_s = finish_s + 10.0
    assert cluster.predict(service("b"), "edge1").compute_headroom == pytest.approx(0.0)
    assert len(cluster.node("edge1").inflight) == 1 and cluster.abandoned == 0
    # ... then dropped: no queueing behind it, the full capacity back, counted as abandoned.
    clock.now_s = finish_s + 10.001
    free = cluster.predict(service("b"), "edge1")
    assert free.compute_headroom == pytest.approx(0.5) and free.queueing_s == 0.0
    node = cluster.node("edge1")
    assert node.inflight == {} and node.finishes_s == [] and node.upload_ends_s == []
    assert cluster.abandoned == 1


def test_booking_ttl_s_overrides_the_default_margin(clock):
    cluster = Cluster(clock, booking_ttl_s=0.5)
    cluster.register(edge())
    s = service("lost", deadline_s=5.0)
    p = cluster.predict(s, "edge1")
    cluster.on_assign(s, p)
    clock.now_s = p.total_s + 0.6
    assert [n.node_id for n in cluster.candidates()] == ["edge1"]
    assert cluster.node("edge1").inflight == {} and cluster.abandoned == 1
    with pytest.raises(ValueError, match=r"booking_ttl_s must be >= 0 or None \(got -1"):
        Cluster(clock, booking_ttl_s=-1.0)
    forever = Cluster(clock, booking_ttl_s=math.inf)
    forever.register(edge())
    forever.on_assign(s, forever.predict(s, "edge1"))
    clock.now_s = 1e9
    forever.expire()  # the node is dead now: its booking goes, but not for its age
    assert forever.abandoned == 1


def test_a_reported_booking_is_never_abandoned(cluster, clock):
    cluster.register(edge())
    s = service("a")
    p = cluster.predict(s, "edge1")
    cluster.on_assign(s, p)
    cluster.on_complete(Outcome("a", "edge1", Status.MET, 5.0, 1.0))
    clock.now_s = 100.0
    cluster.heartbeat("edge1")
    cluster.expire()
    assert cluster.predict(s, "edge1").queueing_s == 0.0 and cluster.abandoned == 0


def test_expire_drops_the_bookings_of_a_dead_node(cluster, clock):
    cluster.register(edge(slots=2))
    cluster.register(edge("edge2"))
    for sid in ("a", "b"):
        cluster.on_assign(service(sid), cluster.predict(service(sid), "edge1"))
    cluster.on_assign(service("c"), cluster.predict(service("c"), "edge2"))
    clock.now_s = 4.0
    cluster.heartbeat("edge2")
    clock.now_s = 6.0  # edge1 silent for 6 s > 5 s
    assert cluster.expire() == ["edge1"]
    assert cluster.node("edge1").inflight == {} and cluster.node("edge1").finishes_s == []
    assert list(cluster.node("edge2").inflight) == ["c"]
    assert cluster.abandoned == 2
    # A late outcome of a dropped booking counts once, as that outcome.
    cluster.on_complete(Outcome("a", "edge1", Status.FAILED, 5.0, 6.0))
    assert cluster.abandoned == 1


def test_unassign_undoes_an_assignment(cluster):
    cluster.register(edge())
    s = service("a")
    cluster.on_assign(s, cluster.predict(s, "edge1"))
    assert cluster.unassign("a", "edge1") is True
    node = cluster.node("edge1")
    assert node.inflight == {} and node.finishes_s == [] and node.assigned == 0
    assert cluster.unassign("a", "edge1") is False and node.assigned == 0
    assert cluster.abandoned == 0
