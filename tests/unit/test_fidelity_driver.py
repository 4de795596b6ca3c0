"""The driver's arrival path (issue 13): requests built before the clock starts reach the
scheduler whole, and every record carries the driver's own timing."""

from __future__ import annotations

import json
import time
from concurrent import futures

import grpc

from perllm.v1 import common_pb2, scheduler_pb2, scheduler_pb2_grpc
from scenarios.driver import Driver, read_outcome_record
from scenarios.workload import WorkloadItem, attachment_for
from scheduler.convert import outcome_to_proto
from scheduler.outcome import Energy, completed_outcome
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
    gateway = _Gateway()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), options=[
        ("grpc.max_receive_message_length", 64 * 1024 * 1024)])
    scheduler_pb2_grpc.add_SchedulerServiceServicer_to_server(gateway, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    records: list[dict] = []
    driver = Driver(f"127.0.0.1:{port}", "gateway", 30.0, emit=records.append)
    try:
        item = WorkloadItem(arrival_s=0.0, service=SERVICE, output_tokens=5)
        prepared = driver.prepare(item)
        due_s = time.monotonic()
        driver.run_one(item, prepared, due_s)
        driver.run_one(item)  # built at arrival, on its own thread, when past the budget
    finally:
        driver.channel.close()
        server.stop(None)
    assert gateway.received, [r["outcome"].get("error") for r in records]
    sent = gateway.received[0]
    assert sent.id == "s7" and sent.emulated_output_tokens == 5
    assert sent.attachment == attachment_for(SERVICE)
    assert gateway.received[1] == sent
    first = json.loads(json.dumps(records[0]))
    outcome, _ = read_outcome_record(first)
    assert outcome.service_id == "s7" and outcome.total_s == 0.5
    timing = first["driver"]
    assert 0.0 <= timing["late_s"] <= timing["e2e_s"]
    assert "driver" not in records[1]  # no due time given: no timing claimed
