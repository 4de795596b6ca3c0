"""The live side of fluctuation: a thread that applies a schedule to a running network.

No Mininet here: the engine calls `apply(link, rate_mbit)` (the testbed's `set_rate`), so it can
be unit-tested with a recording function. Waiting is on an Event, so `stop()` returns at once.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from testbed.fluctuation import RateChange

log = logging.getLogger(__name__)


def write_feed(path: Path, time_s: float, rates_mbit: dict[str, float]) -> None:
    """Write the bandwidth feed atomically (tmp + rename), as CONTRACTS.md specifies."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(json.dumps({"time_s": round(time_s, 6), "rates_mbit": rates_mbit}))
    os.replace(tmp, path)


class FluctuationEngine:
    """Applies `schedule` (times relative to `t0`, a time.monotonic() value) until stopped."""

    def __init__(self, schedule: Iterable[RateChange], apply: Callable[[str, float], None],
                 t0: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._schedule: Iterator[RateChange] = iter(schedule)
        self._apply = apply
        self._t0 = t0
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None
        self.applied = 0

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("fluctuation engine already started")
        self._thread = threading.Thread(target=self._run, name="plm-fluctuation", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                raise RuntimeError(f"fluctuation engine did not stop within {timeout_s} s")

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        try:
            for change in self._schedule:
                # Event.wait returns early (True) when stop() is called.
                delay_s = self._t0 + change.time_s - self._clock()
                if delay_s > 0 and self._stop.wait(delay_s):
                    return
                if self._stop.is_set():
                    return
                self._apply(change.link, change.rate_mbit)
                self.applied += 1
        except BaseException as exc:  # noqa: BLE001 - surfaced via .error and the log
            self.error = exc
            log.exception("fluctuation engine stopped on an error")
