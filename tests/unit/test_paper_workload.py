"""The paper scenarios' workload: Poisson plus bursts of simultaneous uploads, and the class
mix of scenarios/paper.yaml (uploads of MBs whose declared text is what is prefilled)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from scenarios.spec import ArrivalSpec, WorkloadSpec, load_spec
from scenarios.workload import arrival_times, generate


def test_poisson_bursts_is_the_superposition_of_both_streams():
    spec = ArrivalSpec(process="poisson-bursts", rate_per_s=3.0, burst_size=30,
                       burst_every_s=30.0)
    times = arrival_times(spec, 20_000, np.random.default_rng(1))
    assert len(times) == 20_000 and np.all(np.diff(times) >= 0)
    horizon = times[-1]
    # every burst instant up to the horizon carries burst_size services (plus, with
    # probability 0, a Poisson arrival at the same instant)
    counts = Counter(times.tolist())
    burst_instants = [k * 30.0 for k in range(1, int(horizon // 30.0))]
    assert all(counts[t] >= 30 for t in burst_instants)
    # what is left is a Poisson stream at 3/s: exponential gaps of mean 1/3 s
    rest = np.array(sorted(t for t, n in counts.items() for _ in range(n)
                           if not (t in burst_instants)))
    assert len(rest) / horizon == pytest.approx(3.0, rel=0.03)
    gaps = np.diff(rest)
    assert gaps.mean() == pytest.approx(1 / 3, rel=0.03)
    assert gaps.std() == pytest.approx(gaps.mean(), rel=0.05)  # exponential: sd = mean
    # mean rate: 3/s + 30 per 30 s
    assert len(times) / horizon == pytest.approx(4.0, rel=0.03)


def test_poisson_bursts_is_seeded_and_keeps_the_services():
    base = WorkloadSpec(requests=300)
    mixed = base.model_copy(update={"arrival": ArrivalSpec(
        process="poisson-bursts", rate_per_s=2.0, burst_size=10, burst_every_s=5.0)})
    a, b = generate(mixed, 5), generate(mixed, 5)
    assert a == b
    # the arrival process draws from its own stream: the services are unchanged
    assert [i.service for i in a] == [i.service for i in generate(base, 5)]


@pytest.mark.parametrize("name", ["paper", "paper-q4"])
def test_paper_workload_uploads_megabytes_and_declares_the_text_it_prefills(name):
    spec = load_spec(name, **{"workload.requests": 4000})
    items = generate(spec.workload, spec.seed)
    by_class: dict[str, list] = {}
    for item in items:
        by_class.setdefault(item.service.service_class, []).append(item.service)
    assert set(by_class) == {"chat", "generate", "document", "photo"}
    for cls in ("document", "photo"):
        services = by_class[cls]
        assert min(s.input_bytes for s in services) >= 500_000
        # the declared text, not bytes / 4, is what the node prefills
        assert all(s.estimated_prompt_tokens == s.prompt_tokens <= 800 for s in services)
    assert max(s.estimated_prompt_tokens for s in by_class["chat"]) <= 300
    # the paper's fixed settings
    w = spec.workload
    assert (w.requests, w.deadline_s, w.temperature, w.top_k) == (4000, (2.0, 6.0), 0.8, 200)
    assert (spec.topology.edges, spec.topology.edge_rate_mbit,
            spec.topology.cloud_rate_mbit) == (5, 100, 300)
    assert spec.topology.fluctuation.amplitude == 0.2


def test_paper_q4_differs_from_paper_only_in_the_edge_precision():
    paper, q4 = load_spec("paper"), load_spec("paper-q4")
    assert q4.simulation.edge_profiles == [f"{p}-q4" for p in paper.simulation.edge_profiles]
    assert q4.nodes.edge.profile == f"{paper.nodes.edge.profile}-q4"
    strip = {"name", "description", "nodes", "simulation"}
    assert q4.model_dump(exclude=strip) == paper.model_dump(exclude=strip)
