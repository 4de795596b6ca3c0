"""The per-service ceiling: each service alone on an idle system, at its best node.

For every service of a workload and every node that is up at its arrival: the upload of its
input at the link's true rate at that moment (times the link's efficiency) plus its inference
alone on the node (true prompt tokens and true output length at the node's true rates, slowed
by a slow-node fault in force). A service is within the ceiling if some node would finish it
within its requirement. Sharing a link or a node only slows a service down, so in the
simulated world no policy meets more services than the ceiling: it is an upper bound on
success, and its mean time (each service at its fastest node) a lower bound on the mean
processing time of services that all succeed. Approximations: the rate at arrival holds for
the whole upload (a rate change mid-upload is ignored: ±20% fluctuation moves an upload's
time by at most that much), and a slow-node or link fault is judged at arrival. In the
emulation it is the simulated world's ceiling for the same workload, not a bound on what
gRPC, TCP and the pacing add.

`python -m simulator ceiling NAME` prints it (and a JSON line); `ceiling_summary(spec)` is what
results tables show beside the policies.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict, dataclass
from typing import Iterable, Sequence

from scenarios.spec import ScenarioSpec
from scenarios.workload import WorkloadItem
from simulator.runner import Fault, NodeSetup
from testbed.fluctuation import RateChange


@dataclass(frozen=True)
class Ceiling:
    services: int
    success_rate: float  # % of services some node would finish alone within the requirement
    mean_best_total_s: float  # mean over services of the least time alone (all nodes up: inf)
    per_class_success_rate: dict[str, float]

    def as_dict(self) -> dict:
        return asdict(self)


def _rates_at(setups: Sequence[NodeSetup], changes: Iterable[RateChange],
              times_s: Sequence[float]) -> list[dict[str, float]]:
    """Each link's true rate at each (sorted) time."""
    rates = {s.node_id: s.link_rate_mbit for s in setups}
    out = []
    it = iter(changes)
    pending = next(it, None)
    for t in times_s:
        while pending is not None and pending.time_s <= t:
            rates[pending.link] = pending.rate_mbit
            pending = next(it, None)
        out.append(dict(rates))
    return out


def _fault_state(faults: Sequence[Fault], node_id: str, t_s: float) -> tuple[bool, float]:
    """(reachable, slowdown factor) of a node at t_s under the faults."""
    up, factor = True, 1.0
    for f in faults:
        if f.target != node_id or f.at_s > t_s:
            continue
        if f.kind == "kill-node":
            up = False
        elif f.kind == "link-down" and t_s < f.at_s + f.duration_s:
            up = False
        elif f.kind == "slow-node" and t_s < f.at_s + f.duration_s:
            factor *= f.factor
    return up, factor


def ceiling(setups: Sequence[NodeSetup], items: Sequence[WorkloadItem],
            rate_changes: Iterable[RateChange] = (), faults: Sequence[Fault] = ()) -> Ceiling:
    ordered = sorted(items, key=lambda i: i.arrival_s)
    rates = _rates_at(setups, rate_changes, [i.arrival_s for i in ordered])
    met = 0
    best_sum = 0.0
    finite = 0
    by_class: dict[str, list[int]] = {}
    for item, rate_of in zip(ordered, rates):
        service = item.service
        best_s = math.inf
        for s in setups:
            up, slow = _fault_state(faults, s.node_id, item.arrival_s)
            rate_mbit = rate_of[s.node_id]
            if not up or rate_mbit <= 0:
                continue
            upload_s = service.input_bytes * 8 / (rate_mbit * s.link_efficiency * 1e6)
            work_s = s.model.work_s(service.estimated_prompt_tokens, item.output_tokens) * slow
            best_s = min(best_s, upload_s + work_s)
        ok = best_s <= service.deadline_s
        met += ok
        counts = by_class.setdefault(service.service_class, [0, 0])
        counts[0] += ok
        counts[1] += 1
        if best_s < math.inf:
            best_sum += best_s
            finite += 1
    n = len(ordered)
    return Ceiling(
        services=n, success_rate=100.0 * met / n if n else 0.0,
        mean_best_total_s=best_sum / finite if finite else math.inf,
        per_class_success_rate={c: 100.0 * m / k for c, (m, k) in sorted(by_class.items())})


def ceiling_summary(spec: ScenarioSpec, requests: int | None = None, calibration=None,
                    edge_profile: str | None = None) -> dict:
    """The ceiling of a spec's workload in its simulated world (the dict results show)."""
    from simulator import world

    setups = world.node_setups(spec, calibration, edge_profile)
    items = world.arrivals(spec, requests)
    return ceiling(setups, items, world.rate_changes(spec), world.faults(spec)).as_dict()


def main(argv: list[str] | None = None) -> int:
    from scenarios.spec import SpecError, load_spec

    parser = argparse.ArgumentParser(prog="python -m simulator ceiling",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("scenario", help="scenario name (scenarios/NAME.yaml) or path")
    parser.add_argument("--seed", type=int, help="seed (default: the spec's)")
    parser.add_argument("--requests", type=int, help="services (default: the spec's)")
    args = parser.parse_args(argv)
    try:
        spec = load_spec(args.scenario, seed=args.seed)
    except SpecError as exc:
        print(exc, file=sys.stderr)
        return 2
    result = ceiling_summary(spec, args.requests)
    print(f"{spec.name}, seed {spec.seed}: {result['success_rate']:.1f}% of "
          f"{result['services']} services could meet their requirement alone at their best "
          f"node (mean best time {result['mean_best_total_s']:.2f} s)")
    for cls, rate in result["per_class_success_rate"].items():
        print(f"  {cls}: {rate:.1f}%")
    print(json.dumps({"scenario": spec.name, "seed": spec.seed, **result}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
