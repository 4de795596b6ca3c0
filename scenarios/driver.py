"""The workload driver: runs on the `user` host, replays a workload against the scheduler and
prints one JSON line per finished service on stdout (the runner collects them).

Gateway mode: `SchedulerService.Submit` (the scheduler forwards and learns by itself).
Advisor mode: `Schedule`, then `InferenceService.Generate` on the chosen node, then
`ReportOutcome` with what the driver measured.
Every service ends as met, missed or failed with a reason; none is dropped.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import threading
import time
from pathlib import Path

import grpc
from google.protobuf import json_format

from perllm.v1 import (common_pb2, inference_pb2, inference_pb2_grpc, scheduler_pb2,
                       scheduler_pb2_grpc)
from scheduler.channels import open_channel
from scheduler.convert import (generate_request, outcome_from_proto, outcome_from_result,
                               outcome_to_proto, service_to_proto)
from scheduler.grpc_server import prestarted_executor
from scheduler.options import add_arguments, from_args
from scheduler.outcome import Outcome, Status, failed_outcome
from scheduler.security import ClientSecurityOptions, Security, load_security
from scheduler.service import Service
from scenarios.workload import WorkloadItem

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
# Requests are built (attachment made, message serialised) before the workload's clock starts,
# up to this many bytes in all: built at arrival, a burst of 30 multi-MB uploads left the
# driver one by one, 38 ms apart, so it reached the link over 1.1 s, not at once (fidelity:
# driver lateness). Past the budget a request is built on its own thread at arrival.
PREBUILD_MAX_BYTES = 2 * 1024 ** 3
SUBMIT_METHOD = (f"/{scheduler_pb2.DESCRIPTOR.services_by_name['SchedulerService'].full_name}"
                 "/Submit")
CHANNEL_OPTIONS = [("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                   ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)]


def outcome_record(arrival_s: float, outcome: common_pb2.Outcome) -> dict:
    """One finished service as a JSON-able line: its wire Outcome and its arrival time.

    The runner reads it back with `read_outcome_record`, through convert.outcome_from_proto
    (the checks ReportOutcome applies), so the record has one form from the node to the CSV.
    """
    return {"type": "outcome", "arrival_s": arrival_s,
            "outcome": json_format.MessageToDict(outcome, preserving_proto_field_name=True)}


def read_outcome_record(record: dict) -> tuple[Outcome, float]:
    """(the Outcome, arrival_s) of a record written by outcome_record."""
    pb = json_format.ParseDict(record["outcome"], common_pb2.Outcome())
    return outcome_from_proto(pb), float(record["arrival_s"])


def from_arrival(record: dict, e2e_s: float) -> tuple[dict, float | None]:
    """The record with its processing time counted from the service's arrival (its due time
    on the workload's clock), as the simulator and the paper count it, and the time added.

    The scheduler starts its clock when a Submit has reached it whole, so the time a service
    spent getting there (the driver's lateness, the gateway's intake; with --attachment-at
    client also the multi-MB upload over loopback) was in no result: under a burst of 30-50 multi-MB uploads it
    was 0.2-2 s, and the emulation looked 15-50 points better than the simulator. That time
    is now queueing (the service waited to be scheduled), and met/missed follows; the
    fidelity monitor judges its size (frontend_delay). Failed services keep their record."""
    outcome, arrival_s = read_outcome_record(record)
    if outcome.status is Status.FAILED:
        return record, None
    extra_s = max(0.0, e2e_s - outcome.total_s)
    total_s = outcome.total_s + extra_s
    outcome = dataclasses.replace(outcome, total_s=total_s,
                                  queueing_s=outcome.queueing_s + extra_s,
                                  status=Outcome.status_for(total_s, outcome.deadline_s))
    return outcome_record(arrival_s, outcome_to_proto(outcome)), extra_s


def failed_record(service: Service, arrival_s: float, elapsed_s: float, error: str,
                  node_id: str = "") -> dict:
    return outcome_record(arrival_s, outcome_to_proto(
        failed_outcome(service, node_id, total_s=elapsed_s, error=error)))


class Driver:
    def __init__(self, scheduler: str, mode: str, give_up_s: float, emit,
                 security: Security | None = None, attachment_at: str = "gateway") -> None:
        self.security = security  # TLS and the token, to the scheduler and (advisor) the nodes
        self.channel = open_channel(scheduler, security, options=CHANNEL_OPTIONS)
        self.scheduler = scheduler_pb2_grpc.SchedulerServiceStub(self.channel)
        # Submit with a request serialised in advance (no serializer: bytes go as they are).
        self._submit_bytes = self.channel.unary_stream(
            SUBMIT_METHOD, request_serializer=None,
            response_deserializer=scheduler_pb2.SubmitResponse.FromString)
        self.mode = mode
        self.attachment_at = attachment_at  # gateway mode: who makes the attachment (see main)
        self.give_up_s = give_up_s
        self.emit = emit
        self._node_channels: dict[str, inference_pb2_grpc.InferenceServiceStub] = {}
        self._lock = threading.Lock()

    def node_stub(self, address: str) -> inference_pb2_grpc.InferenceServiceStub:
        with self._lock:
            if address not in self._node_channels:
                channel = open_channel(address, self.security, options=CHANNEL_OPTIONS)
                self._node_channels[address] = inference_pb2_grpc.InferenceServiceStub(channel)
            return self._node_channels[address]

    def prepare(self, item: WorkloadItem) -> bytes:
        """What run_one needs of `item` ahead of time: its serialised SubmitRequest (gateway)
        or its attachment (advisor, whose request carries the send time)."""
        from scenarios.workload import attachment_for, attachment_size

        if self.mode != "gateway":
            return attachment_for(item.service)
        if self.attachment_at == "gateway":
            service = service_to_proto(item.service, emulated_output_tokens=item.output_tokens,
                                       emulated_attachment_bytes=attachment_size(item.service))
        else:
            service = service_to_proto(item.service, attachment_for(item.service),
                                       emulated_output_tokens=item.output_tokens)
        return scheduler_pb2.SubmitRequest(service=service).SerializeToString()

    def run_one(self, item: WorkloadItem, prepared: bytes | None = None,
                due_s: float | None = None) -> None:
        """One service from arrival to its outcome record; its true output length
        (item.output_tokens) reaches the node only, as where the model's answer ends.

        due_s is when the workload says it arrives (time.monotonic()); the record then
        carries the driver's own timing (scenarios.fidelity): how late this thread began it
        and how long the client waited from that due time to the outcome."""
        service, arrival_s = item.service, item.arrival_s
        start = time.monotonic()
        try:
            if prepared is None:
                prepared = self.prepare(item)
            if self.mode == "gateway":
                record = self._gateway(service, arrival_s, prepared)
            else:
                record = self._advisor(service, arrival_s, prepared, item.output_tokens,
                                       start)
        except grpc.RpcError as exc:
            reason = f"{exc.code().name}: {exc.details()}"
            if exc.code() is grpc.StatusCode.DEADLINE_EXCEEDED:
                reason = f"gave up after {self.give_up_s:g} s ({reason})"  # as the simulator says
            record = failed_record(service, arrival_s, time.monotonic() - start, reason)
        except Exception as exc:  # a driver bug must still leave a recorded outcome
            record = failed_record(service, arrival_s, time.monotonic() - start,
                                   f"driver error: {exc!r}")
        if due_s is not None:
            e2e_s = time.monotonic() - due_s
            record, frontend_s = from_arrival(record, e2e_s)
            record["driver"] = {"late_s": start - due_s, "e2e_s": e2e_s,
                                "frontend_s": frontend_s}
        self.emit(record)

    def _gateway(self, service: Service, arrival_s: float, request: bytes) -> dict:
        start = time.monotonic()
        outcome = None
        for message in self._submit_bytes(request, timeout=self.give_up_s):
            if message.WhichOneof("event") == "outcome":
                outcome = message.outcome
        if outcome is None:
            return failed_record(service, arrival_s, time.monotonic() - start,
                                 "scheduler stream ended without outcome")
        return outcome_record(arrival_s, outcome)

    def _advisor(self, service: Service, arrival_s: float, attachment: bytes, output_tokens: int,
                 start: float) -> dict:
        decision = self.scheduler.Schedule(
            scheduler_pb2.ScheduleRequest(service=service_to_proto(service)), timeout=10)
        sent_unix_s = time.time()
        result = None
        tokens_out = 0
        error = ""
        try:
            for message in self.node_stub(decision.address).Generate(
                    generate_request(service, attachment, sent_unix_s, output_tokens),
                    timeout=max(1.0, self.give_up_s - (time.monotonic() - start))):
                if message.WhichOneof("event") == "chunk":
                    tokens_out += len(message.chunk.token_ids)
                else:
                    result = message.result
        except grpc.RpcError as exc:
            error = f"{decision.node_id}: {exc.code().name}: {exc.details()}"
        total_s = time.monotonic() - start
        if result is None:
            outcome = failed_outcome(
                service, decision.node_id, total_s=total_s, tokens_out=tokens_out,
                error=error or "node stream ended without result",
                constraint_f=decision.constraint_f,
                predicted_total_s=decision.predicted_total_s)
        else:
            # Transmission energy is attributed by the runner from interface counters.
            outcome = outcome_from_result(
                service, decision.node_id, result, sent_unix_s=sent_unix_s, total_s=total_s,
                transmission_j=0.0, constraint_f=decision.constraint_f,
                predicted_total_s=decision.predicted_total_s)
        pb = outcome_to_proto(outcome)
        self.scheduler.ReportOutcome(scheduler_pb2.ReportOutcomeRequest(outcome=pb), timeout=10)
        return outcome_record(arrival_s, pb)

    def wait_for_nodes(self, count: int, timeout_s: float) -> None:
        """Nodes register on their own; poll the scheduler's view until all are alive."""
        end = time.monotonic() + timeout_s
        alive = 0
        while time.monotonic() < end:
            stats = self.scheduler.GetStats(scheduler_pb2.GetStatsRequest(), timeout=5,
                                            wait_for_ready=True)
            alive = sum(1 for node in stats.nodes if node.alive)
            if alive >= count:
                return
            time.sleep(0.1)  # no event to await across processes: GetStats is the signal
        raise SystemExit(f"driver: only {alive} of {count} nodes registered after {timeout_s} s")

    def node_totals(self, nodes: dict[str, str]) -> dict[str, dict]:
        totals = {}
        for node_id, address in nodes.items():
            try:
                status = self.node_stub(address).GetStatus(inference_pb2.GetStatusRequest(),
                                                           timeout=5)
            except grpc.RpcError as exc:
                totals[node_id] = {"error": f"{exc.code().name}: {exc.details()}"}
                continue
            totals[node_id] = {
                "kind": "cloud" if status.kind == common_pb2.NODE_KIND_CLOUD else "edge",
                "busy_s": status.busy_s, "idle_s": status.idle_s,
                "inference_j": status.energy.inference_j, "idle_j": status.energy.idle_j,
                "idle_power_w": status.idle_power_w,
                "method": common_pb2.EnergyMethod.Name(status.energy.inference_method)
                .removeprefix("ENERGY_METHOD_").lower(),
            }
        return totals


def main(argv: list[str] | None = None) -> int:
    from scenarios.workload_file import load_workload

    parser = argparse.ArgumentParser(prog="python -m scenarios.driver", description=__doc__)
    parser.add_argument("--scheduler", required=True, help="HOST:PORT of the SchedulerService")
    parser.add_argument("--workload", type=Path, required=True, help="workload JSON")
    parser.add_argument("--mode", choices=("gateway", "advisor"), default="gateway")
    parser.add_argument("--nodes", default="", help="id=HOST:PORT,... for node energy totals")
    parser.add_argument("--give-up-s", type=float, default=120.0,
                        help="a service still running after this long is failed")
    parser.add_argument("--max-concurrency", type=int, default=256)
    parser.add_argument("--prestart-threads", type=int, default=0,
                        help="sender threads started before the workload's clock (at most "
                             "--max-concurrency), so a burst waits for none to start")
    parser.add_argument(
        "--attachment-at", choices=("gateway", "client"), default="gateway",
        help="gateway mode: where a service's attachment is made. gateway (default): the "
             "request declares its size (Service.emulated_attachment_bytes) and the gateway "
             "sends that many bytes to the node, so uploads cross only the emulated links; "
             "client: the driver uploads it to the gateway too (a gateway on another host)")
    parser.add_argument("--wait-nodes", type=int, default=0,
                        help="wait until this many nodes are registered and alive")
    add_arguments(parser, ClientSecurityOptions)  # --tls-ca, --token-file
    args = parser.parse_args(argv)
    try:
        security = load_security(from_args(ClientSecurityOptions, args))
    except ValueError as e:
        parser.error(str(e))  # exit status 2
    if not 0 <= args.prestart_threads <= args.max_concurrency:
        parser.error(f"--prestart-threads must be in [0, --max-concurrency="
                     f"{args.max_concurrency}] (got {args.prestart_threads})")

    items = load_workload(args.workload)
    nodes = dict(pair.split("=", 1) for pair in args.nodes.split(",") if pair)
    out_lock = threading.Lock()

    def emit(record: dict) -> None:
        with out_lock:
            sys.stdout.write(json.dumps(record) + "\n")
            sys.stdout.flush()

    driver = Driver(args.scheduler, args.mode, args.give_up_s, emit, security,
                    args.attachment_at)
    if args.wait_nodes:
        driver.wait_for_nodes(args.wait_nodes, timeout_s=60.0)
    prepared: list[bytes | None] = []
    budget = PREBUILD_MAX_BYTES
    for item in items:
        request = driver.prepare(item) if budget > item.service.input_bytes else None
        budget -= len(request) if request is not None else 0
        prepared.append(request)
    before = driver.node_totals(nodes)
    # Threads start before the clock: 128 of them take about 0.1 s on 2 cores.
    with prestarted_executor(args.max_concurrency, args.prestart_threads) as pool:
        emit({"type": "started", "unix_s": time.time()})
        t0 = time.monotonic()
        for item, request in zip(items, prepared):
            delay = item.arrival_s - (time.monotonic() - t0)
            if delay > 0:
                time.sleep(delay)  # open-loop arrivals: the workload's clock, not a sync
            pool.submit(driver.run_one, item, request, t0 + item.arrival_s)
        prepared.clear()  # each request is held by its task until sent
    after = driver.node_totals(nodes)
    for node_id, end in after.items():
        start = before.get(node_id, {})
        if "error" in end or "error" in start:
            emit({"type": "node", "node_id": node_id, "error": end.get("error") or start["error"]})
            continue
        delta = {k: end[k] - start.get(k, 0.0)
                 for k in ("busy_s", "idle_s", "inference_j", "idle_j")}
        emit({"type": "node", "node_id": node_id, "kind": end["kind"], "method": end["method"],
              **delta})
    emit({"type": "done", "elapsed_s": time.monotonic() - t0})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
