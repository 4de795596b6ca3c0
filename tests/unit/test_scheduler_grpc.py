"""The gRPC SchedulerService in-process on port 0: every RPC, bad input, health, reflection,
heartbeat expiry, the bandwidth feed and gateway-mode Submit against fake inference nodes.

The policy here is a tiny deterministic one defined below (fewest services in flight, then
registration order), so the tests pin the server's behaviour, not a policy's.
"""

from __future__ import annotations

import json
import math
import os
import threading
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from perllm.v1 import common_pb2, inference_pb2, inference_pb2_grpc, scheduler_pb2
from perllm.v1 import scheduler_pb2_grpc
from scheduler import convert
from scheduler.cluster import Cluster
from scheduler.outcome import Outcome, Status
from scheduler.policies.base import (POLICIES, ArmStat, Decision, NoNodeError, Policy,
                                     register_policy)
from scheduler.config import ServerConfig
from scheduler.server import create_server, stop_server
from scheduler.service import Service
from tests.unit.conftest import FakeClock

RPC_TIMEOUT_S = 10.0
TEST_POLICY = "test-fewest-inflight"


class FewestInflight(Policy):
    """Fewest services in flight, ties to the first registered; counts plays per arm."""

    def __init__(self, config=None, seed: int = 0) -> None:
        super().__init__(config, seed)
        self.plays: dict[str, int] = {}
        self.met: dict[str, int] = {}
        self.errors: list[str] = []  # of FAILED outcomes, in order

    def select(self, service: Service, cluster: Cluster) -> Decision:
        nodes = cluster.candidates()
        if not nodes:
            raise NoNodeError("no candidate")
        node = min(nodes, key=lambda n: len(n.inflight))
        p = cluster.predict(service, node.node_id)
        self.t += 1
        return Decision(service.id, node.node_id, p, p.feasible, self.name)

    def update(self, outcome: Outcome) -> float:
        key = f"{outcome.service_class}/{outcome.node_id}"
        self.plays[key] = self.plays.get(key, 0) + 1
        self.met[key] = self.met.get(key, 0) + outcome.met
        if outcome.status is Status.FAILED:
            self.errors.append(outcome.error)
        return 1.0 if outcome.met else -1.0

    def arm_stats(self, cluster: Cluster) -> list[ArmStat]:
        out = []
        for key, plays in sorted(self.plays.items()):
            cls, node_id = key.split("/")
            out.append(ArmStat(cls, node_id, plays, 0.0, 0.0, self.met[key] / plays))
        return out

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "plays": self.plays, "met": self.met}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.plays, self.met = dict(state["plays"]), dict(state["met"])


if TEST_POLICY not in POLICIES:
    register_policy(TEST_POLICY)(FewestInflight)


# --- fixtures ----------------------------------------------------------------------------------
@dataclass
class Running:
    server: grpc.Server
    port: int
    servicer: Any
    channel: grpc.Channel
    stub: scheduler_pb2_grpc.SchedulerServiceStub

    def stop(self) -> None:
        self.channel.close()
        stop_server(self.server, self.servicer, grace_s=0)


@pytest.fixture
def start():
    running: list[Running] = []

    def _start(**overrides) -> Running:
        config = ServerConfig(**{"policy": TEST_POLICY, "host": "127.0.0.1", "port": 0,
                                 **overrides})
        server, port, servicer = create_server(config)
        server.start()
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        r = Running(server, port, servicer, channel,
                    scheduler_pb2_grpc.SchedulerServiceStub(channel))
        running.append(r)
        return r

    yield _start
    for r in running:
        r.stop()


@pytest.fixture
def srv(start) -> Running:
    return start()


def node_request(node_id: str, address: str = "", kind=common_pb2.NODE_KIND_EDGE, **kw):
    fields = dict(node_id=node_id, address=address or f"127.0.0.1:1{len(node_id)}",
                  kind=kind, slots=1, link_rate_mbit=100.0, idle_power_w=50.0,
                  max_power_w=150.0, prefill_tok_s=500.0, decode_tok_s=50.0,
                  transmission_j_per_bit=2e-8)
    fields.update(kw)
    return scheduler_pb2.RegisterNodeRequest(**fields)


def service_pb(service_id: str = "s1", **kw) -> common_pb2.Service:
    fields = dict(id=service_id, prompt="hello world", input_bytes=1000, max_new_tokens=4,
                  deadline_s=10.0, service_class="chat")
    fields.update(kw)
    return common_pb2.Service(**fields)


def register(stub, *node_ids: str, **kw) -> None:
    for i, node_id in enumerate(node_ids):
        stub.RegisterNode(node_request(node_id, address=f"127.0.0.1:{40000 + i}", **kw),
                          timeout=RPC_TIMEOUT_S)


def schedule(stub, service_id: str = "s1") -> str:
    """Schedule a service through the API; the node chosen."""
    return stub.Schedule(scheduler_pb2.ScheduleRequest(service=service_pb(service_id)),
                         timeout=RPC_TIMEOUT_S).node_id


def book(srv, service_id: str, node_id: str) -> None:
    """Book a service on a given node as Schedule does (tests that need a particular node)."""
    service = convert.service_from_proto(service_pb(service_id))
    with srv.servicer.scheduler.lock:
        cluster = srv.servicer.cluster
        cluster.on_assign(service, cluster.predict(service, node_id))


def code_of(call, *args, **kw) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        call(*args, timeout=RPC_TIMEOUT_S, **kw)
    return info.value.code(), info.value.details()


def outcome_pb(node_id: str, status=common_pb2.OUTCOME_STATUS_MET, **kw) -> common_pb2.Outcome:
    fields = dict(service_id="s1", node_id=node_id, service_class="chat", status=status,
                  transmission_s=0.1, queueing_s=0.0, inference_s=0.5, total_s=0.6,
                  deadline_s=10.0, tokens_in=3, tokens_out=4, input_bytes=1000)
    fields.update(kw)
    return common_pb2.Outcome(**fields)


# --- health and reflection ---------------------------------------------------------------------
def test_health_serving_and_reflection_lists_both_services(srv):
    health = health_pb2_grpc.HealthStub(srv.channel)
    for name in ("", "perllm.v1.SchedulerService"):
        reply = health.Check(health_pb2.HealthCheckRequest(service=name), timeout=RPC_TIMEOUT_S)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    refl = reflection_pb2_grpc.ServerReflectionStub(srv.channel)
    replies = list(refl.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
        timeout=RPC_TIMEOUT_S))
    names = {s.name for s in replies[0].list_services_response.service}
    assert {"perllm.v1.SchedulerService", "perllm.v1.InferenceService",
            "grpc.health.v1.Health"} <= names
    # The InferenceService descriptor is really served, not only named.
    replies = list(refl.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(
            file_containing_symbol="perllm.v1.InferenceService")]), timeout=RPC_TIMEOUT_S))
    assert replies[0].HasField("file_descriptor_response")


# --- normal path -------------------------------------------------------------------------------
def test_schedule_books_the_decision_and_stats_count_it(srv):
    register(srv.stub, "edge1", "edge2")
    first = srv.stub.Schedule(scheduler_pb2.ScheduleRequest(service=service_pb("a")),
                              timeout=RPC_TIMEOUT_S)
    second = srv.stub.Schedule(scheduler_pb2.ScheduleRequest(service=service_pb("b")),
                               timeout=RPC_TIMEOUT_S)
    # edge1 has one service in flight after the first decision, so the second goes to edge2:
    # proof that Schedule booked it on the cluster.
    assert (first.node_id, second.node_id) == ("edge1", "edge2")
    assert first.address == "127.0.0.1:40000" and first.policy == TEST_POLICY
    assert first.predicted_total_s == pytest.approx(
        first.predicted_transmission_s + first.predicted_queueing_s
        + first.predicted_inference_s)
    assert first.predicted_transmission_s == pytest.approx(1000 * 8 / 100e6)
    assert first.feasible
    stats = srv.stub.GetStats(scheduler_pb2.GetStatsRequest(), timeout=RPC_TIMEOUT_S)
    assert stats.policy == TEST_POLICY and stats.t == 2
    assert {n.node_id: n.assigned for n in stats.nodes} == {"edge1": 1, "edge2": 1}


def test_report_outcome_learns_releases_and_counts(srv):
    register(srv.stub, "edge1", "edge2")
    srv.stub.Schedule(scheduler_pb2.ScheduleRequest(service=service_pb("s1")),
                      timeout=RPC_TIMEOUT_S)
    reply = srv.stub.ReportOutcome(scheduler_pb2.ReportOutcomeRequest(
        outcome=outcome_pb("edge1")), timeout=RPC_TIMEOUT_S)
    assert reply.reward == 1.0
    book(srv, "s2", "edge2")
    srv.stub.ReportOutcome(scheduler_pb2.ReportOutcomeRequest(outcome=outcome_pb(
        "edge2", service_id="s2", status=common_pb2.OUTCOME_STATUS_MISSED, total_s=11.0)),
        timeout=RPC_TIMEOUT_S)
    stats = srv.stub.GetStats(scheduler_pb2.GetStatsRequest(), timeout=RPC_TIMEOUT_S)
    assert (stats.met, stats.missed, stats.failed) == (1, 1, 0)
    assert {(a.node_id, a.plays, a.success_rate) for a in stats.arms} == {
        ("edge1", 1, 1.0), ("edge2", 1, 0.0)}
    # edge1's service was released: the next decision may use it again.
    assert srv.servicer.cluster.nodes["edge1"].inflight == {}


def test_schedule_batch_assigns_in_request_order_within_shared_limits(srv):
    register(srv.stub, "edge1", "edge2", "cloud")
    services = [service_pb(f"s{i}", deadline_s=10.0 - i) for i in range(6)]
    reply = srv.stub.ScheduleBatch(scheduler_pb2.ScheduleBatchRequest(services=services),
                                   timeout=RPC_TIMEOUT_S)
    assert [a.service_id for a in reply.assignments] == [f"s{i}" for i in range(6)]
    # Each decision is booked before the next, so the slot spreads over the three nodes.
    counts = {}
    for a in reply.assignments:
        counts[a.node_id] = counts.get(a.node_id, 0) + 1
    assert counts == {"edge1": 2, "edge2": 2, "cloud": 2}
    # Tightest requirement first: s5 (5 s) was decided first, on the first node.
    assert reply.assignments[5].node_id == "edge1"


def test_register_same_address_again_is_an_update(srv):
    register(srv.stub, "edge1")
    srv.stub.RegisterNode(node_request("edge1", address="127.0.0.1:40000", slots=4),
                          timeout=RPC_TIMEOUT_S)
    assert srv.servicer.cluster.nodes["edge1"].info.slots == 4


# --- bad input ---------------------------------------------------------------------------------
@pytest.mark.parametrize("fields, needle", [
    (dict(prompt=""), "service.prompt"),
    (dict(deadline_s=0.0), "service.deadline_s must be a finite number in (0, 1e+06] (got 0.0)"),
    (dict(deadline_s=-2.5), "service.deadline_s must be a finite number in (0, 1e+06] (got -2.5)"),
    (dict(max_new_tokens=0), "service.max_new_tokens must be a finite number in [1, 1e+07] (got 0)"),
    (dict(input_bytes=-1), "service.input_bytes must be a finite number in [0, 1.09951e+12] (got -1)"),
    (dict(id=""), "service.id"),
])
def test_bad_service_is_invalid_argument_naming_field_and_value(srv, fields, needle):
    register(srv.stub, "edge1")
    for method in (srv.stub.Schedule, srv.stub.Submit):
        request_class = (scheduler_pb2.ScheduleRequest if method is srv.stub.Schedule
                         else scheduler_pb2.SubmitRequest)
        request = request_class(service=service_pb(**fields))
        if method is srv.stub.Submit:
            call = lambda req, timeout: list(srv.stub.Submit(req, timeout=timeout))  # noqa: E731
        else:
            call = method
        code, details = code_of(call, request)
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert needle in details
    code, details = code_of(srv.stub.ScheduleBatch, scheduler_pb2.ScheduleBatchRequest(
        services=[service_pb("ok"), service_pb(**fields)]))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("services[1]: ")


@pytest.mark.parametrize("fields, needle", [
    (dict(node_id=""), "node_id must not be empty"),
    (dict(address="-"), None),  # placeholder replaced below
    (dict(kind=common_pb2.NODE_KIND_UNSPECIFIED), "NODE_KIND_UNSPECIFIED"),
    (dict(slots=0), "slots must be a finite number in [1, 100000] (got 0)"),
    (dict(link_rate_mbit=0.0), "link_rate_mbit must be a finite number in [0.001, 1e+06] (got 0.0)"),
    (dict(idle_power_w=-1.0), "idle_power_w must be a finite number in [0, 1e+07] (got -1.0)"),
])
def test_bad_registration_is_invalid_argument(srv, fields, needle):
    if "address" in fields:
        request = node_request("edge1")
        request.address = "no-port"
        needle = "address must be host:port with a port in 1-65535 (got 'no-port')"
    else:
        request = node_request(**{"node_id": "edge1", **fields})
    code, details = code_of(srv.stub.RegisterNode, request)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and needle in details


def test_node_id_registered_again_at_another_address_is_already_exists(srv):
    register(srv.stub, "edge1")
    code, details = code_of(srv.stub.RegisterNode, node_request("edge1", address="10.0.0.9:1"))
    assert code == grpc.StatusCode.ALREADY_EXISTS
    assert "edge1" in details and "10.0.0.9:1" in details


def test_schedule_without_nodes_is_failed_precondition(srv):
    for method, request in (
            (srv.stub.Schedule, scheduler_pb2.ScheduleRequest(service=service_pb())),
            (srv.stub.ScheduleBatch, scheduler_pb2.ScheduleBatchRequest(services=[service_pb()])),
            (lambda r, timeout: list(srv.stub.Submit(r, timeout=timeout)),
             scheduler_pb2.SubmitRequest(service=service_pb()))):
        code, details = code_of(method, request)
        assert code == grpc.StatusCode.FAILED_PRECONDITION and "no node is registered" in details


def test_heartbeat_from_unknown_node_is_not_found(srv):
    code, details = code_of(srv.stub.Heartbeat, scheduler_pb2.HeartbeatRequest(node_id="ghost"))
    assert code == grpc.StatusCode.NOT_FOUND and "ghost" in details


@pytest.mark.parametrize("fields, needle", [
    (dict(node_id="ghost"), "outcome.node_id 'ghost' is not a registered node"),
    (dict(status=common_pb2.OUTCOME_STATUS_UNSPECIFIED), "outcome.status"),
    (dict(total_s=-1.0), "outcome.total_s must be a finite number in [0, 1e+06] (got -1.0)"),
    (dict(input_bytes=-5), "outcome.input_bytes must be a finite number in [0, 1.09951e+12] (got -5)"),
    (dict(deadline_s=0.0), "outcome.deadline_s must be a finite number in (0, 1e+06] (got 0.0)"),
])
def test_bad_outcome_is_invalid_argument(srv, fields, needle):
    register(srv.stub, "edge1")
    code, details = code_of(srv.stub.ReportOutcome, scheduler_pb2.ReportOutcomeRequest(
        outcome=outcome_pb(**{"node_id": "edge1", **fields})))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and needle in details
    stats = srv.stub.GetStats(scheduler_pb2.GetStatsRequest(), timeout=RPC_TIMEOUT_S)
    assert (stats.met, stats.missed, stats.failed) == (0, 0, 0)


def test_garbage_bytes_get_an_error_and_the_server_keeps_serving(srv):
    register(srv.stub, "edge1")
    raw = srv.channel.unary_unary("/perllm.v1.SchedulerService/Schedule",
                                  request_serializer=None, response_deserializer=None)
    with pytest.raises(grpc.RpcError) as info:
        raw(b"\xff\xff\xff\xff\xff", timeout=RPC_TIMEOUT_S)  # an unterminated varint tag
    assert info.value.code() != grpc.StatusCode.OK
    health = health_pb2_grpc.HealthStub(srv.channel)
    assert health.Check(health_pb2.HealthCheckRequest(), timeout=RPC_TIMEOUT_S).status == \
        health_pb2.HealthCheckResponse.SERVING
    reply = srv.stub.Schedule(scheduler_pb2.ScheduleRequest(service=service_pb()),
                              timeout=RPC_TIMEOUT_S)
    assert reply.node_id == "edge1"


def test_over_size_message_is_resource_exhausted(start):
    srv = start(max_receive_bytes=4096)
    register(srv.stub, "edge1")
    big = service_pb(prompt="x" * 10_000)
    code, _ = code_of(srv.stub.Schedule, scheduler_pb2.ScheduleRequest(service=big))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    small = srv.stub.Schedule(scheduler_pb2.ScheduleRequest(service=service_pb()),
                              timeout=RPC_TIMEOUT_S)
    assert small.node_id == "edge1"


def test_unknown_policy_or_bad_params_is_a_clean_value_error():
    with pytest.raises(ValueError, match="unknown policy 'no-such-policy'"):
        create_server(ServerConfig(policy="no-such-policy", host="127.0.0.1"))
    with pytest.raises(ValueError, match="unknown hyperparameter"):
        create_server(ServerConfig(policy=TEST_POLICY, host="127.0.0.1",
                                   policy_params={"delta": 1.0}))
    with pytest.raises(ValueError, match="heartbeat_timeout_s must be > 0"):
        create_server(ServerConfig(policy=TEST_POLICY, heartbeat_timeout_s=0))


@pytest.mark.parametrize("information", ["measured", "perfect"])
def test_the_information_model_decides_what_the_cluster_takes_from_nodes(start, information):
    srv = start(policy=TEST_POLICY, information=information)
    assert srv.servicer.cluster.information == information
    register(srv.stub, "edge1")  # decode_tok_s=50
    # A node reporting a tenth of its registered rate is believed under perfect information
    # only; a measuring scheduler learns from its outcomes instead.
    srv.stub.Heartbeat(scheduler_pb2.HeartbeatRequest(node_id="edge1", decode_tok_s=5.0),
                       timeout=RPC_TIMEOUT_S)
    expected = 5.0 if information == "perfect" else 50.0
    assert srv.servicer.cluster.nodes["edge1"].decode_tok_s == expected


def test_a_clairvoyant_scheduler_needs_the_workload_and_no_other_accepts_it(tmp_path):
    with pytest.raises(ValueError, match="clairvoyant: it needs true_output_tokens"):
        create_server(ServerConfig(policy="clairvoyant", host="127.0.0.1"))
    with pytest.raises(ValueError, match="for a clairvoyant policy only"):
        create_server(ServerConfig(policy=TEST_POLICY, host="127.0.0.1",
                                   true_output_tokens=str(tmp_path / "w.json")))
    with pytest.raises(ValueError, match="information must be one of measured, perfect"):
        create_server(ServerConfig(policy=TEST_POLICY, host="127.0.0.1",
                                   information="clairvoyant"))


# --- liveness and bandwidth --------------------------------------------------------------------
def test_silent_or_not_serving_nodes_are_excluded(start):
    clock = FakeClock(1000.0)
    srv = start(clock=clock, heartbeat_timeout_s=3.0)
    register(srv.stub, "edge1", "edge2", "edge3")
    clock.now_s += 4.0  # every node is now past its timeout ...
    code, details = code_of(srv.stub.Schedule, scheduler_pb2.ScheduleRequest(service=service_pb()))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "alive" in details
    for node_id, serving in (("edge2", False), ("edge3", True)):  # ... but two speak again
        srv.stub.Heartbeat(scheduler_pb2.HeartbeatRequest(node_id=node_id, serving=serving),
                           timeout=RPC_TIMEOUT_S)
    chosen = {srv.stub.Schedule(scheduler_pb2.ScheduleRequest(service=service_pb(f"s{i}")),
                                timeout=RPC_TIMEOUT_S).node_id for i in range(3)}
    assert chosen == {"edge3"}  # edge1 is silent, edge2 says it is not serving
    alive = {n.node_id: n.alive for n in srv.stub.GetStats(
        scheduler_pb2.GetStatsRequest(), timeout=RPC_TIMEOUT_S).nodes}
    assert alive == {"edge1": False, "edge2": False, "edge3": True}


def test_bandwidth_feed_is_applied_when_the_file_changes(start, tmp_path):
    feed = tmp_path / "bandwidth.json"

    def write(rates: dict[str, float]) -> None:  # as the testbed does: tmp + rename
        tmp = tmp_path / "bandwidth.json.tmp"
        tmp.write_text(json.dumps({"time_s": 1.0, "rates_mbit": rates}))
        os.replace(tmp, feed)

    write({"edge1": 25.0, "unknown-link": 5.0})
    srv = start(bandwidth_feed=str(feed))
    register(srv.stub, "edge1", "edge2")  # registered after the feed: gets its rate at once

    def rates() -> dict[str, float]:
        stats = srv.stub.GetStats(scheduler_pb2.GetStatsRequest(), timeout=RPC_TIMEOUT_S)
        return {n.node_id: n.link_rate_mbit for n in stats.nodes}

    assert rates() == {"edge1": 25.0, "edge2": 100.0}
    reply = srv.stub.Schedule(scheduler_pb2.ScheduleRequest(service=service_pb()),
                              timeout=RPC_TIMEOUT_S)
    assert reply.predicted_transmission_s == pytest.approx(1000 * 8 / 25e6)
    write({"edge1": 50.0, "edge2": 0.0})  # edge2's link went down
    assert rates() == {"edge1": 50.0, "edge2": pytest.approx(1e-3)}


# --- gateway mode: Submit against fake inference nodes -----------------------------------------
class FakeNode(inference_pb2_grpc.InferenceServiceServicer):
    """An InferenceService that streams scripted tokens or fails the way it is told."""

    def __init__(self, node_id: str, mode: str = "ok", tokens: int = 3) -> None:
        self.node_id, self.mode, self.tokens = node_id, mode, tokens
        self.requests: list[inference_pb2.GenerateRequest] = []
        self.first_chunk_sent = threading.Event()
        self.release = threading.Event()
        self.ended = threading.Event()
        if mode != "hold":
            self.release.set()

    def Generate(self, request, context):
        self.requests.append(request)
        # Runs when the call ends; before `release` is set only a cancellation can end it.
        context.add_callback(self.ended.set)
        if self.mode == "unavailable":
            context.abort(grpc.StatusCode.UNAVAILABLE, f"{self.node_id} is shutting down")
        if self.mode == "full":
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "queue full (64 of 64)")
        if self.mode == "garbage":  # a misbehaving node: impossible numbers in its result
            yield inference_pb2.GenerateResponse(result=inference_pb2.GenerateResult(
                tokens_in=-3, tokens_out=-1, received_unix_s=float("inf"),
                queueing_s=-0.5, inference_s=float("nan"), node_id=self.node_id,
                energy=common_pb2.EnergyBreakdown(inference_j=-4.0, idle_j=float("inf"))))
            return
        for i in range(self.tokens):
            yield inference_pb2.GenerateResponse(
                chunk=inference_pb2.TokenChunk(text=f"t{i} ", token_ids=[i]))
            self.first_chunk_sent.set()
            if self.mode == "break":
                context.abort(grpc.StatusCode.INTERNAL, "backend crashed")
            if self.mode == "truncate":
                return
            self.release.wait(RPC_TIMEOUT_S)
        yield inference_pb2.GenerateResponse(result=inference_pb2.GenerateResult(
            tokens_in=3, tokens_out=self.tokens, received_unix_s=request.sent_unix_s + 0.05,
            queueing_s=0.01, inference_s=0.2, node_id=self.node_id, finish_reason="length",
            energy=common_pb2.EnergyBreakdown(
                inference_j=4.0, idle_j=1.0, total_j=5.0,
                inference_method=common_pb2.ENERGY_METHOD_MODELLED,
                idle_method=common_pb2.ENERGY_METHOD_MODELLED)))


@pytest.fixture
def fake_nodes():
    servers = []

    def _start(*nodes: FakeNode) -> list[str]:
        addresses = []
        for node in nodes:
            server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
            inference_pb2_grpc.add_InferenceServiceServicer_to_server(node, server)
            port = server.add_insecure_port("127.0.0.1:0")
            server.start()
            servers.append(server)
            addresses.append(f"127.0.0.1:{port}")
        return addresses

    yield _start
    for server in servers:
        server.stop(0)


def register_fakes(stub, nodes: list[FakeNode], addresses: list[str]) -> None:
    for node, address in zip(nodes, addresses):
        stub.RegisterNode(node_request(node.node_id, address=address), timeout=RPC_TIMEOUT_S)


def submit(stub, service: common_pb2.Service) -> list[scheduler_pb2.SubmitResponse]:
    return list(stub.Submit(scheduler_pb2.SubmitRequest(service=service),
                            timeout=RPC_TIMEOUT_S))


def test_submit_streams_decision_tokens_then_outcome_and_learns(srv, fake_nodes):
    node = FakeNode("edge1", tokens=3)
    addresses = fake_nodes(node)
    register_fakes(srv.stub, [node], addresses)
    events = submit(srv.stub, service_pb("g1", attachment=b"c" * 500, input_bytes=0))
    kinds = [e.WhichOneof("event") for e in events]
    assert kinds == ["decision", "chunk", "chunk", "chunk", "outcome"]
    assert events[0].decision.node_id == "edge1" and events[0].decision.address == addresses[0]
    assert "".join(e.chunk.text for e in events[1:4]) == "t0 t1 t2 "
    out = events[-1].outcome
    assert out.status == common_pb2.OUTCOME_STATUS_MET and out.node_id == "edge1"
    assert (out.tokens_in, out.tokens_out, out.attempts) == (3, 3, 1)
    assert out.transmission_s == pytest.approx(0.05, abs=1e-6)
    assert (out.queueing_s, out.inference_s) == (pytest.approx(0.01), pytest.approx(0.2))
    assert 0 < out.total_s < 10.0
    # input_bytes 0 means "undeclared": the prompt plus the attachment.
    assert out.input_bytes == len("hello world") + 500
    request = node.requests[0]
    assert request.attachment == b"c" * 500 and request.max_new_tokens == 4
    assert out.energy.transmission_j == pytest.approx(request.ByteSize() * 8 * 2e-8)
    assert out.energy.transmission_method == common_pb2.ENERGY_METHOD_MODELLED
    assert (out.energy.inference_j, out.energy.idle_j) == (4.0, 1.0)
    assert out.energy.total_j == pytest.approx(
        out.energy.transmission_j + out.energy.inference_j + out.energy.idle_j)
    stats = srv.stub.GetStats(scheduler_pb2.GetStatsRequest(), timeout=RPC_TIMEOUT_S)
    assert stats.met == 1 and [(a.node_id, a.plays) for a in stats.arms] == [("edge1", 1)]
    assert srv.servicer.cluster.nodes["edge1"].inflight == {}


def test_submit_with_a_declared_attachment_sends_that_many_bytes_to_the_node(srv, fake_nodes):
    node = FakeNode("edge1", tokens=1)
    register_fakes(srv.stub, [node], fake_nodes(node))
    events = submit(srv.stub, service_pb("g2", emulated_attachment_bytes=70_000, input_bytes=0))
    out = events[-1].outcome
    assert out.status == common_pb2.OUTCOME_STATUS_MET
    assert out.input_bytes == len("hello world") + 70_000  # counted as if uploaded
    assert len(node.requests[0].attachment) == 70_000


@pytest.mark.parametrize("fields, needle", [
    ({"emulated_attachment_bytes": -1}, "emulated_attachment_bytes must be >= 0 (got -1)"),
    ({"emulated_attachment_bytes": 10, "attachment": b"abc"},
     "emulated_attachment_bytes (10) and service.attachment (3 bytes) exclude each other"),
    ({"emulated_attachment_bytes": 1 << 40}, f"message limit {64 * 1024 * 1024} (got {1 << 40})"),
])
def test_a_bad_declared_attachment_is_refused_before_anything_is_booked(srv, fake_nodes, fields,
                                                                         needle):
    node = FakeNode("edge1")
    register_fakes(srv.stub, [node], fake_nodes(node))
    code, details = code_of(lambda timeout: submit(srv.stub, service_pb("g3", **fields)))
    assert code is grpc.StatusCode.INVALID_ARGUMENT and needle in details
    assert node.requests == [] and srv.servicer.cluster.nodes["edge1"].inflight == {}


@pytest.mark.parametrize("mode, reason", [
    ("unavailable", "UNAVAILABLE: edge1 is shutting down"),
    ("full", "RESOURCE_EXHAUSTED: queue full"),
    ("break", "INTERNAL: backend crashed"),
    ("truncate", "stream ended without a GenerateResult"),
])
def test_submit_retries_a_failed_node_on_another(srv, fake_nodes, mode, reason):
    bad, good = FakeNode("edge1", mode=mode), FakeNode("edge2")
    register_fakes(srv.stub, [bad, good], fake_nodes(bad, good))
    events = submit(srv.stub, service_pb("g1"))
    decisions = [e.decision.node_id for e in events if e.WhichOneof("event") == "decision"]
    assert decisions == ["edge1", "edge2"]  # the policy picks edge1 first; the retry excludes it
    out = events[-1].outcome
    assert out.status == common_pb2.OUTCOME_STATUS_MET and out.node_id == "edge2"
    assert out.attempts == 2 and len(bad.requests) == 1 and len(good.requests) == 1
    # The failed attempt taught the policy too, and released edge1's place.
    assert srv.servicer.policy.plays == {"chat/edge1": 1, "chat/edge2": 1}
    assert srv.servicer.policy.met == {"chat/edge1": 0, "chat/edge2": 1}
    assert len(srv.servicer.policy.errors) == 1 and reason in srv.servicer.policy.errors[0]
    assert all(not n.inflight for n in srv.servicer.cluster.nodes.values())
    stats = srv.stub.GetStats(scheduler_pb2.GetStatsRequest(), timeout=RPC_TIMEOUT_S)
    assert (stats.met, stats.failed) == (1, 0)


def test_submit_ends_failed_with_the_reasons_when_every_node_fails(srv, fake_nodes):
    a, b = FakeNode("edge1", mode="unavailable"), FakeNode("edge2", mode="full")
    register_fakes(srv.stub, [a, b], fake_nodes(a, b))
    events = submit(srv.stub, service_pb("g1"))
    out = events[-1].outcome
    assert out.status == common_pb2.OUTCOME_STATUS_FAILED and out.attempts == 2
    assert "edge1: UNAVAILABLE" in out.error and "edge2: RESOURCE_EXHAUSTED" in out.error
    assert "no other node" in out.error
    stats = srv.stub.GetStats(scheduler_pb2.GetStatsRequest(), timeout=RPC_TIMEOUT_S)
    assert (stats.met, stats.missed, stats.failed) == (0, 0, 1)


def test_submit_to_an_unreachable_address_fails_over(srv, fake_nodes):
    good = FakeNode("edge2")
    (address,) = fake_nodes(good)
    # Nothing listens on edge1's address (port 1 on loopback): the connection is refused.
    srv.stub.RegisterNode(node_request("edge1", address="127.0.0.1:1"), timeout=RPC_TIMEOUT_S)
    srv.stub.RegisterNode(node_request("edge2", address=address), timeout=RPC_TIMEOUT_S)
    out = submit(srv.stub, service_pb("g1"))[-1].outcome
    assert out.status == common_pb2.OUTCOME_STATUS_MET and out.node_id == "edge2"
    assert out.attempts == 2


def test_submit_with_no_time_left_is_failed_not_lost(start, fake_nodes):
    srv = start(submit_margin_s=0.0)
    slow = FakeNode("edge1", mode="hold")
    register_fakes(srv.stub, [slow], fake_nodes(slow))
    # The requirement runs out while the node holds the second token.
    events = submit(srv.stub, service_pb("g1", deadline_s=0.5))
    slow.release.set()
    out = events[-1].outcome
    assert out.status == common_pb2.OUTCOME_STATUS_FAILED
    assert "DEADLINE_EXCEEDED" in out.error
    assert [e.WhichOneof("event") for e in events] == ["decision", "chunk", "outcome"]


# --- shutdown ----------------------------------------------------------------------------------
def test_shutdown_says_not_serving_and_lets_in_flight_submit_finish(start, fake_nodes):
    srv = start()
    slow = FakeNode("edge1", mode="hold", tokens=2)
    register_fakes(srv.stub, [slow], fake_nodes(slow))
    health = health_pb2_grpc.HealthStub(srv.channel)
    watch = health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=RPC_TIMEOUT_S)
    assert next(watch).status == health_pb2.HealthCheckResponse.SERVING

    results: list = []
    submitting = threading.Thread(
        target=lambda: results.append(submit(srv.stub, service_pb("g1"))))
    submitting.start()
    assert slow.first_chunk_sent.wait(RPC_TIMEOUT_S)
    stopper = threading.Thread(target=stop_server, args=(srv.server, srv.servicer, 5.0))
    stopper.start()
    assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
    watch.cancel()
    slow.release.set()  # the in-flight Submit now completes within the grace period
    submitting.join(RPC_TIMEOUT_S)
    stopper.join(RPC_TIMEOUT_S)
    assert not stopper.is_alive()
    assert results and results[0][-1].outcome.status == common_pb2.OUTCOME_STATUS_MET


def test_client_cancel_records_a_failure_and_cancels_the_node_call(srv, fake_nodes):
    slow = FakeNode("edge1", mode="hold")
    register_fakes(srv.stub, [slow], fake_nodes(slow))
    call = srv.stub.Submit(scheduler_pb2.SubmitRequest(service=service_pb("g1")),
                           timeout=RPC_TIMEOUT_S)
    assert next(call).WhichOneof("event") == "decision"
    assert next(call).WhichOneof("event") == "chunk"
    call.cancel()
    # The scheduler records the failure first, then cancels the node's call; the node's call
    # can end before `release` only by that cancellation.
    assert slow.ended.wait(RPC_TIMEOUT_S)
    slow.release.set()
    assert srv.servicer.counters == {"met": 0, "missed": 0, "failed": 1}
    assert srv.servicer.cluster.nodes["edge1"].inflight == {}
    # The client, not the node, ended it: the policy learned nothing about edge1.
    assert srv.servicer.policy.plays == {}


def test_heartbeat_updates_load_rates_and_bandwidth(start):
    srv = start(information="perfect")  # where reported rates and bandwidth are believed
    register(srv.stub, "edge1")
    srv.stub.Heartbeat(scheduler_pb2.HeartbeatRequest(
        node_id="edge1", queue_length=3, busy_slots=1, prefill_tok_s=500.0,
        decode_tok_s=float("nan"), link_rate_mbit=40.0, serving=True), timeout=RPC_TIMEOUT_S)
    (node,) = srv.stub.GetStats(scheduler_pb2.GetStatsRequest(), timeout=RPC_TIMEOUT_S).nodes
    assert (node.queue_length, node.busy_slots, node.link_rate_mbit) == (3, 1, 40.0)
    assert (node.prefill_tok_s, node.decode_tok_s) == (500.0, 50.0)  # a NaN rate is ignored
    assert node.alive


def test_an_infinite_constraint_f_echoed_back_is_accepted_as_the_bound(srv):
    register(srv.stub, "edge1")
    schedule(srv.stub, "s1")
    srv.stub.ReportOutcome(scheduler_pb2.ReportOutcomeRequest(outcome=outcome_pb(
        "edge1", constraint_f=float("-inf"))), timeout=RPC_TIMEOUT_S)
    code, details = code_of(srv.stub.ReportOutcome, scheduler_pb2.ReportOutcomeRequest(
        outcome=outcome_pb("edge1", constraint_f=float("nan"))))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "outcome.constraint_f" in details
    assert srv.servicer.counters["met"] == 1


# --- API hardening: idempotent outcomes, status checks, serving default, abandoned bookings ---
def stats_of(stub) -> scheduler_pb2.GetStatsResponse:
    return stub.GetStats(scheduler_pb2.GetStatsRequest(), timeout=RPC_TIMEOUT_S)


def test_a_repeated_report_outcome_returns_the_same_reward_and_changes_nothing(srv):
    register(srv.stub, "edge1")
    srv.stub.Schedule(scheduler_pb2.ScheduleRequest(service=service_pb("s1")),
                      timeout=RPC_TIMEOUT_S)
    first = srv.stub.ReportOutcome(scheduler_pb2.ReportOutcomeRequest(
        outcome=outcome_pb("edge1")), timeout=RPC_TIMEOUT_S)
    # A retry after a lost response, and one that even says something else: both answered
    # from the first report.
    again = srv.stub.ReportOutcome(scheduler_pb2.ReportOutcomeRequest(
        outcome=outcome_pb("edge1")), timeout=RPC_TIMEOUT_S)
    other = srv.stub.ReportOutcome(scheduler_pb2.ReportOutcomeRequest(outcome=outcome_pb(
        "edge1", status=common_pb2.OUTCOME_STATUS_FAILED)), timeout=RPC_TIMEOUT_S)
    assert first.reward == again.reward == other.reward == 1.0
    stats = stats_of(srv.stub)
    assert (stats.met, stats.missed, stats.failed) == (1, 0, 0)
    assert srv.servicer.policy.plays == {"chat/edge1": 1}


def test_the_memory_of_reported_ids_is_bounded(start):
    srv = start(reported_ids_memory=2)
    register(srv.stub, "edge1")
    for sid in ("s1", "s2", "s3"):
        schedule(srv.stub, sid)
        srv.stub.ReportOutcome(scheduler_pb2.ReportOutcomeRequest(
            outcome=outcome_pb("edge1", service_id=sid)), timeout=RPC_TIMEOUT_S)
    # s1 fell out of the memory of two: no longer answered as a repeat, and not booked, so
    # it is refused rather than counted twice.
    code, _ = code_of(srv.stub.ReportOutcome, scheduler_pb2.ReportOutcomeRequest(
        outcome=outcome_pb("edge1", service_id="s1")))
    assert code == grpc.StatusCode.NOT_FOUND
    assert stats_of(srv.stub).met == 3
    with pytest.raises(ValueError, match=r"reported_ids_memory must be > 0 \(got 0\)"):
        create_server(ServerConfig(policy=TEST_POLICY, reported_ids_memory=0))


@pytest.mark.parametrize("status, total_s, needle", [
    (common_pb2.OUTCOME_STATUS_MET, 10.5,
     "outcome.status MET needs outcome.total_s <= outcome.deadline_s "
     "(got total_s=10.5, deadline_s=10.0)"),
    (common_pb2.OUTCOME_STATUS_MISSED, 10.0,
     "outcome.status MISSED needs outcome.total_s > outcome.deadline_s "
     "(got total_s=10.0, deadline_s=10.0)"),
])
def test_a_status_the_times_contradict_is_invalid_argument(srv, status, total_s, needle):
    register(srv.stub, "edge1")
    schedule(srv.stub, "s1")
    code, details = code_of(srv.stub.ReportOutcome, scheduler_pb2.ReportOutcomeRequest(
        outcome=outcome_pb("edge1", status=status, total_s=total_s)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details == needle
    # FAILED says nothing about the times: any total_s goes.
    srv.stub.ReportOutcome(scheduler_pb2.ReportOutcomeRequest(outcome=outcome_pb(
        "edge1", status=common_pb2.OUTCOME_STATUS_FAILED, total_s=total_s)),
        timeout=RPC_TIMEOUT_S)
    stats = stats_of(srv.stub)
    assert (stats.met, stats.missed, stats.failed) == (0, 0, 1)


def test_a_heartbeat_without_serving_counts_as_serving(srv):
    register(srv.stub, "edge1")
    srv.stub.Heartbeat(scheduler_pb2.HeartbeatRequest(node_id="edge1", serving=False),
                       timeout=RPC_TIMEOUT_S)
    assert not stats_of(srv.stub).nodes[0].alive  # an explicit false still excludes it
    # A client that never heard of the field (another language, issue 2's field list).
    srv.stub.Heartbeat(scheduler_pb2.HeartbeatRequest(node_id="edge1", queue_length=1),
                       timeout=RPC_TIMEOUT_S)
    assert stats_of(srv.stub).nodes[0].alive
    reply = srv.stub.Schedule(scheduler_pb2.ScheduleRequest(service=service_pb()),
                              timeout=RPC_TIMEOUT_S)
    assert reply.node_id == "edge1"


def test_a_booking_never_reported_is_dropped_and_counted_abandoned(start):
    clock = FakeClock(1000.0)
    srv = start(clock=clock, heartbeat_timeout_s=3.0)
    register(srv.stub, "edge1", "edge2")
    reply = srv.stub.Schedule(scheduler_pb2.ScheduleRequest(service=service_pb("lost")),
                              timeout=RPC_TIMEOUT_S)
    assert reply.node_id == "edge1"
    # The client crashed. Past its predicted finish + deadline_s (10) + timeout (3) ...
    clock.now_s += reply.predicted_total_s + 13.5
    for node_id in ("edge1", "edge2"):
        srv.stub.Heartbeat(scheduler_pb2.HeartbeatRequest(node_id=node_id),
                           timeout=RPC_TIMEOUT_S)
    stats = stats_of(srv.stub)
    assert stats.abandoned == 1 and (stats.met, stats.missed, stats.failed) == (0, 0, 0)
    assert srv.servicer.cluster.nodes["edge1"].inflight == {}
    # ... so edge1 is free again for the fewest-in-flight policy.
    assert srv.stub.Schedule(scheduler_pb2.ScheduleRequest(service=service_pb("s2")),
                             timeout=RPC_TIMEOUT_S).node_id == "edge1"
    # Its outcome after all: counted once, as the outcome.
    srv.stub.ReportOutcome(scheduler_pb2.ReportOutcomeRequest(outcome=outcome_pb(
        "edge1", service_id="lost")), timeout=RPC_TIMEOUT_S)
    stats = stats_of(srv.stub)
    assert stats.abandoned == 0 and stats.met == 1


def test_the_bookings_of_a_dead_node_are_abandoned(start):
    clock = FakeClock(1000.0)
    srv = start(clock=clock, heartbeat_timeout_s=3.0)
    register(srv.stub, "edge1", "edge2")
    services = [service_pb(f"s{i}") for i in range(4)]
    srv.stub.ScheduleBatch(scheduler_pb2.ScheduleBatchRequest(services=services),
                           timeout=RPC_TIMEOUT_S)
    clock.now_s += 4.0
    srv.stub.Heartbeat(scheduler_pb2.HeartbeatRequest(node_id="edge2"), timeout=RPC_TIMEOUT_S)
    stats = stats_of(srv.stub)
    assert stats.abandoned == 2  # edge1's two; edge2 is alive and keeps its two
    assert len(srv.servicer.cluster.nodes["edge2"].inflight) == 2


def test_submit_finding_no_node_counts_as_failed(start):
    clock = FakeClock(1000.0)
    srv = start(clock=clock, heartbeat_timeout_s=3.0)
    code, _ = code_of(lambda r, timeout: list(srv.stub.Submit(r, timeout=timeout)),
                      scheduler_pb2.SubmitRequest(service=service_pb("g1")))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    register(srv.stub, "edge1")
    clock.now_s += 4.0  # registered but silent: no candidate either
    code, details = code_of(lambda r, timeout: list(srv.stub.Submit(r, timeout=timeout)),
                            scheduler_pb2.SubmitRequest(service=service_pb("g2")))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "alive" in details
    stats = stats_of(srv.stub)
    assert (stats.met, stats.missed, stats.failed, stats.abandoned) == (0, 0, 2, 0)


def test_submit_outcomes_pass_report_outcomes_checks(srv, fake_nodes):
    good, bad = FakeNode("edge1"), FakeNode("edge2", mode="garbage")
    register_fakes(srv.stub, [good, bad], fake_nodes(good, bad))
    holding = srv.stub.Schedule(scheduler_pb2.ScheduleRequest(service=service_pb("x")),
                                timeout=RPC_TIMEOUT_S)
    assert holding.node_id == "edge1"  # edge1 is busier now: the Submit goes to edge2
    out = submit(srv.stub, service_pb("g1"))[-1].outcome
    assert out.node_id == "edge2"
    checked = convert.outcome_from_proto(out)  # raises ValueError naming a bad field
    assert (checked.queueing_s, checked.inference_s, checked.transmission_s) == (0.0, 0.0, 0.0)
    assert (checked.tokens_in, checked.tokens_out) == (0, 0)
    assert (checked.energy.inference_j, checked.energy.idle_j) == (0.0, 0.0)
    assert checked.status is Outcome.status_for(checked.total_s, checked.deadline_s)
    srv.stub.ReportOutcome(scheduler_pb2.ReportOutcomeRequest(outcome=outcome_pb(
        "edge1", service_id="x")), timeout=RPC_TIMEOUT_S)
    normal = submit(srv.stub, service_pb("g2"))[-1].outcome
    assert normal.node_id == "edge1" and normal.status == common_pb2.OUTCOME_STATUS_MET
    convert.outcome_from_proto(normal)
    # The Submit's outcome is recorded: the client reporting it again changes nothing.
    srv.stub.ReportOutcome(scheduler_pb2.ReportOutcomeRequest(outcome=out),
                           timeout=RPC_TIMEOUT_S)
    assert stats_of(srv.stub).met == 3  # g1, x, g2


def test_service_to_proto_round_trips_through_service_from_proto():
    from scheduler import convert
    from scheduler.service import Service

    service = Service(id="s1", prompt="hello", input_bytes=2_000_000, max_new_tokens=8,
                      deadline_s=3.5, service_class="photo", temperature=0.0, top_k=0,
                      seed=7, prompt_tokens=64)
    assert convert.service_from_proto(convert.service_to_proto(service)) == service


# --- the accounting identity: met + missed + failed + abandoned + booked = scheduled ------------
def test_an_outcome_for_a_service_never_scheduled_is_not_found_and_not_counted(srv):
    register(srv.stub, "edge1", "edge2")
    code, details = code_of(srv.stub.ReportOutcome, scheduler_pb2.ReportOutcomeRequest(
        outcome=outcome_pb("edge1", service_id="ghost")))
    assert code == grpc.StatusCode.NOT_FOUND and "'ghost'" in details
    node = schedule(srv.stub, "s1")
    other = "edge2" if node == "edge1" else "edge1"
    code, _ = code_of(srv.stub.ReportOutcome, scheduler_pb2.ReportOutcomeRequest(
        outcome=outcome_pb(other, service_id="s1")))  # scheduled, but on the other node
    assert code == grpc.StatusCode.NOT_FOUND
    stats = stats_of(srv.stub)
    assert (stats.met, stats.missed, stats.failed) == (0, 0, 0)
    booked = sum(len(n.inflight) for n in srv.servicer.cluster.nodes.values())
    assert booked == 1  # s1 is still booked: the identity holds (0 + 0 + 0 + 0 + 1 = 1)


def test_huge_but_finite_energy_parts_are_refused_and_nothing_is_poisoned(srv):
    register(srv.stub, "edge1")
    schedule(srv.stub, "s1")
    energy = common_pb2.EnergyBreakdown(transmission_j=1e308, inference_j=1e308, idle_j=1e308)
    code, details = code_of(srv.stub.ReportOutcome, scheduler_pb2.ReportOutcomeRequest(
        outcome=outcome_pb("edge1", energy=energy)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "outcome.energy.transmission_j must be a finite number in [0, 1e+12]" in details
    stats = stats_of(srv.stub)
    assert math.isfinite(stats.regret) and all(math.isfinite(a.mean_reward) for a in stats.arms)
    schedule(srv.stub, "s2")  # the class still schedules


@pytest.mark.parametrize("field, value", [("temperature", float("nan")),
                                          ("temperature", float("inf")),
                                          ("temperature", -0.5), ("top_k", -1)])
def test_bad_sampling_is_refused_on_schedule(srv, field, value):
    register(srv.stub, "edge1")
    sampling = common_pb2.SamplingParams(**{field: value})
    code, details = code_of(srv.stub.Schedule, scheduler_pb2.ScheduleRequest(
        service=service_pb(sampling=sampling)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and f"service.{field}" in details


def test_negative_attempts_are_refused(srv):
    register(srv.stub, "edge1")
    schedule(srv.stub, "s1")
    code, details = code_of(srv.stub.ReportOutcome, scheduler_pb2.ReportOutcomeRequest(
        outcome=outcome_pb("edge1", attempts=-3)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "outcome.attempts" in details


def test_an_id_that_has_its_outcome_cannot_be_scheduled_again(srv):
    register(srv.stub, "edge1", "edge2")
    node = schedule(srv.stub, "s1")
    srv.stub.ReportOutcome(scheduler_pb2.ReportOutcomeRequest(outcome=outcome_pb(node)),
                           timeout=RPC_TIMEOUT_S)
    for call, request in ((srv.stub.Schedule, scheduler_pb2.ScheduleRequest(
            service=service_pb("s1"))), (srv.stub.ScheduleBatch,
                                         scheduler_pb2.ScheduleBatchRequest(
                                             services=[service_pb("s2"), service_pb("s1")]))):
        code, details = code_of(call, request)
        assert code == grpc.StatusCode.ALREADY_EXISTS and "'s1'" in details
    code, _ = code_of(lambda req, timeout: list(srv.stub.Submit(req, timeout=timeout)),
                      scheduler_pb2.SubmitRequest(service=service_pb("s1")))
    assert code == grpc.StatusCode.ALREADY_EXISTS
    stats = stats_of(srv.stub)
    assert (stats.met, sum(len(n.inflight) for n in srv.servicer.cluster.nodes.values())) == (1, 0)


def test_scheduling_an_id_again_moves_its_one_booking(srv):
    register(srv.stub, "edge1", "edge2")
    book(srv, "s1", "edge1")
    book(srv, "s1", "edge2")  # a client's retry decided elsewhere
    nodes = srv.servicer.cluster.nodes
    assert "s1" not in nodes["edge1"].inflight and "s1" in nodes["edge2"].inflight
    code, _ = code_of(srv.stub.ReportOutcome, scheduler_pb2.ReportOutcomeRequest(
        outcome=outcome_pb("edge1")))
    assert code == grpc.StatusCode.NOT_FOUND
    srv.stub.ReportOutcome(scheduler_pb2.ReportOutcomeRequest(outcome=outcome_pb("edge2")),
                           timeout=RPC_TIMEOUT_S)
    assert stats_of(srv.stub).met == 1


def test_submit_forwards_the_emulated_output_length_and_reports_the_prediction(srv,
                                                                              fake_nodes):
    node = FakeNode("edge1", tokens=3)
    register_fakes(srv.stub, [node], fake_nodes(node))
    pb = service_pb("s1", emulated_output_tokens=3)
    messages = submit(srv.stub, pb)
    assert node.requests[0].stop_after_tokens == 3  # forwarded to the node, unread
    assert node.requests[0].max_new_tokens == 4  # the declared cap, unchanged
    decision = messages[0].decision
    outcome = messages[-1].outcome
    assert outcome.predicted_total_s == pytest.approx(decision.predicted_total_s)
    assert outcome.predicted_total_s > 0
