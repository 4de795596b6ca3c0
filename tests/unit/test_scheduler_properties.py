"""Property-based tests of the SchedulerService: random call sequences against a real server.

A Hypothesis state machine drives an in-process scheduler (a registered policy drawn per case)
over a real gRPC channel with RegisterNode, Heartbeat, Schedule, ScheduleBatch, ReportOutcome
(for services it scheduled and for unknown ones) and GetStats, with extreme values among the
ordinary ones (NaN, ±inf, 1e308, negative numbers, the ends of int32/int64/uint64, empty and
100,000-character strings, addresses with and without a port) and a clock it moves (nodes
die, bookings are abandoned). After every step:
- no exception but grpc.RpcError escaped, and every status code is one the proto's comment
  for that RPC names (tests/unit/proto_contract.py), never UNKNOWN or INTERNAL;
- the accounting identity of GetStatsResponse: met + missed + failed + abandoned + booked ==
  the services the machine scheduled, counted from OK answers only (each OK Schedule, each
  assignment of an OK ScheduleBatch; an id names one service, so a retry before its outcome
  replaces its booking and counts once), booked read under the scheduler's lock;
- every number GetStats returns is finite (an untried arm's ucb may be +inf, never NaN/-inf).
Where the machine knows the answer it checks it too: a well-formed request gets OK or the one
documented refusal that applies (FAILED_PRECONDITION with no live node, ALREADY_EXISTS for a
service that has its outcome, NOT_FOUND for a booking replaced on another node or a service
never scheduled, INVALID_ARGUMENT for an unregistered node), a decision names a live node at
its registered address with finite predictions, and a reward is finite.

Bugs it found are pinned by the tests at the end: refusals that quoted long values lost
their code (status messages are now cut to 1 KiB, scheduler.grpc_server.bounded_details), and
tiny positive rates predicted infinite times or divided by zero (rates now have a floor,
scheduler.limits.MIN_RATE_*).
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import grpc
import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (Bundle, RuleBasedStateMachine, initialize, invariant,
                                 multiple, precondition, rule)

from perllm.v1 import common_pb2, scheduler_pb2, scheduler_pb2_grpc
from scheduler.config import ServerConfig
from scheduler.outcome import Outcome, Status
from scheduler.policies import POLICIES
from scheduler.server import create_server, stop_server
from tests.unit.conftest import FakeClock
from tests.unit.proto_contract import (INT32, INT64, NEVER, UINT64, documented_codes,
                                       wild_int)

ALLOWED = documented_codes("scheduler.proto")
OK = grpc.StatusCode.OK
RPC_TIMEOUT_S = 10.0
HEARTBEAT_TIMEOUT_S = 3.0
# The project's own policies; tests may register more (test_extension, test_scheduler_grpc),
# which depends on the order modules are collected in.
POLICY_NAMES = [name for name in POLICIES.names()
                if POLICIES.get(name).__module__.startswith("scheduler.policies.")]
# A clairvoyant policy's server reads true output lengths from a workload file; an empty one
# leaves every service at its cap (the cluster's fallback for an id the file lacks).
NO_TRUTH = Path(tempfile.mkdtemp(prefix="perllm-properties-")) / "workload.json"
NO_TRUTH.write_text("[]")

# --- values ------------------------------------------------------------------------------------
WILD_FLOAT = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -1e308, 0.0, -0.0, 5e-324, -1.0,
                     1e6, 1e6 + 1, 1e12, 1e13]),
    st.floats())


def repeated(low: int, high: int) -> st.SearchStrategy[str]:
    return st.builds(lambda ch, n: ch * n, st.sampled_from(["a", "é", "漢", "\x00", ":"]),
                     st.integers(low, high))


# Strings go up to 100,000 characters, ids and addresses included (a refusal quoting one is
# cut to 1 KiB, so it keeps its code: test_a_refusal_keeps_its_code_whatever_it_quotes).
WILD_TEXT = st.one_of(st.just(""), st.text(max_size=30), repeated(1_000, 100_000))
QUOTED_TEXT = WILD_TEXT
NODE_IDS = ["edge1", "edge2", "cloud"]
NODE_ID = st.one_of(st.sampled_from(NODE_IDS), QUOTED_TEXT)
ADDRESSES = ["127.0.0.1:50061", "[::1]:50062", "node.example:65535", "unix:/tmp/node.sock"]
WILD_ADDRESS = st.one_of(
    st.sampled_from(["", "127.0.0.1", "localhost", "host:0", "host:65536", "host:99999",
                     ":50051", "host:", "host:port", "[::1]", "1.2.3.4:-1", "a b:80",
                     "unix:", "x" * 250 + ":1"]),
    QUOTED_TEXT)
KINDS = [common_pb2.NODE_KIND_EDGE, common_pb2.NODE_KIND_CLOUD]
WILD_RATE = WILD_FLOAT  # tiny positive rates included (refused below scheduler.limits' floor)


# One request in four is wild (each of its fields valid or extreme), so most sequences get far
# enough to schedule and report; shrinking goes to the first value (valid).
WILD = st.sampled_from([False, False, False, True])


def either(wild: bool, valid: st.SearchStrategy, extreme: st.SearchStrategy) -> st.SearchStrategy:
    """The valid strategy, or when `wild` the valid one or the extreme one."""
    return st.one_of(valid, extreme) if wild else valid


@st.composite
def registrations(draw, wild: bool | None = None) -> dict:
    """RegisterNodeRequest fields; all in range unless the draw went wild."""
    wild = draw(WILD) if wild is None else wild
    node = draw(st.integers(0, len(NODE_IDS) - 1))
    idle_w = draw(either(wild, st.floats(0, 500), WILD_FLOAT))
    fields = dict(
        # short: some refusals list every registered id
        node_id=draw(either(wild, st.just(NODE_IDS[node]), st.text(max_size=12))),
        # mostly the node's own address; another one is ALREADY_EXISTS once it is registered
        address=draw(either(wild, st.sampled_from([ADDRESSES[node], *ADDRESSES]), WILD_ADDRESS)),
        kind=draw(either(wild, st.sampled_from(KINDS), wild_int(*INT32))),
        slots=draw(either(wild, st.integers(1, 16), wild_int(*INT32))),
        link_rate_mbit=draw(either(wild, st.floats(0.1, 1000), WILD_RATE)),
        profile=draw(either(wild, st.sampled_from(["", "xeon-4214r/llama2-7b"]), WILD_TEXT)),
        idle_power_w=idle_w,
        max_power_w=draw(either(wild, st.floats(0, 500).map(
            lambda extra: idle_w + extra if math.isfinite(idle_w) else extra), WILD_FLOAT)),
        prefill_tok_s=draw(either(wild, st.one_of(st.just(0.0), st.floats(1, 1e5)), WILD_RATE)),
        decode_tok_s=draw(either(wild, st.one_of(st.just(0.0), st.floats(1, 1e4)), WILD_RATE)),
        queue_capacity=draw(either(wild, st.integers(0, 128), wild_int(*INT32))),
        transmission_j_per_bit=draw(either(wild, st.floats(0, 1e-6), WILD_FLOAT)),
        concurrency_slowdown=draw(either(wild, st.floats(0, 1), WILD_FLOAT)))
    return {"wild": wild, "fields": fields}


@st.composite
def services(draw) -> dict:
    """Service fields without the id (the machine gives each a fresh one unless wild)."""
    wild = draw(WILD)
    fields = dict(
        prompt=draw(either(wild, st.text(min_size=1, max_size=40), WILD_TEXT)),
        input_bytes=draw(either(wild, st.integers(0, 10**7), wild_int(*INT64))),
        max_new_tokens=draw(either(wild, st.integers(1, 4096), wild_int(*INT32))),
        deadline_s=draw(either(wild, st.floats(0.01, 100), WILD_FLOAT)),
        service_class=draw(either(wild, st.sampled_from(["chat", "code", ""]), WILD_TEXT)),
        prompt_tokens=draw(either(wild, st.integers(0, 10**6), wild_int(*INT32))),
        emulated_output_tokens=draw(either(wild, st.integers(0, 4096), wild_int(*INT32))),
        attachment=draw(st.binary(max_size=64)))
    if draw(st.booleans()):
        fields["sampling"] = common_pb2.SamplingParams(
            temperature=draw(either(wild, st.floats(0, 2, width=32), WILD_FLOAT)),
            top_k=draw(either(wild, st.integers(0, 1000), wild_int(*INT32))),
            seed=draw(wild_int(*UINT64)))
    service_id = draw(QUOTED_TEXT) if wild and draw(st.booleans()) else None
    return {"wild": wild, "fields": fields, "id": service_id}


@st.composite
def measurements(draw) -> dict:
    """Outcome fields a client measured (status and deadline added by the rule)."""
    wild = draw(WILD)
    duration = either(wild, st.floats(0, 1000), WILD_FLOAT)
    energy = either(wild, st.floats(0, 1e6), WILD_FLOAT)
    fields = dict(
        transmission_s=draw(duration), queueing_s=draw(duration), inference_s=draw(duration),
        total_s=draw(duration),
        tokens_in=draw(either(wild, st.integers(0, 10_000), wild_int(*INT32))),
        tokens_out=draw(either(wild, st.integers(0, 10_000), wild_int(*INT32))),
        input_bytes=draw(either(wild, st.integers(0, 10**9), wild_int(*INT64))),
        energy=common_pb2.EnergyBreakdown(
            transmission_j=draw(energy), inference_j=draw(energy), idle_j=draw(energy),
            total_j=draw(energy), inference_method=draw(st.integers(0, 4))),
        error=draw(either(wild, st.text(max_size=20), WILD_TEXT)),
        attempts=draw(either(wild, st.integers(0, 10), wild_int(*INT32))),
        constraint_f=draw(either(wild, st.one_of(st.floats(-1, 1),
                                                 st.sampled_from([-math.inf, math.inf])),
                                 WILD_FLOAT)))
    return {"wild": wild, "fields": fields, "failed": draw(st.booleans()),
            "status": draw(st.integers(0, 3)) if wild and draw(st.booleans()) else None}


# --- the machine -------------------------------------------------------------------------------
# A service id names one service (scheduler.proto, Schedule): scheduling it again before its
# outcome replaces its booking (maybe on another node), after its outcome is ALREADY_EXISTS.
UNSURE = object()  # booked_on value of an id twice in one batch: which booking won is the policy's


class SchedulerMachine(RuleBasedStateMachine):
    """One server per test case; the model: registered nodes and their liveness, the services
    scheduled (OK answers only), where each is booked now, and those with an outcome."""

    bookings = Bundle("bookings")  # (service_id, node_id, deadline_s, service_class)

    def __init__(self) -> None:
        super().__init__()
        self.server = self.servicer = self.channel = None
        self.clock = FakeClock(1000.0)
        self.nodes: dict[str, dict] = {}  # node_id -> address, kind, last_seen_s, serving
        self.booked_on: dict[str, object] = {}  # every service id scheduled -> its node now
        self.reported: set[str] = set()  # service ids whose outcome was recorded
        self.next_id = 0

    @initialize(policy=st.sampled_from(POLICY_NAMES),
                initial=st.lists(registrations(wild=False), min_size=3, max_size=3),
                keep=st.sampled_from([3, 2, 1, 0]))
    def start(self, policy: str, initial: list[dict], keep: int) -> None:
        self.policy = policy
        clairvoyant = POLICIES.get(policy).information == "clairvoyant"
        self.server, port, self.servicer = create_server(ServerConfig(
            host="127.0.0.1", port=0, policy=policy, clock=self.clock,
            heartbeat_timeout_s=HEARTBEAT_TIMEOUT_S,
            true_output_tokens=str(NO_TRUTH) if clairvoyant else None))
        self.server.start()
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self.stub = scheduler_pb2_grpc.SchedulerServiceStub(self.channel)
        for reg in initial[:keep]:  # most sequences start with nodes to schedule on
            self.register(reg)

    def teardown(self) -> None:
        if self.channel is not None:
            self.channel.close()
        if self.server is not None:
            stop_server(self.server, self.servicer, 0)

    # --- helpers -------------------------------------------------------------------------
    def call(self, rpc: str, request):
        """(response or None, status code); a code the proto does not name fails."""
        try:
            response, code = getattr(self.stub, rpc)(request, timeout=RPC_TIMEOUT_S), OK
        except grpc.RpcError as e:
            response, code = None, e.code()
            assert code not in NEVER, f"{rpc} answered {code}: {e.details()}"
            assert code in ALLOWED[rpc], \
                f"{rpc} answered {code.name} ({e.details()}); documented: " \
                f"{sorted(c.name for c in ALLOWED[rpc])}"
        event(f"{rpc} {code.name}")  # --hypothesis-show-statistics: how often each answer came
        return response, code

    def fresh_id(self, prefix: str) -> str:
        self.next_id += 1
        return f"{prefix}-{self.next_id}"

    def live(self) -> dict[str, dict]:
        """Nodes a policy may choose: heartbeat within the timeout and serving."""
        now = self.clock()
        return {n: s for n, s in self.nodes.items()
                if now - s["last_seen_s"] <= HEARTBEAT_TIMEOUT_S and s["serving"]}

    def service(self, spec: dict, service_id: str | None = None) -> common_pb2.Service:
        sid = service_id if service_id is not None else (
            spec["id"] if spec["id"] is not None else self.fresh_id("svc"))
        return common_pb2.Service(id=sid, **spec["fields"])

    def check_decision(self, reply: scheduler_pb2.ScheduleResponse, service: common_pb2.Service,
                       live: dict[str, dict]) -> tuple:
        assert reply.service_id == service.id
        assert reply.node_id in live, f"{reply.node_id!r} is not live: {sorted(live)}"
        assert reply.address == live[reply.node_id]["address"]
        assert reply.policy == self.policy
        for name in ("predicted_transmission_s", "predicted_queueing_s",
                     "predicted_inference_s", "predicted_total_s"):
            value = getattr(reply, name)
            assert math.isfinite(value) and value >= 0, f"{name} = {value}"
        assert not math.isnan(reply.constraint_f)
        return (service.id, reply.node_id, service.deadline_s, service.service_class)

    def scheduled(self, code: grpc.StatusCode, wild: bool, batch: list[common_pb2.Service],
                  live: dict, replies) -> list[tuple]:
        """Check a Schedule or ScheduleBatch answer against the model, then book its
        assignments in the model; the bookings a client could now report."""
        if not live and batch:
            assert code != OK, "scheduled with no live node"
        if not wild and batch:
            if any(s.id in self.reported for s in batch):
                assert code == grpc.StatusCode.ALREADY_EXISTS, code
            elif {s["kind"] for s in live.values()} == set(KINDS):
                # an edge and a cloud alive: every policy has a node of its kind
                assert code == OK, f"a valid service got {code.name}; live: {sorted(live)}"
            else:
                assert code in (OK, grpc.StatusCode.FAILED_PRECONDITION), code
        if code != OK:
            return []
        assert len(replies) == len(batch)
        booked = [self.check_decision(r, s, live) for r, s in zip(replies, batch)]
        ids = [s.id for s in batch]
        for service_id, node_id, *_ in booked:
            self.booked_on[service_id] = node_id if ids.count(service_id) == 1 else UNSURE
        return booked

    # --- rules ---------------------------------------------------------------------------
    @rule(reg=registrations())
    def register(self, reg: dict) -> None:
        fields = reg["fields"]
        _, code = self.call("RegisterNode", scheduler_pb2.RegisterNodeRequest(**fields))
        known = self.nodes.get(fields["node_id"])
        if not reg["wild"]:
            moved = known is not None and known["address"] != fields["address"]
            assert code == (grpc.StatusCode.ALREADY_EXISTS if moved else OK), code
        if code == OK:
            self.nodes[fields["node_id"]] = dict(
                address=fields["address"], kind=fields["kind"], last_seen_s=self.clock(),
                serving=True)

    @rule(node_id=st.one_of(st.sampled_from(NODE_IDS), NODE_ID),
          queue_length=wild_int(*INT32), busy_slots=wild_int(*INT32),
          prefill=WILD_RATE, decode=WILD_RATE, link=WILD_RATE,
          serving=st.sampled_from([None, True, False]))
    def heartbeat(self, node_id, queue_length, busy_slots, prefill, decode, link, serving):
        request = scheduler_pb2.HeartbeatRequest(
            node_id=node_id, queue_length=queue_length, busy_slots=busy_slots,
            prefill_tok_s=prefill, decode_tok_s=decode, link_rate_mbit=link)
        if serving is not None:
            request.serving = serving
        _, code = self.call("Heartbeat", request)
        node = self.nodes.get(node_id)
        assert code == (OK if node is not None else grpc.StatusCode.NOT_FOUND), code
        if node is not None:
            node["last_seen_s"] = self.clock()
            node["serving"] = serving is not False

    @rule(target=bookings, spec=services())
    def schedule(self, spec: dict):
        return self._schedule(spec, self.service(spec))

    @rule(target=bookings, booking=bookings, spec=services())
    def schedule_again(self, booking: tuple, spec: dict):
        """A client's retry: the same service id scheduled once more."""
        return self._schedule(spec, self.service(spec, service_id=booking[0]))

    def _schedule(self, spec: dict, service: common_pb2.Service):
        live = self.live()
        reply, code = self.call("Schedule", scheduler_pb2.ScheduleRequest(service=service))
        return multiple(*self.scheduled(code, spec["wild"], [service], live, [reply]))

    @rule(target=bookings, specs=st.lists(services(), max_size=6))
    def schedule_batch(self, specs: list[dict]):
        batch = [self.service(spec) for spec in specs]
        live = self.live()
        reply, code = self.call("ScheduleBatch",
                                scheduler_pb2.ScheduleBatchRequest(services=batch))
        replies = reply.assignments if reply is not None else []
        return multiple(*self.scheduled(code, any(s["wild"] for s in specs), batch, live,
                                        replies))

    @rule(booking=bookings, measured=measurements(),
          echo_deadline=st.sampled_from([True, True, True, False]), deadline=WILD_FLOAT)
    def report_scheduled(self, booking: tuple, measured: dict, echo_deadline: bool,
                         deadline: float) -> None:
        service_id, node_id, booked_deadline_s, service_class = booking
        fields = measured["fields"]
        deadline_s = booked_deadline_s if echo_deadline else deadline
        status = measured["status"]
        if status is None:
            status = (common_pb2.OUTCOME_STATUS_FAILED if measured["failed"] else
                      _STATUS_TO_PB[Outcome.status_for(fields["total_s"], deadline_s)])
        outcome = common_pb2.Outcome(service_id=service_id, node_id=node_id,
                                     service_class=service_class, status=status,
                                     deadline_s=deadline_s, **fields)
        reply, code = self.call("ReportOutcome",
                                scheduler_pb2.ReportOutcomeRequest(outcome=outcome))
        if not (measured["wild"] or not echo_deadline):
            where = self.booked_on[service_id]
            if service_id in self.reported or where == node_id:
                assert code == OK, f"a well-formed outcome of a scheduled service: {code.name}"
            elif where is UNSURE:
                assert code in (OK, grpc.StatusCode.NOT_FOUND), code
            else:  # booked again on another node since: this booking is gone
                assert code == grpc.StatusCode.NOT_FOUND, code
        if code == OK:
            assert math.isfinite(reply.reward), reply.reward
            self.reported.add(service_id)

    @rule(service_id=st.one_of(st.none(), QUOTED_TEXT), node_id=NODE_ID,
          measured=measurements())
    def report_unknown(self, service_id, node_id, measured: dict) -> None:
        never_scheduled = service_id is None
        sid = self.fresh_id("never-scheduled") if never_scheduled else service_id
        fields = measured["fields"]
        status = measured["status"]
        if status is None:
            status = common_pb2.OUTCOME_STATUS_FAILED
        outcome = common_pb2.Outcome(service_id=sid, node_id=node_id, status=status,
                                     deadline_s=1.0, **fields)
        _, code = self.call("ReportOutcome", scheduler_pb2.ReportOutcomeRequest(outcome=outcome))
        if never_scheduled and not measured["wild"]:
            expected = (grpc.StatusCode.NOT_FOUND if node_id in self.nodes
                        else grpc.StatusCode.INVALID_ARGUMENT)
            assert code == expected, f"expected {expected.name}, got {code.name}"
        if code == OK:
            self.reported.add(sid)

    @rule(seconds=st.one_of(st.floats(0, 2), st.sampled_from([2.9, 3.0, 3.1, 10.0, 1e3, 1e6])))
    def advance_clock(self, seconds: float) -> None:
        self.clock.now_s += seconds

    # --- after every step ----------------------------------------------------------------
    @precondition(lambda self: self.server is not None)
    @invariant()
    def stats_account_for_every_service(self) -> None:
        stats, code = self.call("GetStats", scheduler_pb2.GetStatsRequest())
        assert code == OK
        with self.servicer.scheduler.lock:
            booked = sum(len(node.inflight) for node in self.servicer.cluster.nodes.values())
        counted = stats.met + stats.missed + stats.failed + stats.abandoned + booked
        assert counted == len(self.booked_on), (
            f"met {stats.met} + missed {stats.missed} + failed {stats.failed} + abandoned "
            f"{stats.abandoned} + booked {booked} = {counted}, scheduled {len(self.booked_on)}")
        assert math.isfinite(stats.regret), stats.regret
        for arm in stats.arms:
            assert math.isfinite(arm.mean_reward), arm
            assert math.isfinite(arm.success_rate), arm
            assert not math.isnan(arm.ucb) and arm.ucb != -math.inf, arm
        for node in stats.nodes:
            for name in ("prefill_tok_s", "decode_tok_s", "link_rate_mbit"):
                assert math.isfinite(getattr(node, name)), node
        assert sorted(n.node_id for n in stats.nodes) == sorted(self.nodes)


_STATUS_TO_PB = {Status.MET: common_pb2.OUTCOME_STATUS_MET,
                 Status.MISSED: common_pb2.OUTCOME_STATUS_MISSED}

SchedulerMachine.TestCase.settings = settings(
    max_examples=50, stateful_step_count=30, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
test_scheduler_properties = SchedulerMachine.TestCase


def test_the_proto_documents_codes_for_every_scheduler_rpc():
    """The machine's allowed codes come from the proto; a renamed RPC must not go unchecked."""
    rpcs = set(scheduler_pb2.DESCRIPTOR.services_by_name["SchedulerService"].methods_by_name)
    assert set(ALLOWED) == rpcs
    assert ALLOWED["GetStats"] == {OK}
    assert grpc.StatusCode.NOT_FOUND in ALLOWED["ReportOutcome"]
    assert ALLOWED["ScheduleBatch"] == ALLOWED["Schedule"]



# --- refusals that quote what they were sent -----------------------------------------------------
# gRPC carries the status message in the trailers, and a client refuses trailers over its
# metadata limit (8 KiB soft, 16 KiB hard by default) with RESOURCE_EXHAUSTED "Stream removed":
# a refusal that quotes a long request value, or lists every registered node, would lose its
# code; both servers cut status messages to 1 KiB (scheduler.grpc_server.bounded_details).
LONG = "x" * 20_000


@pytest.fixture
def served():
    """A started scheduler: its stub and clock."""
    clock = FakeClock(1000.0)
    server, port, servicer = create_server(ServerConfig(
        host="127.0.0.1", port=0, clock=clock, heartbeat_timeout_s=HEARTBEAT_TIMEOUT_S))
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield scheduler_pb2_grpc.SchedulerServiceStub(channel), clock
    channel.close()
    stop_server(server, servicer, 0)


def _node(node_id: str, address: str) -> scheduler_pb2.RegisterNodeRequest:
    return scheduler_pb2.RegisterNodeRequest(node_id=node_id, address=address,
                                             kind=common_pb2.NODE_KIND_EDGE, slots=1,
                                             link_rate_mbit=100.0)


def _code(call, request) -> grpc.StatusCode:
    try:
        call(request, timeout=RPC_TIMEOUT_S)
    except grpc.RpcError as e:
        return e.code()
    return OK


def _failed_outcome(service_id: str, node_id: str) -> scheduler_pb2.ReportOutcomeRequest:
    return scheduler_pb2.ReportOutcomeRequest(outcome=common_pb2.Outcome(
        service_id=service_id, node_id=node_id, status=common_pb2.OUTCOME_STATUS_FAILED,
        deadline_s=1.0))


@pytest.mark.parametrize("case", ["heartbeat id", "register address", "report node id",
                                  "report service id", "register again"])
def test_a_refusal_keeps_its_code_whatever_it_quotes(served, case):
    stub, _ = served
    assert _code(stub.RegisterNode, _node("edge1", "127.0.0.1:50061")) == OK
    rpc, request, expected = {
        "heartbeat id": ("Heartbeat", scheduler_pb2.HeartbeatRequest(node_id=LONG),
                         grpc.StatusCode.NOT_FOUND),
        "register address": ("RegisterNode", _node("edge2", LONG),
                             grpc.StatusCode.INVALID_ARGUMENT),
        "report node id": ("ReportOutcome", _failed_outcome("s1", LONG),
                           grpc.StatusCode.INVALID_ARGUMENT),
        "report service id": ("ReportOutcome", _failed_outcome(LONG, "edge1"),
                              grpc.StatusCode.NOT_FOUND),
        "register again": ("RegisterNode", _node("edge1", LONG + ":1"),
                           grpc.StatusCode.ALREADY_EXISTS),
    }[case]
    assert _code(getattr(stub, rpc), request) == expected


@pytest.mark.parametrize("rpc", ["ReportOutcome", "Schedule"])
def test_a_refusal_keeps_its_code_with_many_nodes(served, rpc):
    stub, clock = served
    for i in range(400):  # ~25 KiB of node ids
        assert _code(stub.RegisterNode, _node(f"edge-{i:04d}-{'n' * 50}",
                                              f"10.0.{i // 250}.{i % 250 + 1}:50061")) == OK
    if rpc == "ReportOutcome":  # INVALID_ARGUMENT lists the registered nodes
        request, expected = _failed_outcome("s1", "nope"), grpc.StatusCode.INVALID_ARGUMENT
    else:  # FAILED_PRECONDITION lists them too once every node is silent
        clock.now_s += 10 * HEARTBEAT_TIMEOUT_S
        request = scheduler_pb2.ScheduleRequest(service=common_pb2.Service(
            id="s1", prompt="p", max_new_tokens=4, deadline_s=3.0))
        expected = grpc.StatusCode.FAILED_PRECONDITION
    assert _code(getattr(stub, rpc), request) == expected


@pytest.mark.parametrize("rates", [dict(link_rate_mbit=5e-324),
                                   dict(prefill_tok_s=5e-324, decode_tok_s=5e-324)])
def test_a_tiny_rate_keeps_predictions_finite(served, rates):
    stub, _ = served
    request = _node("edge1", "127.0.0.1:50061")
    for name, value in rates.items():
        setattr(request, name, value)
    if _code(stub.RegisterNode, request) != OK:
        return  # refused at registration: nothing can go wrong later
    answers = []  # (code, predicted_total_s or the refusal's message)
    for i in range(3):  # the second and third see an upload in flight
        try:
            reply = stub.Schedule(scheduler_pb2.ScheduleRequest(service=common_pb2.Service(
                id=f"s{i}", prompt="p", input_bytes=1000, max_new_tokens=4, deadline_s=3.0)),
                timeout=RPC_TIMEOUT_S)
        except grpc.RpcError as e:
            answers.append((e.code().name, e.details()))
        else:
            answers.append((OK.name, reply.predicted_total_s))
    assert all(code == OK.name and math.isfinite(total) for code, total in answers), answers
