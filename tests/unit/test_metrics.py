"""Prometheus metrics of a real scheduler and a real node, in-process on free ports: real gRPC
calls move the counters by exactly their amounts with their labels, the gauges show the state
at scrape time, the endpoint is off by default, and the emulated run's scraper keeps a failed
fetch's error."""

from __future__ import annotations

import socket
import time
import urllib.request

import grpc
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from nodes.config import NodeConfig
from perllm.v1 import common_pb2, scheduler_pb2, scheduler_pb2_grpc
from scenarios.scrape import scrape
from scheduler.__main__ import _parser as scheduler_cli
from scheduler.config import ServerConfig
from scheduler.options import from_args
from scheduler.server import create_server, stop_server
from tests.unit.test_node_server import Node, _config, _profile, tiny  # noqa: F401 (fixture)

TIMEOUT_S = 10.0


def samples(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The perllm_ samples served on 127.0.0.1:port, by (name, sorted labels)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=TIMEOUT_S) as r:
        text = r.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples
            if s.name.startswith("perllm_")}


def value(found: dict, name: str, **labels: str) -> float | None:
    return found.get((name, tuple(sorted(labels.items()))))


# --- the scheduler --------------------------------------------------------------------------
@pytest.fixture
def scheduler():
    server, port, servicer = create_server(ServerConfig(
        policy="round-robin", host="127.0.0.1", port=0, metrics_port=0))
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield scheduler_pb2_grpc.SchedulerServiceStub(channel), servicer
    channel.close()
    stop_server(server, servicer, grace_s=0)


def _service(service_id: str) -> common_pb2.Service:
    return common_pb2.Service(id=service_id, prompt="Summarise this report", input_bytes=2000,
                              max_new_tokens=16, deadline_s=4.0, service_class="chat")


def _outcome(service_id: str, node_id: str, status: int, total_s: float,
             **energy: float) -> scheduler_pb2.ReportOutcomeRequest:
    return scheduler_pb2.ReportOutcomeRequest(outcome=common_pb2.Outcome(
        service_id=service_id, node_id=node_id, service_class="chat", status=status,
        transmission_s=0.1, inference_s=total_s - 0.1, total_s=total_s, deadline_s=4.0,
        tokens_out=16, input_bytes=2000, energy=common_pb2.EnergyBreakdown(**energy)))


def test_scheduler_counts_decisions_outcomes_times_and_energy(scheduler):
    stub, servicer = scheduler
    for node_id, rate in (("edge1", 100.0), ("edge2", 300.0)):
        stub.RegisterNode(scheduler_pb2.RegisterNodeRequest(
            node_id=node_id, address=f"10.0.0.9:{len(node_id)}", kind=common_pb2.NODE_KIND_EDGE,
            slots=1, link_rate_mbit=rate, idle_power_w=25, max_power_w=100), timeout=TIMEOUT_S)
    # round-robin: edge1, edge2, then the batch edge1, edge2
    s1 = stub.Schedule(scheduler_pb2.ScheduleRequest(service=_service("s1")), timeout=TIMEOUT_S)
    s2 = stub.Schedule(scheduler_pb2.ScheduleRequest(service=_service("s2")), timeout=TIMEOUT_S)
    batch = stub.ScheduleBatch(scheduler_pb2.ScheduleBatchRequest(
        services=[_service("s3"), _service("s4")]), timeout=TIMEOUT_S)
    assert [s1.node_id, s2.node_id] + [a.node_id for a in batch.assignments] == [
        "edge1", "edge2", "edge1", "edge2"]
    stub.Heartbeat(scheduler_pb2.HeartbeatRequest(node_id="edge1", queue_length=2,
                                                  busy_slots=1), timeout=TIMEOUT_S)
    met = _outcome("s1", "edge1", common_pb2.OUTCOME_STATUS_MET, 3.1, transmission_j=0.5,
                   inference_j=5.0, idle_j=1.0)
    stub.ReportOutcome(met, timeout=TIMEOUT_S)
    stub.ReportOutcome(met, timeout=TIMEOUT_S)  # a client's retry: not counted again
    stub.ReportOutcome(_outcome("s2", "edge2", common_pb2.OUTCOME_STATUS_MISSED, 7.0,
                                inference_j=2.0), timeout=TIMEOUT_S)
    stub.ReportOutcome(_outcome("s3", "edge1", common_pb2.OUTCOME_STATUS_FAILED, 0.5),
                       timeout=TIMEOUT_S)

    found = samples(servicer.scheduler.metrics.port)
    for node_id in ("edge1", "edge2"):
        assert value(found, "perllm_scheduler_decisions_total", policy="round-robin",
                     node=node_id) == 2
    for status in ("met", "missed", "failed"):
        assert value(found, "perllm_scheduler_outcomes_total", status=status) == 1
    for part, joules in (("transmission", 0.5), ("inference", 7.0), ("idle", 1.0)):
        assert value(found, "perllm_scheduler_energy_joules_total", part=part) == joules
    # Completed services only (the failed s3 is not timed), each with its own prediction.
    for node_id, decision, measured_s in (("edge1", s1, 3.1), ("edge2", s2, 7.0)):
        assert value(found, "perllm_scheduler_predicted_total_seconds_count",
                     node=node_id) == 1
        assert value(found, "perllm_scheduler_predicted_total_seconds_sum",
                     node=node_id) == pytest.approx(decision.predicted_total_s)
        assert value(found, "perllm_scheduler_measured_total_seconds_sum",
                     node=node_id) == pytest.approx(measured_s)
        assert value(found, "perllm_scheduler_prediction_error_seconds_count",
                     node=node_id) == 1
        error_s = measured_s - decision.predicted_total_s
        below = value(found, "perllm_scheduler_prediction_error_seconds_bucket", node=node_id,
                      le="0.0")
        assert below == (1 if error_s <= 0 else 0)
    # Gauges as the scheduler sees them now: s4 is still booked on edge2.
    assert value(found, "perllm_scheduler_booked_services", node="edge1") == 0
    assert value(found, "perllm_scheduler_booked_services", node="edge2") == 1
    assert value(found, "perllm_scheduler_node_queue_length", node="edge1") == 2
    assert value(found, "perllm_scheduler_node_busy_slots", node="edge1") == 1
    assert value(found, "perllm_scheduler_node_bandwidth_mbit", node="edge1") == 100
    assert value(found, "perllm_scheduler_node_bandwidth_mbit", node="edge2") == 300
    assert value(found, "perllm_scheduler_node_up", node="edge2") == 1
    assert value(found, "perllm_scheduler_abandoned_services") == 0


def test_scheduler_metrics_stop_with_the_server():
    server, _, servicer = create_server(ServerConfig(host="127.0.0.1", metrics_port=0))
    server.start()
    port = servicer.scheduler.metrics.port
    assert value(samples(port), "perllm_scheduler_abandoned_services") == 0
    stop_server(server, servicer, grace_s=0)
    with pytest.raises(OSError):
        samples(port)


def test_metrics_are_off_by_default():
    assert ServerConfig().metrics_port is None
    assert NodeConfig().metrics_port is None
    assert from_args(ServerConfig, scheduler_cli().parse_args(["serve"])).metrics_port is None
    server, port, servicer = create_server(ServerConfig(host="127.0.0.1"))
    server.start()
    try:
        metrics = servicer.scheduler.metrics
        assert metrics.port is None  # nothing bound
        stub = scheduler_pb2_grpc.SchedulerServiceStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
        stub.RegisterNode(scheduler_pb2.RegisterNodeRequest(
            node_id="edge1", address="10.0.0.9:1", kind=common_pb2.NODE_KIND_EDGE, slots=1,
            link_rate_mbit=100), timeout=TIMEOUT_S)
        stub.Schedule(scheduler_pb2.ScheduleRequest(service=_service("s1")), timeout=TIMEOUT_S)
        assert b"perllm_scheduler_decisions_total{" not in generate_latest(metrics.registry)
    finally:
        stop_server(server, servicer, grace_s=0)


def test_a_metrics_port_in_use_is_a_value_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ValueError, match=f"metrics endpoint 127.0.0.1:{port}"):
            create_server(ServerConfig(host="127.0.0.1", metrics_port=port))
    with pytest.raises(ValueError, match="metrics_port"):
        ServerConfig(metrics_port=70000).validate()


# --- the node -------------------------------------------------------------------------------
def _eventually(check, timeout_s: float = TIMEOUT_S):
    """The scrape for which `check` holds, retried until timeout_s (the end of a cancelled
    stream is counted when gRPC lets its generator finish)."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = check()
        if found is not None or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_node_counts_requests_tokens_times_and_energy(tiny, tmp_path):
    profile = _profile(tmp_path, "slow", prefill_tok_s=1000.0, decode_tok_s=20.0)
    node = Node(_config(tiny, profile=str(profile), slots=1, metrics_port=0))
    try:
        port = node.server.servicer.metrics.port
        results = [node.run(max_new_tokens=n)[1] for n in (3, 5)]
        with pytest.raises(grpc.RpcError) as err:
            node.run(prompt="", max_new_tokens=4)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        stream = node.generate(max_new_tokens=200)  # 10 s at 20 tokens/s
        next(stream)
        stream.cancel()

        def cancelled():
            found = samples(port)
            if value(found, "perllm_node_requests_total", result="cancelled") == 1:
                return found
            return None

        found = _eventually(cancelled)
        assert found is not None, "the cancelled stream was not counted"
        assert value(found, "perllm_node_requests_total", result="ok") == 2
        assert value(found, "perllm_node_requests_total", result="invalid_argument") == 1
        assert value(found, "perllm_node_tokens_generated_total") == 8
        assert value(found, "perllm_node_inference_seconds_count") == 2
        assert value(found, "perllm_node_inference_seconds_sum") == pytest.approx(
            sum(r.inference_s for r in results))
        # Every token of the two completed requests was paced, and the cancelled one's first.
        assert value(found, "perllm_node_pacing_lateness_seconds_count") >= 9
        assert value(found, "perllm_node_slots") == 1
        assert value(found, "perllm_node_queue_length") == 0
        assert value(found, "perllm_node_energy_joules_total", part="inference",
                     method="modelled") > 0
        assert value(found, "perllm_node_energy_joules_total", part="idle",
                     method="modelled") >= 0
    finally:
        node.close()
    with pytest.raises(OSError):  # closed with the node
        samples(port)


def test_a_node_that_is_not_serving_counts_unavailable(tiny):
    node = Node(_config(tiny, metrics_port=0), load=False)
    try:
        with pytest.raises(grpc.RpcError) as err:
            node.run(max_new_tokens=4)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        found = samples(node.server.servicer.metrics.port)
        assert value(found, "perllm_node_requests_total", result="unavailable") == 1
        assert value(found, "perllm_node_requests_total", result="ok") is None
    finally:
        node.close()


# --- the emulated run's scraper -------------------------------------------------------------
def test_scrape_writes_each_text_and_a_failed_fetch_as_a_comment(scheduler, tmp_path):
    _, servicer = scheduler
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        dead_port = closed.getsockname()[1]  # bound, never listening: connection refused
        scrape(tmp_path / "metrics", {
            "scheduler": f"http://127.0.0.1:{servicer.scheduler.metrics.port}/metrics",
            "edge1": f"http://127.0.0.1:{dead_port}/metrics"}, timeout_s=2.0)
    text = (tmp_path / "metrics" / "scheduler.prom").read_text()
    assert "perllm_scheduler_abandoned_services 0.0" in text
    failed = (tmp_path / "metrics" / "edge1.prom").read_text()
    assert failed.startswith(f"# scrape of http://127.0.0.1:{dead_port}/metrics failed:")
