"""The simulator: a small case solved by hand, determinism, accounting."""

from __future__ import annotations

import pytest

from scheduler.cluster import Cluster
from scheduler.policies.base import Decision, Policy
from scheduler.service import Service
from simulator.model import NodeModel
from scenarios.workload import WorkloadItem
from simulator.runner import NodeSetup, simulate
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
    result = simulate(RoundRobin(), [HAND_NODE], [WorkloadItem(0.0, a), WorkloadItem(0.5, b)])
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
    result = simulate(RoundRobin(), [HAND_NODE], [WorkloadItem(0.0, a)],
                      rate_changes=[RateChange(0.5, "edge1", 4.0)])
    (row,) = result.requests
    assert row.transmission_s == pytest.approx(1.5, abs=1e-12)
    assert row.total_s == pytest.approx(3.5, abs=1e-12)


# --- scenario-driven runs ---------------------------------------------------------------------
from scenarios.results import summarise  # noqa: E402
from scenarios.spec import load_spec  # noqa: E402
from simulator import world  # noqa: E402
from simulator.cells import FLUCTUATING, Cell, cell_spec, run_cell  # noqa: E402

ALL_POLICIES = ["cs-ucb", "cloud-only", "edge-only", "edge-cloud", "round-robin", "random",
                "least-loaded", "clairvoyant", "slo-aware", "linucb"]


def _paper(requests: int = 400, **overrides):
    spec = load_spec("paper", **{"workload.requests": requests, **overrides})
    return cell_spec(spec, Cell("xeon-4214r/llama2-7b", FLUCTUATING))


def _run(spec, policy: str):
    return simulate(policy, world.node_setups(spec), world.arrivals(spec), seed=spec.seed,
                    rate_changes=world.rate_changes(spec))


def test_the_same_seed_gives_identical_results_and_another_seed_does_not():
    spec = _paper()
    first, second = _run(spec, "cs-ucb"), _run(spec, "cs-ucb")
    assert first.requests == second.requests
    assert first.nodes == second.nodes
    assert first.links == second.links
    other = _run(_paper(seed=spec.seed + 1), "cs-ucb")
    assert [r.total_s for r in other.requests] != [r.total_s for r in first.requests]


@pytest.mark.parametrize("policy", ALL_POLICIES)
def test_every_service_finishes_or_fails_once_and_energy_parts_sum(policy):
    spec = _paper()
    result = _run(spec, policy)
    ids = [r.service_id for r in result.requests]
    assert sorted(ids) == sorted(item.service.id for item in world.arrivals(spec))
    for row in result.requests:
        assert row.status in ("met", "missed", "failed")
        assert row.total_j == pytest.approx(row.transmission_j + row.inference_j + row.idle_j)
        if row.status != "failed":
            assert row.total_s == pytest.approx(row.transmission_s + row.queueing_s
                                                + row.inference_s, abs=1e-9)
            assert (row.status == "met") == (row.total_s <= row.deadline_s)
    # summarise raises AccountingError if a service is lost or counted twice.
    summary = summarise(result.requests, result.nodes, generated=len(ids))[policy]
    for node in result.nodes:
        assert node.busy_s + node.idle_s == pytest.approx(result.makespan_s)
    # The nodes' inference energy is exactly the services' shares of it.
    assert sum(n.inference_j for n in result.nodes) == pytest.approx(
        summary["energy_j"]["inference"], rel=1e-9)


def test_a_full_queue_fails_the_service_and_says_why():
    model = NodeModel(prefill_tok_s=100.0, decode_tok_s=1.0, concurrency_slowdown=0.0,
                      idle_power_w=1.0, max_power_w=2.0)
    node = NodeSetup("edge1", "edge", model, slots=1, queue_capacity=1, link_rate_mbit=100.0,
                     j_per_bit=0.0)
    arrivals = [WorkloadItem(0.0, _service(f"s{i}", 100, 1, 10, 5.0)) for i in range(3)]
    rows = {r.service_id: r for r in simulate(RoundRobin(), [node], arrivals).requests}
    assert [rows[s].status for s in ("s0", "s1", "s2")] == ["missed", "missed", "failed"]
    assert "queue full" in rows["s2"].error


def test_cloud_only_deferral_is_held_before_upload_and_counted_as_queueing():
    spec = _paper(requests=200)
    result = _run(spec, "cloud-only")
    assert {r.node_id for r in result.requests} == {"cloud"}
    assert any(r.queueing_s > 0 for r in result.requests)


def test_a_killed_node_fails_what_it_held_and_gets_no_more_work():
    spec = _paper(requests=300)
    spec = spec.model_copy(update={"faults": []})
    from simulator.runner import Fault

    result = simulate("round-robin", world.node_setups(spec), world.arrivals(spec),
                      seed=spec.seed, faults=[Fault(5.0, "kill-node", "edge1")],
                      heartbeat_timeout_s=1.0)
    after = [r for r in result.requests if r.node_id == "edge1" and r.arrival_s > 7.0]
    assert after == []  # expired after the 1 s heartbeat timeout: no longer a candidate
    assert any(r.node_id == "edge1" and r.status == "failed" for r in result.requests)


def test_run_cell_writes_the_results_layout_marked_simulated(tmp_path):
    import json

    spec = load_spec("paper")
    result = run_cell(spec, Cell("xeon-4214r/yi-6b", "stable"), ["cs-ucb", "edge-cloud"],
                      requests=100, out_dir=tmp_path, plots=False)
    for name in ("config.yaml", "requests.csv", "nodes.csv", "links.csv", "summary.json"):
        assert (tmp_path / name).exists(), name
    data = json.loads((tmp_path / "summary.json").read_text())
    assert data["world"] == "simulated"
    assert data["edge_profile"] == "xeon-4214r/yi-6b"
    assert set(data["policies"]) == {"cs-ucb", "edge-cloud"}
    assert result.summary["cs-ucb"]["requests"] == 100


def test_a_service_unfinished_at_give_up_fails_as_the_emulated_driver_would():
    # Same hand world: A finishes at 3.5 s, B at 4.0 s after arrival; give up at 3.8 s.
    a = _service("a", 1_000_000, 100, 10, 4.0)
    b = _service("b", 600_000, 50, 5, 3.9)
    result = simulate(RoundRobin(), [HAND_NODE], [WorkloadItem(0.0, a), WorkloadItem(0.5, b)],
                      give_up_s=3.8)
    rows = {r.service_id: r for r in result.requests}
    assert rows["a"].status == "met"
    assert rows["b"].status == "failed" and "gave up after 3.8 s" in rows["b"].error
    # B ran 3.5-4.3 s (given up at 0.5 + 3.8), not until 4.5 s: 0.8 s at 50 W.
    assert rows["b"].inference_s == pytest.approx(0.8, abs=1e-12)
    assert rows["b"].inference_j == pytest.approx(40.0, abs=1e-9)
    (node,) = result.nodes
    assert node.inference_j == pytest.approx(140.0, abs=1e-9)


class LearningRoundRobin(RoundRobin):
    """Round-robin that keeps what it was told, and the cluster it decided on."""

    name = "test-learning-round-robin"

    def __init__(self) -> None:
        super().__init__()
        self.learned: dict[str, object] = {}
        self.cluster: Cluster | None = None

    def select(self, service: Service, cluster: Cluster) -> Decision:
        self.cluster = cluster
        return super().select(service, cluster)

    def update(self, outcome) -> float:
        self.learned[outcome.service_id] = outcome
        return super().update(outcome)


def test_give_up_frees_the_slot_and_the_queue_place_at_once_charging_only_what_was_spent():
    # One node, one slot, 1 MB/s link, give up 5 s after arrival.
    # C: t=0, 1 MB (uploaded at 1.0 s), 50 in, 5 out: queued at 1.0 s behind A.
    # A: t=0.5, nothing to upload, 100 in, 100 out (11 s alone): runs from 0.5 s.
    # B: t=2, nothing to upload, 50 in, 5 out (1 s alone): queued behind C.
    # C gives up at 5.0 s still queued (never runs); A gives up at 5.5 s mid-run, and B takes
    # the slot at that instant: 5.5-6.5 s, 4.5 s after arrival (met). Without the cancel, A
    # would hold the slot until 11.5 s and B would give up in the queue.
    c = _service("c", 1_000_000, 50, 5, 10.0)
    a = _service("a", 0, 100, 100, 10.0)
    b = _service("b", 0, 50, 5, 10.0)
    policy = LearningRoundRobin()
    result = simulate(policy, [HAND_NODE], [WorkloadItem(0.0, c), WorkloadItem(0.5, a), WorkloadItem(2.0, b)],
                      give_up_s=5.0)
    rows = {r.service_id: r for r in result.requests}
    expected = {
        # status, transmission, queueing, inference, total, inference_j, idle_j
        "c": ("failed", 1.0, 4.0, 0.0, 5.0, 0.0, 50.0),  # idle: 10 W x (1 + 4) s
        "a": ("failed", 0.0, 0.0, 5.0, 5.0, 250.0, 0.0),  # 50 W x 5 s run
        "b": ("met", 0.0, 3.5, 1.0, 4.5, 50.0, 35.0),
    }
    for sid, (status, tx, q, inf, total, inf_j, idle_j) in expected.items():
        row = rows[sid]
        assert row.status == status, sid
        assert row.transmission_s == pytest.approx(tx, abs=1e-12), sid
        assert row.queueing_s == pytest.approx(q, abs=1e-12), sid
        assert row.inference_s == pytest.approx(inf, abs=1e-12), sid
        assert row.total_s == pytest.approx(total, abs=1e-12), sid
        assert row.inference_j == pytest.approx(inf_j, abs=1e-9), sid
        assert row.idle_j == pytest.approx(idle_j, abs=1e-9), sid
    assert rows["c"].error == "gave up after 5 s (queued)"
    assert rows["a"].error == "gave up after 5 s (running)"
    assert rows["c"].transmission_j == pytest.approx(0.08, abs=1e-12)  # its upload was done
    # A had prefilled (1 s) and decoded 4 s x 10 tok/s when it was cancelled.
    assert (rows["a"].tokens_in, rows["a"].tokens_out) == (100, 40)
    (node,) = result.nodes
    # Busy 0.5-6.5 s (A, then B); the node's inference energy is A's 5 s and B's 1 s only.
    assert node.busy_s == pytest.approx(6.0, abs=1e-12)
    assert node.inference_j == pytest.approx(300.0, abs=1e-9)
    assert result.makespan_s == pytest.approx(6.5, abs=1e-12)
    assert node.idle_s == pytest.approx(0.5, abs=1e-12)
    # The policy learned each give-up as a failure, and the cluster released their bookings.
    assert policy.learned["a"].status.name == "FAILED"
    assert policy.learned["c"].status.name == "FAILED"
    assert set(policy.learned) == {"a", "b", "c"}
    assert policy.cluster.nodes["edge1"].inflight == {}


def test_give_up_during_an_upload_stops_it_and_the_link_carries_the_rest_alone():
    # A: t=0, 10 MB (10 s alone at 1 MB/s); B: t=1, 1 MB, 10 in, 1 out (0.2 s alone). A alone
    # 0-1 s (1 MB), then 0.5 MB/s each; A gives up at 2.0 s having sent 1.5 MB; B has sent
    # 0.5 MB and sends its last 0.5 MB alone at 1 MB/s: uploaded at 2.5 s, done at 2.7 s.
    a = _service("a", 10_000_000, 50, 5, 10.0)
    b = _service("b", 1_000_000, 10, 1, 10.0)
    result = simulate(RoundRobin(), [HAND_NODE], [WorkloadItem(0.0, a), WorkloadItem(1.0, b)],
                      give_up_s=2.0)
    rows = {r.service_id: r for r in result.requests}
    assert rows["a"].status == "failed" and rows["a"].error == "gave up after 2 s (uploading)"
    assert rows["a"].transmission_s == pytest.approx(2.0, abs=1e-12)
    assert rows["a"].transmission_j == pytest.approx(1_500_000 * 8 * 1e-8, rel=1e-9)
    assert rows["a"].inference_j == 0.0
    assert rows["b"].status == "met"
    assert rows["b"].transmission_s == pytest.approx(1.5, abs=1e-12)
    assert rows["b"].total_s == pytest.approx(1.7, abs=1e-12)
    (node,) = result.nodes
    assert node.busy_s == pytest.approx(0.2, abs=1e-12)  # A never reached the node
