"""The scenario spec: one typed config tree loaded from YAML (unknown keys are errors).

topology (testbed/spec.py) + nodes + workload + scheduler + policies + faults + seed.
The workload's keys (arrival processes, the Azure trace source, output lengths, requirement
rules) are described in scenarios/workload.py's docstring.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator

from scheduler.energy_models import (DEFAULT_NIC_POWER_W, DEFAULT_POWER, DEFAULT_TRANSMISSION,
                                     POWER_MODELS, TRANSMISSION_MODELS, EnergyModel)
from scheduler.config import DEFAULT_NODE_CONNECTIONS
from scheduler.information import MAX_DECLARED_ERROR
from nodes.slowdown import MAX_SLOWDOWN_FACTOR
# The workload part lives in scenarios.workload_spec; these names are re-exported from here.
from scenarios.workload_spec import (AZURE_TRACE, ArrivalSpec, DeadlineRule,  # noqa: F401
                                     EmpiricalLength, LognormalLength, OutputLength,
                                     ServiceClassSpec, WorkloadSpec, _changed)
from testbed.spec import Strict, TopologySpec

SCENARIO_DIR = Path(__file__).resolve().parent


class NodeGroupSpec(Strict):
    backend: str = Field("llama-cpp", description="A name in nodes.backends.BACKENDS")
    model: Path = Path("models/tiny.gguf")
    profile: str | None = Field(None, description="Hardware profile name; None = native speed")
    slots: int = Field(1, ge=1, le=256)
    queue_capacity: int = Field(64, ge=1, le=100_000)

    @field_validator("backend")
    @classmethod
    def _registered(cls, name: str) -> str:
        from nodes.backends import BACKENDS  # the registry only: no torch, no llama_cpp

        if name not in BACKENDS:
            raise ValueError(f"unknown backend {name!r}; accepted: {', '.join(BACKENDS.names())}")
        return name


class NodesSpec(Strict):
    edge: NodeGroupSpec = NodeGroupSpec(profile="xeon-4214r/llama2-7b", slots=1)
    # 2: the default workload's summarise class estimates its prompt from 200 KB-1.5 MB of
    # text, so a slot must hold the 33B model's whole 2,048-token window, and the A100 40GB
    # holds 2 such slots beside the int8 weights (nodes/memory.py; 8 would need 58.7 GB).
    cloud: NodeGroupSpec = NodeGroupSpec(profile="a100-40gb/llama2-33b", slots=2)


class EnergySpec(Strict):
    """Which energy model the run accounts with (scheduler/energy_models.py, both worlds)."""

    model: str = Field(DEFAULT_POWER, description="Node power over busy slots: a name in "
                       "scheduler.energy_models.POWER_MODELS (linear: P_idle + (P_max - "
                       "P_idle)·busy/slots; gpu-batch-curve: the cloud GPU's published power "
                       "over decode batch size)")
    transmission: str = Field(DEFAULT_TRANSMISSION, description="Upload energy: a name in "
                              "scheduler.energy_models.TRANSMISSION_MODELS (per-bit: bytes x "
                              "J/bit of the link; nic-time: nic_power_w x seconds in flight)")
    nic_power_w: float = Field(DEFAULT_NIC_POWER_W, ge=0.0, le=1000.0, allow_inf_nan=False,
                               description="nic-time: the sender's interface power while "
                                           "sending (W)")

    @field_validator("model", "transmission")
    @classmethod
    def _registered(cls, name: str, info: ValidationInfo) -> str:
        registry = POWER_MODELS if info.field_name == "model" else TRANSMISSION_MODELS
        if name not in registry:
            raise ValueError(f"energy.{info.field_name}: unknown {name!r}; accepted: "
                             f"{', '.join(registry.names())}")
        return name

    def to_model(self) -> EnergyModel:
        return EnergyModel(self.model, self.transmission, self.nic_power_w)


# Bytes per token when a class's prompt is estimated from its upload (Service.estimated_prompt_
# tokens); an Azure trace's rows give their own context, up to the model's window.
_BYTES_PER_TOKEN = 4


def longest_service_tokens(workload: "WorkloadSpec") -> int | None:
    """The most tokens (prompt and answer) one service of the workload can hold in a slot;
    None for an Azure trace, whose rows may reach any length (a slot then needs the model's
    whole window)."""
    if workload.arrival.process == AZURE_TRACE:
        return None
    longest = 0
    for c in workload.classes:
        prompt = (c.prompt_tokens[1] if c.prompt_tokens is not None
                  else max(1, c.input_bytes[1] // _BYTES_PER_TOKEN))
        longest = max(longest, prompt + c.max_new_tokens[1])
    return longest


def check_nodes_memory(nodes: NodesSpec, workload: "WorkloadSpec") -> None:
    """Each node group's model, at its slots and the workload's longest service, must fit its
    hardware's memory (nodes/memory.py); the error gives the count and what would fit."""
    from nodes.memory import check_memory
    from nodes.profile import load_profile

    longest = longest_service_tokens(workload)
    for kind in ("edge", "cloud"):
        group = getattr(nodes, kind)
        if not group.profile:
            continue  # native speed: no emulated hardware to fit
        profile = load_profile(group.profile)
        context = longest if longest is not None else 10**9  # clipped to the model's window
        try:
            check_memory(profile, group.slots, context, node=f"nodes.{kind}")
        except ValueError as exc:
            window = "an Azure trace row may fill the model's window" if longest is None else (
                f"the workload's longest service is {longest} tokens, a slot holds at most "
                f"the model's window")
            raise ValueError(f"{exc} ({window}; lower nodes.{kind}.slots or the workload's "
                             f"prompt_tokens / max_new_tokens)") from None


class SchedulerSpec(Strict):
    information: Literal["measured", "perfect"] = Field(
        "measured", description="What every policy's scheduler knows (scheduler.information): "
        "measured = declared rates learned from outcomes, bandwidth learned from transfers, "
        "estimated output lengths; perfect = true rates and true current bandwidth")
    declared_error: float = Field(
        0.0, ge=0.0, le=MAX_DECLARED_ERROR,
        description="Each node declares its profile's rates times a factor drawn uniformly "
        "in [1 - e, 1 + e] from the seed (a misspecified profile); 0: declared = true")
    heartbeat_interval_s: float = Field(0.5, gt=0.0)
    heartbeat_timeout_s: float = Field(3.0, gt=0.0)
    node_connections: int = Field(
        DEFAULT_NODE_CONNECTIONS, ge=1, le=1024,
        description="Emulation: the gateway's most TCP connections to one node; uploads "
        "beyond share the least busy as HTTP/2 streams (scheduler.node_channels: more flows "
        "share a link more like independent users, at a CPU cost in bursts)")


class FaultSpec(Strict):
    """Something that happens to one host (a node and its link) at_s seconds after the
    workload starts, the same in both worlds.

    - kill-node: the node's process is killed (a crash); it does not come back.
    - link-down: the host's link carries nothing for duration_s, then returns at its
      scheduled rate.
    - slow-node: for duration_s every prefill and decode step on the node takes `factor`
      times as long (thermal throttling, a co-tenant). Work in progress slows down when the
      period starts and speeds up when it ends (its remaining work is served at the new
      rate); overlapping periods on one node: the largest factor applies. The scheduler is
      not told; it sees only the measured outcomes.
    """

    at_s: float = Field(ge=0.0, allow_inf_nan=False)
    kind: Literal["kill-node", "link-down", "slow-node"]
    target: str
    duration_s: float = Field(0.0, ge=0.0, description="link-down: seconds until back up; "
                              "slow-node: seconds the node stays slow (> 0)")
    factor: float = Field(1.0, ge=1.0, le=MAX_SLOWDOWN_FACTOR, allow_inf_nan=False,
                          description="slow-node: how many times longer each step takes "
                                      "(1 = normal speed, 4 = a quarter of the speed)")

    @model_validator(mode="after")
    def _kind_fields(self) -> "FaultSpec":
        if self.kind == "slow-node":
            if not (0.0 < self.duration_s < math.inf):
                raise ValueError(f"faults.duration_s: slow-node needs a finite duration_s > 0 "
                                 f"(got {self.duration_s!r})")
        elif _changed(self, "factor"):
            raise ValueError(f"faults.factor: only used with kind 'slow-node' (got "
                             f"factor={self.factor!r} with kind {self.kind!r})")
        return self


# The paper's edge deployments (section 5.1, "Models"; Table 1): one model on every edge server
# per deployment, LLaMA2-33B on the cloud. Names are hardware profiles under nodes/profiles/.
PAPER_EDGE_PROFILES = ("xeon-4214r/yi-6b", "xeon-4214r/llama2-7b", "xeon-4214r/llama3-8b",
                       "xeon-4214r/yi-9b")


class SimulationSpec(Strict):
    """Only the simulator reads this; the emulated run ignores it."""

    edge_profiles: list[str] = Field(
        default_factory=lambda: list(PAPER_EDGE_PROFILES), min_length=1,
        description="Edge deployments to simulate, one run each (nodes.edge.profile otherwise)")


class ScenarioSpec(Strict):
    name: str
    description: str = ""
    seed: int = 42
    topology: TopologySpec = TopologySpec()
    nodes: NodesSpec = NodesSpec()
    workload: WorkloadSpec = WorkloadSpec()
    scheduler: SchedulerSpec = SchedulerSpec()
    mode: Literal["gateway", "advisor"] = "gateway"
    policies: list[str] = Field(
        default_factory=lambda: ["cs-ucb", "cloud-only", "edge-only", "edge-cloud"], min_length=1)
    policy_params: dict[str, dict[str, float | int | str | bool]] = Field(default_factory=dict)
    faults: list[FaultSpec] = Field(default_factory=list)
    simulation: SimulationSpec = SimulationSpec()
    energy: EnergySpec = EnergySpec()

    @model_validator(mode="after")
    def _nodes_fit_memory(self) -> "ScenarioSpec":
        check_nodes_memory(self.nodes, self.workload)
        return self

    @model_validator(mode="after")
    def _known_names(self) -> "ScenarioSpec":
        from scheduler.policies.base import POLICIES, create_policy  # noqa: F401
        import scheduler.policies  # noqa: F401

        for name in self.policies:
            if name not in POLICIES:
                raise ValueError(f"policies: unknown policy {name!r}; accepted: "
                                 f"{', '.join(POLICIES.names())}")
        hosts = set(self.topology.link_names())
        for fault in self.faults:
            if fault.target not in hosts:
                raise ValueError(f"faults.target: unknown host {fault.target!r}; accepted: "
                                 f"{', '.join(sorted(hosts))}")
            group = self.nodes.cloud if fault.target == "cloud" else self.nodes.edge
            if fault.kind == "slow-node" and not group.profile:
                # An unpaced node runs at its machine's own speed: there is no pace to slow.
                raise ValueError(f"faults.target: slow-node needs a paced node (a hardware "
                                 f"profile); {fault.target!r} has profile None")
        return self


class SpecError(ValueError):
    """A scenario file that does not validate; the message names the key and the value."""


def resolve_data_path(path: Path | str) -> Path:
    """A data file named in a spec: as given (absolute or from the working directory), else
    under scenarios/, else under the repository root."""
    path = Path(path)
    if path.is_absolute() or path.exists():
        return path
    for root in (SCENARIO_DIR, SCENARIO_DIR.parent):
        if (root / path).exists():
            return root / path
    return path


def available() -> list[str]:
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.yaml"))


def resolve_path(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.exists():
        return path
    candidate = SCENARIO_DIR / f"{name_or_path}.yaml"
    if candidate.exists():
        return candidate
    raise SpecError(f"unknown scenario {name_or_path!r}; available: {', '.join(available())}")


def load_spec(name_or_path: str, **overrides: object) -> ScenarioSpec:
    """Load a scenario by name (scenarios/NAME.yaml) or path; overrides are dotted keys."""
    path = resolve_path(name_or_path)
    data = yaml.safe_load(path.read_text()) or {}
    for dotted, value in overrides.items():
        if value is None:
            continue
        cursor = data
        *parents, leaf = dotted.split(".")
        for key in parents:
            cursor = cursor.setdefault(key, {})
        cursor[leaf] = value
    try:
        return ScenarioSpec.model_validate(data)
    except ValidationError as exc:
        lines = [f"{path}: invalid scenario"]
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"]) or "(top level)"
            lines.append(f"  {key}: {err['msg']} (got {err.get('input')!r})")
        raise SpecError("\n".join(lines)) from None
