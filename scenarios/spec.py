"""The scenario spec: one typed config tree loaded from YAML (unknown keys are errors).

topology (testbed/spec.py) + nodes + workload + scheduler + policies + faults + seed.
The workload's keys (arrival processes, the Azure trace source, output lengths, requirement
rules) are described in scenarios/workload.py's docstring.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (Discriminator, Field, Tag, ValidationError, ValidationInfo,
                      field_validator, model_validator)

from scheduler.energy_models import (DEFAULT_NIC_POWER_W, DEFAULT_POWER, DEFAULT_TRANSMISSION,
                                     POWER_MODELS, TRANSMISSION_MODELS, EnergyModel)
from scheduler.information import MAX_DECLARED_ERROR
from nodes.slowdown import MAX_SLOWDOWN_FACTOR
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

    @field_validator("model")
    @classmethod
    def _power_registered(cls, name: str) -> str:
        if name not in POWER_MODELS:
            raise ValueError(f"energy.model: unknown {name!r}; accepted: "
                             f"{', '.join(POWER_MODELS.names())}")
        return name

    @field_validator("transmission")
    @classmethod
    def _transmission_registered(cls, name: str) -> str:
        if name not in TRANSMISSION_MODELS:
            raise ValueError(f"energy.transmission: unknown {name!r}; accepted: "
                             f"{', '.join(TRANSMISSION_MODELS.names())}")
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


class LognormalParams(Strict):
    median: float = Field(gt=0.0, le=1e6, description="Median output length, tokens")
    sigma: float = Field(gt=0.0, le=5.0, description="Standard deviation of ln(length)")


class LognormalLength(Strict):
    lognormal: LognormalParams


class EmpiricalParams(Strict):
    values: list[Annotated[int, Field(ge=1, le=1_000_000)]] = Field(min_length=1)
    weights: list[Annotated[float, Field(gt=0.0)]] | None = Field(
        None, description="One per value; None = equally likely")

    @model_validator(mode="after")
    def _same_length(self) -> "EmpiricalParams":
        if self.weights is not None and len(self.weights) != len(self.values):
            raise ValueError(f"empirical.weights: need one weight per value ({len(self.values)}"
                             f" values), got {len(self.weights)} weights")
        return self


class EmpiricalLength(Strict):
    empirical: EmpiricalParams


def _output_length_kind(value: Any) -> str | None:
    """Which shape an output_length is (YAML or an already built model); None: none of them."""
    if isinstance(value, str):
        return "cap"
    if isinstance(value, (LognormalLength, EmpiricalLength)):
        return next(iter(type(value).model_fields))
    if isinstance(value, dict) and len(value) == 1 and set(value) <= {"lognormal", "empirical"}:
        return next(iter(value))
    return None  # pydantic reports OUTPUT_LENGTH_SHAPES


OUTPUT_LENGTH_SHAPES = "'cap', {lognormal: {median, sigma}} or {empirical: {values, weights}}"
OutputLength = Annotated[
    Annotated[Literal["cap"], Tag("cap")] | Annotated[LognormalLength, Tag("lognormal")]
    | Annotated[EmpiricalLength, Tag("empirical")],
    Discriminator(_output_length_kind, custom_error_type="output_length",
                  custom_error_message=f"expected {OUTPUT_LENGTH_SHAPES}")]


def _range(key: str, pair: tuple[int, int] | None, low: int) -> None:
    if pair is not None and not low <= pair[0] <= pair[1]:
        raise ValueError(f"{key}: need 0 <= lo <= hi (and tokens >= 1), got [{pair[0]}, "
                         f"{pair[1]}]")


class ServiceClassSpec(Strict):
    name: str
    weight: float = Field(1.0, gt=0.0)
    input_bytes: tuple[int, int] = Field((1_000, 10_000), description="Uniform [lo, hi] bytes")
    max_new_tokens: tuple[int, int] = Field(
        (16, 64), description="Uniform [lo, hi] tokens: the cap the client declares")
    # Uploads that are not all text (a scanned document, a PDF with images) cost bandwidth
    # without costing prefill: the model reads prompt_tokens, not input_bytes / 4.
    prompt_tokens: tuple[int, int] | None = Field(
        None, description="Uniform [lo, hi] tokens to prefill; None = estimate from input_bytes")
    output_length: OutputLength = Field(
        "cap", description="The true output length: 'cap' (= max_new_tokens), a lognormal or "
                           "an empirical distribution, clipped to [1, max_new_tokens]")
    deadline_s: tuple[float, float] | None = Field(
        None, description="Uniform [lo, hi] requirement of this class; None = the workload's")
    # Only with arrival.process azure-trace (the trace gives the text's size, not the upload's):
    attachment_bytes: tuple[int, int] | None = Field(
        None, description="azure-trace: uniform [lo, hi] bytes uploaded besides the text")
    context_tokens: tuple[int, int] | None = Field(
        None, description="azure-trace: the rows whose ContextTokens are in [lo, hi] take "
                          "this class (the first class that matches); None = every row")

    @model_validator(mode="after")
    def _ranges(self) -> "ServiceClassSpec":
        for key in ("input_bytes", "attachment_bytes", "context_tokens"):
            _range(key, getattr(self, key), 0)
        for key in ("max_new_tokens", "prompt_tokens"):
            _range(key, getattr(self, key), 1)
        if self.deadline_s is not None and not 0 < self.deadline_s[0] <= self.deadline_s[1]:
            raise ValueError(f"deadline_s: need 0 < lo <= hi, got [{self.deadline_s[0]:g}, "
                             f"{self.deadline_s[1]:g}]")
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


def _changed(model: Strict, key: str) -> bool:
    # A value, not "the key was written": a resolved config.yaml (every default written out)
    # must load again.
    return getattr(model, key) != type(model).model_fields[key].default


AZURE_TRACE = "azure-trace"
# Keys that mean something for one kind of source only; a value other than the default for
# another kind of source is an error.
_AZURE_WINDOW_KEYS = ("start_s", "duration_s", "count", "time_scale")


class ArrivalSpec(Strict):
    # poisson-bursts: the superposition of a Poisson stream at rate_per_s and bursts of
    # burst_size simultaneous services every burst_every_s (many users uploading at once).
    # azure-trace: the Azure LLM inference trace replayed row by row (scenarios/azure_trace.py):
    # arrivals, prompt sizes and true output lengths all come from the file.
    process: Literal["poisson", "bursts", "poisson-bursts", "trace", "azure-trace"] = "poisson"
    rate_per_s: float = Field(2.0, gt=0.0, description="Mean arrivals per second (Poisson part)")
    burst_size: int = Field(10, ge=1, description="bursts: services per burst")
    burst_every_s: float = Field(5.0, gt=0.0, description="bursts: time between bursts")
    trace: Path | None = Field(None, description="trace: CSV of arrival_s[,class]; azure-trace: "
                                                 "CSV of TIMESTAMP,ContextTokens,GeneratedTokens")
    start_s: float = Field(0.0, ge=0.0, description="azure-trace: window start, trace seconds "
                                                    "after its first row")
    duration_s: float | None = Field(None, gt=0.0, description="azure-trace: window length, "
                                                               "trace seconds; None = to the end")
    count: int | None = Field(None, ge=1, description="azure-trace: at most this many rows")
    time_scale: float = Field(1.0, gt=0.0, le=1e3, description="azure-trace: multiplies every "
                              "arrival time: 0.5 halves the gaps (twice the rate), 2 doubles them")

    @model_validator(mode="after")
    def _trace_needs_file(self) -> "ArrivalSpec":
        if self.process in ("trace", AZURE_TRACE) and self.trace is None:
            raise ValueError(f"arrival.trace: a CSV path is required when process is "
                             f"{self.process!r}")
        if self.process != AZURE_TRACE:
            for key in _AZURE_WINDOW_KEYS:
                if _changed(self, key):
                    raise ValueError(f"arrival.{key}: only used with process 'azure-trace' "
                                     f"(got {key}={getattr(self, key)!r} with process "
                                     f"{self.process!r})")
        return self


class DeadlineRule(Strict):
    """A requirement proportional to the service's size, from what its client declares:
    base_s + per_prompt_token_s * prompt tokens + per_output_token_s * max_new_tokens. The true
    output length is never used: the policy sees deadline_s, and a requirement derived from the
    true length would tell it what a real scheduler cannot know before the answer ends."""

    base_s: float = Field(gt=0.0, le=1e5)
    per_prompt_token_s: float = Field(0.0, ge=0.0, le=10.0)
    per_output_token_s: float = Field(0.0, ge=0.0, le=10.0)


# Class keys the Azure trace replaces (it gives the sizes and the true length; classes are
# picked by context_tokens, not drawn by weight), and the keys only the trace uses.
_TRACE_REPLACES = ("weight", "input_bytes", "prompt_tokens", "output_length")
_TRACE_ONLY = ("attachment_bytes", "context_tokens")


class WorkloadSpec(Strict):
    requests: int = Field(200, ge=1, le=1_000_000, description="Services to generate; with a "
                          "trace (trace, azure-trace): at most this many, the first ones")
    arrival: ArrivalSpec = ArrivalSpec()
    deadline_s: tuple[float, float] = Field((2.0, 6.0), description="Uniform requirement range")
    deadline_rule: DeadlineRule | None = Field(
        None, description="Requirement proportional to size instead of deadline_s")
    classes: list[ServiceClassSpec] = Field(default_factory=_default_classes, min_length=1)
    temperature: float = Field(0.8, ge=0.0)
    top_k: int = Field(200, ge=0)
    give_up_s: float = Field(
        120.0, gt=0.0, description="A service unfinished this long after its arrival is "
        "failed ('gave up'); bounds a run whose queues never drain. Same rule in both worlds.")

    @field_validator("classes")
    @classmethod
    def _classes_fit_the_source(cls, classes: list[ServiceClassSpec],
                                info: ValidationInfo) -> list[ServiceClassSpec]:
        arrival = info.data.get("arrival")
        azure = arrival is not None and arrival.process == AZURE_TRACE
        names = [c.name for c in classes]
        if len(set(names)) != len(names):
            raise ValueError(f"classes: names must be unique, got {names}")
        for i, service_class in enumerate(classes):
            keys = _TRACE_REPLACES if azure else _TRACE_ONLY
            for key in keys:
                if _changed(service_class, key):
                    why = ("the trace gives it" if azure else
                           "only used with arrival.process 'azure-trace'")
                    raise ValueError(f"classes[{i}].{key}: {why} (got {key}="
                                     f"{getattr(service_class, key)!r} in class "
                                     f"{service_class.name!r})")
        if azure and classes[-1].context_tokens is not None:
            raise ValueError(f"classes[{len(classes) - 1}].context_tokens: the last class must "
                             f"take every row left (no context_tokens), got "
                             f"{classes[-1].context_tokens!r} in class {classes[-1].name!r}")
        return classes

    @model_validator(mode="after")
    def _deadline(self) -> "WorkloadSpec":
        lo, hi = self.deadline_s
        if not 0 < lo <= hi:
            raise ValueError(f"deadline_s: need 0 < lo <= hi, got [{lo}, {hi}]")
        if self.deadline_rule is not None and _changed(self, "deadline_s"):
            raise ValueError(f"deadline_s and deadline_rule: set one, not both (got deadline_s="
                             f"{list(self.deadline_s)} and deadline_rule="
                             f"{self.deadline_rule.model_dump()})")
        return self

    def describe_arrivals(self) -> str:
        """The arrival process in words, for reports."""
        a = self.arrival
        if a.process == AZURE_TRACE:
            window = [f"from {a.start_s:g} s"] + ([f"for {a.duration_s:g} s"] if a.duration_s
                                                   else []) + ([f"at most {a.count} rows"]
                                                               if a.count else [])
            return (f"Azure trace {Path(a.trace).name} ({', '.join(window)}, times x"
                    f"{a.time_scale:g})")
        return {"poisson": f"Poisson at {a.rate_per_s:g}/s",
                "bursts": f"bursts of {a.burst_size} every {a.burst_every_s:g} s",
                "poisson-bursts": f"Poisson at {a.rate_per_s:g}/s plus bursts of "
                                  f"{a.burst_size} every {a.burst_every_s:g} s",
                "trace": f"trace {a.trace}"}[a.process]

    def describe_requirement(self) -> str:
        """The requirement rule in words, for reports (a class's own range wins)."""
        if self.deadline_rule is not None:
            r = self.deadline_rule
            text = (f"{r.base_s:g} s + {r.per_prompt_token_s:g} s/prompt token + "
                    f"{r.per_output_token_s:g} s/declared output token")
        else:
            text = f"U[{self.deadline_s[0]:g}, {self.deadline_s[1]:g}] s"
        own = [f"{c.name} U[{c.deadline_s[0]:g}, {c.deadline_s[1]:g}] s" for c in self.classes
               if c.deadline_s is not None]
        return text + (f" ({'; '.join(own)})" if own else "")


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
