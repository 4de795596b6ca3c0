"""Regret curves of a run against the best fixed arm per class in hindsight (scenarios.regret)."""

from __future__ import annotations

import pytest

from scenarios.regret import best_arm_rewards, regret_curves, row_reward
from scenarios.results import RequestRow


def row(policy: str, i: int, node: str, total_s: float, energy_j: float,
        status: str = "met") -> RequestRow:
    return RequestRow(policy=policy, service_id=f"s{i}", service_class="chat", node_id=node,
                      arrival_s=float(i), input_bytes=1000, tokens_in=10, tokens_out=5,
                      transmission_s=0.0, queueing_s=0.0, inference_s=total_s,
                      total_s=total_s, deadline_s=4.0, status=status, transmission_j=0.0,
                      inference_j=energy_j, idle_j=0.0, total_j=energy_j)


def test_a_policy_that_always_plays_the_best_arm_has_zero_regret():
    # edge: f = 0.5, 100 J -> 0.5 - 0.1 = 0.4; cloud: f = 0.75, 600 J -> 0.75 - 0.6 = 0.15.
    rows = ([row("good", i, "edge", 2.0, 100.0) for i in range(3)]
            + [row("bad", i, "cloud", 1.0, 600.0) for i in range(3)])
    assert row_reward(rows[0]) == pytest.approx(0.4)
    assert best_arm_rewards(rows) == {"chat": pytest.approx(0.4)}
    curves = regret_curves(rows)
    assert curves["good"] == pytest.approx([0.0, 0.0, 0.0])
    assert curves["bad"] == pytest.approx([0.25, 0.5, 0.75])


def test_a_failed_service_costs_the_whole_constraint_term():
    failed = row("p", 0, "edge", 9.0, 0.0, status="failed")
    assert row_reward(failed) == pytest.approx(-1.0)
