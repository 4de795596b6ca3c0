"""Regret over time of every policy of a run, against the best fixed arm per class in hindsight.

A policy's reward for a service is eq. 4 of PerLLM with the default weights
(scheduler.policies.base.RewardConfig, as CS-UCB and LinUCB learn it), computed from the
measured outcome. The reference
for a service of class c is R*_c, the best mean reward of any node ("arm") for class c, the
mean taken over the services of class c that ran on that node under *any* policy of the same
run (the same workload): in hindsight, the best node to have sent the whole class to. The
regret after t services is Σ_{s ≤ t} (R*_{c(s)} − R_s): zero for a policy that always chose
that arm and got its mean reward. It is an estimate: an arm's reward depends on the load the
policy put on it, and an arm no policy tried has no value (it is not counted).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Sequence

from scenarios.results import RequestRow
from scheduler.outcome import Energy
from scheduler.policies.base import RewardConfig
from scheduler.reward import F_FLOOR


def row_reward(row: RequestRow, config: RewardConfig = RewardConfig()) -> float:
    """Eq. 4 from a results row (measured f; a failed service has f = −1)."""
    if row.status == "failed" or row.deadline_s <= 0:
        f = F_FLOOR
    else:
        f = max(F_FLOOR, min(1.0, (row.deadline_s - row.total_s) / row.deadline_s))
    energy = Energy(transmission_j=row.transmission_j, inference_j=row.inference_j,
                    idle_j=row.idle_j)
    return config.reward_for(energy, f)


def best_arm_rewards(requests: Sequence[RequestRow]) -> dict[str, float]:
    """R*_c per class: the best mean reward of a node over every policy's services of c."""
    sums: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0])
    for row in requests:
        if row.node_id:
            entry = sums[(row.service_class, row.node_id)]
            entry[0] += row_reward(row)
            entry[1] += 1
    best: dict[str, float] = {}
    for (cls, _node), (total, n) in sums.items():
        best[cls] = max(best.get(cls, -float("inf")), total / n)
    return best


def regret_curves(requests: Sequence[RequestRow]) -> dict[str, list[float]]:
    """Per policy, the cumulative regret after each of its services in arrival order."""
    best = best_arm_rewards(requests)
    by_policy: dict[str, list[RequestRow]] = defaultdict(list)
    for row in requests:
        by_policy[row.policy].append(row)
    curves = {}
    for policy, rows in by_policy.items():
        total, curve = 0.0, []
        for row in sorted(rows, key=lambda r: r.arrival_s):
            if row.service_class in best:
                total += best[row.service_class] - row_reward(row)
            curve.append(total)
        curves[policy] = curve
    return curves
