"""The workload part of the scenario spec (scenarios.spec): service classes, their output
lengths, arrivals and requirement rules. The keys are described in scenarios/workload.py's
docstring; scenarios.spec re-exports these names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (Discriminator, Field, Tag, ValidationInfo, field_validator,
                      model_validator)

from testbed.spec import Strict


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
