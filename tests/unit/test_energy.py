"""Energy metering: a scripted timeline gives exact joules; parts sum to the total."""

import importlib.util
import random
import threading

import pytest

from nodes.energy import EnergyMeter, RaplCounter, detect_counters, detect_nvml, detect_rapl
from tests.unit.conftest import FakeClock


class FakeCounter:
    method = "rapl"

    def __init__(self, clock, watts):
        self.clock, self.watts = clock, watts

    def read_j(self):
        return self.clock.now_s * self.watts


def test_scripted_timeline_gives_exact_joules():
    clock = FakeClock()
    meter = EnergyMeter(idle_power_w=10, max_power_w=110, slots=2, clock=clock, counters=[])
    clock.now_s = 1.0
    meter.begin("a")          # [1, 3]: one of two slots busy: P = 10 + 100·0.5 = 60 W
    clock.now_s = 3.0
    meter.begin("b")          # [3, 4]: both busy: P = 110 W, 55 W each
    assert meter.power_w() == 110
    clock.now_s = 4.0
    a = meter.end("a")        # [4, 7]: b alone: 60 W
    clock.now_s = 7.0
    b = meter.end("b")
    clock.now_s = 8.0             # [0, 1] and [7, 8] idle at 10 W
    assert a.inference_j == pytest.approx(60 * 2 + 55)
    assert b.inference_j == pytest.approx(55 + 60 * 3)
    assert a.inference_method == "modelled" and a.idle_j == 0 and a.transmission_j == 0
    t = meter.totals()
    assert t["busy_s"] == pytest.approx(6) and t["idle_s"] == pytest.approx(2)
    assert t["inference_j"] == pytest.approx(410) and t["idle_j"] == pytest.approx(20)
    assert t["method"] == "modelled" and t["measured"] is None
    assert t["inference_j"] == pytest.approx(a.inference_j + b.inference_j)


def test_parts_sum_to_the_total_on_a_random_timeline():
    clock, rng = FakeClock(), random.Random(7)
    meter = EnergyMeter(idle_power_w=25, max_power_w=100, slots=3, clock=clock, counters=[])
    running, charged = [], 0.0
    integral = 0.0  # ∫ P dt computed independently, step by step
    for i in range(300):
        dt = rng.uniform(0, 2)
        integral += dt * (25 + 75 * min(len(running), 3) / 3)
        clock.now_s += dt
        if running and (len(running) == 3 or rng.random() < 0.5):
            charged += meter.end(running.pop(rng.randrange(len(running)))).inference_j
        else:
            running.append(f"r{i}")
            meter.begin(running[-1])
    for rid in running:
        charged += meter.end(rid).inference_j
    t = meter.totals()
    assert charged == pytest.approx(t["inference_j"], rel=1e-9)
    assert t["inference_j"] + t["idle_j"] == pytest.approx(integral, rel=1e-9)
    assert t["busy_s"] + t["idle_s"] == pytest.approx(clock.now_s, rel=1e-12)


def test_measured_counter_is_split_and_labelled():
    clock = FakeClock()
    counter = FakeCounter(clock, watts=50)  # the machine really draws a constant 50 W
    meter = EnergyMeter(10, 110, slots=1, clock=clock, counters=[counter],
                        prefer_measured=True)
    clock.now_s = 2.0
    meter.begin("a")
    clock.now_s = 5.0
    r = meter.finish("a")
    assert r.modelled_j == pytest.approx(330) and r.measured_j == pytest.approx(150)
    assert r.measured_method == "rapl" and r.busy_s == pytest.approx(3)
    meter.begin("b")
    clock.now_s = 6.0
    e = meter.end("b")
    assert (e.inference_j, e.inference_method) == (pytest.approx(50), "rapl")
    t = meter.totals()
    assert t["method"] == "rapl" and t["inference_j"] == pytest.approx(200)
    assert t["idle_j"] == pytest.approx(100)
    assert t["modelled"] == {"inference_j": pytest.approx(440), "idle_j": pytest.approx(20)}


def test_bad_inputs():
    with pytest.raises(ValueError, match="idle_power_w"):
        EnergyMeter(-1, 10, 1, counters=[])
    with pytest.raises(ValueError, match="max_power_w"):
        EnergyMeter(20, 10, 1, counters=[])
    with pytest.raises(ValueError, match="slots"):
        EnergyMeter(1, 10, 0, counters=[])
    meter = EnergyMeter(1, 10, 1, counters=[])
    meter.begin("x")
    with pytest.raises(ValueError, match="already running"):
        meter.begin("x")
    meter.end("x")
    with pytest.raises(ValueError, match="'x' is not running"):
        meter.end("x")


def test_thread_safe():
    meter = EnergyMeter(10, 100, slots=4, counters=[])
    charged, lock = [], threading.Lock()

    def worker(w):
        for i in range(200):
            meter.begin(f"{w}-{i}")
            e = meter.end(f"{w}-{i}")
            with lock:
                charged.append(e.inference_j)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    t = meter.totals()
    assert meter.busy_slots == 0 and len(charged) == 800
    assert sum(charged) == pytest.approx(t["inference_j"], rel=1e-9)


def fake_powercap(root, uj, max_uj=1000_000_000):
    # a package domain and one subdomain (which must not be counted twice), plus an mmio alias
    for name, value in (("intel-rapl:0", uj), ("intel-rapl:0:0", uj // 2),
                        ("intel-rapl-mmio:0", uj)):
        d = root / name
        d.mkdir(exist_ok=True)
        (d / "energy_uj").write_text(f"{value}\n")
        (d / "max_energy_range_uj").write_text(f"{max_uj}\n")


def test_rapl_detection_with_a_fake_powercap(tmp_path):
    fake_powercap(tmp_path, 999_000_000)
    counter = detect_rapl(tmp_path)
    assert isinstance(counter, RaplCounter) and counter.method == "rapl"
    assert counter.read_j() == 0.0
    fake_powercap(tmp_path, 999_500_000)
    assert counter.read_j() == pytest.approx(0.5)
    fake_powercap(tmp_path, 250_000)  # wrapped past max_energy_range_uj
    assert counter.read_j() == pytest.approx(0.5 + 0.75 + 1e-6, rel=1e-9)
    assert [c.method for c in detect_counters(tmp_path)][:1] == ["rapl"]


def test_no_counters_here(tmp_path):
    assert detect_rapl(tmp_path / "absent") is None
    assert detect_rapl(tmp_path) is None  # exists, but no RAPL domain in it
    if importlib.util.find_spec("pynvml") is None:
        # the project's machines have no pynvml and no GPU: detection says so, not fails
        assert detect_nvml() is None
        assert detect_counters(tmp_path) == []
