"""Fidelity measures (scenarios/fidelity.py) and the shaper windows (testbed/accounting.py)."""

from __future__ import annotations

import os
import threading

import pytest

from scenarios import fidelity
from scenarios.fidelity import (DEGRADED, FAITHFUL, LIMITS, THRESHOLDS, CpuMonitor, assess,
                                combine, cpu_measures, driver_timing, pacing_lateness,
                                shaper_fidelity)
from scenarios.report import fidelity_section
from testbed import accounting
from testbed.accounting import ShaperWindow, TransmissionMeter

PROM = """# TYPE perllm_node_pacing_lateness_seconds histogram
perllm_node_pacing_lateness_seconds_bucket{le="0.001"} 90.0
perllm_node_pacing_lateness_seconds_bucket{le="0.02"} 97.0
perllm_node_pacing_lateness_seconds_bucket{le="0.05"} 99.0
perllm_node_pacing_lateness_seconds_bucket{le="+Inf"} 100.0
perllm_node_pacing_lateness_seconds_count 100.0
perllm_node_pacing_lateness_seconds_sum 0.5
"""


def test_every_threshold_says_why():
    assert {t.measure for t in THRESHOLDS} == set(LIMITS)
    assert all(t.limit > 0 and len(t.why) > 40 for t in THRESHOLDS)


def test_pacing_lateness_reads_the_share_later_than_20_ms(tmp_path):
    (tmp_path / "cloud.prom").write_text(PROM)
    (tmp_path / "edge1.prom").write_text("# scrape of http://x failed: refused\n")
    (tmp_path / "scheduler.prom").write_text("# TYPE perllm_scheduler_x counter\n")
    got = pacing_lateness(tmp_path)
    assert got == {"cloud": {"tokens": 100, "mean_late_ms": 5.0, "pacing_late_share": 0.03}}


def test_driver_timing_late_and_frontend_delay():
    timings = [{"late_s": 0.001 * i, "e2e_s": 1.0 + 0.01 * i} for i in range(100)]
    totals = [1.0] * 99 + [None]
    got = driver_timing(timings, totals)
    assert got["services"] == 100
    assert got["driver_late_p99_s"] == pytest.approx(0.098)
    assert got["driver_late_max_s"] == pytest.approx(0.099)
    assert got["frontend_delay_p95_s"] == pytest.approx(0.94)  # nearest rank of 99 values
    assert got["frontend_delay_max_s"] == pytest.approx(0.98)


def test_shaper_fidelity_counts_only_backlogged_windows():
    def w(link, delivered, capacity, backlogged):
        return ShaperWindow(link, 0.0, 1.0, delivered, capacity, backlogged)

    windows = [w("cloud", 1000, 1000.0, True), w("cloud", 800, 1000.0, True),
               w("cloud", 10, 1000.0, False), w("edge1", 0, 1000.0, False)]
    got = shaper_fidelity(windows)
    assert got["cloud/up"] == {"windows": 3, "backlogged": 2, "ratio_median": 0.8,
                               "ratio_min": 0.8, "shaper_off_share": 0.5}
    assert got["edge1/up"]["backlogged"] == 0 and got["edge1/up"]["shaper_off_share"] == 0.0


def test_assess_names_each_crossed_threshold():
    cpu = cpu_measures(run_ns=10**9, wait_ns=2 * 10**9, slices=100, wall_s=10.0,
                       psi_some_share=0.5, queue_peak=1.5)
    assert cpu["cpu_queue_mean"] == 0.2 and cpu["cpu_queue_peak"] == 1.5
    assert cpu["cpu_wait_per_wakeup_ms"] == 20.0 and cpu["cores_used"] == 0.1
    assert cpu["cpu_wait_share"] == 0.667
    pacing = {"cloud": {"tokens": 10, "mean_late_ms": 1.0, "pacing_late_share": 0.0}}
    driver = {"driver_late_p99_s": 0.2, "frontend_delay_p95_s": 0.01}
    verdict = assess(cpu, pacing, driver, {})
    assert verdict["status"] == DEGRADED
    assert [r.split(" ")[0] for r in verdict["reasons"]] == ["cpu_queue_peak",
                                                             "driver_late_p99_s"]
    calm = assess(cpu_measures(10**9, 10**6, 1000, 10.0, None), pacing,
                  {"driver_late_p99_s": 0.001, "frontend_delay_p95_s": None}, {})
    assert calm["status"] == FAITHFUL and calm["reasons"] == []
    run = combine({"cs-ucb": verdict, "cloud-only": calm})
    assert run["status"] == DEGRADED and run["reasons"][0].startswith("cs-ucb: ")
    assert combine({})["status"] == DEGRADED  # nothing monitored is not faithful
    section = "\n".join(fidelity_section(run))
    assert "## Fidelity" in section and "| cloud-only | faithful |" in section


def test_cpu_monitor_sees_a_busy_thread_of_this_process():
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            sum(range(1000))

    worker = threading.Thread(target=spin)
    monitor = CpuMonitor(lambda: [os.getpid()], sample_s=0.05).start()
    worker.start()
    stop.wait(0.3)  # the measured interval: a fixed length of work, not a synchronisation
    stop.set()
    worker.join()
    got = monitor.stop()
    assert got["threads"] >= 2 and got["cores_used"] > 0.0  # a loaded host may give it little
    assert got["cpu_wait_per_wakeup_ms"] >= 0.0


def test_meter_windows_delivered_against_capacity(monkeypatch):
    counters = {"ifc": (0, 0)}
    monkeypatch.setattr(accounting, "read_bytes", lambda ifname: counters[ifname])
    meter = TransmissionMeter({"cloud": "ifc"}, {"cloud": 0.0}, lambda link: 8.0)  # 1 MB/s
    clock = [100.0]
    monkeypatch.setattr(accounting.time, "monotonic", lambda: clock[0])
    probes = iter([True, True, True, True, False])
    monkeypatch.setattr(meter, "_probe_backlogs", lambda: {"cloud": next(probes)})
    meter.reset()
    for step in range(4):  # 4 samples of 0.25 s, 0.25 MB each: one full window, backlogged
        clock[0] += 0.25
        counters["ifc"] = (0, 250_000 * (step + 1))
        meter._sample(probe=True)
    for step in range(4):  # then one window at half the rate with an empty queue once
        clock[0] += 0.25
        counters["ifc"] = (0, 1_000_000 + 125_000 * (step + 1))
        meter._sample(probe=step == 0)
    first, second = meter.windows()
    assert first.delivered_bytes == 1_000_000 and first.capacity_bytes == pytest.approx(1e6)
    assert first.backlogged and first.duration_s == pytest.approx(1.0)
    assert second.delivered_bytes == 500_000 and not second.backlogged
    assert fidelity.shaper_fidelity([first, second])["cloud/up"]["ratio_min"] == 1.0
