"""The simulator: a small case solved by hand, determinism, accounting."""

from __future__ import annotations

import pytest

from scheduler.cluster import Cluster
from scheduler.policies.base import Decision, Policy
from scheduler.service import Service
from simulator.model import NodeModel
from simulator.runner import Arrival, NodeSetup, simulate
from testbed.fluctuation import RateChange


class RoundRobin(Policy):
    """Test-local round-robin so these tests need no registered policy."""

    name = "test-round-robin"

    def select(self, service: Service, cluster: Cluster) -> Decision:
        nodes = cluster.candidates()
        node = nodes[self.t % len(nodes)]
        self.t += 1
        prediction = cluster.predict(service, node.node_id)
        return Decision(service.id, node.node_id, prediction, prediction.feasible, self.name)


def _service(sid: str, input_bytes: int, tokens_in: int, tokens_out: int,
             deadline_s: float) -> Service:
    return Service(id=sid, prompt="p", input_bytes=input_bytes, max_new_tokens=tokens_out,
                   deadline_s=deadline_s, prompt_tokens=tokens_in)


# One node, one slot: prefill 100 tok/s, decode 10 tok/s, 10 W idle, 50 W busy.
HAND_MODEL = NodeModel(prefill_tok_s=100.0, decode_tok_s=10.0, concurrency_slowdown=0.0,
                       idle_power_w=10.0, max_power_w=50.0, name="hand")
HAND_NODE = NodeSetup("edge1", "edge", HAND_MODEL, slots=1, queue_capacity=4,
                      link_rate_mbit=8.0, j_per_bit=1e-8)  # 8 Mbit/s = 1 MB/s


def test_two_services_on_one_link_and_one_node_match_the_hand_solution():
    # A: 1 MB at t=0, 100 tokens in, 10 out (2 s alone on the node), requirement 4 s.
    # B: 0.6 MB at t=0.5, 50 in, 5 out (1 s alone), requirement 3.9 s.
    a = _service("a", 1_000_000, 100, 10, 4.0)
    b = _service("b", 600_000, 50, 5, 3.9)
    result = simulate(RoundRobin(), [HAND_NODE], [Arrival(0.0, a), Arrival(0.5, b)])
    rows = {r.service_id: r for r in result.requests}
    # Upload: A alone 0-0.5 s sends 0.5 MB; then A and B share 1 MB/s (0.5 MB/s each): A's
    # last 0.5 MB ends at 1.5 s, when B has sent 0.5 MB; B's last 0.1 MB alone ends at 1.6 s.
    # Node: A runs 1.5-3.5 s; B waits 1.6-3.5 s and runs 3.5-4.5 s.
    expected = {
        # transmission, queueing, inference, total, status
        "a": (1.5, 0.0, 2.0, 3.5, "met"),
        "b": (1.1, 1.9, 1.0, 4.0, "missed"),
    }
    for sid, (tx, q, inf, total, status) in expected.items():
        row = rows[sid]
        assert row.transmission_s == pytest.approx(tx, abs=1e-12)
        assert row.queueing_s == pytest.approx(q, abs=1e-12)
        assert row.inference_s == pytest.approx(inf, abs=1e-12)
        assert row.total_s == pytest.approx(total, abs=1e-12)
        assert row.status == status
    # Energy: bytes x 8 x 1e-8 J/bit; inference at P_idle/1 + (P_max - P_idle)/1 = 50 W;
    # idle share P_idle x (transmission + queueing).
    assert rows["a"].transmission_j == pytest.approx(0.08, abs=1e-12)
    assert rows["a"].inference_j == pytest.approx(100.0, abs=1e-9)
    assert rows["a"].idle_j == pytest.approx(15.0, abs=1e-9)
    assert rows["b"].transmission_j == pytest.approx(0.048, abs=1e-12)
    assert rows["b"].inference_j == pytest.approx(50.0, abs=1e-9)
    assert rows["b"].idle_j == pytest.approx(30.0, abs=1e-9)
    (node,) = result.nodes
    # Busy 1.5-4.5 s of a 4.5 s run: idle 1.5 s at 10 W.
    assert node.busy_s == pytest.approx(3.0, abs=1e-12)
    assert node.idle_s == pytest.approx(1.5, abs=1e-12)
    assert node.idle_j == pytest.approx(15.0, abs=1e-9)
    assert node.inference_j == pytest.approx(150.0, abs=1e-9)
    assert result.makespan_s == pytest.approx(4.5, abs=1e-12)


def test_a_rate_change_mid_upload_banks_progress_at_the_old_rate():
    # 1 MB at 8 Mbit/s for 0.5 s (0.5 MB), then 4 Mbit/s (0.5 MB/s): 1 s more.
    a = _service("a", 1_000_000, 100, 10, 10.0)
    result = simulate(RoundRobin(), [HAND_NODE], [Arrival(0.0, a)],
                      rate_changes=[RateChange(0.5, "edge1", 4.0)])
    (row,) = result.requests
    assert row.transmission_s == pytest.approx(1.5, abs=1e-12)
    assert row.total_s == pytest.approx(3.5, abs=1e-12)
