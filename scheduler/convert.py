"""Conversion between the perllm.v1 protobuf messages and the scheduler's dataclasses.

The policies and the cluster only ever see dataclasses (scheduler.service, scheduler.outcome,
scheduler.cluster); this module is the one place that knows the wire format. Functions that read
a request raise ValueError naming the field and the value, which the servicer turns into
INVALID_ARGUMENT.
"""

from __future__ import annotations

import math

from perllm.v1 import common_pb2, inference_pb2, scheduler_pb2
from scheduler.cluster import CLOUD, EDGE, NodeInfo, NodeState
from scheduler.limits import (MAX_ATTEMPTS, MAX_BYTES, MAX_DURATION_S, MAX_ENERGY_J, MAX_TOKENS,
                              check_address, check_number)
from scheduler.outcome import Energy, Outcome, Status, completed_outcome
from scheduler.policies.base import ArmStat, Decision
from scheduler.service import Service

_KIND_FROM_PB = {common_pb2.NODE_KIND_EDGE: EDGE, common_pb2.NODE_KIND_CLOUD: CLOUD}
_KIND_TO_PB = {v: k for k, v in _KIND_FROM_PB.items()}

_STATUS_FROM_PB = {
    common_pb2.OUTCOME_STATUS_MET: Status.MET,
    common_pb2.OUTCOME_STATUS_MISSED: Status.MISSED,
    common_pb2.OUTCOME_STATUS_FAILED: Status.FAILED,
}
_STATUS_TO_PB = {v: k for k, v in _STATUS_FROM_PB.items()}


# Energy.*_method strings <-> EnergyMethod; "" and unknown strings map to UNSPECIFIED.
_METHOD_TO_PB = {
    "modelled": common_pb2.ENERGY_METHOD_MODELLED,
    "rapl": common_pb2.ENERGY_METHOD_RAPL,
    "nvml": common_pb2.ENERGY_METHOD_NVML,
    "counters": common_pb2.ENERGY_METHOD_COUNTERS,
}
_METHOD_FROM_PB = {v: k for k, v in _METHOD_TO_PB.items()}


# --- services --------------------------------------------------------------------------------
def service_from_proto(pb: common_pb2.Service) -> Service:
    """A validated Service. input_bytes 0 means 'not declared': the prompt plus attachment size.

    Sampling: when the message carries no SamplingParams the Service defaults apply; when it
    does, its values are taken as sent (temperature 0 is greedy, top_k 0 no filter).
    """
    input_bytes = pb.input_bytes
    if input_bytes == 0:
        input_bytes = (len(pb.prompt.encode("utf-8"))
                       + (len(pb.attachment) or max(0, pb.emulated_attachment_bytes)))
    sampling = {}
    if pb.HasField("sampling"):
        sampling = dict(temperature=pb.sampling.temperature, top_k=pb.sampling.top_k,
                        seed=pb.sampling.seed)
    service = Service(
        id=pb.id, prompt=pb.prompt, input_bytes=input_bytes,
        max_new_tokens=pb.max_new_tokens, deadline_s=pb.deadline_s,
        service_class=pb.service_class or "default", prompt_tokens=pb.prompt_tokens,
        **sampling)
    service.validate()
    return service


def submit_attachment(pb: common_pb2.Service, limit_bytes: int) -> bytes | int:
    """What Submit forwards to the node as the service's attachment: the bytes sent, or (an
    emulated workload) the size of the filler to send (`emulated_attachment_bytes`, made by
    scheduler.node_request); ValueError naming the field and the value when it is negative,
    too large or sent with an attachment."""
    size = pb.emulated_attachment_bytes
    if size < 0:
        raise ValueError(f"service.emulated_attachment_bytes must be >= 0 (got {size})")
    if size and pb.attachment:
        raise ValueError(f"service.emulated_attachment_bytes ({size}) and service.attachment "
                         f"({len(pb.attachment)} bytes) exclude each other: send one")
    if size > limit_bytes:
        raise ValueError(f"service.emulated_attachment_bytes must be at most the gateway's "
                         f"message limit {limit_bytes} (got {size})")
    # Zeros: nothing on the path compresses, and the node reads only its length.
    return pb.attachment or size


def service_to_proto(service: Service, attachment: bytes = b"",
                     emulated_output_tokens: int = 0,
                     emulated_attachment_bytes: int = 0) -> common_pb2.Service:
    """The wire form of a Service (the inverse of service_from_proto), for clients; an
    emulated workload adds where the answer ends (emulated_output_tokens) and may have the
    gateway make its attachment (emulated_attachment_bytes)."""
    return common_pb2.Service(
        emulated_output_tokens=emulated_output_tokens,
        emulated_attachment_bytes=emulated_attachment_bytes,
        id=service.id, prompt=service.prompt, input_bytes=service.input_bytes,
        max_new_tokens=service.max_new_tokens, deadline_s=service.deadline_s,
        service_class=service.service_class, attachment=attachment,
        prompt_tokens=service.prompt_tokens,
        sampling=common_pb2.SamplingParams(temperature=service.temperature, top_k=service.top_k,
                                           seed=service.seed))


# --- nodes -----------------------------------------------------------------------------------
def node_info_from_proto(pb: scheduler_pb2.RegisterNodeRequest) -> NodeInfo:
    """A validated NodeInfo from RegisterNode (ValueError names the bad field)."""
    if pb.kind not in _KIND_FROM_PB:
        known = pb.kind in common_pb2.NodeKind.values()
        got = common_pb2.NodeKind.Name(pb.kind) if known else str(pb.kind)
        raise ValueError(f"kind must be NODE_KIND_EDGE or NODE_KIND_CLOUD (got {got})")
    kwargs = dict(
        node_id=pb.node_id, address=pb.address, kind=_KIND_FROM_PB[pb.kind], slots=pb.slots,
        link_rate_mbit=pb.link_rate_mbit, profile=pb.profile, idle_power_w=pb.idle_power_w,
        max_power_w=pb.max_power_w, prefill_tok_s=pb.prefill_tok_s,
        decode_tok_s=pb.decode_tok_s, transmission_j_per_bit=pb.transmission_j_per_bit,
        concurrency_slowdown=pb.concurrency_slowdown)
    if pb.queue_capacity:  # 0 on the wire means "not declared": keep NodeInfo's default
        kwargs["queue_capacity"] = pb.queue_capacity
    # The gateway and clients dial this address: it must be one gRPC can dial.
    check_address("address", pb.address)
    info = NodeInfo(**kwargs)
    info.validate()
    return info


def kind_to_proto(kind: str) -> int:
    return _KIND_TO_PB.get(kind, common_pb2.NODE_KIND_UNSPECIFIED)


def node_stats_to_proto(node: NodeState) -> scheduler_pb2.NodeStats:
    return scheduler_pb2.NodeStats(
        node_id=node.node_id, alive=node.alive and node.serving,
        queue_length=node.queue_length, busy_slots=node.busy_slots,
        prefill_tok_s=node.prefill_tok_s, decode_tok_s=node.decode_tok_s,
        link_rate_mbit=node.bandwidth_mbit, assigned=node.assigned)


# --- decisions -------------------------------------------------------------------------------
def decision_to_proto(decision: Decision, address: str) -> scheduler_pb2.ScheduleResponse:
    p = decision.prediction
    return scheduler_pb2.ScheduleResponse(
        service_id=decision.service_id, node_id=decision.node_id, address=address,
        predicted_transmission_s=p.transmission_s, predicted_queueing_s=p.queueing_s,
        predicted_inference_s=p.inference_s, predicted_total_s=p.total_s,
        constraint_f=p.f, feasible=decision.any_feasible, policy=decision.policy)


def arm_stat_to_proto(arm: ArmStat) -> scheduler_pb2.ArmStats:
    """An untried arm's ucb is +inf, as the policy computes it (doubles carry infinities)."""
    return scheduler_pb2.ArmStats(
        service_class=arm.service_class, node_id=arm.node_id, plays=arm.plays,
        mean_reward=arm.mean_reward, ucb=arm.ucb,
        success_rate=arm.success_rate)


# --- outcomes --------------------------------------------------------------------------------
def energy_from_proto(pb: common_pb2.EnergyBreakdown) -> Energy:
    return Energy(
        transmission_j=pb.transmission_j, inference_j=pb.inference_j, idle_j=pb.idle_j,
        transmission_method=_METHOD_FROM_PB.get(pb.transmission_method, ""),
        inference_method=_METHOD_FROM_PB.get(pb.inference_method, ""),
        idle_method=_METHOD_FROM_PB.get(pb.idle_method, ""))


def energy_to_proto(energy: Energy) -> common_pb2.EnergyBreakdown:
    return common_pb2.EnergyBreakdown(
        transmission_j=energy.transmission_j, inference_j=energy.inference_j,
        idle_j=energy.idle_j, total_j=energy.total_j,
        transmission_method=_METHOD_TO_PB.get(energy.transmission_method, 0),
        inference_method=_METHOD_TO_PB.get(energy.inference_method, 0),
        idle_method=_METHOD_TO_PB.get(energy.idle_method, 0))


# Each field's accepted range (scheduler.limits): the sum of the energy parts and eq. 4's reward
# computed from them stay finite.
_OUTCOME_RANGES = (("transmission_s", MAX_DURATION_S), ("queueing_s", MAX_DURATION_S),
                   ("inference_s", MAX_DURATION_S), ("total_s", MAX_DURATION_S),
                   ("tokens_in", MAX_TOKENS), ("tokens_out", MAX_TOKENS),
                   ("input_bytes", MAX_BYTES), ("attempts", MAX_ATTEMPTS),
                   ("predicted_total_s", MAX_DURATION_S))


def outcome_from_proto(pb: common_pb2.Outcome) -> Outcome:
    """A checked Outcome from ReportOutcome (ValueError names the bad field and value).

    The node id is checked against the cluster by the caller, which knows the nodes.
    """
    if pb.status not in _STATUS_FROM_PB:
        raise ValueError(f"outcome.status must be MET, MISSED or FAILED (got {pb.status})")
    if not pb.service_id:
        raise ValueError(f"outcome.service_id must not be empty (got {pb.service_id!r})")
    for name, high in _OUTCOME_RANGES:
        check_number(f"outcome.{name}", getattr(pb, name), 0, high)
    for name in ("transmission_j", "inference_j", "idle_j"):
        check_number(f"outcome.energy.{name}", getattr(pb.energy, name), 0, MAX_ENERGY_J)
    check_number("outcome.deadline_s", pb.deadline_s, 0, MAX_DURATION_S, low_open=True)
    if math.isnan(pb.constraint_f):
        raise ValueError(f"outcome.constraint_f must be a number (got {pb.constraint_f})")
    # A decision on a down link has f = -inf; clients echo it back. The reward bounds f to
    # [-1, 1] (scheduler.reward), so an infinite f is the bound.
    constraint_f = max(-1.0, min(1.0, pb.constraint_f)) if math.isinf(pb.constraint_f) \
        else pb.constraint_f
    outcome = Outcome(
        service_id=pb.service_id, node_id=pb.node_id, status=_STATUS_FROM_PB[pb.status],
        deadline_s=pb.deadline_s, total_s=pb.total_s,
        service_class=pb.service_class or "default", transmission_s=pb.transmission_s,
        queueing_s=pb.queueing_s, inference_s=pb.inference_s, tokens_in=pb.tokens_in,
        tokens_out=pb.tokens_out, input_bytes=pb.input_bytes,
        energy=energy_from_proto(pb.energy), error=pb.error, attempts=pb.attempts or 1,
        constraint_f=constraint_f, predicted_total_s=pb.predicted_total_s)
    check_status(outcome)
    return outcome


def check_status(outcome: Outcome) -> None:
    """MET needs total_s <= deadline_s and MISSED total_s > deadline_s (Outcome.status_for).

    The counters read the status and the reward the times (eq. 3's f from total_s), so an
    outcome where they disagree would be counted one way and learned the other.
    """
    if outcome.status is Status.FAILED:
        return
    expected = Outcome.status_for(outcome.total_s, outcome.deadline_s)
    if outcome.status is not expected:
        relation = "<=" if outcome.status is Status.MET else ">"
        raise ValueError(
            f"outcome.status {outcome.status.name} needs outcome.total_s {relation} "
            f"outcome.deadline_s (got total_s={outcome.total_s}, "
            f"deadline_s={outcome.deadline_s})")


def outcome_to_proto(outcome: Outcome) -> common_pb2.Outcome:
    return common_pb2.Outcome(
        service_id=outcome.service_id, node_id=outcome.node_id,
        service_class=outcome.service_class, status=_STATUS_TO_PB[outcome.status],
        transmission_s=outcome.transmission_s, queueing_s=outcome.queueing_s,
        inference_s=outcome.inference_s, total_s=outcome.total_s,
        deadline_s=outcome.deadline_s, tokens_in=outcome.tokens_in,
        tokens_out=outcome.tokens_out, input_bytes=outcome.input_bytes,
        energy=energy_to_proto(outcome.energy), error=outcome.error,
        attempts=outcome.attempts, constraint_f=outcome.constraint_f,
        predicted_total_s=outcome.predicted_total_s)


# --- one inference call: the request a node gets and the outcome its result makes --------------
def generate_request(service: Service, attachment: bytes, sent_unix_s: float,
                     stop_after_tokens: int = 0) -> inference_pb2.GenerateRequest:
    """What the gateway and the advisor-mode driver send a node for one service
    (stop_after_tokens: an emulated workload's true output length; 0: the cap)."""
    return inference_pb2.GenerateRequest(
        stop_after_tokens=stop_after_tokens,
        request_id=service.id, prompt=service.prompt, max_new_tokens=service.max_new_tokens,
        sampling=common_pb2.SamplingParams(temperature=service.temperature,
                                           top_k=service.top_k, seed=service.seed),
        attachment=attachment,
        # The node paces prefill for what the scheduler and the simulator assume the service
        # prefills (Service.estimated_prompt_tokens).
        prompt_tokens=service.estimated_prompt_tokens, sent_unix_s=sent_unix_s)


def outcome_from_result(service: Service, node_id: str, result: inference_pb2.GenerateResult,
                        *, sent_unix_s: float, total_s: float, transmission_j: float,
                        attempts: int = 1, constraint_f: float = 0.0,
                        predicted_total_s: float = 0.0) -> Outcome:
    """The outcome of a node's GenerateResult, as its caller measured it.

    Mininet hosts share one clock, so the node's arrival time minus the send time is the
    upload over the shaped link. total_s is what the user waited (call start to last token).
    The node's energy passes ReportOutcome's checks: a part outside [0, MAX_ENERGY_J] (a
    misbehaving node) is taken as unknown (0) rather than learned. transmission_j is the
    caller's model (bytes x J/bit); the emulated runner attributes interface counters later.
    """
    node_energy = energy_from_proto(result.energy)
    energy = Energy(
        transmission_j=transmission_j,
        inference_j=_energy_j(node_energy.inference_j), idle_j=_energy_j(node_energy.idle_j),
        transmission_method="modelled",
        inference_method=node_energy.inference_method or "modelled",
        idle_method=node_energy.idle_method or "modelled")
    transmission_s = (result.received_unix_s - sent_unix_s) if result.received_unix_s > 0 \
        else 0.0
    return completed_outcome(
        service, node_id, total_s=total_s, transmission_s=transmission_s,
        queueing_s=result.queueing_s, inference_s=result.inference_s,
        tokens_in=result.tokens_in, tokens_out=result.tokens_out, energy=energy,
        attempts=attempts, constraint_f=constraint_f, predicted_total_s=predicted_total_s)


def _energy_j(value: float) -> float:
    return value if 0 <= value <= MAX_ENERGY_J else 0.0  # NaN fails both comparisons
