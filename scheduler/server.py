"""The gRPC SchedulerService: cluster state plus one policy behind the perllm.v1 API.

`create_server(config)` builds a bound, not yet started server (tests bind port 0 and use the
port returned); `serve(config)` runs it until SIGTERM/SIGINT. The servicer owns one Cluster and
one Policy and guards both with a single lock, because gRPC calls the handlers from a thread
pool and the policy objects are plain, unsynchronised Python. Besides SchedulerService the
server offers grpc.health.v1 and server reflection.

Two modes end in the same outcome record:
- advisor: Schedule (or ScheduleBatch), the client calls the node itself, then ReportOutcome;
- gateway: Submit schedules, forwards to the node's InferenceService.Generate, streams the tokens
  back and learns from the outcome, retrying on another node when one fails.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import threading
import time
from collections import OrderedDict
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from perllm.v1 import common_pb2, inference_pb2, inference_pb2_grpc, scheduler_pb2
from perllm.v1 import scheduler_pb2_grpc
from scheduler import convert
from scheduler.cluster import Cluster
from scheduler.outcome import Energy, Outcome, Status
from scheduler.policies.base import Decision, NoNodeError, Policy, create_policy
from scheduler.service import Service
from scheduler.state_store import encode_state, load_state, write_atomic

log = logging.getLogger(__name__)

SCHEDULER_SERVICE = scheduler_pb2.DESCRIPTOR.services_by_name["SchedulerService"].full_name
INFERENCE_SERVICE = inference_pb2.DESCRIPTOR.services_by_name["InferenceService"].full_name
# Reflection lists InferenceService too: its server is a node, but clients exploring the
# scheduler should find the whole contract (Submit forwards to it).
REFLECTED_SERVICES = (SCHEDULER_SERVICE, INFERENCE_SERVICE, health.SERVICE_NAME,
                      reflection.SERVICE_NAME)

# A link the feed reports as down (rate 0) still needs a positive rate for the prediction; this
# one makes any upload take hours, so the constraint filter rules the node out.
DOWN_LINK_RATE_MBIT = 1e-3

# Node errors after which Submit tries another node; the others are the request's fault or
# mean the time is gone.
_NOT_RETRYABLE = frozenset({grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.OUT_OF_RANGE,
                            grpc.StatusCode.DEADLINE_EXCEEDED})


@dataclass(frozen=True)
class ServerConfig:
    """Everything `python -m scheduler serve` can set."""

    policy: str = "cs-ucb"
    seed: int = 0
    policy_params: Mapping[str, Any] = field(default_factory=dict)
    host: str = "0.0.0.0"  # inside a Mininet host the nodes reach us on its interface
    port: int = 0  # 0: any free port (returned by create_server)
    state_file: str | None = None  # policy state, rewritten atomically after each outcome
    bandwidth_feed: str | None = None  # JSON {"time_s", "rates_mbit": {node_id: rate}}
    heartbeat_timeout_s: float = 3.0  # a node silent this long is excluded
    grace_s: float = 5.0  # in-flight calls get this long to finish at shutdown
    max_receive_bytes: int = 64 * 1024 * 1024
    # Submit holds a worker thread for a whole generation, so the pool bounds concurrent Submits.
    max_workers: int = 64
    # Submit keeps trying for the requirement plus this margin: past the requirement a late
    # answer (MISSED) is still worth more to the user than none (FAILED).
    submit_margin_s: float = 1.0
    # A booking with no outcome this long past its predicted finish is dropped as abandoned;
    # None: its service's deadline_s + heartbeat_timeout_s (Cluster's booking_ttl_s).
    booking_ttl_s: float | None = None
    # ReportOutcome ignores a service_id among the last this many outcomes (a client's retry).
    reported_ids_memory: int = 100_000
    clock: Callable[[], float] = time.monotonic

    def validate(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be in [0, 65535] (got {self.port})")
        for name in ("heartbeat_timeout_s", "grace_s", "submit_margin_s"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a finite number >= 0 (got {value})")
        if self.heartbeat_timeout_s <= 0:
            raise ValueError(f"heartbeat_timeout_s must be > 0 (got {self.heartbeat_timeout_s})")
        if self.max_receive_bytes <= 0:
            raise ValueError(f"max_receive_bytes must be > 0 (got {self.max_receive_bytes})")
        if self.max_workers <= 0:
            raise ValueError(f"max_workers must be > 0 (got {self.max_workers})")
        if self.booking_ttl_s is not None and not self.booking_ttl_s >= 0:
            raise ValueError(f"booking_ttl_s must be >= 0 or None (got {self.booking_ttl_s})")
        if self.reported_ids_memory <= 0:
            raise ValueError(
                f"reported_ids_memory must be > 0 (got {self.reported_ids_memory})")


class BandwidthFeed:
    """The testbed's bandwidth file, re-read only when it changes (one os.stat per decision)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.rates_mbit: dict[str, float] = {}
        self.time_s: float | None = None
        self._signature: tuple[int, int, int] | None = None

    def poll(self) -> bool:
        """Re-read the file if it changed; True when new rates were loaded."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return False
        # The testbed replaces the file by rename, so the inode changes even when two writes
        # fall in the same mtime tick.
        signature = (st.st_mtime_ns, st.st_size, st.st_ino)
        if signature == self._signature:
            return False
        self._signature = signature
        try:
            data = json.loads(self.path.read_bytes())
            rates = data["rates_mbit"]
            parsed = {str(k): float(v) for k, v in rates.items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            log.warning("bandwidth feed %s unreadable, keeping the last rates: %s", self.path, e)
            return False
        self.rates_mbit = parsed
        self.time_s = data.get("time_s")
        return True


class SchedulerServicer(scheduler_pb2_grpc.SchedulerServiceServicer):
    """perllm.v1.SchedulerService over one Cluster and one Policy."""

    def __init__(self, config: ServerConfig, policy: Policy,
                 health_servicer: health.HealthServicer | None = None) -> None:
        self.config = config
        self.policy = policy
        # The oracle's defining knowledge is the true rates: the nodes register their profile
        # rates and the cluster keeps them instead of learning (as in the simulator).
        self.cluster = Cluster(clock=config.clock, heartbeat_timeout_s=config.heartbeat_timeout_s,
                               learn_rates=policy.name != "oracle",
                               booking_ttl_s=config.booking_ttl_s)
        self.health = health_servicer
        self.counters = {"met": 0, "missed": 0, "failed": 0}
        # service_id -> reward of the last outcomes recorded, oldest first: a repeated
        # ReportOutcome (a retry after a lost response) is answered from here, not re-counted.
        self._reported: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()  # cluster, policy, counters, Submit runs
        self._feed = BandwidthFeed(config.bandwidth_feed) if config.bandwidth_feed else None
        self._stubs: dict[str, inference_pb2_grpc.InferenceServiceStub] = {}
        self._channels: list[grpc.Channel] = []
        self._stubs_lock = threading.Lock()
        # State snapshots are numbered under the main lock and written outside it, newest only.
        self._state_seq = 0
        self._saved_seq = 0
        self._save_lock = threading.Lock()
        if config.state_file:
            self._load_state(config.state_file)

    # --- state file --------------------------------------------------------------------------
    def _load_state(self, path: str) -> None:
        state = load_state(path)
        if state is None:
            return
        if state.get("policy") != self.policy.name:
            raise ValueError(f"state file {path!r} holds policy {state.get('policy')!r}, "
                             f"not {self.policy.name!r}: use another --state-file")
        self.policy.load_state_dict(state["policy_state"])
        for key in self.counters:
            self.counters[key] = int(state.get("counters", {}).get(key, 0))
        log.info("loaded policy state from %s (t=%d)", path, self.policy.t)

    def _snapshot_locked(self) -> tuple[int, bytes] | None:
        if not self.config.state_file:
            return None
        self._state_seq += 1
        payload = encode_state({
            "policy": self.policy.name, "seed": self.policy.seed,
            "policy_state": self.policy.state_dict(), "counters": dict(self.counters),
            "saved_unix_s": time.time()})
        return self._state_seq, payload

    def _write_snapshot(self, snapshot: tuple[int, bytes] | None) -> None:
        if snapshot is None:
            return
        seq, payload = snapshot
        with self._save_lock:
            if seq <= self._saved_seq:  # a newer snapshot is already on disk
                return
            write_atomic(self.config.state_file, payload)
            self._saved_seq = seq

    def save_state(self) -> None:
        """Write the current state now (at shutdown)."""
        with self._lock:
            snapshot = self._snapshot_locked()
        self._write_snapshot(snapshot)

    # --- shared steps ------------------------------------------------------------------------
    def _refresh_locked(self) -> None:
        """Apply a changed bandwidth feed and exclude nodes whose heartbeats stopped."""
        if self._feed is not None and self._feed.poll():
            for node_id, rate in self._feed.rates_mbit.items():
                if node_id in self.cluster.nodes:
                    self.cluster.set_bandwidth(node_id, max(rate, DOWN_LINK_RATE_MBIT))
        self.cluster.expire()

    def _no_node_message_locked(self) -> str | None:
        if not self.cluster.nodes:
            return "no node is registered: call RegisterNode first"
        if not self.cluster.candidates():
            return (f"no registered node is alive and serving (registered: "
                    f"{sorted(self.cluster.nodes)}; heartbeat timeout "
                    f"{self.config.heartbeat_timeout_s} s)")
        return None

    @contextmanager
    def _excluding_locked(self, node_ids: list[str]) -> Iterator[None]:
        """Hide nodes from the policy for one decision (Submit's retry on another node)."""
        saved = []
        for node_id in node_ids:
            node = self.cluster.nodes.get(node_id)
            if node is not None:
                saved.append((node, node.alive))
                node.alive = False
        try:
            yield
        finally:
            for node, alive in saved:
                node.alive = alive

    def _decide_locked(self, service: Service, exclude: list[str] | None = None
                       ) -> tuple[Decision, str]:
        """Choose and book a node; NoNodeError when none is a candidate."""
        self._refresh_locked()
        try:
            if exclude:
                with self._excluding_locked(exclude):
                    decision = self.policy.select(service, self.cluster)
            else:  # the common path, kept free of the context manager's cost
                decision = self.policy.select(service, self.cluster)
        except NoNodeError:
            raise NoNodeError(self._no_node_message_locked() or "every node was excluded") \
                from None
        self.cluster.on_assign(service, decision.prediction)
        return decision, self.cluster.nodes[decision.node_id].info.address

    def _record_locked(self, outcome: Outcome, update_policy: bool
                       ) -> tuple[float, tuple[int, bytes] | None]:
        self.cluster.on_complete(outcome)
        reward = self.policy.update(outcome) if update_policy else 0.0
        self._count_locked(outcome.service_id, outcome.status.value, reward)
        return reward, self._snapshot_locked()

    def _count_locked(self, service_id: str, status: str, reward: float) -> None:
        self.counters[status] += 1
        self._reported[service_id] = reward
        self._reported.move_to_end(service_id)
        if len(self._reported) > self.config.reported_ids_memory:
            self._reported.popitem(last=False)

    @staticmethod
    def _service_or_abort(pb: common_pb2.Service, context: grpc.ServicerContext) -> Service:
        try:
            return convert.service_from_proto(pb)
        except ValueError as e:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
            raise  # abort raises; this keeps type checkers content

    # --- RPCs --------------------------------------------------------------------------------
    def RegisterNode(self, request, context):
        try:
            info = convert.node_info_from_proto(request)
        except ValueError as e:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        with self._lock:
            try:
                self.cluster.register(info)
            except KeyError as e:
                error = e.args[0]
            else:
                error = None
                rate = self._feed.rates_mbit.get(info.node_id) if self._feed else None
                if rate is not None:
                    self.cluster.set_bandwidth(info.node_id, max(rate, DOWN_LINK_RATE_MBIT))
        if error is not None:
            context.abort(grpc.StatusCode.ALREADY_EXISTS, error)
        log.info("registered node %s at %s (%s)", info.node_id, info.address, info.kind)
        return scheduler_pb2.RegisterNodeResponse(
            heartbeat_timeout_s=self.config.heartbeat_timeout_s)

    def Heartbeat(self, request, context):
        with self._lock:
            known = request.node_id in self.cluster.nodes
            if known:
                # Rates that are not positive finite numbers count as "unknown" (0), the
                # proto's meaning of an unset rate, rather than poisoning the estimates.
                self.cluster.heartbeat(
                    request.node_id, queue_length=max(0, request.queue_length),
                    busy_slots=max(0, request.busy_slots),
                    prefill_tok_s=_rate_or_unknown(request.prefill_tok_s),
                    decode_tok_s=_rate_or_unknown(request.decode_tok_s),
                    link_rate_mbit=_rate_or_unknown(request.link_rate_mbit),
                    # Unset counts as serving: a client that never heard of the field must
                    # not silently drop out of the candidates.
                    serving=request.serving if request.HasField("serving") else True)
        if not known:
            context.abort(grpc.StatusCode.NOT_FOUND,
                          f"unknown node_id {request.node_id!r}: call RegisterNode first")
        return scheduler_pb2.HeartbeatResponse()

    def Schedule(self, request, context):
        service = self._service_or_abort(request.service, context)
        with self._lock:
            try:
                decision, address = self._decide_locked(service)
            except NoNodeError as e:
                error = str(e)
            else:
                return convert.decision_to_proto(decision, address)
        context.abort(grpc.StatusCode.FAILED_PRECONDITION, error)

    def ScheduleBatch(self, request, context):
        services = []
        for i, pb in enumerate(request.services):
            try:
                services.append(convert.service_from_proto(pb))
            except ValueError as e:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"services[{i}]: {e}")
        if not services:
            return scheduler_pb2.ScheduleBatchResponse()
        with self._lock:
            self._refresh_locked()
            error = self._no_node_message_locked()
            if error is None:
                try:
                    # select_batch books every decision on the cluster itself (base.py).
                    decisions = self.policy.select_batch(services, self.cluster)
                except NoNodeError as e:
                    error = str(e)
                else:
                    nodes = self.cluster.nodes
                    return scheduler_pb2.ScheduleBatchResponse(assignments=[
                        convert.decision_to_proto(d, nodes[d.node_id].info.address)
                        for d in decisions])
        context.abort(grpc.StatusCode.FAILED_PRECONDITION, error)

    def ReportOutcome(self, request, context):
        try:
            outcome = convert.outcome_from_proto(request.outcome)
        except ValueError as e:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        snapshot = None
        with self._lock:
            known = outcome.node_id in self.cluster.nodes
            registered = sorted(self.cluster.nodes)
            if not known:
                reward = 0.0
            elif outcome.service_id in self._reported:  # a repeat: answer, change nothing
                reward = self._reported[outcome.service_id]
            else:
                reward, snapshot = self._record_locked(outcome, update_policy=True)
        if not known:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"outcome.node_id {outcome.node_id!r} is not a registered node "
                          f"(registered: {registered})")
        self._write_snapshot(snapshot)
        return scheduler_pb2.ReportOutcomeResponse(reward=reward)

    def GetStats(self, request, context):
        with self._lock:
            self._refresh_locked()
            return scheduler_pb2.GetStatsResponse(
                policy=self.policy.name, t=self.policy.t,
                regret=self.policy.regret,
                arms=[convert.arm_stat_to_proto(a) for a in self.policy.arm_stats(self.cluster)],
                nodes=[convert.node_stats_to_proto(n) for n in self.cluster.nodes.values()],
                met=self.counters["met"], missed=self.counters["missed"],
                failed=self.counters["failed"], abandoned=self.cluster.abandoned)

    # --- gateway mode ------------------------------------------------------------------------
    def Submit(self, request, context):
        service = self._service_or_abort(request.service, context)
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
            with self._lock:
                if run.finished:
                    return
                try:
                    decision, address = self._decide_locked(service, exclude=excluded)
                except NoNodeError as e:
                    decision, error = None, str(e)
                else:
                    run.decision = run.booked = decision
                    run.attempts += 1
                    j_per_bit = self.cluster.nodes[decision.node_id].info.transmission_j_per_bit
            if decision is None:
                if run.attempts == 0:
                    # No node at all: the service still counts (failed) in GetStats, so
                    # the counters add up to the services submitted.
                    with self._lock:
                        if run.finished:
                            return
                        run.finished = True
                        self._count_locked(service.id, Status.FAILED.value, 0.0)
                        snapshot = self._snapshot_locked()
                    self._write_snapshot(snapshot)
                    context.abort(grpc.StatusCode.FAILED_PRECONDITION, error)
                errors.append(f"no other node to try ({error})")
                break
            yield scheduler_pb2.SubmitResponse(
                decision=convert.decision_to_proto(decision, address))
            attempt = yield from self._forward(request.service, service, address,
                                               end_s - time.monotonic(), run)
            if attempt.result is not None:
                outcome = self._outcome_from_result(
                    service, decision, attempt, started_s, run.attempts, j_per_bit)
                if self._finish(run, outcome, update_policy=True):
                    yield scheduler_pb2.SubmitResponse(outcome=convert.outcome_to_proto(outcome))
                return
            # The node failed this service: release its place and, when the node (not the
            # request or the client) is to blame, let the policy learn the failure.
            failed = self._failed_outcome(service, decision, started_s, run.attempts,
                                          attempt.error)
            with self._lock:
                if run.finished:
                    return
                self.cluster.on_complete(failed)
                run.booked = None
                if attempt.retryable and not run.gone.is_set():
                    self.policy.update(failed)
            errors.append(f"{decision.node_id}: {attempt.error}")
            excluded.append(decision.node_id)
            if run.gone.is_set() or not attempt.retryable:
                break
        outcome = self._failed_outcome(service, run.decision, started_s, run.attempts,
                                       "; ".join(errors))
        # Each failed attempt already taught the policy; the service's outcome only counts.
        if self._finish(run, outcome, update_policy=False):
            yield scheduler_pb2.SubmitResponse(outcome=convert.outcome_to_proto(outcome))

    def _finish(self, run: _SubmitRun, outcome: Outcome, update_policy: bool) -> bool:
        """Record a Submit's one outcome; False if the call's end already recorded it."""
        with self._lock:
            if run.finished:
                return False
            run.finished = True
            run.booked = None
            _, snapshot = self._record_locked(outcome, update_policy)
        self._write_snapshot(snapshot)
        return True

    def _abandon(self, run: _SubmitRun) -> None:
        """The call ended before its outcome: record it FAILED and release the node."""
        with self._lock:
            if run.finished:
                return
            run.finished = True  # a Submit still deciding stops before booking
            outcome = self._failed_outcome(
                run.service, run.decision, run.started_s, run.attempts,
                "the Submit call ended before its outcome (client cancelled, deadline "
                "passed or scheduler shutting down)")
            if run.booked is None:  # never booked, or the booked attempt was released
                self._count_locked(outcome.service_id, Status.FAILED.value, 0.0)
                snapshot = self._snapshot_locked()
            else:
                # Not the node's fault: release its place without teaching the policy.
                _, snapshot = self._record_locked(outcome, update_policy=False)
            run.booked = None
        self._write_snapshot(snapshot)

    def _inference_stub(self, address: str) -> inference_pb2_grpc.InferenceServiceStub:
        with self._stubs_lock:
            stub = self._stubs.get(address)
            if stub is None:
                channel = grpc.insecure_channel(address, options=[
                    ("grpc.max_receive_message_length", self.config.max_receive_bytes),
                    ("grpc.max_send_message_length", self.config.max_receive_bytes)])
                self._channels.append(channel)
                stub = self._stubs[address] = inference_pb2_grpc.InferenceServiceStub(channel)
            return stub

    def _forward(self, service_pb: common_pb2.Service, service: Service, address: str,
                 timeout_s: float, run: _SubmitRun) -> Iterator[scheduler_pb2.SubmitResponse]:
        """Stream one attempt's chunks to the client; return an _Attempt (via `yield from`)."""
        request = inference_pb2.GenerateRequest(
            request_id=service.id, prompt=service.prompt, max_new_tokens=service.max_new_tokens,
            sampling=common_pb2.SamplingParams(temperature=service.temperature,
                                               top_k=service.top_k, seed=service.seed),
            attachment=service_pb.attachment, prompt_tokens=service.estimated_prompt_tokens,
            sent_unix_s=time.time())
        sent_bytes = request.ByteSize()
        attempt = _Attempt(sent_unix_s=request.sent_unix_s, sent_bytes=sent_bytes)
        if timeout_s <= 0:
            attempt.error = "no time left before forwarding"
            attempt.retryable = False
            return attempt
        call = self._inference_stub(address).Generate(request, timeout=timeout_s)
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
        if attempt.result is None and not attempt.error:
            attempt.error = "the node's stream ended without a GenerateResult"
        return attempt

    @staticmethod
    def _outcome_from_result(service: Service, decision: Decision, attempt: _Attempt,
                             started_s: float, attempts: int, j_per_bit: float) -> Outcome:
        result = attempt.result
        # Mininet hosts share one clock, so the node's arrival time minus our send time is the
        # upload over the shaped link.
        transmission_s = (_nonnegative(result.received_unix_s - attempt.sent_unix_s)
                          if result.received_unix_s > 0 else 0.0)
        last_s = attempt.last_token_s if attempt.last_token_s is not None else time.monotonic()
        total_s = last_s - started_s  # what the user waited: Submit start to last token
        node_energy = convert.energy_from_proto(result.energy)
        # Modelled here from the request's size and the link type's J/bit; the emulated runner
        # replaces it at the run level with interface byte counters (ENERGY_METHOD_COUNTERS).
        # What the node reports passes ReportOutcome's checks: a negative or non-finite value
        # (a misbehaving node) is taken as unknown (0) rather than learned.
        energy = Energy(
            transmission_j=attempt.sent_bytes * 8 * j_per_bit,
            inference_j=_nonnegative(node_energy.inference_j),
            idle_j=_nonnegative(node_energy.idle_j),
            transmission_method="modelled",
            inference_method=node_energy.inference_method or "modelled",
            idle_method=node_energy.idle_method or "modelled")
        return Outcome(
            service_id=service.id, node_id=decision.node_id,
            status=Outcome.status_for(total_s, service.deadline_s),
            deadline_s=service.deadline_s, total_s=total_s,
            service_class=service.service_class, transmission_s=transmission_s,
            queueing_s=_nonnegative(result.queueing_s),
            inference_s=_nonnegative(result.inference_s),
            tokens_in=max(0, result.tokens_in), tokens_out=max(0, result.tokens_out),
            input_bytes=service.input_bytes, energy=energy, attempts=attempts,
            constraint_f=_finite_f(decision.prediction.f))

    @staticmethod
    def _failed_outcome(service: Service, decision: Decision | None, started_s: float,
                        attempts: int, error: str) -> Outcome:
        return Outcome(
            service_id=service.id, node_id=decision.node_id if decision else "",
            status=Status.FAILED, deadline_s=service.deadline_s,
            total_s=time.monotonic() - started_s, service_class=service.service_class,
            input_bytes=service.input_bytes, error=error, attempts=attempts,
            constraint_f=_finite_f(decision.prediction.f) if decision else 0.0)

    def close(self) -> None:
        """Close the channels to the nodes."""
        with self._stubs_lock:
            for channel in self._channels:
                channel.close()
            self._channels.clear()
            self._stubs.clear()


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
    finished: bool = False  # its one outcome is recorded (under the servicer's lock)


@dataclass
class _Attempt:
    """What one forwarding attempt produced."""

    sent_unix_s: float
    sent_bytes: int
    result: inference_pb2.GenerateResult | None = None
    last_token_s: float | None = None
    error: str = ""
    retryable: bool = True


def _rate_or_unknown(rate: float) -> float:
    return rate if rate > 0 and math.isfinite(rate) else 0.0


def _nonnegative(value: float) -> float:
    return value if value >= 0 and math.isfinite(value) else 0.0


def _finite_f(f: float) -> float:
    return f if math.isfinite(f) else (-1.0 if f < 0 else 1.0)


# --- server lifecycle --------------------------------------------------------------------------
def create_server(config: ServerConfig) -> tuple[grpc.Server, int, SchedulerServicer]:
    """A bound, not yet started server; ValueError for a bad config or unknown policy."""
    config.validate()
    try:
        policy = create_policy(config.policy, seed=config.seed, **dict(config.policy_params))
    except KeyError as e:  # the registry's message names the policy and the accepted ones
        raise ValueError(e.args[0]) from None
    except TypeError as e:
        raise ValueError(f"bad policy parameters for {config.policy!r}: {e}") from None
    health_servicer = health.HealthServicer()
    servicer = SchedulerServicer(config, policy, health_servicer)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=config.max_workers,
                                   thread_name_prefix="scheduler-rpc"),
        options=[
            ("grpc.max_receive_message_length", config.max_receive_bytes),
            # Without this a second server could silently share an explicit port.
            ("grpc.so_reuseport", 0),
        ])
    scheduler_pb2_grpc.add_SchedulerServiceServicer_to_server(servicer, server)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(REFLECTED_SERVICES, server)
    try:
        port = server.add_insecure_port(f"{config.host}:{config.port}")
    except RuntimeError as e:
        raise ValueError(f"cannot bind {config.host}:{config.port}: {e}") from None
    if port == 0:
        raise ValueError(f"cannot bind {config.host}:{config.port}")
    for name in ("", SCHEDULER_SERVICE):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return server, port, servicer


def stop_server(server: grpc.Server, servicer: SchedulerServicer, grace_s: float) -> None:
    """Health NOT_SERVING, let in-flight calls finish within grace_s, save the state."""
    if servicer.health is not None:
        servicer.health.enter_graceful_shutdown()
    server.stop(grace_s).wait()
    servicer.save_state()
    servicer.close()


def serve(config: ServerConfig, ready: Callable[[int], None] | None = None) -> None:
    """Run until SIGTERM or SIGINT; `ready(port)` is called once serving."""
    server, port, servicer = create_server(config)
    stop = threading.Event()

    def on_signal(signum, frame) -> None:
        log.info("signal %d: shutting down (grace %.1f s)", signum, config.grace_s)
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.start()
        if ready is not None:
            ready(port)
        stop.wait()
    finally:
        stop_server(server, servicer, config.grace_s)
        for s, handler in previous.items():
            signal.signal(s, handler)
