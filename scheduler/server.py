"""The gRPC SchedulerService: the perllm.v1 API over one Scheduler, and the server's lifecycle.

`create_server(config)` builds a bound, not yet started server (tests bind port 0 and use the
port returned); `serve(config)` runs it until SIGTERM/SIGINT. Besides SchedulerService the
server offers grpc.health.v1 and server reflection (scheduler.grpc_server).

Two modes end in the same outcome record:
- advisor: Schedule (or ScheduleBatch), the client calls the node itself, then ReportOutcome
  (here);
- gateway: Submit schedules, forwards to the node's InferenceService.Generate, streams the tokens
  back and learns from the outcome, retrying on another node when one fails (scheduler.gateway).
The state both share (cluster, policy, counters, state file) is scheduler.core's Scheduler.
"""

from __future__ import annotations

import logging
from typing import Callable

import grpc
from grpc_health.v1 import health

from perllm.v1 import common_pb2, inference_pb2, scheduler_pb2, scheduler_pb2_grpc
from scheduler import convert
from scheduler.cluster import Cluster
from scheduler.config import ServerConfig
from scheduler.core import Scheduler
from scheduler.gateway import Gateway
from scheduler.grpc_server import build_grpc_server, wait_for_signal
from scheduler.policies.base import NoNodeError, Policy, create_policy
from scheduler.security import Security, load_security
from scheduler.service import Service

log = logging.getLogger(__name__)

SCHEDULER_SERVICE = scheduler_pb2.DESCRIPTOR.services_by_name["SchedulerService"].full_name
INFERENCE_SERVICE = inference_pb2.DESCRIPTOR.services_by_name["InferenceService"].full_name


class SchedulerServicer(scheduler_pb2_grpc.SchedulerServiceServicer):
    """perllm.v1.SchedulerService over one Scheduler; Submit is the Gateway's."""

    def __init__(self, config: ServerConfig, policy: Policy,
                 security: Security | None = None) -> None:
        self.config = config
        self.scheduler = Scheduler(config, policy)
        self.gateway = Gateway(self.scheduler, security)
        self.health: health.HealthServicer | None = None  # set once the server is built

    @property
    def cluster(self) -> Cluster:
        return self.scheduler.cluster

    @property
    def policy(self) -> Policy:
        return self.scheduler.policy

    @property
    def counters(self) -> dict[str, int]:
        return self.scheduler.counters

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
        with self.scheduler.lock:
            try:
                self.scheduler.register_locked(info)
            except KeyError as e:
                error = e.args[0]
            else:
                error = None
        if error is not None:
            context.abort(grpc.StatusCode.ALREADY_EXISTS, error)
        log.info("registered node %s at %s (%s)", info.node_id, info.address, info.kind)
        return scheduler_pb2.RegisterNodeResponse(
            heartbeat_timeout_s=self.config.heartbeat_timeout_s)

    def Heartbeat(self, request, context):
        with self.scheduler.lock:
            known = request.node_id in self.cluster.nodes
            if known:
                # Rates outside the accepted range count as "unknown" (Cluster.heartbeat).
                self.cluster.heartbeat(
                    request.node_id, queue_length=max(0, request.queue_length),
                    busy_slots=max(0, request.busy_slots),
                    prefill_tok_s=request.prefill_tok_s, decode_tok_s=request.decode_tok_s,
                    link_rate_mbit=request.link_rate_mbit,
                    # Unset counts as serving: a client that never heard of the field must
                    # not silently drop out of the candidates.
                    serving=request.serving if request.HasField("serving") else True)
        if not known:
            context.abort(grpc.StatusCode.NOT_FOUND,
                          f"unknown node_id {request.node_id!r}: call RegisterNode first")
        return scheduler_pb2.HeartbeatResponse()

    def Schedule(self, request, context):
        service = self._service_or_abort(request.service, context)
        with self.scheduler.lock:
            counted = self.scheduler.counted_message_locked([service.id])
            if counted is None:
                try:
                    decision, address = self.scheduler.decide_locked(service)
                except NoNodeError as e:
                    error = str(e)
                else:
                    return convert.decision_to_proto(decision, address)
        if counted is not None:
            context.abort(grpc.StatusCode.ALREADY_EXISTS, counted)
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
        with self.scheduler.lock:
            counted = self.scheduler.counted_message_locked([s.id for s in services])
            self.scheduler.refresh_locked()
            error = self.scheduler.no_node_message_locked()
            if error is None and counted is None:
                try:
                    # select_batch books every decision on the cluster itself (base.py).
                    decisions = self.policy.select_batch(services, self.cluster)
                except NoNodeError as e:
                    error = str(e)
                else:
                    self.scheduler.metrics.on_decisions(decisions)
                    nodes = self.cluster.nodes
                    return scheduler_pb2.ScheduleBatchResponse(assignments=[
                        convert.decision_to_proto(d, nodes[d.node_id].info.address)
                        for d in decisions])
        if counted is not None:
            context.abort(grpc.StatusCode.ALREADY_EXISTS, counted)
        context.abort(grpc.StatusCode.FAILED_PRECONDITION, error)

    def ReportOutcome(self, request, context):
        try:
            outcome = convert.outcome_from_proto(request.outcome)
        except ValueError as e:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        snapshot = None
        with self.scheduler.lock:
            known = outcome.node_id in self.cluster.nodes
            registered = sorted(self.cluster.nodes)
            reward = self.scheduler.reported_reward_locked(outcome.service_id) if known else 0.0
            # The accounting identity (GetStatsResponse): only a service scheduled on that
            # node, and not yet counted, is counted.
            scheduled = reward is not None or self.cluster.awaits_outcome(
                outcome.service_id, outcome.node_id)
            if reward is None and scheduled:  # a client's retry is answered, not re-counted
                reward, snapshot = self.scheduler.record_locked(outcome, update_policy=True)
        if not known:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"outcome.node_id {outcome.node_id!r} is not a registered node "
                          f"(registered: {registered})")
        if not scheduled:
            context.abort(grpc.StatusCode.NOT_FOUND,
                          f"outcome.service_id {outcome.service_id!r} was not scheduled on "
                          f"{outcome.node_id!r}: call Schedule or ScheduleBatch first")
        self.scheduler.write_snapshot(snapshot)
        return scheduler_pb2.ReportOutcomeResponse(reward=reward)

    def GetStats(self, request, context):
        with self.scheduler.lock:
            self.scheduler.refresh_locked()
            return scheduler_pb2.GetStatsResponse(
                policy=self.policy.name, t=self.policy.t,
                regret=self.policy.regret,
                arms=[convert.arm_stat_to_proto(a) for a in self.policy.arm_stats(self.cluster)],
                nodes=[convert.node_stats_to_proto(n) for n in self.cluster.nodes.values()],
                met=self.counters["met"], missed=self.counters["missed"],
                failed=self.counters["failed"], abandoned=self.cluster.abandoned)

    def Submit(self, request, context):
        service = self._service_or_abort(request.service, context)
        with self.scheduler.lock:
            counted = self.scheduler.counted_message_locked([service.id])
        if counted is not None:
            context.abort(grpc.StatusCode.ALREADY_EXISTS, counted)
        try:
            attachment = convert.submit_attachment(request.service,
                                                   self.config.max_receive_bytes)
        except ValueError as e:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        return self.gateway.submit(service, attachment, context,
                                   request.service.emulated_output_tokens)

    def save_state(self) -> None:
        """Write the current state now (at shutdown)."""
        self.scheduler.save_state()

    def close(self) -> None:
        """Close the channels to the nodes and the metrics endpoint."""
        self.gateway.close()
        self.scheduler.metrics.close()


# --- server lifecycle --------------------------------------------------------------------------
def create_server(config: ServerConfig) -> tuple[grpc.Server, int, SchedulerServicer]:
    """A bound, not yet started server; ValueError for a bad config, unknown policy or a TLS
    or token file that cannot be used."""
    config.validate()
    security = load_security(config)
    try:
        policy = create_policy(config.policy, seed=config.seed, **dict(config.policy_params))
    except KeyError as e:  # the registry's message names the policy and the accepted ones
        raise ValueError(e.args[0]) from None
    except TypeError as e:
        raise ValueError(f"bad policy parameters for {config.policy!r}: {e}") from None
    servicer = SchedulerServicer(config, policy, security)
    bound = build_grpc_server(
        host=config.host, port=config.port, max_workers=config.max_workers,
        thread_name_prefix="scheduler-rpc",
        servicers=[(scheduler_pb2.DESCRIPTOR.services_by_name["SchedulerService"], servicer)],
        service_names=[SCHEDULER_SERVICE],
        # Reflection lists InferenceService too: its server is a node, but clients exploring
        # the scheduler should find the whole contract (Submit forwards to it).
        reflected=[INFERENCE_SERVICE],
        max_receive_bytes=config.max_receive_bytes, serving=True, security=security,
        prestart_threads=config.prestart_threads)
    servicer.health = bound.health
    try:
        servicer.scheduler.metrics.start(config.host)  # when config.metrics_port is set
    except ValueError:
        bound.server.stop(None)
        raise
    return bound.server, bound.port, servicer


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
    with wait_for_signal() as stop:
        try:
            server.start()
            if ready is not None:
                ready(port)
            stop.wait()
            log.info("stopping: in-flight calls get %.1f s", config.grace_s)
        finally:
            stop_server(server, servicer, config.grace_s)
