"""Undecodable requests (random bytes, a truncated message, invalid UTF-8 in a string field) get
INVALID_ARGUMENT with a short reason on every method of both servers and on health, and junk
traffic logs at most one line per interval."""

from __future__ import annotations

import logging

import grpc
import pytest

from nodes.config import NodeConfig
from nodes.server import create_server as create_node
from perllm.v1 import common_pb2, inference_pb2, scheduler_pb2
from scheduler.config import ServerConfig
from scheduler.grpc_server import UndecodableLog
from scheduler.server import create_server, stop_server
from tests.unit.conftest import FakeClock

VALID = scheduler_pb2.ScheduleRequest(service=common_pb2.Service(
    id="s1", prompt="AB-prompt", max_new_tokens=4, deadline_s=3.0)).SerializeToString()
JUNK = {
    "random bytes": b"\xff\xff\xff\xff\x0f",
    "truncated": VALID[:-3],
    "invalid utf-8": VALID.replace(b"AB-prompt", b"\xff\xfe-prompt"),
}


@pytest.fixture(scope="module")
def scheduler_channel():
    server, port, servicer = create_server(ServerConfig(host="127.0.0.1", port=0))
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield channel
    channel.close()
    stop_server(server, servicer, 0)


@pytest.fixture(scope="module")
def node_channel(tmp_path_factory):
    # The model is never loaded: requests are refused before any servicer code runs.
    node = create_node(NodeConfig(node_id="n", model="unused", host="127.0.0.1", port=0))
    node.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{node.port}")
    yield channel
    channel.close()
    node.stop(0).wait()


def _call(channel: grpc.Channel, method: str, payload: bytes, streaming: bool):
    if streaming:
        return list(channel.unary_stream(method)(payload, timeout=5))
    return channel.unary_unary(method)(payload, timeout=5)


SCHEDULER_METHODS = [
    ("/perllm.v1.SchedulerService/Schedule", False),
    ("/perllm.v1.SchedulerService/ReportOutcome", False),
    ("/perllm.v1.SchedulerService/RegisterNode", False),
    ("/perllm.v1.SchedulerService/Submit", True),
    ("/grpc.health.v1.Health/Check", False),
    ("/grpc.health.v1.Health/Watch", True),
]
NODE_METHODS = [
    ("/perllm.v1.InferenceService/Generate", True),
    ("/perllm.v1.InferenceService/GetStatus", False),
    ("/grpc.health.v1.Health/Check", False),
]


@pytest.mark.parametrize("kind", sorted(JUNK))
@pytest.mark.parametrize("method,streaming", SCHEDULER_METHODS)
def test_scheduler_refuses_undecodable_requests(scheduler_channel, method, streaming, kind):
    payload = JUNK[kind]
    if method.endswith("Check") or method.endswith("Watch"):
        payload = b"\x0a\x03\xff\xfe\xfd" if kind == "invalid utf-8" else payload
    with pytest.raises(grpc.RpcError) as info:
        _call(scheduler_channel, method, payload, streaming)
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "request is not a valid" in info.value.details()


@pytest.mark.parametrize("method,streaming", NODE_METHODS)
def test_node_refuses_undecodable_requests(node_channel, method, streaming):
    with pytest.raises(grpc.RpcError) as info:
        _call(node_channel, method, JUNK["random bytes"], streaming)
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT


def test_a_valid_request_still_reaches_the_servicer(scheduler_channel, node_channel):
    # No node is registered: the servicer's own answer, not a parse error.
    with pytest.raises(grpc.RpcError) as info:
        _call(scheduler_channel, "/perllm.v1.SchedulerService/Schedule", VALID, False)
    assert info.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    status = inference_pb2.GetStatusResponse.FromString(_call(
        node_channel, "/perllm.v1.InferenceService/GetStatus",
        inference_pb2.GetStatusRequest().SerializeToString(), False))
    assert status.node_id == "n"


def test_junk_traffic_logs_at_most_one_line(scheduler_channel, caplog):
    with caplog.at_level(logging.WARNING, logger="scheduler.grpc_server"):
        for _ in range(40):
            with pytest.raises(grpc.RpcError):
                _call(scheduler_channel, "/perllm.v1.SchedulerService/Schedule",
                      JUNK["random bytes"], False)
    assert len([r for r in caplog.records if "undecodable" in r.getMessage()]) <= 1


def test_the_log_limiter_counts_what_it_suppressed():
    clock = FakeClock()
    limiter = UndecodableLog(interval_s=10.0, clock=clock)
    assert limiter.record("/m", "bad")
    assert not limiter.record("/m", "bad") and not limiter.record("/m", "bad")
    assert limiter.suppressed == 2
    clock.now_s = 10.0
    assert limiter.record("/m", "bad") and limiter.suppressed == 0
