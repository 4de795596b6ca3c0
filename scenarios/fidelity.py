"""Fidelity of an emulated run: did the emulation keep time, or were its own processes the
bottleneck? (Mininet-HiFi's idea: Handigol et al., "Reproducible network experiments using
container-based emulation", CoNEXT 2012: the emulator monitors itself and flags a run that
cannot be trusted.)

Four measures, each read where the run already is:
- CPU: how long the project's threads (scheduler, nodes, driver, the runner's shaping and
  accounting) waited for a core each time they became runnable (/proc/<pid>/task/*/schedstat),
  and the host's CPU pressure (/proc/pressure/cpu, "some"), sampled by `CpuMonitor`;
- pacing: how late each paced token left its node after its due time under the hardware
  profile (the node's `perllm_node_pacing_lateness_seconds` histogram, scraped after the run);
- shaper: delivered against configured rate on every link, in the windows when its shaper had
  a backlog (testbed.accounting.ShaperWindow), where it should deliver exactly its rate;
- driver: how late the driver began each arrival against the workload's clock, and how much
  longer the client waited than the scheduler measured (the way in: the gateway's gRPC intake,
  before the scheduler's clock starts; the results count it, as queueing).

`THRESHOLDS` is the one table of limits, each with its reason; a run crossing one is
`degraded` with the reason, else `faithful`.
"""

from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

FAITHFUL = "faithful"
DEGRADED = "degraded"
CPU_SAMPLE_S = 1.0  # how often CpuMonitor reads /proc: cheap at 1 Hz, fine enough for a run
PSI_CPU = Path("/proc/pressure/cpu")
PACING_LATE_S = 0.02  # a paced token this late counts as late (see THRESHOLDS)
SHAPER_RATIO_BAND = (0.90, 1.05)  # delivered / configured in a backlogged window that is right


@dataclass(frozen=True)
class Threshold:
    """A limit on one measure: above `limit` the run is degraded, for the reason `why`."""

    measure: str
    limit: float
    unit: str
    why: str


# The documented limits. The tightest requirement in the shipped and validation regimes is
# 1 s and the validation targets are 3 points of success and 10% of mean time: a timing error
# of 50 ms is 5% of that requirement, the most a measure may add before comparisons against
# the simulator (which keeps perfect time) stop meaning what they say.
THRESHOLDS: tuple[Threshold, ...] = (
    Threshold("cpu_queue_peak", 1.0, "threads",
              "the project's threads waiting for a core, on average over the worst 1 s of the "
              "run (sum of their run-queue waits / 1 s): at 1, one of its threads was queued "
              "all that second on a 2-core host, so its work (uploads through the gateway, "
              "tokens, rate changes) ran late by the host, not by the emulated network and "
              "hardware. The share of runnable time spent waiting and the mean wait per "
              "wake-up are reported beside it but not judged: a quiet run's brief wake-ups "
              "give a share near 0.5 at 0.1 ms each (smoke: 0.09 cores used)"),
    Threshold("pacing_late_share", 0.01, "share",
              f"share of paced tokens more than {PACING_LATE_S * 1000:.0f} ms after their due "
              "time: due times are absolute from the slot start, so lateness does not add up, "
              "but a node that misses 1% of them is no longer running at its profile's rate"),
    Threshold("driver_late_p99_s", 0.05, "s",
              "99th percentile of how late the driver began an arrival: arrivals 50 ms late "
              "shift the workload by 5% of the tightest requirement"),
    Threshold("frontend_delay_p95_s", 0.05, "s",
              "95th percentile of (what the client waited from its due arrival) minus (the "
              "processing time the scheduler measured): time spent getting into the gateway "
              "(its gRPC intake, one call at a time; with the driver's --attachment-at client "
              "also the loopback upload), which the simulator does not have; the results "
              "count it as queueing (scenarios.driver.from_arrival)"),
    Threshold("shaper_off_share", 0.10, "share",
              f"share of a link's backlogged 1 s windows whose delivered/configured rate is "
              f"outside [{SHAPER_RATIO_BAND[0]:g}, {SHAPER_RATIO_BAND[1]:g}]: with a queue "
              "waiting, HTB must deliver its rate (testbed verify: within 0.5%); less means "
              "the host could not feed or drain the link"),
)
LIMITS = {t.measure: t for t in THRESHOLDS}


# -- CPU ----------------------------------------------------------------------------------

def read_psi_some_us() -> int | None:
    """The host's cumulative CPU pressure ("some": µs during which a runnable task waited),
    or None where the kernel has no PSI."""
    try:
        for line in PSI_CPU.read_text().splitlines():
            if line.startswith("some"):
                return int(line.rsplit("total=", 1)[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def read_schedstat(pid: int) -> dict[int, tuple[int, int, int]]:
    """Every thread of `pid`: tid -> (ns on a CPU, ns waiting on a run queue, times run);
    {} once the process is gone."""
    out = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            run_ns, wait_ns, slices = (int(x) for x in
                                       Path(f"/proc/{pid}/task/{tid}/schedstat").read_text()
                                       .split()[:3])
        except (OSError, ValueError):
            continue
        out[int(tid)] = (run_ns, wait_ns, slices)
    return out


class CpuMonitor:
    """Samples the CPU wait of a set of processes (and the host's CPU pressure) on a thread.

    pids() is asked at every sample, so processes started later are followed; a thread's
    figures count from its first sample (threads that ended between samples lose at most
    CPU_SAMPLE_S of their last figures)."""

    def __init__(self, pids: Callable[[], Iterable[int]], sample_s: float = CPU_SAMPLE_S
                 ) -> None:
        self._pids = pids
        self._sample_s = sample_s
        self._first: dict[tuple[int, int], tuple[int, int, int]] = {}
        self._last: dict[tuple[int, int], tuple[int, int, int]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="plm-cpu-monitor", daemon=True)
        self._t0 = self._t1 = 0.0
        self._psi0 = self._psi1 = None
        self.started = False
        self._sample_t = 0.0
        self.queue_peak = 0.0  # the most of its threads waiting for a core, per sample

    def start(self) -> "CpuMonitor":
        self.started = True
        self._t0 = time.monotonic()
        self._psi0 = read_psi_some_us()
        self._sample()
        self._thread.start()
        return self

    def _sample(self) -> None:
        now = time.monotonic()
        waited_ns = 0
        for pid in set(self._pids()):
            for tid, figures in read_schedstat(pid).items():
                key = (pid, tid)
                self._first.setdefault(key, figures)
                waited_ns += figures[1] - self._last.get(key, figures)[1]
                self._last[key] = figures
        if self._sample_t and now > self._sample_t:
            self.queue_peak = max(self.queue_peak, waited_ns / 1e9 / (now - self._sample_t))
        self._sample_t = now

    def _run(self) -> None:
        while not self._stop.wait(self._sample_s):
            self._sample()

    def stop(self) -> dict[str, Any]:
        """Stop sampling; the measures since start()."""
        self._sample()
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self._t1 = time.monotonic()
        self._psi1 = read_psi_some_us()
        return self.measures()

    def measures(self) -> dict[str, Any]:
        run_ns = wait_ns = slices = 0
        for key, last in self._last.items():
            first = self._first[key]
            run_ns += last[0] - first[0]
            wait_ns += last[1] - first[1]
            slices += last[2] - first[2]
        wall_s = max(self._t1 - self._t0, 1e-9)
        psi = (None if self._psi0 is None or self._psi1 is None
               else (self._psi1 - self._psi0) / 1e6 / wall_s)
        return cpu_measures(run_ns, wait_ns, slices, wall_s, psi, threads=len(self._last),
                            queue_peak=self.queue_peak)


def cpu_measures(run_ns: int, wait_ns: int, slices: int, wall_s: float,
                 psi_some_share: float | None, threads: int = 0,
                 queue_peak: float = 0.0) -> dict[str, Any]:
    """The CPU figures of a run: cores used by the project's threads, their mean wait per
    time they ran, the share of their runnable time spent waiting, and the host's pressure."""
    return {
        "wall_s": round(wall_s, 3), "threads": threads,
        "cores_used": round(run_ns / 1e9 / wall_s, 3),
        "cpu_queue_mean": round(wait_ns / 1e9 / wall_s, 3),
        "cpu_queue_peak": round(queue_peak, 3),
        "cpu_wait_per_wakeup_ms": round(wait_ns / 1e6 / slices, 3) if slices else 0.0,
        "cpu_wait_share": round(wait_ns / (run_ns + wait_ns), 3) if run_ns + wait_ns else 0.0,
        "psi_some_share": None if psi_some_share is None else round(psi_some_share, 3),
    }


# -- pacing -------------------------------------------------------------------------------

def pacing_lateness(metrics_dir: Path) -> dict[str, dict[str, Any]]:
    """Per node (metrics_dir/<node>.prom, as scraped after the run): paced tokens, their mean
    lateness and the share later than PACING_LATE_S (from the histogram's buckets)."""
    from prometheus_client.parser import text_string_to_metric_families

    out = {}
    for path in sorted(Path(metrics_dir).glob("*.prom")):
        buckets: dict[float, float] = {}
        count = total_s = 0.0
        try:
            families = list(text_string_to_metric_families(path.read_text()))
        except ValueError:
            continue  # a failed scrape leaves a comment, not metrics
        for family in families:
            if family.name != "perllm_node_pacing_lateness_seconds":
                continue
            for sample in family.samples:
                if sample.name.endswith("_bucket"):
                    buckets[float(sample.labels["le"])] = sample.value
                elif sample.name.endswith("_count"):
                    count = sample.value
                elif sample.name.endswith("_sum"):
                    total_s = sample.value
        if not buckets:
            continue
        on_time = max((v for le, v in buckets.items() if le <= PACING_LATE_S), default=0.0)
        out[path.stem] = {
            "tokens": int(count),
            "mean_late_ms": round(1000 * total_s / count, 3) if count else 0.0,
            "pacing_late_share": round((count - on_time) / count, 4) if count else 0.0,
        }
    return out


# -- driver -------------------------------------------------------------------------------

def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-quantile (0..1) by the nearest-rank rule; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def driver_timing(timings: Sequence[dict], totals_s: Sequence[float | None]) -> dict[str, Any]:
    """The driver's figures: `timings` are its records' {"late_s", "e2e_s"}, `totals_s` the
    same services' processing time as measured by the scheduler (None: none, e.g. failed)."""
    late = [t["late_s"] for t in timings]
    # frontend_s: what the driver added to the scheduler's time (scenarios.driver.from_arrival)
    front = [t["frontend_s"] if "frontend_s" in t else t["e2e_s"] - total
             for t, total in zip(timings, totals_s)
             if t.get("frontend_s") is not None or ("frontend_s" not in t and total is not None)]
    return {
        "services": len(timings),
        "driver_late_p99_s": _round(percentile(late, 0.99)),
        "driver_late_max_s": _round(max(late, default=None)),
        "frontend_delay_p95_s": _round(percentile(front, 0.95)),
        "frontend_delay_max_s": _round(max(front, default=None)),
    }


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


# -- shaper -------------------------------------------------------------------------------

def shaper_fidelity(windows: Iterable[Any]) -> dict[str, dict[str, Any]]:
    """Per link and direction, over its backlogged windows (testbed.accounting.ShaperWindow):
    how many, the median and lowest delivered/configured ratio and the share outside
    SHAPER_RATIO_BAND."""
    lo, hi = SHAPER_RATIO_BAND
    ratios: dict[str, list[float]] = {}
    seen: dict[str, int] = {}
    for w in windows:
        key = f"{w.link}/{w.direction}"
        seen[key] = seen.get(key, 0) + 1
        if w.backlogged and w.capacity_bytes > 0:
            ratios.setdefault(key, []).append(w.delivered_bytes / w.capacity_bytes)
    out = {}
    for key in sorted(seen):
        values = ratios.get(key, [])
        out[key] = {
            "windows": seen[key], "backlogged": len(values),
            "ratio_median": _round(percentile(values, 0.5), 3),
            "ratio_min": _round(min(values, default=None), 3),
            "shaper_off_share": round(sum(not lo <= r <= hi for r in values) / len(values), 3)
            if values else 0.0,
        }
    return out


# -- verdict ------------------------------------------------------------------------------

def assess(cpu: dict | None, pacing: dict[str, dict], driver: dict | None,
           shaper: dict[str, dict]) -> dict[str, Any]:
    """One policy run's fidelity: the measures, `status` and the `reasons` it is degraded."""
    reasons = []

    def check(measure: str, value: float | None, where: str = "") -> None:
        limit = LIMITS[measure]
        if value is not None and value > limit.limit:
            reasons.append(f"{measure}{' of ' + where if where else ''} = {value:g} > "
                           f"{limit.limit:g} {limit.unit}")

    if cpu:
        check("cpu_queue_peak", cpu.get("cpu_queue_peak"))
    for node, figures in pacing.items():
        check("pacing_late_share", figures["pacing_late_share"], node)
    if driver:
        check("driver_late_p99_s", driver.get("driver_late_p99_s"))
        check("frontend_delay_p95_s", driver.get("frontend_delay_p95_s"))
    for link, figures in shaper.items():
        check("shaper_off_share", figures["shaper_off_share"], link)
    return {"status": DEGRADED if reasons else FAITHFUL, "reasons": reasons, "cpu": cpu,
            "pacing": pacing, "driver": driver, "shaper": shaper}


def combine(per_policy: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The run's fidelity: degraded when any policy run was, with that policy's reasons."""
    reasons = [f"{policy}: {reason}" for policy, f in per_policy.items()
               for reason in f.get("reasons", [])]
    return {"status": DEGRADED if reasons or not per_policy else FAITHFUL,
            "reasons": reasons or ([] if per_policy else ["no policy run was monitored"]),
            "thresholds": {t.measure: {"limit": t.limit, "unit": t.unit, "why": t.why}
                           for t in THRESHOLDS},
            "policies": per_policy}


def headline(policy_fidelity: dict[str, Any]) -> dict[str, Any]:
    """The few figures a table shows for one policy run: worst values of each measure."""
    cpu = policy_fidelity.get("cpu") or {}
    driver = policy_fidelity.get("driver") or {}
    pacing = policy_fidelity.get("pacing") or {}
    shaper = policy_fidelity.get("shaper") or {}
    return {
        "status": policy_fidelity.get("status"),
        "cpu_queue_peak": cpu.get("cpu_queue_peak"),
        "cpu_wait_share": cpu.get("cpu_wait_share"),
        "cpu_wait_per_wakeup_ms": cpu.get("cpu_wait_per_wakeup_ms"),
        "cores_used": cpu.get("cores_used"),
        "psi_some_share": cpu.get("psi_some_share"),
        "pacing_late_share": max((p["pacing_late_share"] for p in pacing.values()),
                                 default=None),
        "driver_late_p99_s": driver.get("driver_late_p99_s"),
        "frontend_delay_p95_s": driver.get("frontend_delay_p95_s"),
        "shaper_off_share": max((s["shaper_off_share"] for s in shaper.values()),
                                default=None),
        "shaper_ratio_min": min((s["ratio_min"] for s in shaper.values()
                                 if s["ratio_min"] is not None), default=None),
    }


def policy_fidelity(cpu: dict | None, metrics_dir: Path, timings: dict[str, dict],
                    totals_s: dict[str, float | None], windows: Iterable[Any]) -> dict[str, Any]:
    """One emulated policy run's fidelity from what run_policy gathered: the CPU monitor's
    measures, the scraped node metrics, the driver's timing per service id, the scheduler's
    processing time per service id (None where it did not finish) and the shaper windows."""
    try:
        ids = [sid for sid in timings if timings[sid]]
        return assess(cpu, pacing_lateness(metrics_dir),
                      driver_timing([timings[sid] for sid in ids],
                                    [totals_s.get(sid) for sid in ids]),
                      shaper_fidelity(windows() if callable(windows) else windows))
    except Exception as exc:  # noqa: BLE001 - monitoring must never fail the run it watches
        return {"status": DEGRADED, "reasons": [f"fidelity could not be measured: {exc!r}"],
                "cpu": cpu, "pacing": {}, "driver": None, "shaper": {}}
