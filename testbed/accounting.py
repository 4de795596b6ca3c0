"""Transmission accounting from interface counters: bytes, busy time and energy per link.

Counters are read from the bridge-side interface of each link, which lives in the root
namespace (`/sys/class/net/plm-br0-ethK/statistics`), so no namespace has to be entered. Seen
from the node: the bridge side's rx is what the node sent (tx_bytes), its tx is what the node
received (rx_bytes). Packets dropped by the shaper never reach the counters.

Busy time (what "busy" means here): in each sampling interval (SAMPLE_S), the link is busy for
the time its shaped rate needs to carry the bytes that crossed it, in the fuller direction, at
most the interval. So a link saturated for 2 s counts 2 s, one carrying 10% of its rate counts
10% of the time, and idle links count nothing. Energy is bits (both directions, Ethernet frames
as counted by the kernel) x the link type's J/bit; method "counters".
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

SAMPLE_S = 0.05
SYSFS_NET = Path("/sys/class/net")


@dataclass(frozen=True)
class LinkCounters:
    """Traffic over one link since start (or reset), from the node's point of view."""

    tx_bytes: int  # node -> user (download)
    rx_bytes: int  # user -> node (upload)
    busy_s: float
    energy_j: float
    method: str = "counters"


def read_bytes(ifname: str) -> tuple[int, int]:
    """(rx_bytes, tx_bytes) of a root-namespace interface."""
    stats = SYSFS_NET / ifname / "statistics"
    return int((stats / "rx_bytes").read_text()), int((stats / "tx_bytes").read_text())


class TransmissionMeter:
    """Samples the counters of every link's bridge-side interface on a thread."""

    def __init__(self, bridge_intfs: dict[str, str], j_per_bit: dict[str, float],
                 rate_mbit: Callable[[str], float], sample_s: float = SAMPLE_S) -> None:
        self._intfs = bridge_intfs
        self._j_per_bit = j_per_bit
        self._rate_mbit = rate_mbit
        self._sample_s = sample_s
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._base: dict[str, tuple[int, int]] = {}
        self._last: dict[str, tuple[int, int]] = {}
        self._last_t = 0.0
        self._busy_s: dict[str, float] = {}

    def reset(self) -> None:
        with self._lock:
            now = {link: read_bytes(ifname) for link, ifname in self._intfs.items()}
            self._base = dict(now)
            self._last = dict(now)
            self._last_t = time.monotonic()
            self._busy_s = {link: 0.0 for link in self._intfs}

    def start(self) -> None:
        self.reset()
        self._thread = threading.Thread(target=self._run, name="plm-accounting", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)

    def _sample(self) -> None:
        with self._lock:
            t = time.monotonic()
            interval_s = t - self._last_t
            for link, ifname in self._intfs.items():
                try:
                    now = read_bytes(ifname)
                except OSError:
                    continue  # interface gone (teardown racing the last sample)
                prev = self._last[link]
                fuller_bytes = max(now[0] - prev[0], now[1] - prev[1])
                if fuller_bytes > 0:
                    need_s = fuller_bytes * 8 / (self._rate_mbit(link) * 1e6)
                    self._busy_s[link] += min(interval_s, need_s)
                self._last[link] = now
            self._last_t = t

    def _run(self) -> None:
        while not self._stop.wait(self._sample_s):
            self._sample()

    def snapshot(self) -> dict[str, LinkCounters]:
        """Counters since start/reset, including traffic since the last sample."""
        self._sample()
        out = {}
        with self._lock:
            for link in self._intfs:
                rx_sw, tx_sw = self._last[link]
                base_rx, base_tx = self._base[link]
                node_tx, node_rx = rx_sw - base_rx, tx_sw - base_tx
                energy_j = (node_tx + node_rx) * 8 * self._j_per_bit[link]
                out[link] = LinkCounters(node_tx, node_rx, self._busy_s[link], energy_j)
        return out
