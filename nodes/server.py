"""The inference node: `perllm.v1.InferenceService` over one loaded backend.

`create_server(config)` builds a bound, not yet started node (tests bind port 0, use
`node.port` and call it in-process); `serve(config)` runs it from the CLI until SIGTERM.

A request passes through: validation (INVALID_ARGUMENT naming the field and value), the
bounded FIFO queue (RESOURCE_EXHAUSTED when full), one of N slots, the backend, and pacing to
the hardware profile when one is set: token k leaves no earlier than the profile's due time
after the slot start. Tokens go out in chunks (up to `chunk_tokens` tokens, or sooner once the
oldest waiting token is `chunk_interval_s` old) so per-message cost does not cap throughput.
A cancelled or expired call sets an event that wakes the queue wait and the pacing wait, the
generation stops, and the slot passes to the next request in line.
"""

from __future__ import annotations

import logging
import math
import signal
import sys
import dataclasses
import threading
import time
from collections import deque
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from nodes.backends import (Backend, BackendOptions, GenerationParams, InvalidParameter,
                            ModelLoadError, create_backend)
from perllm.v1 import common_pb2, inference_pb2, inference_pb2_grpc, scheduler_pb2
from perllm.v1 import scheduler_pb2_grpc

log = logging.getLogger("nodes.server")

INFERENCE_SERVICE = inference_pb2.DESCRIPTOR.services_by_name["InferenceService"].full_name
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
DEFAULT_SLOTS = {"edge": 1, "cloud": 4}
KIND_TO_PROTO = {"edge": common_pb2.NODE_KIND_EDGE, "cloud": common_pb2.NODE_KIND_CLOUD}
ENERGY_METHOD_TO_PROTO = {
    "modelled": common_pb2.ENERGY_METHOD_MODELLED, "rapl": common_pb2.ENERGY_METHOD_RAPL,
    "nvml": common_pb2.ENERGY_METHOD_NVML, "counters": common_pb2.ENERGY_METHOD_COUNTERS,
    # The enum has no combined value; RAPL (CPU package) is listed first by the meter.
    "rapl+nvml": common_pb2.ENERGY_METHOD_RAPL}
# Weight of the newest request in the measured rates a node reports (exponential average).
RATE_SMOOTHING = 0.3


@dataclass(frozen=True)
class NodeConfig:
    """Everything `python -m nodes serve` can set."""

    node_id: str = "node"
    kind: str = "edge"
    backend: str = "llama-cpp"
    model: str = ""
    profile: str = ""  # hardware profile name or .yaml path; "" runs at native speed
    host: str = "0.0.0.0"  # inside a Mininet host the scheduler and users reach its interface
    port: int = 0  # 0: any free port (node.port)
    slots: int = 0  # 0: by kind (edge 1, cloud 4)
    queue_capacity: int = 64  # requests waiting for a slot; more get RESOURCE_EXHAUSTED
    chunk_tokens: int = 32  # python -m nodes.bench: 8 cost 10-15% of tiny-model throughput
    chunk_interval_s: float = 0.02
    n_threads: int = 1
    context_length: int = 0  # 0: the model's own
    warmup_tokens: int = 8  # a first generation at load, so the first request is not cold
    grace_s: float = 5.0
    scheduler: str = ""  # HOST:PORT of the SchedulerService; "" does not register
    advertise: str = ""  # IP:PORT the scheduler should use; "" derives it from host and port
    link_rate_mbit: float = 100.0
    j_per_bit: float = 0.0
    heartbeat_interval_s: float = 0.5

    def resolved_slots(self) -> int:
        return self.slots or DEFAULT_SLOTS.get(self.kind, 1)

    def validate(self) -> None:
        if not self.node_id:
            raise ValueError(f"node_id must not be empty (got {self.node_id!r})")
        if self.kind not in DEFAULT_SLOTS:
            raise ValueError(f"kind must be one of {', '.join(DEFAULT_SLOTS)} (got {self.kind!r})")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be in [0, 65535] (got {self.port})")
        for name in ("slots", "queue_capacity", "context_length", "warmup_tokens"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0 (got {getattr(self, name)})")
        for name in ("chunk_tokens", "n_threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1 (got {getattr(self, name)})")
        for name in ("chunk_interval_s", "grace_s", "j_per_bit"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0 (got {value})")
        for name in ("link_rate_mbit", "heartbeat_interval_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0 (got {value})")
        if self.scheduler and ":" not in self.scheduler:
            raise ValueError(f"scheduler must be HOST:PORT (got {self.scheduler!r})")
        if self.advertise and ":" not in self.advertise:
            raise ValueError(f"advertise must be IP:PORT (got {self.advertise!r})")


class SlotQueue:
    """N slots and a bounded FIFO of waiters; a freed slot passes straight to the oldest."""

    @dataclass(eq=False)
    class Ticket:
        granted: bool = False

    def __init__(self, slots: int, capacity: int) -> None:
        self.slots, self.capacity = slots, capacity
        self._cond = threading.Condition()
        self._free = slots
        self._waiting: deque[SlotQueue.Ticket] = deque()

    def enter(self) -> "SlotQueue.Ticket | None":
        """A granted ticket, a waiting one, or None when the queue is full."""
        with self._cond:
            if self._free > 0 and not self._waiting:
                self._free -= 1
                self._cond.notify_all()
                return SlotQueue.Ticket(granted=True)
            if len(self._waiting) >= self.capacity:
                return None
            ticket = SlotQueue.Ticket()
            self._waiting.append(ticket)
            self._cond.notify_all()
            return ticket

    def wait(self, ticket: "SlotQueue.Ticket", cancelled: threading.Event) -> bool:
        """Block until the ticket holds a slot (True) or `cancelled` is set (False)."""
        with self._cond:
            while not ticket.granted:
                if cancelled.is_set():
                    self._waiting.remove(ticket)
                    self._cond.notify_all()
                    return False
                self._cond.wait()
            return True

    def release(self) -> None:
        with self._cond:
            if self._waiting:
                self._waiting.popleft().granted = True
            else:
                self._free += 1
            self._cond.notify_all()

    def wake(self) -> None:
        """Let waiters re-check their cancellation event."""
        with self._cond:
            self._cond.notify_all()

    def wait_until(self, busy: int | None = None, waiting: int | None = None,
                   timeout_s: float | None = None) -> bool:
        """Block until the busy slots and waiting requests equal the given counts."""
        with self._cond:
            return self._cond.wait_for(
                lambda: ((busy is None or self.slots - self._free == busy)
                         and (waiting is None or len(self._waiting) == waiting)), timeout_s)

    @property
    def busy(self) -> int:
        with self._cond:
            return self.slots - self._free

    @property
    def waiting(self) -> int:
        with self._cond:
            return len(self._waiting)


class _Rates:
    """Measured per-request prefill and decode rates (paced when a profile is set)."""

    def __init__(self, prefill_tok_s: float = 0.0, decode_tok_s: float = 0.0) -> None:
        self._lock = threading.Lock()
        self.prefill_tok_s, self.decode_tok_s = prefill_tok_s, decode_tok_s

    def observe(self, tokens_in: int, prefill_s: float, tokens_out: int, decode_s: float,
                slowdown: float = 1.0) -> None:
        """slowdown: 1 + s·(n − 1) at the request's mean concurrency n. The scheduler applies
        the slow-down itself, so it is given single-request rates (not counted twice)."""
        prefill_s, decode_s = prefill_s / slowdown, decode_s / slowdown
        with self._lock:
            # decode_s covers tokens 2..n; prefill_s (time to the first token) also holds one
            # decode step, taken out so that tokens_in / prefill + tokens_out / decode (the
            # profile's and the scheduler's model of a request) adds up to the measured time.
            if tokens_out > 1 and decode_s > 0:
                self.decode_tok_s = _smooth(self.decode_tok_s, (tokens_out - 1) / decode_s)
            step_s = 1 / self.decode_tok_s if self.decode_tok_s > 0 else 0.0
            if tokens_in > 0 and prefill_s - step_s > 0:
                self.prefill_tok_s = _smooth(self.prefill_tok_s,
                                             tokens_in / (prefill_s - step_s))


def _smooth(old: float, new: float) -> float:
    return new if old <= 0 else (1 - RATE_SMOOTHING) * old + RATE_SMOOTHING * new


def _energy_to_proto(energy) -> common_pb2.EnergyBreakdown:
    return common_pb2.EnergyBreakdown(
        transmission_j=energy.transmission_j, inference_j=energy.inference_j,
        idle_j=energy.idle_j, total_j=energy.total_j,
        transmission_method=ENERGY_METHOD_TO_PROTO.get(energy.transmission_method, 0),
        inference_method=ENERGY_METHOD_TO_PROTO.get(energy.inference_method, 0),
        idle_method=ENERGY_METHOD_TO_PROTO.get(energy.idle_method, 0))


class InferenceServicer(inference_pb2_grpc.InferenceServiceServicer):
    def __init__(self, config: NodeConfig, backend: Backend, profile, health_servicer) -> None:
        from nodes.energy import EnergyMeter
        from nodes.pacing import Pacer

        self.config = config
        self.backend = backend
        self.profile = profile
        self.health = health_servicer
        self.slots = SlotQueue(config.resolved_slots(), config.queue_capacity)
        self.pacer = Pacer(profile)
        idle_w = profile.idle_power_w if profile else 0.0
        max_w = profile.max_power_w if profile else 0.0
        # Unpaced, the machine's own measured energy (RAPL/NVML, where present) is the node's.
        self.meter = EnergyMeter(idle_w, max_w, self.slots.slots,
                                 prefer_measured=profile is None)
        self.rates = _Rates(profile.prefill_tok_s if profile else 0.0,
                            profile.decode_tok_s if profile else 0.0)
        self.serving = threading.Event()
        self._done_lock = threading.Lock()
        self.requests_done = 0
        self._request_seq = 0

    # -- Generate -------------------------------------------------------------------------

    def Generate(self, request, context) -> Iterator[inference_pb2.GenerateResponse]:
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
        for name in ("chunk_tokens", "prompt_tokens"):
            if getattr(request, name) < 0:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                              f"{name} must be >= 0 (got {getattr(request, name)})")
        s = request.sampling
        params = GenerationParams(max_new_tokens=request.max_new_tokens,
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
                    due_s = start_s + schedule.next_due_s(busy)
                else:
                    due_s = now
                if due_s > now:
                    # Do not hold earlier tokens through a long pacing wait.
                    if pending_ids and due_s - oldest_pending_s >= interval_s:
                        yield _chunk(pending_ids, pending_text)
                        pending_ids, pending_text = [], []
                    if cancelled.wait(due_s - now):
                        break
                    now = time.monotonic()
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
            energy=_energy_to_proto(energy), finish_reason=timings.finish_reason,
            truncated=truncated, node_id=self.config.node_id))

    # -- GetStatus ------------------------------------------------------------------------

    def GetStatus(self, request, context) -> inference_pb2.GetStatusResponse:
        totals = self.meter.totals()
        busy = self.slots.busy
        idle_w = self.meter.idle_power_w
        max_w = self.meter.max_power_w
        method = totals.get("method", "modelled")
        code = ENERGY_METHOD_TO_PROTO.get(method, 0)
        energy = common_pb2.EnergyBreakdown(
            inference_j=totals["inference_j"], idle_j=totals["idle_j"],
            total_j=totals["inference_j"] + totals["idle_j"],
            inference_method=code, idle_method=code)
        with self._done_lock:
            done = self.requests_done
        return inference_pb2.GetStatusResponse(
            node_id=self.config.node_id, kind=KIND_TO_PROTO[self.config.kind],
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


class Registrar(threading.Thread):
    """Registers the node with the scheduler, then heartbeats every interval.

    Re-registers when a heartbeat gets NOT_FOUND (the scheduler restarted or expired us);
    any other failure is logged once per kind and retried at the next interval.
    """

    def __init__(self, servicer: InferenceServicer, address: str) -> None:
        super().__init__(name=f"registrar-{servicer.config.node_id}", daemon=True)
        self.servicer = servicer
        self.address = address
        self._stopping = threading.Event()
        self._cond = threading.Condition()
        self.registrations = 0
        self.heartbeats = 0  # acknowledged by the scheduler

    def wait_for(self, *, registrations: int = 0, heartbeats: int = 0,
                 timeout_s: float = 10.0) -> bool:
        with self._cond:
            return self._cond.wait_for(
                lambda: self.registrations >= registrations and self.heartbeats >= heartbeats,
                timeout_s)

    def _register_request(self) -> scheduler_pb2.RegisterNodeRequest:
        s = self.servicer
        c, p = s.config, s.profile
        return scheduler_pb2.RegisterNodeRequest(
            node_id=c.node_id, address=self.address, kind=KIND_TO_PROTO[c.kind],
            slots=s.slots.slots, link_rate_mbit=c.link_rate_mbit, profile=c.profile,
            idle_power_w=s.meter.idle_power_w, max_power_w=s.meter.max_power_w,
            prefill_tok_s=s.rates.prefill_tok_s, decode_tok_s=s.rates.decode_tok_s,
            queue_capacity=s.slots.capacity, transmission_j_per_bit=c.j_per_bit,
            concurrency_slowdown=p.concurrency_slowdown if p else 0.0)

    def _heartbeat_request(self) -> scheduler_pb2.HeartbeatRequest:
        s = self.servicer
        return scheduler_pb2.HeartbeatRequest(
            node_id=s.config.node_id, queue_length=s.slots.waiting, busy_slots=s.slots.busy,
            prefill_tok_s=s.rates.prefill_tok_s, decode_tok_s=s.rates.decode_tok_s,
            serving=s.serving.is_set())

    def run(self) -> None:
        interval_s = self.servicer.config.heartbeat_interval_s
        channel = grpc.insecure_channel(self.servicer.config.scheduler)
        stub = scheduler_pb2_grpc.SchedulerServiceStub(channel)
        registered = False
        last_error = None
        try:
            while not self._stopping.is_set():
                try:
                    if registered:
                        stub.Heartbeat(self._heartbeat_request(), timeout=interval_s * 4)
                        with self._cond:
                            self.heartbeats += 1
                            self._cond.notify_all()
                    else:
                        stub.RegisterNode(self._register_request(), timeout=interval_s * 4)
                        registered = True
                        log.info("registered %s at %s with scheduler %s",
                                 self.servicer.config.node_id, self.address,
                                 self.servicer.config.scheduler)
                        with self._cond:
                            self.registrations += 1
                            self._cond.notify_all()
                        continue  # first heartbeat at once: it carries the serving state
                    last_error = None
                except grpc.RpcError as e:
                    if e.code() == grpc.StatusCode.NOT_FOUND:
                        registered = False
                        continue
                    if e.code() != last_error:
                        log.warning("scheduler %s: %s: %s", self.servicer.config.scheduler,
                                    e.code().name, e.details())
                        last_error = e.code()
                self._stopping.wait(interval_s)
            if registered:  # tell the scheduler we stopped serving
                try:
                    stub.Heartbeat(self._heartbeat_request(), timeout=interval_s)
                except grpc.RpcError:
                    pass
        finally:
            channel.close()

    def stop(self) -> None:
        self._stopping.set()


class NodeServer:
    """A bound gRPC node: `start()`, then `load_model()`, then optionally `register()`."""

    def __init__(self, config: NodeConfig) -> None:
        config.validate()
        self.config = config
        self.profile = None
        if config.profile:
            from nodes.profile import load_profile
            self.profile = load_profile(config.profile)
        slots = config.resolved_slots()
        # llama.cpp contexts are not thread-safe: one instance per slot (weights are mmapped
        # and shared); transformers shares one model across slots.
        self.backend = create_backend(config.backend, BackendOptions(
            n_threads=config.n_threads,
            instances=slots if config.backend == "llama-cpp" else 1,
            context_length=config.context_length))
        self.health = health.HealthServicer()
        self.servicer = InferenceServicer(config, self.backend, self.profile, self.health)
        # One worker per slot and queued request, plus a few for GetStatus and health; beyond
        # that gRPC itself answers RESOURCE_EXHAUSTED, so memory stays bounded.
        workers = slots + config.queue_capacity + 8
        self.server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="node-rpc"),
            maximum_concurrent_rpcs=workers,
            options=[("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                     ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                     ("grpc.so_reuseport", 0)])
        inference_pb2_grpc.add_InferenceServiceServicer_to_server(self.servicer, self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            (INFERENCE_SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME), self.server)
        try:
            self.port = self.server.add_insecure_port(f"{config.host}:{config.port}")
        except RuntimeError as e:
            raise ValueError(f"cannot bind {config.host}:{config.port}: {e}") from None
        if self.port == 0:
            raise ValueError(f"cannot bind {config.host}:{config.port}")
        self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        self.registrar: Registrar | None = None
        self.load_s = 0.0

    def _set_health(self, status) -> None:
        for name in ("", INFERENCE_SERVICE):
            self.health.set(name, status)

    def start(self) -> "NodeServer":
        self.server.start()
        return self

    def load_model(self) -> None:
        """Load (ModelLoadError on failure), warm up, then report SERVING."""
        t0 = time.perf_counter()
        self.backend.load(self.config.model)
        if self.config.warmup_tokens:
            ids = self.backend.tokenize("Warm up the model.")
            n = min(self.config.warmup_tokens, self.backend.context_length - len(ids))
            if n > 0:
                generation = self.backend.generate(ids, GenerationParams(max_new_tokens=n))
                for _ in generation:
                    pass
                if self.profile is None:
                    t = generation.timings
                    self.servicer.rates.observe(t.tokens_in, t.prefill_s, t.tokens_out,
                                                t.decode_s)
        self.load_s = time.perf_counter() - t0
        self.servicer.serving.set()
        self._set_health(health_pb2.HealthCheckResponse.SERVING)

    def advertise_address(self) -> str:
        if self.config.advertise:
            return self.config.advertise
        host = self.config.host
        return f"{'127.0.0.1' if host in ('0.0.0.0', '::', '[::]', '') else host}:{self.port}"

    def register(self) -> Registrar:
        """Start registering and heartbeating with `config.scheduler`."""
        if not self.config.scheduler:
            raise ValueError("scheduler must be HOST:PORT to register (got '')")
        self.registrar = Registrar(self.servicer, self.advertise_address())
        self.registrar.start()
        return self.registrar

    def stop(self, grace_s: float | None = None) -> threading.Event:
        """NOT_SERVING at once, then let admitted requests finish within `grace_s`.

        The server keeps answering (health says NOT_SERVING, Generate UNAVAILABLE) while it
        drains; what is still running when the grace period ends is cancelled. Blocks while
        draining; returns the gRPC server's termination event.
        """
        grace_s = self.config.grace_s if grace_s is None else grace_s
        deadline_s = time.monotonic() + grace_s
        self.servicer.serving.clear()
        self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        if self.registrar is not None:
            self.registrar.stop()  # its last heartbeat tells the scheduler serving=False
        self.servicer.slots.wait_until(busy=0, waiting=0, timeout_s=grace_s)
        self.health.enter_graceful_shutdown()
        done = self.server.stop(max(0.0, deadline_s - time.monotonic()))
        if self.registrar is not None:
            self.registrar.join(timeout=self.config.heartbeat_interval_s * 5)
        return done

    def close(self) -> None:
        self.stop(0).wait()
        self.backend.close()


def create_server(config: NodeConfig) -> NodeServer:
    """A bound, not yet started node; ValueError for a bad config, unknown profile or backend."""
    try:
        return NodeServer(config)
    except KeyError as e:  # the registry names the backend and the accepted ones
        raise ValueError(e.args[0]) from None


def serve(config: NodeConfig) -> int:
    """Run until SIGTERM/SIGINT; prints `READY <port>` once the model serves. Exit status."""
    model = Path(config.model)
    if not config.model or not model.exists():
        print(f"nodes serve: model not found: {config.model!r} (give --model a local "
              f"{'GGUF file' if config.backend == 'llama-cpp' else 'model directory'})",
              file=sys.stderr)
        return 2
    try:
        node = create_server(config)
    except ValueError as e:
        print(f"nodes serve: {e}", file=sys.stderr)
        return 2
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    node.start()
    try:
        node.load_model()
    except ModelLoadError as e:
        print(f"nodes serve: {e}", file=sys.stderr)
        node.stop(0)
        return 2
    if config.scheduler:
        node.register()
    print(f"READY {node.port}", flush=True)
    log.info("node %s (%s, %s %s, profile %s) serving on port %d with %d slot(s), loaded "
             "in %.2f s", config.node_id, config.kind, config.backend, config.model,
             config.profile or "none", node.port, node.servicer.slots.slots, node.load_s)
    stop.wait()
    log.info("node %s stopping: in-flight requests get %.1f s", config.node_id, config.grace_s)
    node.stop().wait()
    node.backend.close()
    return 0
