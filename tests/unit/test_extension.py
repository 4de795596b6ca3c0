"""Extending the testbed is one step each: a fluctuation pattern and a policy registered from
this module are accepted by a scenario YAML that names them and run in the simulator, with no
edit to any list inside the package (README, "Extending it")."""

from __future__ import annotations

import itertools
import random
from typing import Iterator

import pytest

from scenarios.results import read_rows
from scenarios.spec import SpecError, load_spec
from scheduler.cluster import CLOUD, Cluster
from scheduler.policies import POLICIES, Decision, Policy, register_policy
from scheduler.policies.base import require_candidates
from scheduler.service import Service
from simulator.cells import Cell, run_cell
from testbed import fluctuation
from testbed.spec import FluctuationSpec

PATTERN = "test-square-wave"
POLICY = "test-cloud-first"

SCENARIO = f"""
name: extension
seed: 3
topology:
  edges: 2
  fluctuation: {{profile: {PATTERN}, amplitude: 0.5, period_s: 1.0}}
nodes:
  edge: {{profile: xeon-4214r/llama2-7b-q4, slots: 1}}
  cloud: {{profile: a100-40gb/llama2-33b, slots: 2}}  # what fits 40 GB (nodes/memory.py)
workload:
  requests: 12
  arrival: {{process: poisson, rate_per_s: 2.0}}
policies: [{POLICY}, round-robin]
"""


def square_wave(spec: FluctuationSpec, link: str, nominal: float,
                rng: random.Random) -> Iterator[tuple[float, float]]:
    """High for a period, low for a period: nominal x (1 ± amplitude)."""
    for k in itertools.count():
        sign = 1 if k % 2 == 0 else -1
        yield k * spec.period_s, nominal * (1 + sign * spec.amplitude)


class CloudFirst(Policy):
    """The cloud whenever it is a candidate, else the first edge."""

    def select(self, service: Service, cluster: Cluster) -> Decision:
        candidates = require_candidates(self.name, cluster)
        node = next((n for n in candidates if n.info.kind == CLOUD), candidates[0])
        self.t += 1
        prediction = cluster.predict(service, node.node_id)
        return Decision(service.id, node.node_id, prediction, any_feasible=prediction.f >= 0,
                        policy=self.name)


@pytest.fixture
def registered():
    fluctuation.register(PATTERN)(square_wave)
    register_policy(POLICY)(CloudFirst)
    try:
        yield
    finally:
        del fluctuation.PROFILES[PATTERN]
        POLICIES.unregister(POLICY)


def test_a_scenario_naming_a_new_pattern_and_policy_runs_in_the_simulator(registered, tmp_path):
    path = tmp_path / "extension.yaml"
    path.write_text(SCENARIO)
    spec = load_spec(str(path))
    assert spec.topology.fluctuation.profile == PATTERN and POLICY in spec.policies

    result = run_cell(spec, Cell(None, None), spec.policies, out_dir=tmp_path / "run",
                      plots=False)
    requests, _, links = read_rows(tmp_path / "run")

    ours = [r for r in requests if r.policy == POLICY]
    assert len(ours) == 12 and {r.node_id for r in ours} == {"cloud"}
    assert set(result.summary) == {POLICY, "round-robin"}
    # The pattern's rates reached the simulated links: 300 Mbit/s x 1.5 then x 0.5.
    cloud_rates = [row.rate_mbit for row in links if row.policy == POLICY and row.link == "cloud"]
    assert {450.0, 150.0} <= set(cloud_rates)


def test_unregistered_names_are_refused_with_the_accepted_ones(tmp_path):
    path = tmp_path / "extension.yaml"
    path.write_text(SCENARIO)
    with pytest.raises(SpecError, match=f"unknown fluctuation profile '{PATTERN}'; accepted: "
                                        ".*random-walk"):
        load_spec(str(path))
    path.write_text(SCENARIO.replace(PATTERN, "stable"))
    with pytest.raises(SpecError, match=f"unknown policy '{POLICY}'; accepted: .*cs-ucb"):
        load_spec(str(path))
