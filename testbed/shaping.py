"""HTB link shaping with pyroute2, inside the hosts' network namespaces.

A shaped link has two interfaces, one per direction, each with egress shaping:
- the host side (`edge1-eth0`, in edge1's namespace) shapes node -> user (download),
- the bridge side (`plm-br0-eth2`, in the root namespace) shapes user -> node (upload).
Each gets a root HTB qdisc `1:` whose default class `1:10` carries all traffic, with a pfifo
leaf (or a netem leaf when the spec asks for delay/loss and the kernel has netem). A rate change
is an HTB `change-class` that resends every parameter (pyroute2 resets omitted ones), never a
qdisc rebuild, so queued packets and TCP connections survive it.

Burst sizing (why these numbers): HTB refills tokens when its watchdog fires; a bucket smaller
than what the rate delivers in one scheduling delay makes the class idle while it could send, so
it undershoots; a bucket much larger lets the first moments of a transfer overshoot (a 2 s
iperf3 run at 4 Mbit/s read 6-10% high with a 70 kB floor). HTB lets a class go into debt for a
packet larger than its bucket, so 64 KiB GSO packets still pass and the long-run rate holds. We
use burst = max(rate * BURST_S, MIN_BURST_BYTES) for both burst and cburst (ceil = rate: a
class never borrows): 4 ms of traffic, at least two frames. Measured with `python -m testbed
verify`: 100 and 300 Mbit/s within 0.2-0.5% of target.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from testbed.spec import MAX_RATE_MBIT, MIN_RATE_MBIT

QDISC_HANDLE = 0x10000  # 1:
CLASS_HANDLE = 0x10010  # 1:10, the default class
LEAF_HANDLE = 0x100000  # 10:
BURST_S = 0.004  # 4 ms of traffic at the class rate
MIN_BURST_BYTES = 3_028  # two full Ethernet frames
MAX_QUANTUM_BYTES = 200_000  # above this the kernel warns "quantum is big"
MIN_QUANTUM_BYTES = 1_514  # one Ethernet frame
LEAF_LIMIT_PACKETS = 1_000  # pfifo depth; a veth's txqueuelen, made explicit
BYTES_PER_MBIT = 125_000  # 1 Mbit/s = 125,000 bytes/s; pyroute2's integer rates are bytes/s
# A full-size TCP segment carries 1448 payload bytes (1500 MTU - 20 IP - 32 TCP with timestamps)
# in a 1514-byte frame (+ 14 Ethernet), and HTB counts frames: the wire rate that gives a payload
# rate is payload * WIRE_PER_PAYLOAD (used when the spec's rate_basis is "payload").
WIRE_PER_PAYLOAD = 1514 / 1448
MAX_WIRE_RATE_MBIT = MAX_RATE_MBIT * WIRE_PER_PAYLOAD


@dataclass(frozen=True)
class Interface:
    """An interface to shape: its name and its namespace (None = the root namespace)."""

    ifname: str
    netns: str | None = None  # a path like /proc/<pid>/ns/net


@dataclass(frozen=True)
class HtbParams:
    """Everything an HTB class is sent with, in bytes and bytes/s."""

    rate_Bps: int
    ceil_Bps: int
    burst_bytes: int
    cburst_bytes: int
    quantum_bytes: int


def htb_params(rate_mbit: float) -> HtbParams:
    """The class parameters for a wire rate (see the module docstring for the burst rule)."""
    if not MIN_RATE_MBIT <= rate_mbit <= MAX_WIRE_RATE_MBIT:
        raise ValueError(f"wire rate_mbit {rate_mbit!r} is outside [{MIN_RATE_MBIT:g}, "
                         f"{MAX_WIRE_RATE_MBIT:g}]")
    rate_Bps = round(rate_mbit * BYTES_PER_MBIT)
    burst = max(math.ceil(rate_Bps * BURST_S), MIN_BURST_BYTES)
    # A single leaf class never competes with a sibling, so quantum only has to be legal.
    quantum = min(MAX_QUANTUM_BYTES, max(MIN_QUANTUM_BYTES, rate_Bps // 10))
    return HtbParams(rate_Bps, rate_Bps, burst, burst, quantum)


class ShapingError(RuntimeError):
    """A tc operation the kernel refused; the message names the interface and the operation."""


class Shaper:
    """HTB qdiscs on a set of interfaces; safe to call from several threads.

    pyroute2 wants one IPRoute per namespace per thread, so sockets are cached per thread and
    all of them are closed by `close()`.
    """

    def __init__(self) -> None:
        self._local = threading.local()
        self._lock = threading.Lock()
        self._sockets: list[IPRoute] = []
        self._index: dict[Interface, int] = {}

    def _ipr(self, netns: str | None) -> IPRoute:
        cache = getattr(self._local, "sockets", None)
        if cache is None:
            cache = self._local.sockets = {}
        ipr = cache.get(netns)
        if ipr is None:
            # flags=0: open an existing namespace by path, never create a named one.
            ipr = IPRoute() if netns is None else IPRoute(netns=netns, flags=0)
            cache[netns] = ipr
            with self._lock:
                self._sockets.append(ipr)
        return ipr

    def index(self, intf: Interface) -> int:
        idx = self._index.get(intf)
        if idx is None:
            found = self._ipr(intf.netns).link_lookup(ifname=intf.ifname)
            if not found:
                raise ShapingError(f"interface {intf.ifname!r} not found in namespace "
                                   f"{intf.netns or 'root'}")
            idx = self._index[intf] = found[0]
        return idx

    def _tc(self, intf: Interface, what: str, *args, **kwargs) -> None:
        try:
            self._ipr(intf.netns).tc(*args, index=self.index(intf), **kwargs)
        except NetlinkError as exc:
            raise ShapingError(f"{what} on {intf.ifname} ({intf.netns or 'root ns'}) failed: "
                               f"{exc}") from exc

    @staticmethod
    def _class_kwargs(p: HtbParams) -> dict:
        # Every parameter, every time: change-class resets the ones left out.
        return dict(rate=p.rate_Bps, ceil=p.ceil_Bps, burst=p.burst_bytes,
                    cburst=p.cburst_bytes, quantum=p.quantum_bytes, prio=0)

    def add(self, intf: Interface, rate_mbit: float, netem: dict | None = None) -> None:
        """Root HTB qdisc, default class at `rate_mbit`, and a pfifo (or netem) leaf."""
        params = htb_params(rate_mbit)
        try:
            self._ipr(intf.netns).tc("del", index=self.index(intf))
        except NetlinkError:
            pass  # no root qdisc yet: the usual case
        self._tc(intf, "add htb qdisc", "add", "htb", handle=QDISC_HANDLE,
                 default=CLASS_HANDLE & 0xFFFF)
        self._tc(intf, "add htb class", "add-class", "htb", handle=CLASS_HANDLE,
                 parent=QDISC_HANDLE, **self._class_kwargs(params))
        if netem:
            self._tc(intf, "add netem leaf", "add", "netem", handle=LEAF_HANDLE,
                     parent=CLASS_HANDLE, **netem)
        else:
            self._tc(intf, "add pfifo leaf", "add", "pfifo", handle=LEAF_HANDLE,
                     parent=CLASS_HANDLE, limit=LEAF_LIMIT_PACKETS)

    def change(self, intf: Interface, rate_mbit: float) -> None:
        """Change the class's rate in place (HTB change-class)."""
        self._tc(intf, "change htb class", "change-class", "htb", handle=CLASS_HANDLE,
                 parent=QDISC_HANDLE, **self._class_kwargs(htb_params(rate_mbit)))

    def read(self, intf: Interface) -> HtbParams:
        """The class parameters as the kernel reports them (burst in bytes, from its buffer)."""
        for msg in self._ipr(intf.netns).get_classes(index=self.index(intf)):
            if msg["handle"] != CLASS_HANDLE:
                continue
            opts = msg.get_attr("TCA_OPTIONS")
            parms = opts.get_attr("TCA_HTB_PARMS")
            rate = opts.get_attr("TCA_HTB_RATE64") or parms["rate"]
            ceil = opts.get_attr("TCA_HTB_CEIL64") or parms["ceil"]
            return HtbParams(rate, ceil, _ticks_to_bytes(parms["buffer"], rate),
                             _ticks_to_bytes(parms["cbuffer"], ceil), parms["quantum"])
        raise ShapingError(f"no HTB class 1:10 on {intf.ifname} ({intf.netns or 'root ns'})")

    def read_rate_mbit(self, intf: Interface) -> float:
        return self.read(intf).rate_Bps / BYTES_PER_MBIT

    def set_state(self, intf: Interface, up: bool) -> None:
        """Administratively bring an interface up or down (the qdisc stays attached)."""
        try:
            self._ipr(intf.netns).link("set", index=self.index(intf),
                                       state="up" if up else "down")
        except NetlinkError as exc:
            raise ShapingError(f"link set {intf.ifname} {'up' if up else 'down'} failed: "
                               f"{exc}") from exc

    def close(self) -> None:
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for ipr in sockets:
            try:
                ipr.close()
            except Exception:  # noqa: BLE001 - a socket whose namespace is gone; nothing to do
                pass
        self._local = threading.local()


def _ticks_to_bytes(ticks: int, rate_Bps: int) -> int:
    from pyroute2.netlink.rtnl.tcmsg.common import tick_in_usec

    return round(ticks / tick_in_usec / 1e6 * rate_Bps)
