"""The simulated world: links (shared capacity, fluctuating rate) and nodes (slots, FIFO queue,
profile rates with concurrency slow-down, a power curve of scheduler/energy_models.py).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Callable

import simpy

from scheduler.energy_models import PowerCurve, linear_power_w
from simulator.engine import SharedServer, Job


@dataclass(frozen=True, slots=True)
class NodeModel:
    """What the simulator needs to know of a node's hardware (a HardwareProfile, or fitted)."""

    prefill_tok_s: float
    decode_tok_s: float
    concurrency_slowdown: float  # rate_n = rate_1 / (1 + s·(n − 1))
    idle_power_w: float
    max_power_w: float
    name: str = ""

    def validate(self) -> None:
        for field in ("prefill_tok_s", "decode_tok_s"):
            if not getattr(self, field) > 0:
                raise ValueError(f"{self.name or 'node model'}: {field} must be > 0 "
                                 f"(got {getattr(self, field)})")
        if self.concurrency_slowdown < 0:
            raise ValueError(f"{self.name}: concurrency_slowdown must be >= 0 "
                             f"(got {self.concurrency_slowdown})")
        if not 0 <= self.idle_power_w <= self.max_power_w:
            raise ValueError(f"{self.name}: need 0 <= idle_power_w <= max_power_w (got "
                             f"{self.idle_power_w}, {self.max_power_w})")

    def work_s(self, tokens_in: int, tokens_out: int) -> float:
        """Inference time alone on the node (concurrency 1): prefill + decode."""
        return tokens_in / self.prefill_tok_s + tokens_out / self.decode_tok_s


class SimLink:
    """The user→node link: concurrent uploads share its current rate equally."""

    def __init__(self, env: simpy.Environment, name: str, rate_mbit: float,
                 j_per_bit: float, efficiency: float = 1.0) -> None:
        if not 0 < efficiency <= 1:
            raise ValueError(f"link {name}: efficiency must be in (0, 1] (got {efficiency})")
        self.name = name
        self.efficiency = efficiency
        self.rate_mbit = rate_mbit
        self.j_per_bit = j_per_bit
        self.server = SharedServer(env, self._per_upload_bit_s)

    def _per_upload_bit_s(self, n: int) -> float:
        return self.rate_mbit * self.efficiency * 1e6 / n

    def set_rate(self, rate_mbit: float) -> None:
        self.server.sync()  # bank progress at the old rate first
        self.rate_mbit = rate_mbit
        if self.server.active:
            self.server.changed()

    def upload(self, input_bytes: int, on_done: Callable[[], None]) -> Job | None:
        """Start an upload; returns it (for cancel), or None if there was nothing to send."""
        if input_bytes <= 0:
            on_done()
            return None
        return self.server.add(input_bytes * 8.0, lambda _energy_j: on_done())

    def cancel(self, upload: Job, input_bytes: int) -> int:
        """Stop an upload in progress (the client gave up); returns the bytes it had sent."""
        _energy_j, sent_bits = self.server.cancel(upload)
        sent_bytes = min(input_bytes, int(sent_bits / 8.0))
        return sent_bytes


class SimNode:
    """Slots served together (processor sharing with the profile's slow-down), then a FIFO
    queue of `queue_capacity`; a service arriving at a full queue fails."""

    def __init__(self, env: simpy.Environment, node_id: str, kind: str, model: NodeModel,
                 slots: int, queue_capacity: int,
                 power_curve: PowerCurve = linear_power_w) -> None:
        model.validate()
        self.env = env
        self.node_id, self.kind, self.model = node_id, kind, model
        self.slots, self.queue_capacity = slots, queue_capacity
        self.queue: deque[Task] = deque()
        slowdown = model.concurrency_slowdown
        # The node's power with n busy, P(n), from the run's energy model; each of the n
        # running services is charged P(n)/n, so the charges add up to the node's draw (a
        # slowed node draws the same power for longer). A table: n never exceeds slots.
        node_w = [power_curve(model.idle_power_w, model.max_power_w, slots, n)
                  for n in range(slots + 1)]
        self._slowdown = 1.0
        self._slow_periods: list[float] = []  # factors of the slow-node periods under way
        # Work is in "seconds alone on the node"; n together each progress at 1/(1+s(n-1)),
        # divided by the slow-node factor while one applies.
        self.server = SharedServer(
            env, lambda n: 1.0 / ((1.0 + slowdown * (n - 1)) * self._slowdown),
            lambda n: node_w[n] / n)
        self.inference_j = 0.0
        self.started = 0

    @property
    def running(self) -> int:
        return self.server.active

    @property
    def slowdown(self) -> float:
        """How many times longer every step takes now than the model says (1: normal)."""
        return self._slowdown

    def begin_slowdown(self, factor: float) -> None:
        """A slow-node period starts: from now on every step takes `factor` times as long as
        the model says, also for the services already running (their remaining work is served
        at the new rate). Overlapping periods: the largest factor applies."""
        if not (math.isfinite(factor) and factor >= 1.0):
            raise ValueError(f"node {self.node_id}: slowdown factor must be a finite number "
                             f">= 1 (got {factor!r})")
        self._slow_periods.append(float(factor))
        self._apply_slowdown()

    def end_slowdown(self, factor: float) -> None:
        """A slow-node period of `factor` ends (the node speeds up unless another holds)."""
        try:
            self._slow_periods.remove(float(factor))
        except ValueError:
            raise ValueError(f"node {self.node_id}: no slow-node period of factor {factor!r} "
                             f"to end (active: {self._slow_periods})") from None
        self._apply_slowdown()

    def _apply_slowdown(self) -> None:
        self.server.sync()  # bank progress at the old rate first
        self._slowdown = max(self._slow_periods, default=1.0)
        if self.server.active:
            self.server.changed()

    def submit(self, work_s: float, on_start: Callable[[], None],
               on_done: Callable[[float], None]) -> "Task | None":
        """Run now if a slot is free, else queue; None if the queue is full."""
        task = Task(work_s, on_start, on_done)
        if self.server.active < self.slots:
            self._start(task)
            return task
        if len(self.queue) >= self.queue_capacity:
            return None
        self.queue.append(task)
        return task

    def cancel(self, task: "Task") -> tuple[float, float]:
        """Drop an unfinished task (its client gave up): out of the queue, or off its slot at
        once, the next queued task taking the slot. Returns (inference energy_j it was
        charged, work_s it received)."""
        if task.job is None:
            self.queue.remove(task)
            return 0.0, 0.0
        energy_j, work_s = self.server.cancel(task.job)
        task.job = None
        self.inference_j += energy_j
        if self.queue:
            self._start(self.queue.popleft())
        return energy_j, work_s

    def _start(self, task: "Task") -> None:
        self.started += 1
        task.on_start()

        def finished(energy_j: float) -> None:
            task.job = None
            self.inference_j += energy_j
            if self.queue:
                self._start(self.queue.popleft())
            task.on_done(energy_j)

        task.job = self.server.add(task.work_s, finished)

    @property
    def busy_s(self) -> float:
        self.server.sync()
        return self.server.busy_s


class Task:
    """One service on a node: waiting in the queue (job None) or running (its server job)."""

    __slots__ = ("work_s", "on_start", "on_done", "job")

    def __init__(self, work_s: float, on_start: Callable[[], None],
                 on_done: Callable[[float], None]) -> None:
        self.work_s, self.on_start, self.on_done = work_s, on_start, on_done
        self.job: Job | None = None
