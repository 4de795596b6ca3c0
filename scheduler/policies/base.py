"""The policy interface shared by the gRPC service, the emulated runs and the simulator.

A policy is a plain object with no I/O: `select(service, cluster) -> Decision` and
`update(outcome) -> reward`. Hyperparameters live in a frozen, validated dataclass; randomness
comes from an injected seed. Callers own the cluster bookkeeping: after a decision they call
`cluster.on_assign(service, decision.prediction)`, and when the service completes they call
`cluster.on_complete(outcome)` and then `policy.update(outcome)` (delayed feedback).
"""

from __future__ import annotations

import math
import random
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

from scheduler.cluster import Cluster, Prediction
from scheduler.outcome import Energy, Outcome
from scheduler.reward import measured_f, reward
from scheduler.limits import check_count
from scheduler.registry import Registry
from scheduler.service import Service


class NoNodeError(RuntimeError):
    """No node the policy may choose is registered, alive and serving."""


def require_candidates(policy: str, cluster: Cluster) -> list:
    """The cluster's candidates, or NoNodeError saying why there are none."""
    nodes = cluster.candidates()
    if not nodes:
        raise NoNodeError(f"{policy}: no node is alive and serving "
                          f"(registered: {sorted(cluster.nodes) or 'none'})")
    return nodes


@dataclass(frozen=True, slots=True)
class Decision:
    service_id: str
    node_id: str
    prediction: Prediction  # of the chosen node
    any_feasible: bool  # whether any candidate had f >= 0
    policy: str
    score: float = 0.0  # the policy's value for the chosen arm (UCB for CS-UCB)
    # Seconds the caller should hold the service before dispatching it (cloud-only's
    # deferred batching); already included in prediction.queueing_s. 0 for every other policy.
    defer_s: float = 0.0


@dataclass(frozen=True, slots=True)
class ArmStat:
    service_class: str
    node_id: str
    plays: int
    mean_reward: float
    ucb: float
    success_rate: float


@dataclass(frozen=True)
class PolicyConfig:
    """Base of every policy's hyperparameters: frozen, validated in __post_init__."""

    def __post_init__(self) -> None:  # subclasses validate and call super()
        pass

    def _real(self, name: str, *, low: float = -math.inf, high: float = math.inf,
              low_open: bool = False, high_open: bool = False) -> None:
        """Check that field `name` is a finite real in the given range; store it as float.

        Raises ValueError naming the field, the value received and the accepted range.
        """
        value = getattr(self, name)
        accepted = (f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}")
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok:
            value = float(value)
            ok = (math.isfinite(value)
                  and (value > low if low_open else value >= low)
                  and (value < high if high_open else value <= high))
        if not ok:
            raise ValueError(f"{type(self).__name__}.{name} must be a finite number in "
                             f"{accepted} (got {value!r})")
        object.__setattr__(self, name, value)


# Eq. 4's constraint term: λ·f as the paper writes it, or λ·min(0, f) (slack earns nothing).
CONSTRAINT_TERMS = ("eq4", "penalty-only")


@dataclass(frozen=True)
class RewardConfig(PolicyConfig):
    """The weights of PerLLM's eq. 4 reward, for every policy that learns it (CS-UCB, LinUCB)
    and for the regret curves of the reports:
        R = −(ω_tran·E_tran + ω_infer·E_infer + ω_idle·E_idle) / E_ref + λ·f

    lam: λ, weight of the constraint function f (>= 0). 1.0: a service finishing at its
        requirement's edge scores like E_ref joules less than one with all of it to spare.
    omega_tran, omega_infer, omega_idle: ω of eqs. 1 and 4, weights of the energy parts (>= 0).
    energy_ref_j: E_ref, fixed energy scale in J (> 0) so the reward does not drift; 1000 J is
        the order of one 7B-model service on an edge CPU.
    constraint_term: "eq4" (λ·f, the paper's) or "penalty-only" (λ·min(0, f)).
    """

    lam: float = 1.0
    omega_tran: float = 1.0
    omega_infer: float = 1.0
    omega_idle: float = 1.0
    energy_ref_j: float = 1000.0
    constraint_term: str = "eq4"

    def __post_init__(self) -> None:
        if self.constraint_term not in CONSTRAINT_TERMS:
            raise ValueError(f"{type(self).__name__}.constraint_term must be one of "
                             f"{', '.join(CONSTRAINT_TERMS)} (got {self.constraint_term!r})")
        self._real("lam", low=0.0)
        self._real("omega_tran", low=0.0)
        self._real("omega_infer", low=0.0)
        self._real("omega_idle", low=0.0)
        self._real("energy_ref_j", low=0.0, low_open=True)
        super().__post_init__()

    def reward_for(self, energy: Energy, f: float) -> float:
        """Eq. 4 for one service of measured energy and constraint value f."""
        return reward(energy, f, lam=self.lam, omega_tran=self.omega_tran,
                      omega_infer=self.omega_infer, omega_idle=self.omega_idle,
                      energy_ref_j=self.energy_ref_j,
                      penalty_only=self.constraint_term == "penalty-only")

    def reward_of(self, outcome: Outcome) -> tuple[float, float]:
        """(f, R): eq. 4 from a MEASURED outcome (never from the prediction)."""
        f = measured_f(outcome)
        return f, self.reward_for(outcome.energy, f)


class Policy(ABC):
    name: ClassVar[str] = ""
    config_class: ClassVar[type[PolicyConfig]] = PolicyConfig
    # What the policy is allowed to know (scheduler.information): None means the run's
    # information model (declared rates learned from outcomes, measured bandwidth, estimated
    # output lengths by default); "clairvoyant" marks the reference that is handed the truth.
    information: ClassVar[str | None] = None

    def __init__(self, config: PolicyConfig | None = None, seed: int = 0) -> None:
        self.config = config if config is not None else self.config_class()
        if not isinstance(self.config, self.config_class):
            raise TypeError(f"{self.name} needs a {self.config_class.__name__}, "
                            f"got {type(self.config).__name__}")
        self.seed = seed
        self.rng = random.Random(seed)
        self.t = 0  # decisions made

    @abstractmethod
    def select(self, service: Service, cluster: Cluster) -> Decision:
        """Choose a node for one service; raise NoNodeError if no candidate exists."""

    def select_batch(self, services: list[Service], cluster: Cluster) -> list[Decision]:
        """A slot of services as a super arm: tightest deadline first, each decision booked
        on the cluster before the next so shared compute and bandwidth are respected.
        Returns decisions in the order of `services`. If a selection raises, the bookings
        already made are released (no caller would ever report them) and the error re-raised."""
        order = sorted(range(len(services)), key=lambda i: services[i].deadline_s)
        decisions: list[Decision | None] = [None] * len(services)
        booked: list[tuple[str, str]] = []  # (service_id, node_id)
        try:
            for i in order:
                decision = self.select(services[i], cluster)
                cluster.on_assign(services[i], decision.prediction)
                booked.append((services[i].id, decision.node_id))
                decisions[i] = decision
        except BaseException:
            for service_id, node_id in reversed(booked):
                cluster.unassign(service_id, node_id)
            raise
        return decisions  # type: ignore[return-value]

    def update(self, outcome: Outcome) -> float:
        """Learn from a measured outcome; return the reward learned (0 if none)."""
        return 0.0

    def arm_stats(self, cluster: Cluster) -> list[ArmStat]:
        return []

    @property
    def regret(self) -> float:
        return 0.0

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable learning state (t, arm statistics, RNG)."""
        return {"t": self.t, "rng": list(self.rng.getstate()[1]), "rng_pos": self.rng.getstate()[2]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what state_dict saved; ValueError names the bad key and value, and nothing
        is changed unless all of it is valid."""
        t = check_count("state.t", state.get("t", 0))
        rng = None
        if "rng" in state:
            words, pos = state["rng"], state.get("rng_pos")
            rng = random.Random()
            try:
                if not all(isinstance(w, int) and not isinstance(w, bool) for w in words):
                    raise TypeError("a word is not an integer")
                rng.setstate((3, tuple(words), pos))
            except (TypeError, ValueError, OverflowError) as e:
                raise ValueError(f"state.rng is not a Mersenne Twister state ({e}; "
                                 f"rng_pos {pos!r})") from None
        self.t = t
        if rng is not None:
            self.rng.setstate(rng.getstate())


POLICIES: Registry[type[Policy]] = Registry("policy")


def register_policy(name: str):
    def add(cls: type[Policy]) -> type[Policy]:
        cls.name = name
        return POLICIES.register(name)(cls)
    return add


def create_policy(name: str, seed: int = 0, **params: Any) -> Policy:
    """Build a registered policy; unknown names and hyperparameters are errors."""
    import scheduler.policies  # noqa: F401  (registers every policy)

    cls = POLICIES.get(name)
    fields = getattr(cls.config_class, "__dataclass_fields__", {})
    unknown = sorted(set(params) - set(fields))
    if unknown:
        raise ValueError(f"unknown hyperparameter(s) {unknown} for policy {name!r}; "
                         f"accepted: {sorted(fields)}")
    return cls(cls.config_class(**params), seed=seed)
