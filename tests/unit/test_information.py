"""The information model (scheduler.information): what a policy may see, and that it learns.

Structural: nothing a policy receives carries a true rate, a true bandwidth or a true output
length, except a clairvoyant policy's cluster. Learning: rates declared 30% off and a link
slower than declared are learned from the outcomes of the simulated world.
"""

from __future__ import annotations

import dataclasses

import pytest

from scheduler.cluster import Cluster, NodeState
from scheduler.information import (TransferBandwidth, declared_factors, information_for,
                                   load_true_output_tokens)
from scheduler.policies.base import Decision, Policy
from scheduler.service import Service
from scenarios.workload import WorkloadItem
from simulator.ceiling import ceiling
from simulator.model import NodeModel
from simulator.runner import NodeSetup, simulate
from testbed.fluctuation import RateChange

MODEL = NodeModel(prefill_tok_s=400.0, decode_tok_s=20.0, concurrency_slowdown=0.0,
                  idle_power_w=10.0, max_power_w=50.0, name="test")


def setup(node_id: str = "edge1", rate_mbit: float = 100.0) -> NodeSetup:
    return NodeSetup(node_id, "edge", MODEL, slots=1, queue_capacity=64,
                     link_rate_mbit=rate_mbit, j_per_bit=0.0)


class Spy(Policy):
    """Always the first candidate; records what its cluster believed at every decision."""

    name = "test-spy"

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[float, float, float]] = []  # (prefill, decode, bandwidth)
        self.clusters: list[Cluster] = []

    def select(self, service: Service, cluster: Cluster) -> Decision:
        node = cluster.candidates()[0]
        self.seen.append((node.prefill_tok_s, node.decode_tok_s, node.bandwidth_mbit))
        self.clusters.append(cluster)
        self.t += 1
        p = cluster.predict(service, node.node_id)
        return Decision(service.id, node.node_id, p, p.feasible, self.name)


class ClairvoyantSpy(Spy):
    name = "test-clairvoyant-spy"
    information = "clairvoyant"


def one_by_one(n: int, *, input_bytes: int = 1000, output_tokens: int = 40,
               gap_s: float = 10.0) -> list[WorkloadItem]:
    """Services far enough apart that each runs alone (no sharing to model)."""
    return [WorkloadItem(i * gap_s, Service(id=f"s{i}", prompt="p", input_bytes=input_bytes,
                                            max_new_tokens=100, deadline_s=9.0,
                                            prompt_tokens=200), output_tokens)
            for i in range(n)]


def test_nothing_a_policy_receives_carries_a_true_output_length():
    assert "output_tokens" not in {f.name for f in dataclasses.fields(Service)}
    state_fields = {f.name for f in dataclasses.fields(NodeState)}
    assert not any("true" in name for name in state_fields)
    cluster = Cluster(lambda: 0.0)
    assert cluster.information == "measured" and cluster._true_output_tokens is None
    with pytest.raises(ValueError, match="clairvoyant cluster, and only"):
        Cluster(lambda: 0.0, true_output_tokens={"s0": 3})
    with pytest.raises(ValueError, match="clairvoyant cluster, and only"):
        Cluster(lambda: 0.0, information="clairvoyant")


def test_a_run_cannot_make_every_policy_clairvoyant():
    assert information_for("measured", None) == "measured"
    assert information_for("perfect", "clairvoyant") == "clairvoyant"
    with pytest.raises(ValueError, match="information must be one of measured, perfect"):
        information_for("clairvoyant", None)


def test_a_measuring_policy_sees_declared_rates_and_never_the_fed_truth():
    seed = next(s for s in range(100) if declared_factors(["edge1"], 0.3, s)["edge1"] > 1.2)
    factor = declared_factors(["edge1"], 0.3, seed)["edge1"]
    spy = Spy()
    # The true link is at 60 Mbit/s from the start; uploads are too small to teach anything.
    simulate(spy, [setup()], one_by_one(3), seed=seed, declared_error=0.3,
             rate_changes=[RateChange(0.0, "edge1", 60.0)])
    prefill, decode, bandwidth = spy.seen[0]
    assert (prefill, decode) == pytest.approx((400.0 * factor, 20.0 * factor))
    assert all(seen[2] == 100.0 for seen in spy.seen)  # nominal, never the true 60


def test_perfect_information_is_fed_the_truth_and_declares_no_error():
    spy = Spy()
    simulate(spy, [setup()], one_by_one(2), seed=3, declared_error=0.3, information="perfect",
             rate_changes=[RateChange(0.0, "edge1", 60.0)])
    assert spy.seen[0] == (400.0, 20.0, 60.0)


@pytest.mark.parametrize("seed_sign", [+1, -1])
def test_rates_declared_30_percent_off_are_learned_within_5_percent(seed_sign):
    # A seed whose declared rates are 25-30% too high (+1) or too low (-1).
    seed = next(s for s in range(1000)
                if 0.25 <= seed_sign * (declared_factors(["edge1"], 0.3, s)["edge1"] - 1))
    spy = Spy()
    simulate(spy, [setup()], one_by_one(8), seed=seed, declared_error=0.3)
    first, last = spy.seen[0], spy.seen[-1]
    assert abs(first[1] / 20.0 - 1) >= 0.25
    # After 7 outcomes (EWMA weight 0.3: 0.7**7 x 30% = 2.5%) within 5% of the truth.
    assert last[0] == pytest.approx(400.0, rel=0.05)
    assert last[1] == pytest.approx(20.0, rel=0.05)


def test_a_slower_link_is_learned_from_large_transfers():
    spy = Spy()
    simulate(spy, [setup()], one_by_one(9, input_bytes=2_000_000), seed=1,
             rate_changes=[RateChange(0.0, "edge1", 60.0)])
    assert spy.seen[0][2] == 100.0  # the declared rate before any transfer
    assert spy.seen[-1][2] == pytest.approx(60.0, rel=0.05)


def test_transfer_bandwidth_scales_by_the_uploads_sharing_the_link():
    link = TransferBandwidth(100.0, smoothing=1.0)
    assert link.observe(50_000, 0.01, 1) is None  # too small to say anything
    assert link.observe(1_000_000, 0.2, 2) == pytest.approx(80.0)  # 40 Mbit/s of a shared 80
    assert link.rate_mbit == pytest.approx(80.0)
    assert link.observe(1_000_000, 0.0, 1) is None and link.rate_mbit == pytest.approx(80.0)


def test_only_the_clairvoyant_cluster_predicts_with_true_lengths():
    items = one_by_one(2, output_tokens=7)
    spy, seer = Spy(), ClairvoyantSpy()
    simulate(spy, [setup()], items)
    simulate(seer, [setup()], items)
    service = items[0].service
    node = seer.clusters[0].nodes["edge1"]
    # 200 prompt tokens / 400 + 7 true tokens / 20 against the declared cap of 100 tokens.
    assert seer.clusters[0].predict(service, "edge1").inference_s == pytest.approx(0.5 + 0.35)
    assert spy.clusters[0].predict(service, "edge1").inference_s == pytest.approx(0.5 + 5.0)
    assert node.bandwidth_mbit == 100.0


def test_declared_factors_are_seeded_and_bounded():
    a = declared_factors(["edge1", "edge2", "cloud"], 0.3, 7)
    assert a == declared_factors(["cloud", "edge2", "edge1"], 0.3, 7)
    assert all(0.7 <= f <= 1.3 for f in a.values())
    assert declared_factors(["edge1"], 0.0, 7) == {"edge1": 1.0}
    with pytest.raises(ValueError, match=r"declared_error must be a number in \[0, 0.9\]"):
        declared_factors(["edge1"], 1.5, 7)


def test_true_output_tokens_file_errors_name_the_entry(tmp_path):
    path = tmp_path / "w.json"
    path.write_text('[{"service": {"id": "a"}, "output_tokens": 3}]')
    assert load_true_output_tokens(str(path)) == {"a": 3}
    path.write_text('[{"service": {"id": "a"}, "output_tokens": -1}]')
    with pytest.raises(ValueError, match="entry 0: output_tokens"):
        load_true_output_tokens(str(path))


def test_the_ceiling_bounds_every_policy_and_is_solved_by_hand():
    # One node, 8 Mbit/s (1 MB/s), 1 slot; services of 1 MB, 200 prompt tokens, 40 answer
    # tokens: alone 1 + 0.5 + 2 = 3.5 s. Three at once with a 5 s requirement: alone each
    # meets it, together at most one can (the second waits for the first's slot).
    items = [WorkloadItem(0.0, Service(id=f"s{i}", prompt="p", input_bytes=1_000_000,
                                       max_new_tokens=100, deadline_s=5.0, prompt_tokens=200),
                          40) for i in range(3)]
    node = setup(rate_mbit=8.0)
    bound = ceiling([node], items)
    assert bound.success_rate == 100.0 and bound.mean_best_total_s == pytest.approx(3.5)
    result = simulate(Spy(), [node], items)
    met = sum(r.status == "met" for r in result.requests)
    assert 100.0 * met / 3 <= bound.success_rate and met < 3
    late = [WorkloadItem(0.0, dataclasses.replace(items[0].service, deadline_s=3.0), 40)]
    assert ceiling([node], late).success_rate == 0.0


def test_a_slowed_node_is_fed_to_perfect_information_and_learned_under_measured():
    from simulator.runner import Fault

    slow = [Fault(at_s=25.0, kind="slow-node", target="edge1", duration_s=1000.0, factor=2.0)]
    perfect, measured = Spy(), Spy()
    simulate(perfect, [setup()], one_by_one(16), information="perfect", faults=slow)
    simulate(measured, [setup()], one_by_one(16), faults=slow)
    assert perfect.seen[2][:2] == (400.0, 20.0) and perfect.seen[3][:2] == (200.0, 10.0)
    assert measured.seen[3][:2] == (400.0, 20.0)  # it has not seen a slow outcome yet
    # Twice as slow is 100% off; EWMA 0.3 after 12 slow outcomes: 0.7**12 = 1.4% of that.
    assert measured.seen[-1][1] == pytest.approx(10.0, rel=0.05)
