"""The measured outcome of a service, its energy by part (PerLLM eq. 2), and its builders.

Every front end (the gateway, the advisor-mode driver, the simulator) builds its outcomes with
`completed_outcome` and `failed_outcome`, so status, units and bounds are decided once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING

from scheduler.limits import MAX_DURATION_S

if TYPE_CHECKING:
    from scheduler.service import Service


class Status(str, Enum):
    MET = "met"
    MISSED = "missed"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Energy:
    """Energy in joules by part; the total is always the sum of the parts."""

    transmission_j: float = 0.0
    inference_j: float = 0.0
    idle_j: float = 0.0
    transmission_method: str = "modelled"
    inference_method: str = "modelled"
    idle_method: str = "modelled"

    @property
    def total_j(self) -> float:
        return self.transmission_j + self.inference_j + self.idle_j


@dataclass(frozen=True, slots=True)
class Outcome:
    service_id: str
    node_id: str
    status: Status
    deadline_s: float
    total_s: float
    service_class: str = "default"
    transmission_s: float = 0.0
    queueing_s: float = 0.0
    inference_s: float = 0.0
    tokens_in: int = 0
    tokens_out: int = 0
    input_bytes: int = 0
    energy: Energy = field(default_factory=Energy)
    error: str = ""
    attempts: int = 1
    constraint_f: float = 0.0  # f (eq. 3) of the chosen node at decision time
    predicted_total_s: float = 0.0  # D-hat of the chosen node at decision time; 0: none

    @property
    def met(self) -> bool:
        return self.status is Status.MET

    @staticmethod
    def status_for(total_s: float, deadline_s: float) -> Status:
        return Status.MET if total_s <= deadline_s else Status.MISSED


# --- the one place an Outcome is built (gateway, advisor driver, simulator) ----------------------
def _time_s(value: float) -> float:
    """A measured duration: negative or non-finite (clock skew, a misbehaving node) is 0."""
    return value if value >= 0 and math.isfinite(value) else 0.0


def bounded_f(f: float) -> float:
    """Eq. 3's f as carried in an outcome: an infinite f (a down link) is its bound ±1."""
    if math.isnan(f):
        return 0.0
    return f if math.isfinite(f) else (-1.0 if f < 0 else 1.0)


def _predicted_s(value: float) -> float:
    """A prediction as an outcome carries it: a down link's hours are capped at the range."""
    return min(value, MAX_DURATION_S) if value >= 0 else 0.0  # NaN fails the comparison


def completed_outcome(service: "Service", node_id: str, *, total_s: float,
                      transmission_s: float, queueing_s: float, inference_s: float,
                      tokens_in: int, tokens_out: int, energy: Energy, attempts: int = 1,
                      constraint_f: float = 0.0, predicted_total_s: float = 0.0) -> Outcome:
    """A service that produced its answer: met or missed by Outcome.status_for."""
    return Outcome(
        service_id=service.id, node_id=node_id,
        status=Outcome.status_for(total_s, service.deadline_s),
        deadline_s=service.deadline_s, total_s=_time_s(total_s),
        service_class=service.service_class, transmission_s=_time_s(transmission_s),
        queueing_s=_time_s(queueing_s), inference_s=_time_s(inference_s),
        tokens_in=max(0, int(tokens_in)), tokens_out=max(0, int(tokens_out)),
        input_bytes=service.input_bytes, energy=energy, attempts=attempts,
        constraint_f=bounded_f(constraint_f), predicted_total_s=_predicted_s(predicted_total_s))


def failed_outcome(service: "Service", node_id: str, *, total_s: float, error: str,
                   transmission_s: float = 0.0, queueing_s: float = 0.0,
                   inference_s: float = 0.0, tokens_in: int = 0, tokens_out: int = 0,
                   energy: Energy = Energy(), attempts: int = 1,
                   constraint_f: float = 0.0, predicted_total_s: float = 0.0) -> Outcome:
    """A service that ended without its answer, with the reason and what it spent."""
    if not error:
        raise ValueError(f"a failed outcome needs its reason (service {service.id!r})")
    return Outcome(
        service_id=service.id, node_id=node_id, status=Status.FAILED,
        deadline_s=service.deadline_s, total_s=_time_s(total_s),
        service_class=service.service_class, transmission_s=_time_s(transmission_s),
        queueing_s=_time_s(queueing_s), inference_s=_time_s(inference_s),
        tokens_in=max(0, int(tokens_in)), tokens_out=max(0, int(tokens_out)),
        input_bytes=service.input_bytes, energy=energy, error=error, attempts=attempts,
        constraint_f=bounded_f(constraint_f), predicted_total_s=_predicted_s(predicted_total_s))
