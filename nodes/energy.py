"""Energy metering of a node: modelled from its power figures, measured where hardware allows.

Modelled (always): node power P(t) = P(busy slots) from the run's power curve
(scheduler/energy_models.py: linear by default, P_idle + (P_max − P_idle)·busy/slots; or the
GPU's published curve over batch size), the same formula the simulator integrates. While at
least one slot is busy, P(t) is inference power and each running request is charged an equal
share of it; while no slot is busy, P_idle is idle power (PerLLM eq. 2's E_infer and E_idle).
Per-request inference energies therefore sum to the node's inference energy exactly.

Measured (when present): Intel RAPL package counters under /sys/class/powercap and NVIDIA
NVML's total-energy counter (pynvml, optional). Their energy between events is split the same
way (shared among running requests, or idle) and labelled 'rapl', 'nvml' or 'rapl+nvml'.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol, Sequence

from scheduler.energy_models import PowerCurve, linear_power_w
from scheduler.outcome import Energy

POWERCAP_DIR = Path("/sys/class/powercap")
# package domains only: 'intel-rapl:0:0' (core) and 'intel-rapl:0:1' (uncore) are inside them
_RAPL_PACKAGE = re.compile(r"^intel-rapl:\d+$")


class EnergyCounter(Protocol):
    method: str

    def read_j(self) -> float:
        """Cumulative joules since the counter was created (monotonic)."""
        ...


class RaplCounter:
    """Sum of RAPL package domains, unwrapping each domain's counter overflow."""

    method = "rapl"

    def __init__(self, domains: Sequence[Path]) -> None:
        if not domains:
            raise ValueError("RaplCounter needs at least one domain directory")
        self._domains = list(domains)
        self._range_uj = [int((d / "max_energy_range_uj").read_text()) for d in self._domains]
        self._last_uj = [self._raw(i) for i in range(len(self._domains))]
        self._total_uj = 0
        self._lock = threading.Lock()

    def _raw(self, i: int) -> int:
        return int((self._domains[i] / "energy_uj").read_text())

    def read_j(self) -> float:
        with self._lock:
            for i in range(len(self._domains)):
                raw = self._raw(i)
                delta = raw - self._last_uj[i]
                if delta < 0:  # the counter wrapped at max_energy_range_uj
                    delta += self._range_uj[i] + 1
                self._total_uj += delta
                self._last_uj[i] = raw
            return self._total_uj / 1e6


class NvmlCounter:
    """Sum over GPUs of NVML's total energy consumption (mJ since driver load; Volta+)."""

    method = "nvml"

    def __init__(self, nvml, handles) -> None:  # nvml: the pynvml module
        self._nvml, self._handles = nvml, list(handles)
        self._start_mj = self._raw_mj()

    def _raw_mj(self) -> int:
        return sum(self._nvml.nvmlDeviceGetTotalEnergyConsumption(h) for h in self._handles)

    def read_j(self) -> float:
        return (self._raw_mj() - self._start_mj) / 1e3


def detect_rapl(powercap_dir: Path | str = POWERCAP_DIR) -> RaplCounter | None:
    """A RAPL counter over the package domains, or None when absent or unreadable."""
    root = Path(powercap_dir)
    try:
        domains = sorted(d for d in root.iterdir() if _RAPL_PACKAGE.match(d.name))
    except OSError:
        return None
    if not domains:
        return None
    try:
        counter = RaplCounter(domains)
        counter.read_j()
    except (OSError, ValueError):  # energy_uj is root-only on patched kernels
        return None
    return counter


def detect_nvml() -> NvmlCounter | None:
    """An NVML energy counter over all GPUs, or None without pynvml, a GPU or the counter."""
    try:
        import pynvml  # optional: not a dependency of the project
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
        count = pynvml.nvmlDeviceGetCount()
        if count == 0:
            return None
        handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        return NvmlCounter(pynvml, handles)
    except Exception:  # NVMLError has many subclasses (no driver, not supported, ...)
        return None


def detect_counters(powercap_dir: Path | str = POWERCAP_DIR) -> list[EnergyCounter]:
    """Every energy counter this machine exposes (often none in a VM)."""
    return [c for c in (detect_rapl(powercap_dir), detect_nvml()) if c is not None]


@dataclass(frozen=True, slots=True)
class RequestEnergy:
    """One request's inference energy: modelled, and measured when a counter exists."""

    busy_s: float
    modelled_j: float
    measured_j: float | None
    measured_method: str | None


_AUTO = object()


class EnergyMeter:
    """Busy/idle time and energy of one node with `slots` slots; thread-safe."""

    def __init__(self, idle_power_w: float, max_power_w: float, slots: int,
                 clock: Callable[[], float] = time.monotonic,
                 counters: Sequence[EnergyCounter] | object = _AUTO,
                 prefer_measured: bool = False,
                 power_curve: PowerCurve = linear_power_w) -> None:
        """counters: default detects RAPL/NVML; pass [] for modelled only.
        prefer_measured: end() returns the measured figure when a counter exists (use it when
        the node is not paced: then the machine's own energy is the node's energy).
        power_curve: the modelled node power over busy slots (EnergyModel.curve(kind)).
        """
        for key, value in (("idle_power_w", idle_power_w), ("max_power_w", max_power_w)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ValueError(f"{key} must be a number >= 0, got {value!r}")
        if max_power_w < idle_power_w:
            raise ValueError(f"max_power_w ({max_power_w}) must be >= idle_power_w "
                             f"({idle_power_w})")
        if isinstance(slots, bool) or not isinstance(slots, int) or slots < 1:
            raise ValueError(f"slots must be an integer >= 1, got {slots!r}")
        self.idle_power_w = float(idle_power_w)
        self.max_power_w = float(max_power_w)
        self.slots = slots
        self._power_curve = power_curve
        self._clock = clock
        self._counters = list(detect_counters() if counters is _AUTO else counters)
        self.measured_method = "+".join(c.method for c in self._counters) or None
        self.prefer_measured = prefer_measured
        self._lock = threading.Lock()
        self._t_last = clock()
        self._busy_s = self._idle_s = 0.0
        self._inference_j = self._idle_j = 0.0
        self._share_j = 0.0  # ∫ P/k dt over busy time: what one request running throughout pays
        self._m_last_j = self._read_counters()
        self._m_inference_j = self._m_idle_j = self._m_share_j = 0.0
        self._running: dict[str, tuple[float, float, float]] = {}

    def _read_counters(self) -> float:
        return sum(c.read_j() for c in self._counters)

    def _power_w(self, busy: int) -> float:
        return self._power_curve(self.idle_power_w, self.max_power_w, self.slots,
                                 min(busy, self.slots))

    def _advance(self) -> float:
        """Account the interval since the last event at the busy count it had; returns now."""
        now = self._clock()
        dt = max(0.0, now - self._t_last)
        busy = len(self._running)
        if busy:
            power = self._power_w(busy)
            self._busy_s += dt
            self._inference_j += power * dt
            self._share_j += power * dt / busy
        else:
            self._idle_s += dt
            self._idle_j += self.idle_power_w * dt
        if self._counters:
            reading = self._read_counters()
            delta = reading - self._m_last_j
            self._m_last_j = reading
            if busy:
                self._m_inference_j += delta
                self._m_share_j += delta / busy
            else:
                self._m_idle_j += delta
        self._t_last = now
        return now

    def begin(self, request_id: str) -> None:
        """A request took a slot."""
        with self._lock:
            if request_id in self._running:
                raise ValueError(f"request {request_id!r} is already running")
            now = self._advance()
            self._running[request_id] = (self._share_j, self._m_share_j, now)

    def finish(self, request_id: str) -> RequestEnergy:
        """A request left its slot: its modelled (and measured) inference energy."""
        with self._lock:
            if request_id not in self._running:
                raise ValueError(f"request {request_id!r} is not running")
            now = self._advance()
            share0, m_share0, t0 = self._running.pop(request_id)
            return RequestEnergy(
                busy_s=now - t0, modelled_j=self._share_j - share0,
                measured_j=(self._m_share_j - m_share0) if self._counters else None,
                measured_method=self.measured_method)

    def end(self, request_id: str) -> Energy:
        """A request left its slot: its inference energy, labelled with the method."""
        r = self.finish(request_id)
        if self.prefer_measured and r.measured_j is not None:
            return Energy(inference_j=r.measured_j, inference_method=r.measured_method)
        return Energy(inference_j=r.modelled_j, inference_method="modelled")

    @property
    def busy_slots(self) -> int:
        with self._lock:
            return len(self._running)

    def power_w(self) -> float:
        """Modelled node power now."""
        with self._lock:
            return self._power_w(len(self._running))

    def totals(self) -> dict:
        """Cumulative busy/idle seconds and energy since creation (inference + idle = all)."""
        with self._lock:
            self._advance()
            measured = None
            if self._counters:
                measured = {"method": self.measured_method, "inference_j": self._m_inference_j,
                            "idle_j": self._m_idle_j}
            out = {"busy_s": self._busy_s, "idle_s": self._idle_s,
                   "inference_j": self._inference_j, "idle_j": self._idle_j,
                   "method": "modelled", "measured": measured}
            if self.prefer_measured and measured is not None:
                out.update(inference_j=measured["inference_j"], idle_j=measured["idle_j"],
                           method=measured["method"], modelled={
                               "inference_j": self._inference_j, "idle_j": self._idle_j})
            return out
