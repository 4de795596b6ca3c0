"""The driver's arrival path (issue 13): requests built before the clock starts reach the
scheduler whole, and every record carries the driver's own timing."""

from __future__ import annotations

import json
import time
from concurrent import futures

import grpc
import pytest

from perllm.v1 import common_pb2, scheduler_pb2, scheduler_pb2_grpc
from scenarios.driver import (Driver, failed_record, from_arrival, outcome_record,
                              read_outcome_record)
from scenarios.workload import WorkloadItem, attachment_for
from scheduler.convert import outcome_to_proto
from scheduler.outcome import Energy, Status, completed_outcome
from scheduler.service import Service

SERVICE = Service(id="s7", prompt="read this", input_bytes=3_000_000, max_new_tokens=16,
                  deadline_s=3.0, service_class="upload", prompt_tokens=120)


class _Gateway(scheduler_pb2_grpc.SchedulerServiceServicer):
    """Submit as the scheduler answers it, keeping what it was sent."""

    def __init__(self) -> None:
        self.received: list[common_pb2.Service] = []

    def Submit(self, request, context):
        self.received.append(request.service)
        outcome = completed_outcome(
            SERVICE, "cloud", total_s=0.5, transmission_s=0.1, queueing_s=0.0,
            inference_s=0.4, tokens_in=120, tokens_out=5, energy=Energy(inference_j=1.0))
        yield scheduler_pb2.SubmitResponse(outcome=outcome_to_proto(outcome))


def test_a_prepared_request_arrives_whole_and_the_record_has_driver_timing():
    gateway, records = _drive("client")
    sent = gateway.received[0]
    assert sent.id == "s7" and sent.emulated_output_tokens == 5
    assert sent.attachment == attachment_for(SERVICE) and sent.emulated_attachment_bytes == 0
    assert gateway.received[1] == sent
    first = json.loads(json.dumps(records[0]))
    outcome, _ = read_outcome_record(first)
    assert outcome.service_id == "s7" and outcome.total_s == 0.5
    timing = first["driver"]
    assert 0.0 <= timing["late_s"] <= timing["e2e_s"]
    assert "driver" not in records[1]  # no due time given: no timing claimed


def test_by_default_the_gateway_makes_the_attachment_from_its_declared_size():
    gateway, _ = _drive("gateway")
    sent = gateway.received[0]
    assert sent.attachment == b""  # no multi-MB hop into the gateway
    assert sent.emulated_attachment_bytes == len(attachment_for(SERVICE)) > 2_900_000
    assert sent.input_bytes == SERVICE.input_bytes
    assert gateway.received[1] == sent


def _drive(attachment_at: str) -> tuple[_Gateway, list[dict]]:
    gateway = _Gateway()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), options=[
        ("grpc.max_receive_message_length", 64 * 1024 * 1024)])
    scheduler_pb2_grpc.add_SchedulerServiceServicer_to_server(gateway, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    records: list[dict] = []
    driver = Driver(f"127.0.0.1:{port}", "gateway", 30.0, emit=records.append,
                    attachment_at=attachment_at)
    try:
        item = WorkloadItem(arrival_s=0.0, service=SERVICE, output_tokens=5)
        prepared = driver.prepare(item)
        due_s = time.monotonic()
        driver.run_one(item, prepared, due_s)
        driver.run_one(item)  # built at arrival, on its own thread, when past the budget
    finally:
        driver.channel.close()
        server.stop(None)
    assert len(gateway.received) == 2, [r["outcome"].get("error") for r in records]
    return gateway, records


def test_processing_time_counts_from_the_arrival_the_client_saw():
    outcome = completed_outcome(
        SERVICE, "cloud", total_s=0.5, transmission_s=0.1, queueing_s=0.05, inference_s=0.35,
        tokens_in=120, tokens_out=5, energy=Energy(inference_j=1.0))
    record = outcome_record(2.0, outcome_to_proto(outcome))
    late, added_s = from_arrival(record, e2e_s=3.25)  # 2.75 s before the scheduler's clock
    got, arrival_s = read_outcome_record(json.loads(json.dumps(late)))
    assert added_s == 2.75 and arrival_s == 2.0
    assert got.total_s == 3.25 and got.queueing_s == 2.8 and got.status is Status.MISSED
    same, added_s = from_arrival(record, e2e_s=0.4)  # never less than the scheduler measured
    assert added_s == 0.0 and read_outcome_record(same)[0].status is Status.MET
    failed = failed_record(SERVICE, 0.0, 120.0, "gave up after 120 s")
    assert from_arrival(failed, e2e_s=121.0) == (failed, None)


def test_a_node_request_with_its_attachment_appended_parses_as_the_whole_message():
    from perllm.v1 import inference_pb2
    from scheduler import node_request
    from scheduler.convert import generate_request

    request = generate_request(SERVICE, b"", 1.5e9, stop_after_tokens=5)
    for attachment in (b"", b"abc", bytes(range(256)) * 600, 300, 70_000, 9_000_000):
        wire = node_request.encode(request, attachment)
        whole = inference_pb2.GenerateRequest.FromString(wire)
        expected = attachment if isinstance(attachment, bytes) else bytes(attachment)
        assert whole.attachment == expected
        whole.attachment = b""
        assert whole == request
        assert len(wire) == generate_request(SERVICE, expected, 1.5e9, 5).ByteSize()
    with pytest.raises(ValueError, match="leave request.attachment empty"):
        node_request.encode(generate_request(SERVICE, b"x", 0.0), 3)
