"""The policy state file: atomic writes, loading, and learning that survives `kill -9`."""

from __future__ import annotations

import json
import os

import grpc
import pytest

from perllm.v1 import common_pb2, scheduler_pb2, scheduler_pb2_grpc
from scheduler import state_store
from scheduler.config import ServerConfig
from scheduler.server import create_server, stop_server
from scheduler.state_store import StateFileError, load_state, save_state
from tests.unit.test_scheduler_cli import CliServer

RPC_TIMEOUT_S = 10.0


# --- the store ---------------------------------------------------------------------------------
def test_save_then_load_round_trips_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "sub" / "state.json"
    save_state(path, {"policy": "cs-ucb", "policy_state": {"t": 3}})
    assert load_state(path) == {"format_version": state_store.FORMAT_VERSION,
                                "policy": "cs-ucb", "policy_state": {"t": 3}}
    save_state(path, {"policy": "cs-ucb", "policy_state": {"t": 4}})
    assert load_state(path)["policy_state"] == {"t": 4}
    assert os.listdir(path.parent) == ["state.json"]


def test_missing_file_loads_as_none(tmp_path):
    assert load_state(tmp_path / "absent.json") is None


def test_a_failed_write_keeps_the_previous_state(tmp_path, monkeypatch):
    path = tmp_path / "state.json"
    save_state(path, {"policy_state": {"t": 1}})

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(state_store.os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        save_state(path, {"policy_state": {"t": 2}})
    monkeypatch.undo()
    assert load_state(path)["policy_state"] == {"t": 1}
    assert os.listdir(tmp_path) == ["state.json"]  # the temp file was removed


@pytest.mark.parametrize("content, needle", [
    ("{ half", "is not valid JSON"),
    ("[1, 2]", "must hold a JSON object"),
    ('{"format_version": 99}', "format_version 99"),
])
def test_unusable_files_are_named_errors(tmp_path, content, needle):
    path = tmp_path / "state.json"
    path.write_text(content)
    with pytest.raises(StateFileError, match=needle):
        load_state(path)


# --- the server --------------------------------------------------------------------------------
def _register(stub, n: int) -> None:
    for i in range(n):
        stub.RegisterNode(scheduler_pb2.RegisterNodeRequest(
            node_id=f"edge{i + 1}", address=f"127.0.0.1:{41000 + i}",
            kind=common_pb2.NODE_KIND_EDGE, slots=2, link_rate_mbit=100.0, idle_power_w=50,
            max_power_w=150, prefill_tok_s=500, decode_tok_s=50, transmission_j_per_bit=2e-8),
            timeout=RPC_TIMEOUT_S)


def _play(stub, n: int, start: int = 0) -> None:
    """Schedule n services and report each one's outcome (every third missed)."""
    for i in range(start, start + n):
        decision = stub.Schedule(scheduler_pb2.ScheduleRequest(service=common_pb2.Service(
            id=f"s{i}", prompt="hello", input_bytes=2000, max_new_tokens=16, deadline_s=4.0,
            service_class="chat")), timeout=RPC_TIMEOUT_S)
        total_s = 5.0 if i % 3 == 0 else 1.0
        stub.ReportOutcome(scheduler_pb2.ReportOutcomeRequest(outcome=common_pb2.Outcome(
            service_id=f"s{i}", node_id=decision.node_id, service_class="chat",
            status=(common_pb2.OUTCOME_STATUS_MISSED if total_s > 4.0
                    else common_pb2.OUTCOME_STATUS_MET),
            transmission_s=0.1, queueing_s=0.0, inference_s=total_s - 0.1, total_s=total_s,
            deadline_s=4.0, tokens_in=5, tokens_out=16, input_bytes=2000,
            constraint_f=decision.constraint_f,
            energy=common_pb2.EnergyBreakdown(transmission_j=0.1, inference_j=20.0,
                                              idle_j=1.0, total_j=21.1))),
            timeout=RPC_TIMEOUT_S)


def _stats(stub) -> tuple[int, dict, tuple[int, int, int]]:
    s = stub.GetStats(scheduler_pb2.GetStatsRequest(), timeout=RPC_TIMEOUT_S)
    return s.t, {a.node_id: (a.plays, round(a.mean_reward, 9)) for a in s.arms}, \
        (s.met, s.missed, s.failed)


def test_in_process_state_is_written_per_outcome_and_reloaded(tmp_path):
    state = tmp_path / "state.json"
    config = ServerConfig(policy="cs-ucb", seed=7, host="127.0.0.1", state_file=str(state))
    server, port, servicer = create_server(config)
    server.start()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = scheduler_pb2_grpc.SchedulerServiceStub(channel)
        _register(stub, 3)
        _play(stub, 2)
        saved = json.loads(state.read_text())
        assert saved["policy"] == "cs-ucb" and saved["policy_state"]["t"] == 2
        _play(stub, 4, start=2)
        before = _stats(stub)
    stop_server(server, servicer, grace_s=0)
    assert before[0] == 6 and before[2] == (4, 2, 0)

    server, port, servicer = create_server(config)
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = scheduler_pb2_grpc.SchedulerServiceStub(channel)
            _register(stub, 3)
            assert _stats(stub) == before
    finally:
        stop_server(server, servicer, grace_s=0)

    with pytest.raises(ValueError, match="holds policy 'cs-ucb', not 'round-robin'"):
        create_server(ServerConfig(policy="round-robin", host="127.0.0.1",
                                   state_file=str(state)))


def test_learning_continues_after_kill_9(tmp_path):
    state = tmp_path / "state.json"
    args = ("--port", "0", "--policy", "cs-ucb", "--seed", "42", "--state-file", str(state),
            "--heartbeat-timeout-s", "60")
    first = CliServer(*args)
    try:
        port = first.wait_ready()
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = scheduler_pb2_grpc.SchedulerServiceStub(channel)
            _register(stub, 3)
            _play(stub, 7)
            before = _stats(stub)
        first.proc.kill()  # SIGKILL: no shutdown hook runs, only per-outcome writes count
        assert first.proc.wait(RPC_TIMEOUT_S) == -9
    finally:
        first.stop()
    assert before[0] == 7 and sum(plays for plays, _ in before[1].values()) == 7

    second = CliServer(*args)
    try:
        port = second.wait_ready()
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = scheduler_pb2_grpc.SchedulerServiceStub(channel)
            _register(stub, 3)
            assert _stats(stub) == before  # same t, plays, mean rewards and counters
            _play(stub, 2, start=7)
            t, arms, counters = _stats(stub)
            assert t == 9 and sum(plays for plays, _ in arms.values()) == 9
    finally:
        second.stop()
