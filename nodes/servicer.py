"""`perllm.v1.InferenceService`: one request's way through a node, and the node's status.

A request passes through: validation (INVALID_ARGUMENT naming the field and value), the
bounded FIFO queue (RESOURCE_EXHAUSTED when full), one of N slots, the backend, and pacing to
the hardware profile when one is set: token k leaves no earlier than the profile's due time
after the slot start. Tokens go out in chunks (up to `chunk_tokens` tokens, or sooner once the
oldest waiting token is `chunk_interval_s` old) so per-message cost does not cap throughput.
A cancelled or expired call sets an event that wakes the queue wait and the pacing wait, the
generation stops, and the slot passes to the next request in line.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Iterator

import grpc

from nodes.backends import Backend, GenerationParams, InvalidParameter
from nodes.config import NodeConfig
from nodes.metrics import NodeMetrics
from nodes.rates import MeasuredRates
from nodes.slowdown import SLOWDOWN_POLL_S, SlowdownFile
from nodes.slots import SlotQueue
from perllm.v1 import common_pb2, inference_pb2, inference_pb2_grpc
from scheduler.convert import energy_to_proto, kind_to_proto
from scheduler.outcome import Energy

INFERENCE_SERVICE = inference_pb2.DESCRIPTOR.services_by_name["InferenceService"].full_name


def _wire_energy(energy: Energy) -> common_pb2.EnergyBreakdown:
    """The EnergyMethod enum has no combined value: a method such as 'rapl+nvml' goes as its
    first part (the meter lists the CPU package first)."""
    return energy_to_proto(dataclasses.replace(energy, **{
        name: getattr(energy, name).split("+")[0]
        for name in ("transmission_method", "inference_method", "idle_method")}))


class InferenceServicer(inference_pb2_grpc.InferenceServiceServicer):
    """Generate and GetStatus over one backend, its slots, pacer, energy meter and rates."""

    def __init__(self, config: NodeConfig, backend: Backend, profile) -> None:
        from nodes.energy import EnergyMeter
        from scheduler.energy_models import POWER_MODELS
        from nodes.pacing import Pacer

        self.config = config
        self.backend = backend
        self.profile = profile
        self.slots = SlotQueue(config.resolved_slots(), config.queue_capacity)
        self.pacer = Pacer(profile)
        # The slow-node fault's control file (nodes/slowdown.py), when the node has one.
        self.slowdown = SlowdownFile(config.slowdown_file) if config.slowdown_file else None
        idle_w = profile.idle_power_w if profile else 0.0
        max_w = profile.max_power_w if profile else 0.0
        # Unpaced, the machine's own measured energy (RAPL/NVML, where present) is the node's.
        self.meter = EnergyMeter(idle_w, max_w, self.slots.slots,
                                 prefer_measured=profile is None,
                                 power_curve=POWER_MODELS.get(config.power_model).curve(
                                     config.kind))
        self.rates = MeasuredRates(profile.prefill_tok_s if profile else 0.0,
                                   profile.decode_tok_s if profile else 0.0)
        self.serving = threading.Event()
        self.metrics = NodeMetrics(self)  # off unless config.metrics_port is set
        self._done_lock = threading.Lock()
        self.requests_done = 0
        self._request_seq = 0

    # -- Generate -------------------------------------------------------------------------

    def Generate(self, request, context) -> Iterator[inference_pb2.GenerateResponse]:
        return self.metrics.counted(self._generate(request, context), context)

    def _generate(self, request, context) -> Iterator[inference_pb2.GenerateResponse]:
        received_unix_s = time.time()
        received_s = time.monotonic()
        if not self.serving.is_set():
            context.abort(grpc.StatusCode.UNAVAILABLE,
                          f"node {self.config.node_id} is not serving (loading or shutting down)")
        cancelled = threading.Event()

        def on_done() -> None:
            cancelled.set()
            self.slots.wake()

        context.add_callback(on_done)
        params, prompt_ids, truncated = self._validate(request, context)
        ticket = self.slots.enter()
        if ticket is None:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                          f"node {self.config.node_id} queue is full: {self.slots.capacity} "
                          f"waiting (queue_capacity {self.slots.capacity})")
        if not self.slots.wait(ticket, cancelled):
            return
        try:
            yield from self._run(request, context, params, prompt_ids, truncated,
                                 received_unix_s, received_s, cancelled)
        finally:
            self.slots.release()

    def _validate(self, request, context) -> tuple[GenerationParams, list[int], bool]:
        if not request.prompt:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "prompt must not be empty (got '')")
        for name in ("chunk_tokens", "prompt_tokens", "stop_after_tokens"):
            if getattr(request, name) < 0:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                              f"{name} must be >= 0 (got {getattr(request, name)})")
        # An emulated workload says where the answer ends (the model's end of sequence, which
        # a tiny random-weight model cannot produce by itself); never past the cap.
        new_tokens = request.max_new_tokens
        if 0 < request.stop_after_tokens < new_tokens:
            new_tokens = request.stop_after_tokens
        s = request.sampling
        params = GenerationParams(max_new_tokens=new_tokens,
                                  temperature=s.temperature, top_k=s.top_k, seed=s.seed)
        try:
            params.validate()
        except InvalidParameter as e:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        ids = self.backend.tokenize(request.prompt)
        ctx = self.backend.context_length
        room = ctx - params.max_new_tokens
        if room < 1:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"max_new_tokens must be < the context length {ctx} "
                          f"(got {params.max_new_tokens})")
        truncated = False
        if len(ids) > room:
            if not request.truncate_prompt:
                context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"prompt is {len(ids)} tokens; with max_new_tokens {params.max_new_tokens} "
                    f"at most {room} fit the context length {ctx} (or set truncate_prompt)")
            # Keep BOS and the end of the prompt, where the question usually is.
            ids = ids[:1] + ids[len(ids) - room + 1:]
            truncated = True
        return params, ids, truncated

    def _run(self, request, context, params: GenerationParams, prompt_ids: list[int],
             truncated: bool, received_unix_s: float, received_s: float,
             cancelled: threading.Event) -> Iterator[inference_pb2.GenerateResponse]:
        started_unix_s = time.time()
        start_s = time.monotonic()
        with self._done_lock:
            self._request_seq += 1
            meter_id = f"{request.request_id}#{self._request_seq}"
        self.meter.begin(meter_id)
        energy = None
        chunk_tokens = request.chunk_tokens or self.config.chunk_tokens
        interval_s = self.config.chunk_interval_s
        paced = self.pacer.paced
        # With a profile, a declared prompt size (attached context a real deployment would
        # prefill) is paced and reported as the request's prompt; the model itself only sees
        # the real prompt. Unpaced, the native times belong to the real prompt.
        tokens_in = max(len(prompt_ids), request.prompt_tokens) if paced else len(prompt_ids)
        pending_ids: list[int] = []
        pending_text: list[str] = []
        oldest_pending_s = 0.0
        first_emit_s = last_emit_s = start_s
        k = 0
        # Each token is paced at the concurrency when it is taken (processor sharing), so a
        # request joining or leaving moves only the tokens still to come.
        schedule = self.pacer.schedule(tokens_in) if paced else None
        concurrency_sum = 0
        generation = None
        try:
            generation = self.backend.generate(prompt_ids, params)
            for token in generation:
                if cancelled.is_set():
                    break
                k += 1
                now = time.monotonic()
                if schedule is not None:
                    busy = max(1, self.slots.busy)
                    concurrency_sum += busy
                    factor = self.slowdown.factor() if self.slowdown is not None else 1.0
                    due_s = start_s + schedule.next_due_s(busy, factor)
                else:
                    due_s = now
                if due_s > now:
                    # Do not hold earlier tokens through a long pacing wait.
                    if pending_ids and due_s - oldest_pending_s >= interval_s:
                        yield _chunk(pending_ids, pending_text)
                        pending_ids, pending_text = [], []
                    due_s = self._wait_due(schedule, start_s, due_s, now, cancelled)
                    if due_s is None:
                        break
                    now = time.monotonic()
                if schedule is not None:
                    self.metrics.on_paced_token(now - due_s)
                if k == 1:
                    first_emit_s = now
                last_emit_s = now
                if not pending_ids:
                    oldest_pending_s = now
                pending_ids.append(token.id)
                pending_text.append(token.text)
                if len(pending_ids) >= chunk_tokens or now - oldest_pending_s >= interval_s:
                    yield _chunk(pending_ids, pending_text)
                    pending_ids, pending_text = [], []
            generation.close()
            if cancelled.is_set() or not context.is_active():
                return
            if pending_ids:
                yield _chunk(pending_ids, pending_text)
            energy = self.meter.end(meter_id)
        finally:
            if generation is not None:
                generation.close()
            if energy is None:
                self.meter.end(meter_id)
        timings = generation.timings
        if self.profile is None:
            prefill_s, decode_s = timings.prefill_s, timings.decode_s
        else:
            prefill_s, decode_s = first_emit_s - start_s, last_emit_s - first_emit_s
        slowdown = 1.0
        if schedule is not None and k > 0:
            mean_busy = concurrency_sum / k
            slowdown = 1.0 + self.profile.concurrency_slowdown * (mean_busy - 1.0)
        self.rates.observe(tokens_in, prefill_s, timings.tokens_out, decode_s, slowdown)
        # The service's share of idle power (scheduler/reward.py): P_idle while it was on its
        # way (sent -> received, clocks shared by the hosts) and waiting for a slot.
        waited_s = start_s - received_s
        if request.sent_unix_s > 0:
            waited_s += max(0.0, received_unix_s - request.sent_unix_s)
        energy = dataclasses.replace(energy, idle_j=self.meter.idle_power_w * waited_s)
        with self._done_lock:
            self.requests_done += 1
        yield inference_pb2.GenerateResponse(result=inference_pb2.GenerateResult(
            tokens_in=tokens_in, tokens_out=timings.tokens_out,
            received_unix_s=received_unix_s, started_unix_s=started_unix_s,
            finished_unix_s=time.time(), queueing_s=start_s - received_s,
            prefill_s_native=timings.prefill_s, decode_s_native=timings.decode_s,
            prefill_s=prefill_s, decode_s=decode_s, inference_s=prefill_s + decode_s,
            energy=_wire_energy(energy), finish_reason=timings.finish_reason,
            truncated=truncated, node_id=self.config.node_id))

    def _wait_due(self, schedule, start_s: float, due_s: float, now: float,
                  cancelled: threading.Event) -> float | None:
        """Wait until a paced token's due time; None if the call was cancelled. With a
        slowdown file, the file is re-read every SLOWDOWN_POLL_S and a changed factor
        re-times the rest of the pending step, so running requests slow down (and recover)
        within that lag, as the simulator's processor sharing does at once."""
        if self.slowdown is None:
            return None if cancelled.wait(due_s - now) else due_s
        while due_s > now:
            if cancelled.wait(min(due_s - now, SLOWDOWN_POLL_S)):
                return None
            now = time.monotonic()
            due_s = start_s + schedule.retime(now - start_s, self.slowdown.factor())
        return due_s

    # -- GetStatus ------------------------------------------------------------------------

    def GetStatus(self, request, context) -> inference_pb2.GetStatusResponse:
        totals = self.meter.totals()
        busy = self.slots.busy
        idle_w = self.meter.idle_power_w
        max_w = self.meter.max_power_w
        method = totals.get("method", "modelled")
        energy = _wire_energy(Energy(inference_j=totals["inference_j"], idle_j=totals["idle_j"],
                                     transmission_method="", inference_method=method,
                                     idle_method=method))
        with self._done_lock:
            done = self.requests_done
        return inference_pb2.GetStatusResponse(
            node_id=self.config.node_id, kind=kind_to_proto(self.config.kind),
            slots=self.slots.slots, busy_slots=busy, queue_length=self.slots.waiting,
            queue_capacity=self.slots.capacity, prefill_tok_s=self.rates.prefill_tok_s,
            decode_tok_s=self.rates.decode_tok_s,
            power_w=self.meter.power_w(),
            busy_s=totals["busy_s"], idle_s=totals["idle_s"], energy=energy,
            serving=self.serving.is_set(), backend=self.config.backend,
            model=self.config.model, profile=self.config.profile,
            idle_power_w=idle_w, max_power_w=max_w, requests_done=done)


def _chunk(ids: list[int], texts: list[str]) -> inference_pb2.GenerateResponse:
    return inference_pb2.GenerateResponse(
        chunk=inference_pb2.TokenChunk(text="".join(texts), token_ids=ids))
