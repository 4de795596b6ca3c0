"""A node's slots: N requests run at once, the rest wait in a bounded FIFO queue.

A freed slot passes straight to the oldest waiter, so requests start in arrival order; a
waiter whose call is cancelled leaves the queue.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass


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
