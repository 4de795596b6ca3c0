"""The scenario spec: one typed config tree loaded from YAML (unknown keys are errors).

topology (testbed/spec.py) + nodes + workload + scheduler + policies + faults + seed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

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
    cloud: NodeGroupSpec = NodeGroupSpec(profile="a100-40gb/llama2-33b", slots=8)


class ServiceClassSpec(Strict):
    name: str
    weight: float = Field(1.0, gt=0.0)
    input_bytes: tuple[int, int] = Field((1_000, 10_000), description="Uniform [lo, hi] bytes")
    max_new_tokens: tuple[int, int] = Field((16, 64), description="Uniform [lo, hi] tokens")
    # Uploads that are not all text (a scanned document, a PDF with images) cost bandwidth
    # without costing prefill: the model reads prompt_tokens, not input_bytes / 4.
    prompt_tokens: tuple[int, int] | None = Field(
        None, description="Uniform [lo, hi] tokens to prefill; None = estimate from input_bytes")

    @model_validator(mode="after")
    def _ranges(self) -> "ServiceClassSpec":
        for key in ("input_bytes", "max_new_tokens", "prompt_tokens"):
            if getattr(self, key) is None:
                continue
            lo, hi = getattr(self, key)
            if lo < 0 or hi < lo or (key != "input_bytes" and lo < 1):
                raise ValueError(f"{key}: need 0 <= lo <= hi (and tokens >= 1), got [{lo}, {hi}]")
        return self


def _default_classes() -> list[ServiceClassSpec]:
    return [
        ServiceClassSpec(name="chat", weight=0.5, input_bytes=(500, 4_000),
                         max_new_tokens=(16, 48)),
        ServiceClassSpec(name="summarise", weight=0.3, input_bytes=(200_000, 1_500_000),
                         max_new_tokens=(16, 32)),
        ServiceClassSpec(name="generate", weight=0.2, input_bytes=(500, 2_000),
                         max_new_tokens=(64, 128)),
    ]


class ArrivalSpec(Strict):
    # poisson-bursts: the superposition of a Poisson stream at rate_per_s and bursts of
    # burst_size simultaneous services every burst_every_s (many users uploading at once).
    process: Literal["poisson", "bursts", "poisson-bursts", "trace"] = "poisson"
    rate_per_s: float = Field(2.0, gt=0.0, description="Mean arrivals per second (Poisson part)")
    burst_size: int = Field(10, ge=1, description="bursts: services per burst")
    burst_every_s: float = Field(5.0, gt=0.0, description="bursts: time between bursts")
    trace: Path | None = Field(None, description="trace: CSV of arrival_s[,class]")

    @model_validator(mode="after")
    def _trace_needs_file(self) -> "ArrivalSpec":
        if self.process == "trace" and self.trace is None:
            raise ValueError("arrival.trace: a CSV path is required when process is 'trace'")
        return self


class WorkloadSpec(Strict):
    requests: int = Field(200, ge=1, le=1_000_000)
    arrival: ArrivalSpec = ArrivalSpec()
    deadline_s: tuple[float, float] = Field((2.0, 6.0), description="Uniform requirement range")
    classes: list[ServiceClassSpec] = Field(default_factory=_default_classes, min_length=1)
    temperature: float = Field(0.8, ge=0.0)
    top_k: int = Field(200, ge=0)
    give_up_s: float = Field(
        120.0, gt=0.0, description="A service unfinished this long after its arrival is "
        "failed ('gave up'); bounds a run whose queues never drain. Same rule in both worlds.")

    @model_validator(mode="after")
    def _deadline(self) -> "WorkloadSpec":
        lo, hi = self.deadline_s
        if not 0 < lo <= hi:
            raise ValueError(f"deadline_s: need 0 < lo <= hi, got [{lo}, {hi}]")
        return self


class SchedulerSpec(Strict):
    bandwidth_source: Literal["true", "measured", "nominal"] = Field(
        "true", description="What bandwidth the constraint mechanism is fed")
    heartbeat_interval_s: float = Field(0.5, gt=0.0)
    heartbeat_timeout_s: float = Field(3.0, gt=0.0)


class FaultSpec(Strict):
    at_s: float = Field(ge=0.0)
    kind: Literal["kill-node", "link-down"]
    target: str
    duration_s: float = Field(0.0, ge=0.0, description="link-down: seconds until back up")


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
        return self


class SpecError(ValueError):
    """A scenario file that does not validate; the message names the key and the value."""


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
