"""The information model: what a scheduler may know, the same in the simulator and the emulation.

A policy decides from a Cluster (scheduler.cluster) and a Service. What the cluster holds is
set here, by one name, for every front end (the gRPC scheduler, the emulated runs, the
simulator):

- `measured` (the default; what a real scheduler can know):
  - node rates start from what the node *declares* at registration (its hardware profile as
    published, optionally misspecified by `declared_error`: see `declared_factors`) and are
    learned from measured outcomes (EWMA of measured against predicted inference time);
    rates a node reports in its heartbeats are not taken on trust;
  - a link's bandwidth starts at its declared (nominal) rate and is learned from the
    throughput of the transfers it carried (`TransferBandwidth`): lagging, noisy, and blind
    to a link that carries only small uploads;
  - output lengths are hidden: estimated per class from finished answers
    (scheduler.output_length).
- `perfect` (a reference, called what it is): the true single-request rates (the simulator's
  profile rates, also while a node is slowed; in the emulation the rates the node measures
  of its own paced tokens) and the true current bandwidth (the simulator's link rate, the
  testbed's shaping feed). Output lengths are still estimated.
- `clairvoyant`: `perfect` plus the true output length of every service. Only a policy whose
  class says `information = "clairvoyant"` gets it; the truth is handed to its cluster
  (`Cluster(true_output_tokens=...)`) and to nothing else.

True output lengths live only in scenarios.workload.WorkloadItem, which no policy receives.
"""

from __future__ import annotations

import math
import random
from typing import Iterable

from scheduler.limits import MAX_RATE_MBIT, MIN_RATE_MBIT

MEASURED = "measured"
PERFECT = "perfect"
CLAIRVOYANT = "clairvoyant"
# What a run (a spec, a server) may choose; clairvoyant is chosen by a policy's class only.
RUN_INFORMATION = (MEASURED, PERFECT)
INFORMATION = (MEASURED, PERFECT, CLAIRVOYANT)

# Largest declared-rate misspecification accepted (a fraction of the true rate): beyond ±90%
# a declared rate is no longer a misspecified profile but a different machine.
MAX_DECLARED_ERROR = 0.9


def check_information(name: str, key: str = "information") -> str:
    if name not in INFORMATION:
        raise ValueError(f"{key} must be one of {', '.join(INFORMATION)} (got {name!r})")
    return name


def information_for(run_information: str, policy_information: str | None) -> str:
    """What a policy's cluster is given: its class's own level, or else the run's."""
    if run_information not in RUN_INFORMATION:
        raise ValueError(f"information must be one of {', '.join(RUN_INFORMATION)} "
                         f"(got {run_information!r})")
    if policy_information is None:
        return run_information
    return check_information(policy_information, "Policy.information")


def declared_factors(node_ids: Iterable[str], declared_error: float, seed: int
                     ) -> dict[str, float]:
    """Per node, declared rate / true rate: uniform in [1 − e, 1 + e], drawn from `seed`.

    The same draw in both worlds (the emulation declares node rates with it, the simulator
    registers nodes with it), so a seed misspecifies the same nodes by the same amounts.
    """
    if (isinstance(declared_error, bool) or not isinstance(declared_error, (int, float))
            or not 0 <= declared_error <= MAX_DECLARED_ERROR):
        raise ValueError(f"declared_error must be a number in [0, {MAX_DECLARED_ERROR}] "
                         f"(got {declared_error!r})")
    rng = random.Random(f"declared-rates/{seed}")
    return {node_id: 1.0 + rng.uniform(-declared_error, declared_error)
            for node_id in sorted(node_ids)}


class TransferBandwidth:
    """A link's bandwidth learned from the transfers it carried (the `measured` model).

    A transfer of b bits that took t seconds while k − 1 other uploads to the same node were
    in flight when it started implies a link rate of about k·b/t (the scheduler's own model
    of a shared link: equal shares). Transfers under `min_bytes` are dominated by connection
    set-up and slow start, not by the link's rate, and teach nothing. An EWMA with weight
    `smoothing` tracks changes with a lag of a few transfers.
    """

    def __init__(self, nominal_mbit: float, smoothing: float = 0.3,
                 min_bytes: int = 100_000) -> None:
        if not 0 < smoothing <= 1:
            raise ValueError(f"smoothing must be in (0, 1] (got {smoothing})")
        self.rate_mbit = nominal_mbit
        self.smoothing = smoothing
        self.min_bytes = min_bytes
        self.samples = 0

    def observe(self, input_bytes: int, transmission_s: float, sharing: int) -> float | None:
        """Learn from one finished transfer; return the rate it implied, or None if none."""
        if input_bytes < self.min_bytes or not transmission_s > 0 or sharing < 1:
            return None
        implied_mbit = input_bytes * 8 * sharing / transmission_s / 1e6
        if not (math.isfinite(implied_mbit) and MIN_RATE_MBIT <= implied_mbit <= MAX_RATE_MBIT):
            return None
        self.rate_mbit = ((1 - self.smoothing) * self.rate_mbit
                          + self.smoothing * implied_mbit)
        self.samples += 1
        return implied_mbit


def load_true_output_tokens(path: str) -> dict[str, int]:
    """Service id -> true output length from a workload file (scenarios.workload_file's
    layout), for a clairvoyant scheduler only. ValueError names the file and the entry."""
    import json
    from pathlib import Path

    try:
        entries = json.loads(Path(path).read_text())
        truth = {}
        for i, entry in enumerate(entries):
            tokens = entry["output_tokens"]
            if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 0:
                raise ValueError(f"entry {i}: output_tokens must be an integer >= 0 "
                                 f"(got {tokens!r})")
            truth[str(entry["service"]["id"])] = tokens
    except (OSError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"true_output_tokens: {path} is not a readable workload file "
                         f"({exc})") from None
    return truth
