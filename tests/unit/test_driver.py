"""The driver's outcome records: one wire Outcome per line, read back through the checks
ReportOutcome applies, into the requests.csv row."""

import json

import pytest

from perllm.v1 import common_pb2
from scenarios.driver import failed_record, outcome_record, read_outcome_record
from scenarios.emulate import attribute_transmission
from scenarios.results import RequestRow
from scheduler.outcome import Energy, Status, completed_outcome
from scheduler.service import Service

SERVICE = Service(id="s1", prompt="hi", input_bytes=2_000, max_new_tokens=4, deadline_s=3.0,
                  service_class="chat")


def _line(record: dict) -> dict:
    return json.loads(json.dumps(record))  # what crosses the driver's stdout


def test_a_record_round_trips_to_the_same_outcome_and_row():
    pb = common_pb2.Outcome(
        service_id="s1", node_id="edge1", service_class="chat",
        status=common_pb2.OUTCOME_STATUS_MISSED, total_s=3.2, deadline_s=3.0,
        transmission_s=0.1, queueing_s=0.4, inference_s=2.7, tokens_in=500, tokens_out=4,
        input_bytes=2_000, attempts=2, constraint_f=-0.25,
        energy=common_pb2.EnergyBreakdown(transmission_j=0.1, inference_j=2.0, idle_j=0.5))
    outcome, arrival_s = read_outcome_record(_line(outcome_record(1.5, pb)))
    assert arrival_s == 1.5
    assert outcome.status is Status.MISSED and outcome.total_s == 3.2
    assert outcome.attempts == 2 and outcome.constraint_f == -0.25
    row = RequestRow.from_outcome("cs-ucb", outcome, arrival_s)
    assert (row.status, row.node_id, row.input_bytes, row.tokens_out) == ("missed", "edge1",
                                                                         2_000, 4)
    assert row.total_j == pytest.approx(2.6)


def test_a_record_whose_status_contradicts_its_times_is_refused():
    pb = common_pb2.Outcome(service_id="s1", node_id="edge1", deadline_s=3.0, total_s=3.2,
                            status=common_pb2.OUTCOME_STATUS_MET)
    with pytest.raises(ValueError, match="outcome.status MET needs"):
        read_outcome_record(_line(outcome_record(0.0, pb)))


def test_failed_record_says_why():
    outcome, _ = read_outcome_record(_line(failed_record(SERVICE, 0.0, 120.0,
                                                         "gave up after 120 s")))
    assert outcome.status is Status.FAILED and outcome.error == "gave up after 120 s"
    assert outcome.total_s == 120.0 and outcome.node_id == ""
    assert outcome.deadline_s == 3.0 and outcome.input_bytes == 2_000


class _Counters:
    def __init__(self, energy_j: float) -> None:
        self.energy_j = energy_j


def test_transmission_energy_is_attributed_from_counters_by_input_bytes():
    small = completed_outcome(SERVICE, "edge1", total_s=1.0, transmission_s=0.1,
                              queueing_s=0.0, inference_s=0.9, tokens_in=1, tokens_out=4,
                              energy=Energy(transmission_j=9.0, inference_j=1.0))
    big = completed_outcome(Service(id="s2", prompt="hi", input_bytes=6_000, max_new_tokens=4,
                                    deadline_s=3.0), "edge1", total_s=1.0, transmission_s=0.1,
                            queueing_s=0.0, inference_s=0.9, tokens_in=1, tokens_out=4,
                            energy=Energy(transmission_j=9.0))
    elsewhere = completed_outcome(SERVICE, "edge2", total_s=1.0, transmission_s=0.1,
                                  queueing_s=0.0, inference_s=0.9, tokens_in=1, tokens_out=4,
                                  energy=Energy(transmission_j=7.0))
    out = attribute_transmission([(small, 0.0), (big, 1.0), (elsewhere, 2.0)],
                                 {"edge1": _Counters(8.0)})
    (a, t_a), (b, _), (c, _) = out
    assert t_a == 0.0
    assert a.energy.transmission_j == pytest.approx(2.0)  # 2 kB of 8 kB sent on edge1
    assert b.energy.transmission_j == pytest.approx(6.0)
    assert a.energy.transmission_method == "counters" and a.energy.inference_j == 1.0
    assert c.energy.transmission_j == 7.0  # no counters for edge2: unchanged
