"""A scenario spec turned into the simulated world: nodes, arrivals and the rate schedule.

The workload (scenarios.workload.generate) and the bandwidth schedule
(testbed.fluctuation.iter_schedule) come from the same functions and the same seed as an
emulated run, so the simulator sees the same services and the same rates as the testbed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping

import yaml

from nodes.profile import HardwareProfile, load_profile
from scenarios.spec import ScenarioSpec
from scenarios.workload import WorkloadItem, generate
from simulator.model import NodeModel
from simulator.runner import Fault, NodeSetup
from testbed.fluctuation import RateChange, iter_schedule


def node_model(profile: HardwareProfile) -> NodeModel:
    return NodeModel(prefill_tok_s=profile.prefill_tok_s, decode_tok_s=profile.decode_tok_s,
                     concurrency_slowdown=profile.concurrency_slowdown,
                     idle_power_w=profile.idle_power_w, max_power_w=profile.max_power_w,
                     name=profile.name)


@dataclass(frozen=True)
class Calibration:
    """Fitted node models (node id -> NodeModel) and link efficiencies (link -> factor)."""

    nodes: Mapping[str, NodeModel] = field(default_factory=dict)
    link_efficiency: Mapping[str, float] = field(default_factory=dict)


def load_calibration(path: str | Path) -> Calibration:
    """A calibration YAML written by `python -m simulator calibrate`."""
    data = yaml.safe_load(Path(path).read_text()) or {}
    nodes = data.get("nodes")
    if not isinstance(nodes, Mapping) or not nodes:
        raise ValueError(f"{path}: expected a non-empty 'nodes:' mapping of node id -> model")
    efficiency = {}
    for link, entry in (data.get("links") or {}).items():
        value = float(entry.get("efficiency", 1.0)) if isinstance(entry, Mapping) else None
        if value is None or not 0 < value <= 1:
            raise ValueError(f"{path}: links.{link}.efficiency must be in (0, 1] (got {entry!r})")
        efficiency[str(link)] = value
    out = {}
    for node_id, fields in nodes.items():
        try:
            model = NodeModel(name=str(fields.get("name", node_id)), **{
                k: float(fields[k]) for k in ("prefill_tok_s", "decode_tok_s",
                                              "concurrency_slowdown", "idle_power_w",
                                              "max_power_w")})
        except (KeyError, TypeError) as exc:
            raise ValueError(f"{path}: nodes.{node_id}: missing or bad field {exc}") from None
        model.validate()
        out[str(node_id)] = model
    return Calibration(out, efficiency)


def node_setups(spec: ScenarioSpec, calibration: Calibration | None = None,
                edge_profile: str | None = None) -> list[NodeSetup]:
    """edge1..edgeN (and cloud) as the testbed builds them; a calibration overrides a node's
    model, `edge_profile` overrides the edges' hardware profile (the paper's model sweep)."""
    topo = spec.topology
    models = calibration.nodes if calibration else {}
    efficiency = calibration.link_efficiency if calibration else {}
    setups = []
    for link in topo.link_names():
        kind = "cloud" if link == "cloud" else "edge"
        group = spec.nodes.cloud if kind == "cloud" else spec.nodes.edge
        profile_name = edge_profile if (kind == "edge" and edge_profile) else group.profile
        if link in models:
            model = models[link]
        elif profile_name:
            model = node_model(load_profile(profile_name))
        else:
            raise ValueError(f"nodes.{kind}.profile: the simulator needs a hardware profile "
                             f"or a calibration (--calibration) for {link} (got None)")
        setups.append(NodeSetup(
            node_id=link, kind=kind, model=model, slots=group.slots,
            queue_capacity=group.queue_capacity, link_rate_mbit=topo.nominal_rate_mbit(link),
            j_per_bit=topo.j_per_bit(link), profile=profile_name or "",
            link_efficiency=efficiency.get(link, 1.0)))
    return setups


def arrivals(spec: ScenarioSpec, requests: int | None = None) -> list[WorkloadItem]:
    """The emulated run's workload: generate(spec.workload, spec.seed)."""
    workload = spec.workload
    if requests is not None:
        workload = workload.model_copy(update={"requests": requests})
    return generate(workload, spec.seed)


def rate_changes(spec: ScenarioSpec) -> Iterator[RateChange]:
    """The testbed's endless rate schedule for this spec and seed."""
    topo = spec.topology
    links = {link: topo.nominal_rate_mbit(link) for link in topo.link_names()}
    return iter_schedule(topo.fluctuation, links, spec.seed)


def faults(spec: ScenarioSpec) -> list[Fault]:
    return [Fault(f.at_s, f.kind, f.target, f.duration_s, f.factor) for f in spec.faults]
