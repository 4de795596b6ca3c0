"""Gateway mode: Submit schedules a service, forwards it to the chosen node and streams back.

The gateway calls the node's InferenceService.Generate, streams the tokens to the client and
records one outcome per Submit; when a node fails it learns that, releases the node and tries
another while time is left. The outcome is built from the node's result by
convert.outcome_from_result, or by outcome.failed_outcome when no node answered.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Iterator

import grpc

from perllm.v1 import inference_pb2, scheduler_pb2
from scheduler import convert, node_request
from scheduler.core import Scheduler
from scheduler.node_channels import NodeChannels
from scheduler.outcome import Outcome, Status, failed_outcome
from scheduler.policies.base import Decision, NoNodeError
from scheduler.security import Security
from scheduler.service import Service
from scheduler.snapshots import Snapshot

# Node errors after which Submit tries another node; the others are the request's fault or
# mean the time is gone.
_NOT_RETRYABLE = frozenset({grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.OUT_OF_RANGE,
                            grpc.StatusCode.DEADLINE_EXCEEDED})


@dataclass
class _SubmitRun:
    """One Submit call's progress, shared with the callback that runs when the call ends."""

    service: Service
    started_s: float
    gone: threading.Event = field(default_factory=threading.Event)  # the call has ended
    call: grpc.Call | None = None  # the node's Generate call in progress
    decision: Decision | None = None  # the latest decision
    booked: Decision | None = None  # assigned on the cluster and not yet released
    attempts: int = 0
    finished: bool = False  # its one outcome is recorded (under the scheduler's lock)

    def failed_outcome(self, error: str) -> Outcome:
        """This Submit's outcome if it failed now, on the latest node tried."""
        decision = self.decision
        return failed_outcome(
            self.service, decision.node_id if decision else "",
            total_s=time.monotonic() - self.started_s, error=error, attempts=self.attempts,
            constraint_f=decision.prediction.f if decision else 0.0,
            predicted_total_s=decision.prediction.total_s if decision else 0.0)


@dataclass
class _Attempt:
    """What one forwarding attempt produced."""

    sent_unix_s: float
    sent_bytes: int
    result: inference_pb2.GenerateResult | None = None
    last_token_s: float | None = None
    error: str = ""
    retryable: bool = True


class Gateway:
    """SchedulerService.Submit over a Scheduler, with a few connections to each node
    (scheduler.node_channels)."""

    def __init__(self, scheduler: Scheduler, security: Security | None = None) -> None:
        self.scheduler = scheduler
        self.config = scheduler.config
        self.security = security  # TLS and the token towards the nodes (scheduler.channels)
        self._connections = NodeChannels(security, self.config.max_receive_bytes,
                                         self.config.node_connections)

    def submit(self, service: Service, attachment: bytes | int, context: grpc.ServicerContext,
               stop_after_tokens: int = 0) -> Iterator[scheduler_pb2.SubmitResponse]:
        """Submit's response stream for a validated `service`, its request's attachment (the
        bytes, or an emulated attachment's size: convert.submit_attachment) and (emulation
        only) where its answer ends, forwarded to the node unread."""
        s = self.scheduler
        started_s = time.monotonic()
        end_s = started_s + service.deadline_s + self.config.submit_margin_s
        client_remaining_s = context.time_remaining()
        if client_remaining_s is not None:
            end_s = min(end_s, started_s + client_remaining_s)
        run = _SubmitRun(service, started_s)

        def on_rpc_end() -> None:
            # Runs when the call ends for any reason. If it ended before an outcome (client
            # cancelled, its deadline passed, shutdown's grace ran out), gRPC may never resume
            # this generator, so the failure is recorded here; then the node call is cancelled.
            run.gone.set()
            self._abandon(run)
            call = run.call
            if call is not None:
                call.cancel()

        if not context.add_callback(on_rpc_end):
            self._abandon(run)  # already over: counted failed, nothing was booked
            return
        excluded: list[str] = []
        errors: list[str] = []
        while True:
            if time.monotonic() >= end_s:
                errors.append(f"no time left to try another node "
                              f"(requirement {service.deadline_s} s)")
                break
            with s.lock:
                if run.finished:
                    return
                try:
                    decision, address = s.decide_locked(service, exclude=excluded)
                except NoNodeError as e:
                    decision, error = None, str(e)
                else:
                    run.decision = run.booked = decision
                    run.attempts += 1
                    j_per_bit = s.cluster.nodes[decision.node_id].info.transmission_j_per_bit
            if decision is None:
                if run.attempts == 0:
                    # No node at all: the service still counts (failed) in GetStats, so
                    # the counters add up to the services submitted.
                    with s.lock:
                        if run.finished:
                            return
                        run.finished = True
                        s.count_locked(service.id, Status.FAILED.value, 0.0)
                        snapshot = s.snapshot_locked()
                    s.write_snapshot(snapshot)
                    context.abort(grpc.StatusCode.FAILED_PRECONDITION, error)
                errors.append(f"no other node to try ({error})")
                break
            yield scheduler_pb2.SubmitResponse(
                decision=convert.decision_to_proto(decision, address))
            # The policy may hold the service (cloud-only's deferred batching), as the
            # simulator does; a call that ends meanwhile was recorded by on_rpc_end.
            if decision.defer_s > 0 and run.gone.wait(decision.defer_s):
                return
            attempt = yield from self._forward(service, attachment, stop_after_tokens, address,
                                               end_s - time.monotonic(), run)
            if attempt.result is not None:
                last_s = (attempt.last_token_s if attempt.last_token_s is not None
                          else time.monotonic())
                outcome = convert.outcome_from_result(
                    service, decision.node_id, attempt.result,
                    sent_unix_s=attempt.sent_unix_s,
                    total_s=last_s - started_s,  # what the user waited: to the last token
                    # Modelled from the request's size and the link type's J/bit; the
                    # emulated runner replaces it with interface byte counters.
                    transmission_j=attempt.sent_bytes * 8 * j_per_bit,
                    attempts=run.attempts, constraint_f=decision.prediction.f,
                    predicted_total_s=decision.prediction.total_s)
                recorded, snapshot = self._finish(run, outcome, update_policy=True)
                if recorded:
                    try:
                        yield scheduler_pb2.SubmitResponse(
                            outcome=convert.outcome_to_proto(outcome))
                    finally:
                        # After the client has its outcome: the state file's two fsyncs
                        # are not part of what the user waited.
                        s.write_snapshot(snapshot)
                return
            # The node failed this service: release its place and, when the node (not the
            # request or the client) is to blame, let the policy learn the failure.
            failed = run.failed_outcome(attempt.error)
            with s.lock:
                if run.finished:
                    return
                s.cluster.on_complete(failed)
                run.booked = None
                if attempt.retryable and not run.gone.is_set():
                    s.policy.update(failed)
            errors.append(f"{decision.node_id}: {attempt.error}")
            excluded.append(decision.node_id)
            if run.gone.is_set() or not attempt.retryable:
                break
        outcome = run.failed_outcome("; ".join(errors))
        # Each failed attempt already taught the policy; the service's outcome only counts.
        recorded, snapshot = self._finish(run, outcome, update_policy=False)
        if recorded:
            try:
                yield scheduler_pb2.SubmitResponse(outcome=convert.outcome_to_proto(outcome))
            finally:
                s.write_snapshot(snapshot)

    def _finish(self, run: _SubmitRun, outcome: Outcome, update_policy: bool
                ) -> tuple[bool, Snapshot | None]:
        """Record a Submit's one outcome: (False, None) if the call's end already recorded
        it, else (True, the state snapshot for the caller to write)."""
        s = self.scheduler
        with s.lock:
            if run.finished:
                return False, None
            run.finished = True
            run.booked = None
            _, snapshot = s.record_locked(outcome, update_policy)
        return True, snapshot

    def _abandon(self, run: _SubmitRun) -> None:
        """The call ended before its outcome: record it FAILED and release the node."""
        s = self.scheduler
        with s.lock:
            if run.finished:
                return
            run.finished = True  # a Submit still deciding stops before booking
            outcome = run.failed_outcome(
                "the Submit call ended before its outcome (client cancelled, deadline "
                "passed or scheduler shutting down)")
            if run.booked is None:  # never booked, or the booked attempt was released
                s.count_locked(outcome.service_id, Status.FAILED.value, 0.0)
                snapshot = s.snapshot_locked()
            else:
                # Not the node's fault: release its place without teaching the policy.
                _, snapshot = s.record_locked(outcome, update_policy=False)
            run.booked = None
        s.write_snapshot(snapshot)

    def _forward(self, service: Service, attachment: bytes | int, stop_after_tokens: int,
                 address: str, timeout_s: float, run: _SubmitRun
                 ) -> Iterator[scheduler_pb2.SubmitResponse]:
        """Stream one attempt's chunks to the client; return an _Attempt (via `yield from`)."""
        request = convert.generate_request(service, b"", time.time(), stop_after_tokens)
        payload = node_request.encode(request, attachment)
        attempt = _Attempt(sent_unix_s=request.sent_unix_s, sent_bytes=len(payload))
        if timeout_s <= 0:
            attempt.error = "no time left before forwarding"
            attempt.retryable = False
            return attempt
        try:
            connection = self._connections.acquire(address)
        except RuntimeError as e:  # shutting down
            attempt.error = str(e)
            attempt.retryable = False
            return attempt
        call = connection.generate(payload, timeout=timeout_s)
        run.call = call
        if run.gone.is_set():  # the call ended while we were connecting
            call.cancel()
        try:
            for response in call:
                event = response.WhichOneof("event")
                if event == "chunk":
                    attempt.last_token_s = time.monotonic()
                    yield scheduler_pb2.SubmitResponse(chunk=response.chunk)
                elif event == "result":
                    attempt.result = response.result
        except grpc.RpcError as e:
            attempt.result = None
            attempt.error = f"{e.code().name}: {e.details()}"
            attempt.retryable = e.code() not in _NOT_RETRYABLE
        finally:
            run.call = None
            self._connections.release(connection)
        if attempt.result is None and not attempt.error:
            attempt.error = "the node's stream ended without a GenerateResult"
        return attempt

    def close(self) -> None:
        """Close the connections to the nodes."""
        self._connections.close()
