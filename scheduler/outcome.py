"""The measured outcome of a service and its energy by part (PerLLM eq. 2)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


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

    @property
    def met(self) -> bool:
        return self.status is Status.MET

    @staticmethod
    def status_for(total_s: float, deadline_s: float) -> Status:
        return Status.MET if total_s <= deadline_s else Status.MISSED
