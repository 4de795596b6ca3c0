"""A service's true output length is the workload's, not the scheduler's: the policy-facing type
cannot carry it, predictions use an estimate learned from measured outcomes, and the simulated
node generates exactly the true length (issue 11)."""

from __future__ import annotations

import dataclasses

import pytest

from perllm.v1 import common_pb2
from scenarios.workload import WorkloadItem
from scheduler import convert
from scheduler.outcome import Energy, completed_outcome
from scheduler.output_length import OutputLengthEstimator
from scheduler.service import Service
from simulator.model import NodeModel
from simulator.runner import NodeSetup, simulate
from tests.unit.conftest import make_cluster, node_info

# What a client declares. A field added here is one every policy sees: if it is the true
# output length (or anything else only the world knows), the information model is broken.
DECLARED = {"id", "prompt", "input_bytes", "max_new_tokens", "deadline_s", "service_class",
            "temperature", "top_k", "seed", "prompt_tokens"}


def _service(sid: str = "s1", cap: int = 100, cls: str = "chat") -> Service:
    return Service(id=sid, prompt="hi", input_bytes=400, max_new_tokens=cap, deadline_s=5.0,
                   service_class=cls)


def test_the_policy_facing_service_carries_only_declared_fields():
    assert {f.name for f in dataclasses.fields(Service)} == DECLARED


def test_the_scheduler_does_not_read_the_emulated_output_length():
    pb = convert.service_to_proto(_service(), emulated_output_tokens=7)
    assert pb.emulated_output_tokens == 7
    assert convert.service_from_proto(pb) == convert.service_from_proto(
        convert.service_to_proto(_service()))


def test_a_workload_item_holds_the_true_length_within_the_cap():
    assert WorkloadItem(0.0, _service(cap=40)).output_tokens == 40  # default: the cap
    assert WorkloadItem(0.0, _service(cap=40), output_tokens=12).output_tokens == 12
    with pytest.raises(ValueError, match=r"output_tokens of s1 must be in \[1, "
                                         r"max_new_tokens=40\] \(got 41\)"):
        WorkloadItem(0.0, _service(cap=40), output_tokens=41)


def test_the_estimator_starts_at_the_cap_then_learns_a_ratio_quantile():
    est = OutputLengthEstimator(quantile=0.9, window=10, min_samples=5)
    for tokens in (10, 20, 30, 40):
        est.observe("chat", 100, tokens)
    assert est.estimate("chat", 100) == 100  # 4 < min_samples: the cap
    est.observe("chat", 100, 50)
    assert est.estimate("chat", 100) == pytest.approx(50)  # ceil(0.9 x 5) = 5th of 5
    assert est.estimate("chat", 200) == pytest.approx(100)  # the ratio, at another cap
    assert est.estimate("code", 64) == 64  # another class knows nothing yet
    for _ in range(10):  # the window slides: only the last 10 count
        est.observe("chat", 100, 5)
    assert est.estimate("chat", 100) == pytest.approx(5)


def test_predictions_shrink_as_short_answers_are_measured():
    cluster = make_cluster(node_info("edge1", decode=10.0))
    service = _service(cap=100)
    before = cluster.predict(service, "edge1").inference_s
    for i in range(5):
        s = _service(f"s{i}", cap=100)
        cluster.on_assign(s, cluster.predict(s, "edge1"))
        cluster.on_complete(completed_outcome(
            s, "edge1", total_s=2.0, transmission_s=0.0, queueing_s=0.0, inference_s=2.0,
            tokens_in=100, tokens_out=20, energy=Energy()))
    after = cluster.predict(service, "edge1").inference_s
    assert after < 0.5 * before  # about 20 of 100 tokens to decode now


def test_the_simulated_node_generates_exactly_the_true_length():
    model = NodeModel(prefill_tok_s=1000.0, decode_tok_s=50.0, idle_power_w=10.0,
                      max_power_w=20.0, concurrency_slowdown=0.0)
    setup = NodeSetup(node_id="edge1", kind="edge", model=model, slots=1, queue_capacity=8,
                      link_rate_mbit=100.0, j_per_bit=0.0)
    items = [WorkloadItem(float(i), _service(f"s{i}", cap=64), output_tokens=1 + 9 * i)
             for i in range(6)]
    result = simulate("round-robin", [setup], items)
    by_id = {r.service_id: r for r in result.requests}
    for item in items:
        row = by_id[item.service.id]
        assert row.status != "failed"
        assert row.tokens_out == item.output_tokens <= item.service.max_new_tokens
        assert row.predicted_total_s > 0  # the decision's D-hat travels with the outcome
