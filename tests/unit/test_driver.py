"""The driver's outcome records carry every requests.csv column and a status name."""

from perllm.v1 import common_pb2
from scenarios.driver import failed_record, outcome_record
from scenarios.results import RequestRow, columns
from scheduler.service import Service

SERVICE = Service(id="s1", prompt="hi", input_bytes=2_000, max_new_tokens=4, deadline_s=3.0,
                  service_class="chat")


def test_outcome_record_has_every_column_but_policy_and_total():
    record = outcome_record(SERVICE, 1.5, common_pb2.Outcome(
        node_id="edge1", status=common_pb2.OUTCOME_STATUS_MISSED, total_s=3.2, tokens_out=4,
        energy=common_pb2.EnergyBreakdown(transmission_j=0.1, inference_j=2.0, idle_j=0.5)))
    assert set(columns(RequestRow)) - {"policy", "total_j"} <= set(record)
    assert record["status"] == "missed" and record["arrival_s"] == 1.5
    assert record["deadline_s"] == 3.0 and record["input_bytes"] == 2_000


def test_failed_record_says_why():
    record = failed_record(SERVICE, 0.0, 120.0, "gave up after 120 s")
    assert record["status"] == "failed" and record["error"] == "gave up after 120 s"
    assert record["total_s"] == 120.0 and record["node_id"] == ""
