"""Bandwidth fluctuation schedules: pure, deterministic from the seed, shared with the simulator.

A schedule is a time-ordered list of `RateChange(time_s, link, rate_mbit)`. Every link gets a
change at t = 0 (its starting rate), then one whenever its profile says so. Each link draws from
its own RNG, seeded with (seed, link name), so adding a link never changes another link's trace,
and a schedule computed for a longer duration starts with the one for a shorter duration.

No root, no Mininet, no I/O except reading a trace CSV. The live engine that applies a schedule
to a running network is `testbed.engine.FluctuationEngine`.
"""

from __future__ import annotations

import csv
import heapq
import math
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

from testbed.spec import MAX_RATE_MBIT, MIN_RATE_MBIT, FluctuationSpec

# Rates are rounded to 1 kbit/s: 0.001 Mbit/s = 125 bytes/s, so every scheduled rate maps to an
# exact integer of bytes/s in the kernel's HTB class and reads back unchanged.
RATE_DECIMALS = 3


class RateChange(NamedTuple):
    """At `time_s` (seconds since the run started) set `link` to `rate_mbit`."""

    time_s: float
    link: str
    rate_mbit: float


class TraceError(ValueError):
    """A trace CSV that cannot be used; the message names the file and line."""


LinkSchedule = Callable[[FluctuationSpec, str, float, random.Random], Iterator[tuple[float, float]]]
"""One link's profile: (spec, link, nominal_mbit, rng) -> endless (time_s, rate_mbit) pairs."""

PROFILES: dict[str, LinkSchedule] = {}


def register(name: str) -> Callable[[LinkSchedule], LinkSchedule]:
    """Add a profile to the registry under `name`; a duplicate name is an error."""

    def add(fn: LinkSchedule) -> LinkSchedule:
        if name in PROFILES:
            raise ValueError(f"fluctuation profile {name!r} is already registered")
        PROFILES[name] = fn
        return fn

    return add


def profile_names() -> list[str]:
    """The registered profiles: the names a scenario's `fluctuation.profile` accepts."""
    return sorted(PROFILES)


def clamp_rate(rate_mbit: float) -> float:
    """Round to 1 kbit/s and keep within what the testbed can shape."""
    return round(min(MAX_RATE_MBIT, max(MIN_RATE_MBIT, rate_mbit)), RATE_DECIMALS)


def _ticks(period_s: float) -> Iterator[float]:
    # k * period rather than a running sum, so times do not drift with float error.
    k = 0
    while True:
        yield round(k * period_s, 9)
        k += 1


@register("stable")
def _stable(spec: FluctuationSpec, link: str, nominal: float,
            rng: random.Random) -> Iterator[tuple[float, float]]:
    yield 0.0, nominal


@register("uniform")
def _uniform(spec: FluctuationSpec, link: str, nominal: float,
             rng: random.Random) -> Iterator[tuple[float, float]]:
    """Every period a fresh rate, uniform in nominal * [1 - amplitude, 1 + amplitude]."""
    for t in _ticks(spec.period_s):
        yield t, nominal * (1.0 + rng.uniform(-spec.amplitude, spec.amplitude))


@register("random-walk")
def _random_walk(spec: FluctuationSpec, link: str, nominal: float,
                 rng: random.Random) -> Iterator[tuple[float, float]]:
    """Starts at nominal; each period moves by up to +/- step * nominal, reflected at the band."""
    lo, hi = -spec.amplitude, spec.amplitude
    x = 0.0
    for t in _ticks(spec.period_s):
        yield t, nominal * (1.0 + x)
        x += rng.uniform(-spec.step, spec.step)
        # Reflect rather than clamp so the walk does not stick to the band's edges.
        if x > hi:
            x = 2 * hi - x
        elif x < lo:
            x = 2 * lo - x
        x = min(hi, max(lo, x))


@register("sine")
def _sine(spec: FluctuationSpec, link: str, nominal: float,
          rng: random.Random) -> Iterator[tuple[float, float]]:
    """nominal * (1 + amplitude * sin(2 pi t / sine_period_s + phase)), phase from the seed."""
    phase = rng.uniform(0.0, 2 * math.pi)
    for t in _ticks(spec.period_s):
        yield t, nominal * (1.0 + spec.amplitude * math.sin(2 * math.pi * t / spec.sine_period_s
                                                             + phase))


def read_trace(path: str | Path, links: list[str] | None = None) -> dict[str, list[tuple[float, float]]]:
    """Parse a trace CSV `time_s,link,rate_mbit` (header optional) into per-link sorted rows."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise TraceError(f"fluctuation.trace: cannot read {path}: {exc.strerror}") from exc
    rows: dict[str, list[tuple[float, float]]] = {}
    for lineno, fields in enumerate(csv.reader(text.splitlines()), start=1):
        if not fields or all(not f.strip() for f in fields) or fields[0].lstrip().startswith("#"):
            continue
        fields = [f.strip() for f in fields]
        if lineno == 1 and fields == ["time_s", "link", "rate_mbit"]:
            continue
        where = f"{path}:{lineno}"
        if len(fields) != 3:
            raise TraceError(f"{where}: expected 3 fields time_s,link,rate_mbit, got {len(fields)}: "
                             f"{','.join(fields)!r}")
        time_str, link, rate_str = fields
        try:
            time_s = float(time_str)
        except ValueError:
            raise TraceError(f"{where}: time_s {time_str!r} is not a number") from None
        try:
            rate_mbit = float(rate_str)
        except ValueError:
            raise TraceError(f"{where}: rate_mbit {rate_str!r} is not a number") from None
        if not math.isfinite(time_s) or time_s < 0:
            raise TraceError(f"{where}: time_s {time_str!r} must be a finite number >= 0")
        if not MIN_RATE_MBIT <= rate_mbit <= MAX_RATE_MBIT:
            raise TraceError(f"{where}: rate_mbit {rate_str!r} is outside "
                             f"[{MIN_RATE_MBIT:g}, {MAX_RATE_MBIT:g}]")
        if links is not None and link not in links:
            raise TraceError(f"{where}: link {link!r} is not in the topology "
                             f"(links: {', '.join(links)})")
        rows.setdefault(link, []).append((time_s, rate_mbit))
    for series in rows.values():
        series.sort(key=lambda row: row[0])  # stable: equal times keep file order
    return rows


@register("trace")
def _trace(spec: FluctuationSpec, link: str, nominal: float,
           rng: random.Random) -> Iterator[tuple[float, float]]:
    """Replay `spec.trace`; a link starts at nominal unless the trace gives its rate at 0."""
    rows = read_trace(spec.trace).get(link, [])
    if not rows or rows[0][0] > 0:
        yield 0.0, nominal
    yield from rows


def iter_schedule(spec: FluctuationSpec, links: dict[str, float],
                  seed: int) -> Iterator[RateChange]:
    """Endless (for periodic profiles) time-ordered changes; ties ordered as `links` is."""
    for link, nominal in links.items():
        if not MIN_RATE_MBIT <= nominal <= MAX_RATE_MBIT:
            raise ValueError(f"link {link!r}: nominal rate_mbit {nominal!r} is outside "
                             f"[{MIN_RATE_MBIT:g}, {MAX_RATE_MBIT:g}]")
    if spec.trace is not None:  # a trace naming a link the topology lacks is refused up front
        read_trace(spec.trace, list(links))
    try:
        profile = PROFILES[spec.profile]
    except KeyError:
        raise ValueError(f"fluctuation.profile {spec.profile!r} is unknown; accepted: "
                         f"{', '.join(profile_names())}") from None
    order = {link: i for i, link in enumerate(links)}
    # String seeds are hashed with SHA-512 by `random`, so this is stable across runs and
    # Python processes (unlike hash()).
    pairs = {link: profile(spec, link, nominal, random.Random(f"{seed}:{link}"))
             for link, nominal in links.items()}
    streams = [_changes(link, it) for link, it in pairs.items()]
    return heapq.merge(*streams, key=lambda c: (c.time_s, order[c.link]))


def _changes(link: str, pairs: Iterator[tuple[float, float]]) -> Iterator[RateChange]:
    # A function (not a generator expression in a comprehension) binds `link` per stream.
    for t, r in pairs:
        yield RateChange(t, link, clamp_rate(r))


def rate_schedule(spec: FluctuationSpec, links: dict[str, float], duration_s: float,
                  seed: int) -> list[RateChange]:
    """Every change with time_s < duration_s, sorted by time (ties in `links` order)."""
    if not duration_s > 0:
        raise ValueError(f"duration_s must be > 0, got {duration_s!r}")
    out = []
    for change in iter_schedule(spec, links, seed):
        if change.time_s >= duration_s:
            break
        out.append(change)
    return out


def band_mbit(spec: FluctuationSpec, nominal_mbit: float) -> tuple[float, float]:
    """The [low, high] a non-trace profile stays within (after rounding to 1 kbit/s)."""
    if spec.profile == "stable":
        return clamp_rate(nominal_mbit), clamp_rate(nominal_mbit)
    return (clamp_rate(nominal_mbit * (1 - spec.amplitude)),
            clamp_rate(nominal_mbit * (1 + spec.amplitude)))
