"""CS-UCB: the constraint-satisfaction upper-confidence-bound bandit of PerLLM (Algorithm 1).

Arms are nodes per service class (the context): statistics per (class, node).

select():
1. predict every candidate node (scheduler.cluster) and its f of eq. 3; feasible iff f >= 0;
2. an untried feasible arm first (never selected in this class; the one with the largest f);
3. otherwise the feasible arm of largest UCB (eq. 6)
       UCB(a, t) = R̄(a) + δ·sqrt(ln t / L(a, t)) + θ·P(a, t)
   with t the selections made in the class and L(a, t) the selections of a (outcomes still
   pending count as plays, so a slot of services does not pile onto one arm before its first
   outcome returns). R̄(a) is the mean reward of a's measured outcomes; while none has
   returned it is the class's mean reward (0 before any), a neutral prior;
   P(a, t) = −v̄(a) ≤ 0 is the penalty of eq. 6/7, proportional to the degree of violation:
   v̄(a) is the mean over a's measured outcomes of max(0, −f_measured) ∈ [0, 1], i.e. how far
   past their requirement a's services finished, relative to it (a failure counts 1).
   An arm whose services keep missing loses θ·v̄ on top of the λ·f already in its reward;
4. if no arm is feasible, the least-violating: the largest f, ties to the cloud, then to more
   slots (PerLLM: "it is assigned to a more resource-rich server").

update() learns the reward of eq. 4 from the MEASURED outcome (never from the prediction):
    R = −(ω_tran·E_tran + ω_infer·E_infer + ω_idle·E_idle) / E_ref + λ·f_measured
with f_measured = (D − D_measured)/D clipped to [−1, 1] (scheduler.reward.measured_f).

`constraint_term: penalty-only` replaces λ·f by λ·min(0, f): slack earns nothing, only a
violation costs. Eq. 4 as written (the default) rewards slack, and with λ = 1, E_ref = 1000 J a
service's slack can outweigh its energy (notes/paper-reproduction.md has the sensitivity).

regret: against the best fixed arm per class in hindsight, Σ_c (T_c·R*_c − Σ_t R_t), where T_c
is the number of outcomes learned in class c and R*_c the best mean reward among the arms of c
it has measured: zero when it always plays that arm. regret_eq5: eq. 5 as written,
Reg(T) = T·αβ·R(S_max) − Σ R(S_t), approximated the same way; with negative rewards αβ < 1
raises the bar, so it is positive even for optimal play and measures nothing (kept for the
paper's definition only).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

from scheduler.cluster import CLOUD, Cluster
from scheduler.limits import MAX_REWARD, check_count
from scheduler.outcome import Outcome, Status
from scheduler.policies.base import (ArmStat, Decision, Policy, RewardConfig, register_policy,
                                     require_candidates)
from scheduler.service import Service

log = logging.getLogger(__name__)

STATE_VERSION = 1


@dataclass(frozen=True)
class CsUcbConfig(RewardConfig):
    """CS-UCB hyperparameters (the paper gives no values; these defaults are ours); eq. 4's
    weights (lam, omega_*, energy_ref_j, constraint_term) are RewardConfig's.

    alpha, beta: approximation coefficients of eq. 5's regret, in (0, 1]; the paper takes
        them < 1 (0.9 each); 1 gives the standard regret.
    delta: δ of eq. 6, exploration weight (>= 0). 0.5 suits rewards of order 1.
    theta: θ of eq. 6, weight of the violation penalty P (>= 0).
    """

    alpha: float = 0.9
    beta: float = 0.9
    delta: float = 0.5
    theta: float = 1.0

    def __post_init__(self) -> None:
        self._real("alpha", low=0.0, high=1.0, low_open=True)
        self._real("beta", low=0.0, high=1.0, low_open=True)
        self._real("delta", low=0.0)
        self._real("theta", low=0.0)
        super().__post_init__()


class _Arm:
    """Statistics of one (class, node) arm."""

    __slots__ = ("selections", "plays", "reward_sum", "violation_sum", "met")

    def __init__(self) -> None:
        self.selections = 0  # decisions, including outcomes still pending: L(a, t)
        self.plays = 0  # measured outcomes learned
        self.reward_sum = 0.0
        self.violation_sum = 0.0  # Σ max(0, −f_measured)
        self.met = 0


class _Context:
    """Per service class: selections (t of eq. 6) and the regret's running sums."""

    __slots__ = ("selections", "plays", "reward_sum", "arms")

    def __init__(self) -> None:
        self.selections = 0
        self.plays = 0
        self.reward_sum = 0.0
        self.arms: dict[str, _Arm] = {}


@register_policy("cs-ucb")
class CsUcb(Policy):
    """PerLLM's CS-UCB; see the module docstring for the exact reading of the paper."""

    config_class = CsUcbConfig
    config: CsUcbConfig

    def __init__(self, config: CsUcbConfig | None = None, seed: int = 0) -> None:
        super().__init__(config, seed)
        self._contexts: dict[str, _Context] = {}

    # --- decisions ----------------------------------------------------------------------
    def select(self, service: Service, cluster: Cluster) -> Decision:
        nodes = require_candidates(self.name, cluster)
        ctx = self._contexts.get(service.service_class)
        if ctx is None:
            ctx = self._contexts[service.service_class] = _Context()
        arms = ctx.arms
        ln_t = math.log(ctx.selections + 1)
        prior = ctx.reward_sum / ctx.plays if ctx.plays else 0.0
        delta, theta = self.config.delta, self.config.theta
        now = cluster.clock()
        predict = cluster.predict_node

        best_untried = best_ucb = best_fallback = None
        untried_f = ucb_max = -math.inf
        fallback_key: tuple = (-math.inf,)
        for node in nodes:
            p = predict(service, node, now)
            f = p.f
            if f >= 0.0:
                arm = arms.get(node.info.node_id)
                if arm is None or arm.selections == 0:
                    if f > untried_f:
                        untried_f, best_untried = f, p
                elif best_untried is None:
                    ucb = self._ucb(arm, ln_t, prior, delta, theta)
                    if ucb > ucb_max:
                        ucb_max, best_ucb = ucb, p
            elif best_untried is None and best_ucb is None:
                key = (f, node.info.kind == CLOUD, node.info.slots)
                if key > fallback_key:
                    fallback_key, best_fallback = key, p

        if best_untried is not None:
            chosen, score, feasible = best_untried, math.inf, True
        elif best_ucb is not None:
            chosen, score, feasible = best_ucb, ucb_max, True
        else:
            chosen, feasible = best_fallback, False
            arm = arms.get(chosen.node_id)
            score = (self._ucb(arm, ln_t, prior, delta, theta) if arm and arm.selections
                     else math.inf)

        arm = arms.get(chosen.node_id)
        if arm is None:
            arm = arms[chosen.node_id] = _Arm()
        arm.selections += 1
        ctx.selections += 1
        self.t += 1
        return Decision(service.id, chosen.node_id, chosen, feasible, self.name, score)

    @staticmethod
    def _ucb(arm: _Arm, ln_t: float, prior: float, delta: float, theta: float) -> float:
        """Eq. 6 for an arm selected at least once."""
        if arm.plays:
            mean = arm.reward_sum / arm.plays
            penalty = -arm.violation_sum / arm.plays
        else:
            mean, penalty = prior, 0.0
        return mean + delta * math.sqrt(ln_t / arm.selections) + theta * penalty

    # --- learning -----------------------------------------------------------------------
    def update(self, outcome: Outcome) -> float:
        """Learn eq. 4's reward from the measured outcome (its energy and total time).

        The caller fills outcome.energy (measured, or modelled with scheduler.reward from the
        measured times); the prediction made at decision time plays no part.
        """
        f, r = self.config.reward_of(outcome)
        # The learner never stores a non-finite value, whatever a front end feeds it (the
        # gRPC service checks ranges; the simulator and library callers may not).
        if not (math.isfinite(f) and math.isfinite(r) and abs(r) <= MAX_REWARD):
            log.warning("cs-ucb: outcome of %s on %s not learned: reward %r, f %r out of range",
                        outcome.service_id, outcome.node_id, r, f)
            return 0.0
        ctx = self._contexts.get(outcome.service_class)
        if ctx is None:
            ctx = self._contexts[outcome.service_class] = _Context()
        arm = ctx.arms.get(outcome.node_id)
        if arm is None:  # an outcome of a decision this instance did not make (e.g. restored)
            arm = ctx.arms[outcome.node_id] = _Arm()
            arm.selections = 1
            ctx.selections += 1
        elif arm.selections <= arm.plays:  # more outcomes than decisions: keep L >= plays
            arm.selections = arm.plays + 1
        arm.plays += 1
        arm.reward_sum += r
        arm.violation_sum += -f if f < 0 else 0.0
        arm.met += outcome.status is Status.MET
        ctx.plays += 1
        ctx.reward_sum += r
        return r

    def mean_reward(self, service_class: str, node_id: str) -> float | None:
        """R̄ of an arm, or None if it has no measured outcome yet."""
        ctx = self._contexts.get(service_class)
        arm = ctx.arms.get(node_id) if ctx else None
        return arm.reward_sum / arm.plays if arm and arm.plays else None

    @property
    def regret(self) -> float:
        """Against the best fixed arm per class in hindsight (the module docstring)."""
        return self._regret(1.0)

    @property
    def regret_eq5(self) -> float:
        """Eq. 5 as written, with αβ (the module docstring says why it measures nothing)."""
        return self._regret(self.config.alpha * self.config.beta)

    def _regret(self, ab: float) -> float:
        total = 0.0
        for ctx in self._contexts.values():
            means = [a.reward_sum / a.plays for a in ctx.arms.values() if a.plays]
            if means:
                total += ctx.plays * ab * max(means) - ctx.reward_sum
        return total

    def arm_stats(self, cluster: Cluster) -> list[ArmStat]:
        """Every known (class, node) arm, plus untried arms on the current candidates.

        `ucb` is eq. 6 as the class's next decision would compute it; +inf for an untried
        arm (explored first when feasible).
        """
        stats = []
        candidates = [n.node_id for n in cluster.candidates()]
        for cls in sorted(self._contexts):
            ctx = self._contexts[cls]
            ln_t = math.log(ctx.selections + 1)  # the t the next decision will use
            prior = ctx.reward_sum / ctx.plays if ctx.plays else 0.0
            node_ids = list(ctx.arms) + [n for n in candidates if n not in ctx.arms]
            for node_id in node_ids:
                arm = ctx.arms.get(node_id) or _Arm()
                ucb = (self._ucb(arm, ln_t, prior, self.config.delta, self.config.theta)
                       if arm.selections else math.inf)
                stats.append(ArmStat(
                    service_class=cls, node_id=node_id, plays=arm.plays,
                    mean_reward=arm.reward_sum / arm.plays if arm.plays else 0.0, ucb=ucb,
                    success_rate=arm.met / arm.plays if arm.plays else 0.0))
        return stats

    # --- persistence --------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["version"] = STATE_VERSION
        state["policy"] = self.name
        state["classes"] = {
            cls: {"selections": ctx.selections, "plays": ctx.plays,
                  "reward_sum": ctx.reward_sum,
                  "arms": {node_id: {"selections": a.selections, "plays": a.plays,
                                     "reward_sum": a.reward_sum,
                                     "violation_sum": a.violation_sum, "met": a.met}
                           for node_id, a in ctx.arms.items()}}
            for cls, ctx in self._contexts.items()}
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("policy", self.name) != self.name:
            raise ValueError(f"state.policy must be {self.name!r} (got {state.get('policy')!r})")
        if state.get("version", STATE_VERSION) != STATE_VERSION:
            raise ValueError(f"state.version must be {STATE_VERSION} "
                             f"(got {state.get('version')!r})")
        contexts: dict[str, _Context] = {}
        try:
            for cls, c in state.get("classes", {}).items():
                key = f"classes.{cls}"
                ctx = contexts[cls] = _Context()
                ctx.selections = _count(c, "selections", key)
                ctx.plays = _count(c, "plays", key)
                ctx.reward_sum = _sum(c, "reward_sum", key, ctx.plays)
                for node_id, a in c["arms"].items():
                    arm_key = f"{key}.arms.{node_id}"
                    arm = ctx.arms[node_id] = _Arm()
                    arm.selections = _count(a, "selections", arm_key)
                    arm.plays = _count(a, "plays", arm_key)
                    arm.reward_sum = _sum(a, "reward_sum", arm_key, arm.plays)
                    arm.violation_sum = _sum(a, "violation_sum", arm_key, arm.plays)
                    arm.met = _count(a, "met", arm_key)
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"state.classes is malformed: {exc!r}") from None
        super().load_state_dict(state)
        self._contexts = contexts


def _count(record: dict, name: str, key: str) -> int:
    """A count from a state file: an integer >= 0 (ValueError names the key and the value)."""
    return check_count(f"state.{key}.{name}", record[name])


def _sum(record: dict, name: str, key: str, plays: int) -> float:
    """A sum of per-outcome values from a state file: finite, at most plays x MAX_REWARD."""
    value = record[name]
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or not math.isfinite(value) or abs(value) > max(plays, 1) * MAX_REWARD):
        raise ValueError(f"state.{key}.{name} must be a finite number of magnitude <= "
                         f"{max(plays, 1) * MAX_REWARD:g} (got {value!r})")
    return float(value)
