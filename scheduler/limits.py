"""The documented range of every number that crosses a boundary into the scheduler's state.

Requests (proto -> domain), the bandwidth feed and the state file (file -> domain) are checked
against these ranges, so every number the cluster and the policies hold is finite, and so is
every quantity derived from them: a sum of three energy parts, bytes x 8 / rate, tokens / rate,
eq. 4's reward. The bounds are generous (far beyond any real service) and only exist to keep
arithmetic finite; a value outside them is refused with its field name and value.
"""

from __future__ import annotations

import math
import re

MAX_DURATION_S = 1e6  # about 11.6 days: any time a service, a requirement or a stage takes
MAX_ENERGY_J = 1e12  # one service's energy by part (a 1 kW server for 30 years)
MAX_BYTES = 1 << 40  # 1 TiB uploaded with one service
MAX_TOKENS = 10_000_000  # prompt or generated tokens of one service
MAX_RATE_TOK_S = 1e9  # a node's prefill or decode rate
MIN_RATE_TOK_S = 1e-3  # below it a prediction is hours per token (and 5e-324 / 2 is 0.0)
MAX_RATE_MBIT = 1e6  # a link's rate (1 Tbit/s)
MIN_RATE_MBIT = 1e-3  # 1 kbit/s; a down link is fed as this rate (bandwidth_feed)
MAX_POWER_W = 1e7  # a node's power
MAX_J_PER_BIT = 1.0  # transmission energy of a link type
MAX_SLOTS = 100_000  # concurrent requests of one node, and its queue
MAX_ATTEMPTS = 1_000  # nodes one Submit tried
MAX_TEMPERATURE = 100.0  # sampling temperature
MAX_TOP_K = 1_000_000  # sampling top-k
MAX_SLOWDOWN = 100.0  # relative rate loss per extra concurrent request
MAX_REWARD = 1e9  # |eq. 4's reward| the learner stores

# host:port, [v6]:port or a unix: path; the port 1-65535.
_ADDRESS = re.compile(r"^(?:unix:.+|(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5}))$")


def check_number(name: str, value: float, low: float, high: float, *,
                 low_open: bool = False) -> float:
    """`value` if finite and in [low, high] ((low, high] with low_open); else ValueError
    naming the field, the value and the accepted range."""
    ok = (isinstance(value, (int, float)) and not isinstance(value, bool)
          and math.isfinite(value) and value <= high
          and (value > low if low_open else value >= low))
    if not ok:
        bracket = "(" if low_open else "["
        raise ValueError(f"{name} must be a finite number in {bracket}{low:g}, {high:g}] "
                         f"(got {value!r})")
    return value


def check_count(name: str, value: object) -> int:
    """`value` if it is an integer >= 0 (a count read from a file: bools and floats refused);
    else ValueError naming the field and the value."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0 (got {value!r})")
    return value


def check_address(name: str, address: str) -> str:
    """`address` if it is host:port (port 1-65535), [ipv6]:port or unix:path."""
    match = _ADDRESS.match(address)
    if match is None or (match.group(1) is not None and not 0 < int(match.group(1)) <= 65535):
        raise ValueError(f"{name} must be host:port with a port in 1-65535 (got {address!r})")
    return address
