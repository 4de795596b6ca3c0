"""`Testbed`: the live network of a TopologySpec, from build to a teardown that leaves nothing.

Division of labour: `topology` is the graph, `shaping` the HTB classes, `fluctuation` the
schedules, `engine` applies one live, `accounting` reads the counters, `clean` records what we
created and removes it after a crash. This module ties them to a Mininet network.

    with Testbed(spec, seed=42, run_dir=Path("results/x")) as tb:
        server = tb.popen("edge1", ["iperf3", "-s"])
        tb.start_fluctuation()
        ...
"""

from __future__ import annotations

import os
import platform
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from testbed import clean as state
from testbed.accounting import LinkCounters, ShaperWindow, TransmissionMeter
from testbed.engine import FluctuationEngine, write_feed
from testbed.fluctuation import RateChange, iter_schedule
from testbed.shaping import WIRE_PER_PAYLOAD, Interface, Shaper
from testbed.spec import MAX_RATE_MBIT, MIN_RATE_MBIT, TopologySpec

FEED_NAME = "bandwidth_feed.json"


class TestbedError(RuntimeError):
    """The testbed cannot start or act; the message is one line a user can act on."""

    __test__ = False  # not a pytest test class, despite the name


_netem_available: bool | None = None
_active: "Testbed | None" = None  # the running testbed of this process


def netem_available() -> bool:
    """Whether the kernel can add a netem qdisc (tried once on a scratch veth, then cached)."""
    global _netem_available
    if _netem_available is None:
        from pyroute2 import IPRoute
        from pyroute2.netlink.exceptions import NetlinkError

        name = f"{state.PREFIX}probe{os.getpid() % 10000}"
        with IPRoute() as ipr:
            ipr.link("add", ifname=name, kind="veth", peer=f"{name}p")
            try:
                idx = ipr.link_lookup(ifname=name)[0]
                ipr.tc("add", "netem", index=idx, handle=0x10000, delay=1000)
                _netem_available = True
            except NetlinkError:
                _netem_available = False
            finally:
                ipr.link("del", ifname=name)
    return _netem_available


def preflight(spec: TopologySpec) -> None:
    """Refuse to start, with one line, when the testbed cannot work here."""
    if os.geteuid() != 0:
        raise TestbedError("the testbed needs root (Mininet creates namespaces and links): "
                           "run it as root or with sudo")
    try:
        import mininet.net  # noqa: F401
    except ImportError:
        raise TestbedError("Mininet is not installed (python module 'mininet' not found): "
                           "run 'make setup'") from None
    for tool in ("mnexec", "brctl"):
        if shutil.which(tool) is None:
            raise TestbedError(f"'{tool}' is not on PATH (Mininet is incomplete): "
                               "run 'make setup'")
    if spec.wants_netem and not netem_available():
        raise TestbedError(
            f"topology asks for delay_ms={spec.delay_ms:g}, jitter_ms={spec.jitter_ms:g}, "
            f"loss_pct={spec.loss_pct:g}, which needs the netem qdisc, and this kernel "
            f"({platform.release()}) has no netem: set them to 0 or use a kernel with sch_netem")


class Testbed:
    """The emulated edge-cloud network; a context manager that always tears down."""

    __test__ = False  # not a pytest test class, despite the name

    def __init__(self, topology: TopologySpec, seed: int = 0, run_dir: Path | None = None,
                 handle_signals: bool = True) -> None:
        self.spec = topology
        self.seed = seed
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.handle_signals = handle_signals
        self.links = topology.link_names()
        self.net = None  # mininet.net.Mininet once started
        self.topo = None
        self.t0 = 0.0
        self.setup_s = 0.0
        self.teardown_s = 0.0
        self.bandwidth_feed_path: Path | None = None
        self._factor = WIRE_PER_PAYLOAD if topology.rate_basis == "payload" else 1.0
        self._shaper = Shaper()
        self._rates: dict[str, float] = {}
        self._log: list[RateChange] = []
        self._down: set[str] = set()  # links taken down: 0 Mbit/s in the log and the feed
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._procs: list[subprocess.Popen] = []
        self._engine: FluctuationEngine | None = None
        self._meter: TransmissionMeter | None = None
        self._tmp_dir: Path | None = None
        self._state: dict | None = None
        self._old_handlers: dict[int, object] = {}
        self._started = False
        self._stopped = False
        self._owner_pid = os.getpid()

    # --- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> "Testbed":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        if self._started:
            raise TestbedError("this Testbed was already started; make a new one")
        self._started = True
        t_start = time.monotonic()
        preflight(self.spec)
        self._check_leftovers()
        self._install_signal_handlers()
        try:
            self._build()
        except BaseException:
            self.stop()
            raise
        self.t0 = time.monotonic()
        self.setup_s = self.t0 - t_start
        for link in self.links:
            self._record(link, self._rates[link])

    def _check_leftovers(self) -> None:
        global _active
        if _active is not None:
            raise TestbedError("a testbed is already running in this process; only one at a "
                               "time (host and bridge names are fixed)")
        for path, st in state.read_states():
            if st and state.owner_alive(st) and st["owner"][0] != os.getpid():
                raise TestbedError(f"another testbed is running (pid {st['owner'][0]}, state "
                                   f"{path}); only one at a time")
        # A crashed run's namespaces, links and processes would collide with ours (our own PID's
        # state here is from an earlier testbed in this process that failed to tear down).
        state.clean(dead_owner=os.getpid())
        _active = self

    def _build(self) -> None:
        from mininet.link import Link
        from mininet.net import Mininet
        from mininet.nodelib import LinuxBridge

        from testbed.topology import BRIDGE, EdgeCloudTopo, host_intf

        if self.run_dir is not None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            feed_dir = self.run_dir
        else:
            self._tmp_dir = feed_dir = Path(tempfile.mkdtemp(prefix=state.PREFIX))
        self.bandwidth_feed_path = feed_dir / FEED_NAME
        self.topo = EdgeCloudTopo(self.spec)
        # Record intent before creating anything, so a crash mid-build is still cleanable.
        self._state = {"owner": state.process_record(os.getpid()), "shells": [], "processes": [],
                       "root_intfs": [BRIDGE] + [self.topo.switch_intf(n) for n in
                                                 ["user", *self.links]],
                       "tmp_dirs": [str(self._tmp_dir)] if self._tmp_dir else []}
        state.write_state(self._state)
        self.net = Mininet(self.topo, controller=None, switch=LinuxBridge, link=Link,
                           autoSetMacs=True, build=False)
        try:
            self.net.build()
        finally:
            self._state["shells"] = [state.process_record(n.pid)
                                     for n in self.net.hosts + self.net.switches if n.pid]
            state.write_state(self._state)
        self.net.start()
        netem = None
        if self.spec.wants_netem:
            netem = {"delay": int(self.spec.delay_ms * 1000), "jitter":
                     int(self.spec.jitter_ms * 1000), "loss": self.spec.loss_pct}
        self._intfs: dict[str, tuple[Interface, Interface]] = {}
        for link in self.links:
            host = self.net.get(link)
            down = Interface(host_intf(link), f"/proc/{host.pid}/ns/net")  # node -> user
            up = Interface(self.topo.switch_intf(link))  # user -> node
            self._intfs[link] = (up, down)
            rate = self.spec.nominal_rate_mbit(link)
            for intf in (up, down):
                self._shaper.add(intf, self._wire_rate(rate), netem)
            self._rates[link] = rate
        self._meter = TransmissionMeter(
            {link: self.topo.switch_intf(link) for link in self.links},
            {link: self.spec.j_per_bit(link) for link in self.links},
            lambda link: self._wire_rate(self._rates[link]))
        self._meter.start()

    def stop(self) -> None:
        """Tear down everything; safe to call twice and after a failed start."""
        if self._stopped or not self._started or os.getpid() != self._owner_pid:
            return  # (a forked child must never tear down its parent's network)
        self._stopped = True
        t_stop = time.monotonic()
        errors: list[str] = []

        def attempt(what, fn):
            try:
                fn()
            except Exception as exc:  # noqa: BLE001 - keep tearing down, report at the end
                errors.append(f"{what}: {exc}")

        attempt("stop fluctuation", self.stop_fluctuation)
        if self._meter is not None:
            attempt("stop accounting", self._meter.stop)
        attempt("stop processes", self._stop_processes)
        attempt("close netlink sockets", self._shaper.close)
        if self.net is not None:
            attempt("stop Mininet", self.net.stop)
        # Whatever Mininet missed (e.g. a build that failed half way), by exact name and PID.
        if self._state is not None:
            attempt("clean leftovers", self._clean_own_state)
        self._restore_signal_handlers()
        global _active
        if _active is self:
            _active = None
        self.teardown_s = time.monotonic() - t_stop
        if errors:
            raise TestbedError("teardown: " + "; ".join(errors))

    def _clean_own_state(self) -> None:
        state.kill_processes(self._state["processes"] + self._state["shells"], grace_s=1.0)
        state.delete_links(self._state["root_intfs"])
        if self._tmp_dir is not None and self._tmp_dir.exists():
            shutil.rmtree(self._tmp_dir)
        state.state_path().unlink(missing_ok=True)

    def _stop_processes(self) -> None:
        procs = [p for p in self._procs if p.poll() is None]
        for p in procs:
            state._signal(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + 2.0
        for p in procs:
            try:
                p.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                state._signal(p.pid, signal.SIGKILL)
                p.wait(2.0)

    def _install_signal_handlers(self) -> None:
        if not self.handle_signals or threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old_handlers[sig] = signal.signal(sig, self._on_signal)

    def _restore_signal_handlers(self) -> None:
        for sig, handler in self._old_handlers.items():
            signal.signal(sig, handler)
        self._old_handlers = {}

    def _on_signal(self, signum, frame) -> None:
        if os.getpid() != self._owner_pid:
            # A forked child (pyroute2 forks to open a namespace socket) inherits this handler;
            # it must die as it would have, never run our teardown.
            os._exit(128 + signum)
        # Unwind the main thread through `with`/finally, which tears down.
        self._restore_signal_handlers()
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(128 + signum)

    # --- hosts and processes ---------------------------------------------------------------

    def _require_running(self) -> None:
        if self.net is None or self._stopped:
            raise TestbedError("the testbed is not running (use it inside `with Testbed(...)`)")

    def host(self, name: str):
        self._require_running()
        if name not in ("user", *self.links):
            raise TestbedError(f"host {name!r} does not exist; hosts: user, "
                               f"{', '.join(self.links)}")
        return self.net.get(name)

    def ip(self, name: str) -> str:
        return self.host(name).IP()

    def popen(self, name: str, argv: list[str], env: dict | None = None,
              stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs) -> subprocess.Popen:
        """Start `argv` in host `name`'s namespace; terminated at teardown."""
        host = self.host(name)
        proc = host.popen(list(argv), env=env, stdout=stdout, stderr=stderr, **kwargs)
        with self._lock:
            self._procs.append(proc)
            self._state["processes"].append(state.process_record(proc.pid))
            state.write_state(self._state)
        return proc

    # --- rates -----------------------------------------------------------------------------

    def _wire_rate(self, rate_mbit: float) -> float:
        return rate_mbit * self._factor

    def _check_link(self, link: str) -> None:
        if link not in self.links:
            raise TestbedError(f"link {link!r} does not exist; links: {', '.join(self.links)}")

    def elapsed_s(self) -> float:
        return time.monotonic() - self.t0

    def _record(self, link: str, rate_mbit: float) -> None:
        with self._lock:
            self._rates[link] = rate_mbit
            t = self.elapsed_s()
            self._log.append(RateChange(round(t, 6), link, rate_mbit))
            self._write_feed_locked(t)
            self._changed.notify_all()

    def _write_feed_locked(self, t: float) -> None:
        write_feed(self.bandwidth_feed_path, t,
                   {link: 0.0 if link in self._down else rate
                    for link, rate in self._rates.items()})

    def _set_down(self, link: str, down: bool) -> None:
        """Log and feed a link going down (0 Mbit/s) or back up (its current rate), so the
        scheduler's true-bandwidth feed and the results see the outage."""
        with self._lock:
            (self._down.add if down else self._down.discard)(link)
            t = self.elapsed_s()
            self._log.append(RateChange(round(t, 6), link,
                                        0.0 if down else self._rates.get(link, 0.0)))
            self._write_feed_locked(t)
            self._changed.notify_all()

    def wait_for_changes(self, count: int, timeout_s: float) -> bool:
        """Block until the rate log holds at least `count` entries; False on timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: len(self._log) >= count, timeout_s)

    def set_rate(self, link: str, rate_mbit: float) -> None:
        """Change both directions of `link` in place (HTB change-class), log it, feed it."""
        self._require_running()
        self._check_link(link)
        if not MIN_RATE_MBIT <= rate_mbit <= MAX_RATE_MBIT:
            raise TestbedError(f"rate_mbit {rate_mbit!r} for link {link!r} is outside "
                               f"[{MIN_RATE_MBIT:g}, {MAX_RATE_MBIT:g}]")
        for intf in self._intfs[link]:
            self._shaper.change(intf, self._wire_rate(rate_mbit))
        self._record(link, rate_mbit)

    def current_rate_mbit(self, link: str) -> float:
        """The rate last applied to `link` (in the spec's rate basis)."""
        self._check_link(link)
        return self._rates[link]

    def tc_rate_mbit(self, link: str) -> dict[str, float]:
        """The rate the kernel reports for each direction, converted to the spec's basis."""
        self._require_running()
        self._check_link(link)
        up, down = self._intfs[link]
        return {"up": round(self._shaper.read_rate_mbit(up) / self._factor, 3),
                "down": round(self._shaper.read_rate_mbit(down) / self._factor, 3)}

    def tc_params(self, link: str):
        """The kernel's HTB class parameters (wire bytes) of (up, down)."""
        up, down = self._intfs[link]
        return self._shaper.read(up), self._shaper.read(down)

    @property
    def rate_log(self) -> list[RateChange]:
        with self._lock:
            return list(self._log)

    def link_down(self, link: str) -> None:
        """Take both ends of `link` administratively down (the shaping stays)."""
        self._require_running()
        self._check_link(link)
        for intf in self._intfs[link]:
            self._shaper.set_state(intf, up=False)
        self._set_down(link, True)

    def link_up(self, link: str) -> None:
        self._require_running()
        self._check_link(link)
        for intf in self._intfs[link]:
            self._shaper.set_state(intf, up=True)
        self._set_down(link, False)

    # --- fluctuation -----------------------------------------------------------------------

    def start_fluctuation(self) -> None:
        """Apply the spec's fluctuation profile from now on (schedule time 0 = now)."""
        self._require_running()
        if self._engine is not None and self._engine.running:
            raise TestbedError("fluctuation is already running")
        nominal = {link: self.spec.nominal_rate_mbit(link) for link in self.links}
        schedule = iter_schedule(self.spec.fluctuation, nominal, self.seed)
        self._engine = FluctuationEngine(schedule, self.set_rate, time.monotonic())
        self._engine.start()

    def stop_fluctuation(self) -> None:
        if self._engine is None:
            return
        engine, self._engine = self._engine, None
        engine.stop()
        if engine.error is not None:
            raise TestbedError(f"fluctuation failed: {engine.error}") from engine.error

    # --- accounting ------------------------------------------------------------------------

    def transmission(self) -> dict[str, LinkCounters]:
        """Bytes, busy time and energy per link since start or the last reset_counters()."""
        self._require_running()
        return self._meter.snapshot()

    def reset_counters(self) -> None:
        self._require_running()
        self._meter.reset()

    def shaper_windows(self) -> list[ShaperWindow]:
        """Delivered against configured upload rate per link per window (shaper fidelity)."""
        self._require_running()
        return self._meter.windows()
