"""Fluctuation schedules (pure) and the engine that applies them, without root."""

import json
import threading
import time

import pytest

from testbed.engine import FluctuationEngine, write_feed
from testbed.fluctuation import (
    PROFILES,
    RateChange,
    TraceError,
    band_mbit,
    iter_schedule,
    rate_schedule,
    read_trace,
    register,
)
from testbed.spec import FluctuationSpec

LINKS = {"edge1": 100.0, "edge2": 100.0, "cloud": 300.0}
PERIODIC = ["uniform", "random-walk", "sine"]


def by_link(schedule, link):
    return [c for c in schedule if c.link == link]


@pytest.mark.parametrize("profile", ["stable", *PERIODIC])
def test_same_seed_same_schedule(profile):
    spec = FluctuationSpec(profile=profile)
    assert rate_schedule(spec, LINKS, 30, seed=7) == rate_schedule(spec, LINKS, 30, seed=7)


@pytest.mark.parametrize("profile", PERIODIC)
def test_other_seed_other_schedule(profile):
    spec = FluctuationSpec(profile=profile)
    assert rate_schedule(spec, LINKS, 30, seed=7) != rate_schedule(spec, LINKS, 30, seed=8)


@pytest.mark.parametrize("profile", ["stable", *PERIODIC])
@pytest.mark.parametrize("amplitude", [0.05, 0.2, 0.5])
def test_rates_stay_in_band(profile, amplitude):
    spec = FluctuationSpec(profile=profile, amplitude=amplitude, step=0.3, sine_period_s=7)
    schedule = rate_schedule(spec, LINKS, 200, seed=3)
    for link, nominal in LINKS.items():
        lo, hi = band_mbit(spec, nominal)
        rates = [c.rate_mbit for c in by_link(schedule, link)]
        assert rates and all(lo <= r <= hi for r in rates), (link, min(rates), max(rates))
        if profile != "stable":
            # The band is used, not just respected: the extremes come near its edges.
            span = hi - lo
            assert max(rates) > hi - 0.25 * span and min(rates) < lo + 0.25 * span


def test_stable_is_nominal_once_at_zero():
    schedule = rate_schedule(FluctuationSpec(profile="stable"), LINKS, 100, seed=1)
    assert schedule == [RateChange(0.0, link, rate) for link, rate in LINKS.items()]


@pytest.mark.parametrize("profile", PERIODIC)
def test_one_change_per_link_per_period_sorted(profile):
    spec = FluctuationSpec(profile=profile, period_s=0.5)
    schedule = rate_schedule(spec, LINKS, 10, seed=1)
    assert len(schedule) == 20 * len(LINKS)
    assert [c.time_s for c in schedule] == sorted(c.time_s for c in schedule)
    for link in LINKS:
        assert [c.time_s for c in by_link(schedule, link)] == [k * 0.5 for k in range(20)]
    # Ties are ordered as the links dict is.
    assert [c.link for c in schedule[:3]] == list(LINKS)


@pytest.mark.parametrize("profile", PERIODIC)
def test_longer_schedule_extends_shorter(profile):
    spec = FluctuationSpec(profile=profile)
    short = rate_schedule(spec, LINKS, 10, seed=5)
    assert rate_schedule(spec, LINKS, 50, seed=5)[:len(short)] == short


@pytest.mark.parametrize("profile", PERIODIC)
def test_adding_a_link_does_not_change_the_others(profile):
    spec = FluctuationSpec(profile=profile)
    base = rate_schedule(spec, LINKS, 20, seed=5)
    more = rate_schedule(spec, {**LINKS, "edge3": 100.0}, 20, seed=5)
    for link in LINKS:
        assert by_link(base, link) == by_link(more, link)


def test_uniform_draws_are_spread_over_the_band():
    spec = FluctuationSpec(profile="uniform", amplitude=0.2)
    rates = [c.rate_mbit for c in rate_schedule(spec, {"edge1": 100.0}, 2000, seed=11)]
    mean = sum(rates) / len(rates)
    assert abs(mean - 100.0) < 1.0
    assert sum(r < 90 for r in rates) / len(rates) == pytest.approx(0.25, abs=0.05)


def test_random_walk_moves_by_at_most_one_step():
    spec = FluctuationSpec(profile="random-walk", amplitude=0.2, step=0.05)
    rates = [c.rate_mbit for c in rate_schedule(spec, {"edge1": 100.0}, 500, seed=2)]
    assert rates[0] == 100.0
    steps = [abs(b - a) for a, b in zip(rates, rates[1:])]
    assert max(steps) <= 5.0 + 1e-9
    assert len(set(rates)) > 100  # it moves


def test_sine_follows_its_period():
    spec = FluctuationSpec(profile="sine", amplitude=0.2, period_s=1.0, sine_period_s=20.0)
    rates = [c.rate_mbit for c in rate_schedule(spec, {"edge1": 100.0}, 60, seed=4)]
    assert rates[:20] == pytest.approx(rates[20:40], abs=0.002)
    assert max(rates) == pytest.approx(120.0, abs=0.5) and min(rates) == pytest.approx(80.0, abs=0.5)


def test_rates_are_rounded_to_one_kbit():
    for c in rate_schedule(FluctuationSpec(profile="uniform"), LINKS, 20, seed=9):
        assert round(c.rate_mbit * 1000) == pytest.approx(c.rate_mbit * 1000, abs=1e-6)


def test_bad_inputs_are_refused_with_the_value():
    with pytest.raises(ValueError, match="duration_s must be > 0, got 0"):
        rate_schedule(FluctuationSpec(), LINKS, 0, seed=1)
    with pytest.raises(ValueError, match="'edge1'.*20000"):
        rate_schedule(FluctuationSpec(), {"edge1": 20000.0}, 10, seed=1)


def test_registry_refuses_a_duplicate_name():
    assert set(PROFILES) == {"stable", "uniform", "random-walk", "sine", "trace"}
    with pytest.raises(ValueError, match="'uniform' is already registered"):
        register("uniform")(lambda *a: iter(()))


# --- trace -----------------------------------------------------------------------------------

def write(tmp_path, text, name="trace.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_trace_replays_rows_in_time_order(tmp_path):
    path = write(tmp_path, "time_s,link,rate_mbit\n2.5,edge1,50\n0,edge1,90\n1,cloud,250\n"
                 "# a comment\n\n4,cloud,10000\n")
    spec = FluctuationSpec(profile="trace", trace=path)
    schedule = rate_schedule(spec, LINKS, 3.0, seed=0)
    assert schedule == [
        RateChange(0.0, "edge1", 90.0),
        RateChange(0.0, "edge2", 100.0),  # not in the trace: stays at nominal
        RateChange(0.0, "cloud", 300.0),  # first row later than 0: nominal until then
        RateChange(1.0, "cloud", 250.0),
        RateChange(2.5, "edge1", 50.0),
    ]
    assert rate_schedule(spec, LINKS, 10, seed=0)[-1] == RateChange(4.0, "cloud", 10000.0)


@pytest.mark.parametrize("text, message", [
    ("time_s,link,rate_mbit\n0,edge1\n", r"trace.csv:2: expected 3 fields"),
    ("0,edge1,100\nsoon,edge1,100\n", r"trace.csv:2: time_s 'soon' is not a number"),
    ("0,edge1,fast\n", r"trace.csv:1: rate_mbit 'fast' is not a number"),
    ("-1,edge1,100\n", r"trace.csv:1: time_s '-1' must be a finite number >= 0"),
    ("0,edge1,100\n1,edge1,0.5\n", r"trace.csv:2: rate_mbit '0.5' is outside \[1, 10000\]"),
    ("0,edge1,100\n\n3,edge9,100\n", r"trace.csv:3: link 'edge9' is not in the topology"),
])
def test_trace_errors_name_the_line(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(TraceError, match=message):
        read_trace(path, list(LINKS))
    with pytest.raises(TraceError, match=message):
        rate_schedule(FluctuationSpec(profile="trace", trace=path), LINKS, 10, seed=0)


def test_trace_missing_file_is_named(tmp_path):
    missing = tmp_path / "nope.csv"
    with pytest.raises(TraceError, match="nope.csv"):
        read_trace(missing)


def test_trace_profile_needs_a_file():
    with pytest.raises(ValueError, match="fluctuation.trace"):
        FluctuationSpec(profile="trace")


# --- engine ----------------------------------------------------------------------------------

def test_engine_applies_in_order_on_time():
    applied = []
    done = threading.Event()
    schedule = [RateChange(0.0, "edge1", 90.0), RateChange(0.0, "cloud", 250.0),
                RateChange(0.05, "edge1", 110.0), RateChange(0.1, "cloud", 310.0)]

    def apply(link, rate):
        applied.append((time.monotonic() - t0, link, rate))
        if len(applied) == len(schedule):
            done.set()

    t0 = time.monotonic()
    engine = FluctuationEngine(schedule, apply, t0)
    engine.start()
    assert done.wait(5)
    engine.stop()
    assert [(l, r) for _, l, r in applied] == [(c.link, c.rate_mbit) for c in schedule]
    for (t, _, _), change in zip(applied, schedule):
        assert change.time_s <= t < change.time_s + 0.5
    assert engine.applied == 4 and engine.error is None


def test_engine_stop_interrupts_a_long_wait():
    engine = FluctuationEngine([RateChange(3600.0, "edge1", 50.0)], lambda *a: None,
                               time.monotonic())
    engine.start()
    t = time.monotonic()
    engine.stop()
    assert time.monotonic() - t < 1.0 and not engine.running and engine.applied == 0


def test_engine_keeps_the_error_of_a_failed_apply():
    def apply(link, rate):
        raise OSError("kernel said no")

    engine = FluctuationEngine(iter_schedule(FluctuationSpec(), LINKS, 0), apply,
                               time.monotonic())
    engine.start()
    engine.stop()
    assert isinstance(engine.error, OSError) and engine.applied == 0


def test_feed_is_written_whole(tmp_path):
    path = tmp_path / "feed.json"
    write_feed(path, 1.25, {"edge1": 97.3})
    write_feed(path, 2.5, {"edge1": 80.0, "cloud": 300.0})
    assert json.loads(path.read_text()) == {"time_s": 2.5,
                                            "rates_mbit": {"edge1": 80.0, "cloud": 300.0}}
    assert [p.name for p in tmp_path.iterdir()] == ["feed.json"]  # no temporary left
