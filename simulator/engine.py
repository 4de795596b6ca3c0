"""Shared-capacity servers on a SimPy clock: egalitarian processor sharing with virtual time.

Both a link (concurrent uploads share its current rate) and a node's busy slots (concurrent
requests slow each other down by the profile's concurrency factor) are one thing: n jobs served
at the same per-job rate r(n, t). Instead of updating every job's remaining work at each event
(O(n)), we keep a virtual clock V with dV/dt = r(n, t); a job that arrives at virtual time V0
with work w finishes when V reaches V0 + w. Finish tags sit in a heap, so an arrival, a
departure or a rate change costs O(log n). The same trick integrates each job's share of a
power draw (energy per job = W(end) - W(start) with dW/dt = P(n)/n).
"""

from __future__ import annotations

import heapq
from typing import Callable

import simpy

# Relative tolerance when deciding that a finish tag has been reached: the virtual clock is a
# sum of float products, so a job due "now" may sit a few ulps short of its tag.
_TAG_EPS = 1e-12


class SharedServer:
    """n jobs share a capacity; each gets `per_job_rate(n)` work units per second."""

    __slots__ = ("env", "per_job_rate", "per_job_power_w", "virtual", "energy_per_job_j",
                 "last_s", "busy_s", "_heap", "_seq", "_generation", "_rate")

    def __init__(self, env: simpy.Environment, per_job_rate: Callable[[int], float],
                 per_job_power_w: Callable[[int], float] | None = None) -> None:
        self.env = env
        self.per_job_rate = per_job_rate
        self.per_job_power_w = per_job_power_w
        self.virtual = 0.0  # work units a job present since t=0 would have received
        self.energy_per_job_j = 0.0  # joules a job present since t=0 would have been charged
        self.last_s = env.now
        self.busy_s = 0.0  # time with at least one job
        self._heap: list[tuple[float, int, Callable[[float], None]]] = []
        self._seq = 0
        self._generation = 0
        self._rate = 0.0

    @property
    def active(self) -> int:
        return len(self._heap)

    def add(self, work: float, on_done: Callable[[float], None]) -> "Job":
        """Start a job of `work` units; on_done(energy_j) runs when it finishes.

        Returns the job, to pass to cancel()."""
        self._advance()
        self._seq += 1
        job = Job(on_done, self.energy_per_job_j, self.virtual, self)
        heapq.heappush(self._heap, (self.virtual + work, self._seq, job))
        self._reschedule()
        return job

    def cancel(self, job: "Job") -> tuple[float, float]:
        """Remove an unfinished job now; on_done never runs. Returns (energy_j charged to it
        so far, work units it received). O(n): n is a node's slots or a link's uploads."""
        self._advance()
        heap = self._heap
        for i, entry in enumerate(heap):
            if entry[2] is job:
                break
        else:
            raise ValueError("cancel: the job is not running on this server (finished or "
                             "cancelled already)")
        last = heap.pop()
        if i < len(heap):
            heap[i] = last
            heapq.heapify(heap)
        # The others now share the capacity among fewer: re-plan the next finish.
        self._reschedule()
        return self.energy_per_job_j - job.mark, self.virtual - job.start_virtual

    def sync(self) -> None:
        """Bring the integrals (virtual time, busy time, energy) up to now."""
        self._advance()

    def changed(self) -> None:
        """Call after the capacity changed (a new link rate): re-plans the next finish."""
        self._advance()
        self._reschedule()

    # --- internals ----------------------------------------------------------------------
    def _advance(self) -> None:
        now = self.env.now
        dt = now - self.last_s
        if dt > 0 and self._heap:
            n = len(self._heap)
            self.virtual += dt * self._rate
            self.busy_s += dt
            if self.per_job_power_w is not None:
                self.energy_per_job_j += dt * self.per_job_power_w(n)
        self.last_s = now

    def _reschedule(self) -> None:
        self._generation += 1
        if not self._heap:
            self._rate = 0.0
            return
        self._rate = self.per_job_rate(len(self._heap))
        if self._rate <= 0:  # link down: nothing progresses until the next change
            return
        delay = max(0.0, (self._heap[0][0] - self.virtual) / self._rate)
        generation = self._generation
        timer = self.env.timeout(delay)
        timer.callbacks.append(lambda _event: self._fire(generation))

    def _fire(self, generation: int) -> None:
        if generation != self._generation:
            return  # superseded by a later arrival, departure or rate change
        self._advance()
        limit = self.virtual + _TAG_EPS * max(1.0, abs(self.virtual))
        done = []
        while self._heap and self._heap[0][0] <= limit:
            done.append(heapq.heappop(self._heap)[2])
        # Guard against a float shortfall that would otherwise re-fire forever at dt = 0.
        if not done and self._heap:
            done.append(heapq.heappop(self._heap)[2])
        self._reschedule()
        for job in done:
            job.finish()


class Job:
    """One job on a SharedServer: its energy and virtual-time marks at the start."""

    __slots__ = ("on_done", "mark", "start_virtual", "server")

    def __init__(self, on_done: Callable[[float], None], mark: float, start_virtual: float,
                 server: SharedServer) -> None:
        self.on_done, self.mark, self.server = on_done, mark, server
        self.start_virtual = start_virtual

    def finish(self) -> None:
        self.on_done(self.server.energy_per_job_j - self.mark)

    def __lt__(self, other: "Job") -> bool:  # heap ties are broken by seq first
        return False
