"""Transmission accounting from interface counters: bytes, busy time and energy per link.

Counters are read from the bridge-side interface of each link, which lives in the root
namespace (`/sys/class/net/plm-br0-ethK/statistics`), so no namespace has to be entered. Seen
from the node: the bridge side's rx is what the node sent (tx_bytes), its tx is what the node
received (rx_bytes). Packets dropped by the shaper never reach the counters.

Shaper fidelity (scenarios/fidelity.py): the upload direction's bytes are also kept per window
of WINDOW_S with the capacity the configured rate gave in it and whether the link's HTB queue
(its root qdisc's backlog, read over netlink every BACKLOG_EVERY samples) held packets at every
probe: in such a window the shaper must deliver its rate, no less (the host fed it) and no more
(it shaped).

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
WINDOW_S = 1.0  # shaper-fidelity windows: the fluctuation's period, long against HTB's 4 ms burst
# A netlink dump of the root namespace's qdiscs costs ~1-5 ms of Python: every 5th sample
# (4 per second) keeps it under 2% of a core and still probes a 1 s window 4-5 times.
BACKLOG_EVERY = 5
TC_H_ROOT = 0xFFFFFFFF  # a root qdisc's parent


@dataclass(frozen=True)
class ShaperWindow:
    """One window of one link's upload direction: bytes delivered, bytes the configured rate
    allowed, and whether its shaper's queue was backlogged at every probe."""

    link: str
    start_s: float  # time.monotonic() at the window's start
    duration_s: float
    delivered_bytes: int
    capacity_bytes: float
    backlogged: bool
    direction: str = "up"


def read_backlogs(ipr, indices: dict[str, int]) -> dict[str, int]:
    """link -> bytes queued in the root qdisc of its interface (one netlink dump)."""
    by_index = {}
    for msg in ipr.get_qdiscs():
        if msg["parent"] != TC_H_ROOT:
            continue  # only root qdiscs (HTB's backlog includes its leaf's)
        stats = msg.get_attr("TCA_STATS2")
        queue = stats.get_attr("TCA_STATS_QUEUE") if stats else None
        if queue is not None:
            by_index[msg["index"]] = queue["backlog"]
    return {link: by_index.get(idx, 0) for link, idx in indices.items()}


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
        self._windows: list[ShaperWindow] = []
        self._open: dict[str, list] = {}  # link -> [start, bytes, capacity, all backlogged]
        self._ipr = None  # the sampling thread's netlink socket, for the backlog probes
        self._indices: dict[str, int] = {}
        self._samples = 0
        self._backlogged: dict[str, bool] = {}

    def reset(self) -> None:
        with self._lock:
            now = {link: read_bytes(ifname) for link, ifname in self._intfs.items()}
            self._base = dict(now)
            self._last = dict(now)
            self._last_t = time.monotonic()
            self._busy_s = {link: 0.0 for link in self._intfs}
            self._windows = []
            self._open = {}

    def start(self) -> None:
        self.reset()
        self._thread = threading.Thread(target=self._run, name="plm-accounting", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)
        if self._ipr is not None:
            self._ipr.close()
            self._ipr = None

    def _probe_backlogs(self) -> dict[str, bool] | None:
        """Whether each link's upload shaper holds packets now; None when it cannot be read
        (then no window counts as backlogged)."""
        try:
            if self._ipr is None:
                from pyroute2 import IPRoute

                self._ipr = IPRoute()
                self._indices = {link: idx for link, ifname in self._intfs.items()
                                 for idx in self._ipr.link_lookup(ifname=ifname)[:1]}
            backlogs = read_backlogs(self._ipr, self._indices)
        except Exception:  # noqa: BLE001 - no netlink (a unit test, a torn-down link)
            return None
        return {link: backlogs.get(link, 0) > 0 for link in self._intfs}

    def _sample(self, probe: bool = False) -> None:
        backlogged = self._probe_backlogs() if probe else None
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
                self._window(link, t, interval_s, now[1] - prev[1],
                             None if backlogged is None else backlogged[link])
                self._last[link] = now
            self._last_t = t

    def _window(self, link: str, t: float, interval_s: float, up_bytes: int,
                backlogged: bool | None) -> None:
        """Add one sample of `link`'s upload to its open window; close it after WINDOW_S.
        A window is backlogged when every probe in it (and the one before it) found a queue."""
        w = self._open.get(link)
        if w is None:
            w = self._open[link] = [t - interval_s, 0, 0.0, self._backlogged.get(link, True),
                                    False]
        w[1] += up_bytes
        w[2] += self._rate_mbit(link) * 1e6 / 8 * interval_s
        if backlogged is not None:
            w[3] = w[3] and backlogged
            w[4] = True  # probed at least once inside
            self._backlogged[link] = backlogged
        if t - w[0] >= WINDOW_S:
            self._windows.append(ShaperWindow(link, w[0], t - w[0], w[1], w[2],
                                              backlogged=w[3] and w[4]))
            del self._open[link]

    def _run(self) -> None:
        while not self._stop.wait(self._sample_s):
            self._samples += 1
            self._sample(probe=self._samples % BACKLOG_EVERY == 0)

    def windows(self) -> list[ShaperWindow]:
        """The closed shaper-fidelity windows since start/reset."""
        with self._lock:
            return list(self._windows)

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
