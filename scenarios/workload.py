"""The workload generator: when services arrive and what each one asks for.

Arrivals (`workload.arrival.process`): Poisson at a rate, bursts of services at fixed
intervals, both superposed, a trace CSV of `arrival_s[,class]`, or `azure-trace`: the Azure
LLM inference trace replayed row by row (scenarios/azure_trace.py; window and time scale there).

A synthetic service (every process but azure-trace) draws its class (by weight), a prompt from
prompts.txt (the class's group if it has one), its input size, its declared cap
`max_new_tokens` and its prompt tokens from the class's ranges, and its true output length
from the class's `output_length`:
  - `cap` (the default): the answer is as long as the cap;
  - `{lognormal: {median: M, sigma: S}}`: round(M * exp(S * z)), z standard normal;
  - `{empirical: {values: [...], weights: [...]}}`: a value drawn by weight (equal if none);
both clipped to [1, max_new_tokens].

An azure-trace row becomes a service of the first class whose `context_tokens: [lo, hi]`
holds its ContextTokens (the last class takes the rest; one class: the whole trace):
  - prompt_tokens = max(1, ContextTokens): what the model prefills;
  - input_bytes = 4 * ContextTokens (text at about 4 bytes per token, the estimate
    Service.estimated_prompt_tokens inverts) + an attachment drawn from the class's
    `attachment_bytes: [lo, hi]` (uniform; none by default), and never less than the prompt;
  - max_new_tokens: drawn from the class's range as for a synthetic class (a fixed declared
    cap is `[1024, 1024]`);
  - the true output length = GeneratedTokens clipped to [1, max_new_tokens]; the rows that
    the cap clips are counted in one warning per generated workload.
`requests` is then at most this many: the first rows of the window.

The processing-time requirement `deadline_s`, in order of precedence: the class's own
`deadline_s: [lo, hi]` (uniform); the workload's `deadline_rule: {base_s, per_prompt_token_s,
per_output_token_s}`: base_s + per_prompt_token_s * prompt tokens + per_output_token_s *
max_new_tokens, from what the client declares (never the true length, which the policy must
not learn from deadline_s); else the workload's `deadline_s: [lo, hi]` (uniform; PerLLM
section 5.1: U[2 s, 6 s]).

Everything follows from the seed, so every policy of a run sees the identical workload. The
arrivals, the services' attributes and the true lengths draw from three independent streams:
changing one (another arrival process, another output_length) leaves the others unchanged.
"""

from __future__ import annotations

import bisect
import csv
import dataclasses
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from scenarios import azure_trace
from scenarios.spec import (AZURE_TRACE, SCENARIO_DIR, ArrivalSpec, EmpiricalLength,
                            LognormalLength, ServiceClassSpec, WorkloadSpec, resolve_data_path)
from scheduler.service import Service

log = logging.getLogger(__name__)
# Text at about 4 bytes per token (English BPE): what an azure-trace row's context uploads.
TRACE_BYTES_PER_TOKEN = 4

PROMPTS_PATH = SCENARIO_DIR / "prompts.txt"
ATTACHMENT_BLOCK_BYTES = 4096
_WORDS = ("the system report shows that network latency rose during the afternoon while the "
          "edge servers kept serving local requests and the cloud queue grew as large uploads "
          "arrived from many users at once so the team reviewed each log entry and measured "
          "throughput energy and response time before deciding what to change next").split()


@dataclass(frozen=True, slots=True)
class WorkloadItem:
    """A service as the world knows it: when it arrives, what its client declares (`service`,
    all a policy ever sees) and how long its answer really is (`output_tokens`)."""

    arrival_s: float  # seconds after the run starts
    service: Service
    # The true output length: the node generates exactly this many tokens (its model's end of
    # sequence). Known to the workload and the clairvoyant reference only; 0: the cap.
    output_tokens: int = 0

    def __post_init__(self) -> None:
        cap = self.service.max_new_tokens
        if self.output_tokens == 0:
            object.__setattr__(self, "output_tokens", cap)
        elif not 1 <= self.output_tokens <= cap:
            raise ValueError(f"output_tokens of {self.service.id} must be in [1, "
                             f"max_new_tokens={cap}] (got {self.output_tokens})")


@dataclass(frozen=True, slots=True)
class TraceRow:
    arrival_s: float
    service_class: str | None


# --------------------------------------------------------------------------- prompts


@lru_cache(maxsize=4)
def load_prompts(path: Path = PROMPTS_PATH) -> dict[str, tuple[str, ...]]:
    """Prompts grouped by class ("## NAME" headers); key "" holds every prompt."""
    groups: dict[str, list[str]] = {"": []}
    current = None
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if line.startswith("## "):
            current = line[3:].strip()
            groups.setdefault(current, [])
        elif line and not line.startswith("#"):
            groups[""].append(line)
            if current is not None:
                groups[current].append(line)
    if not groups[""]:
        raise ValueError(f"{path}: no prompts (one per line, '#' starts a comment)")
    return {name: tuple(prompts) for name, prompts in groups.items() if prompts}


def prompts_for(service_class: str, path: Path = PROMPTS_PATH) -> tuple[str, ...]:
    groups = load_prompts(path)
    return groups.get(service_class, groups[""])


# --------------------------------------------------------------------------- arrivals


def load_trace(path: Path, class_names: Sequence[str] | None = None) -> list[TraceRow]:
    """Read a trace CSV of `arrival_s[,class]` (optional header); errors name the line."""
    path = resolve_data_path(path)
    if not path.exists():
        raise FileNotFoundError(f"arrival.trace: no such file {str(path)!r}")
    rows: list[TraceRow] = []
    with path.open(newline="") as fh:
        for line_no, raw in enumerate(csv.reader(fh), start=1):
            cells = [c.strip() for c in raw]
            if not cells or not any(cells) or cells[0].startswith("#"):
                continue
            if line_no == 1 and cells[0] == "arrival_s":
                continue
            where = f"{path}:{line_no}"
            if len(cells) > 2:
                raise ValueError(f"{where}: expected arrival_s[,class], got {len(cells)} "
                                 f"columns: {raw!r}")
            try:
                arrival_s = float(cells[0])
            except ValueError:
                raise ValueError(f"{where}: arrival_s {cells[0]!r} is not a number") from None
            if not arrival_s >= 0 or arrival_s == float("inf"):
                raise ValueError(f"{where}: arrival_s must be finite and >= 0, got {cells[0]!r}")
            cls = cells[1] if len(cells) == 2 and cells[1] else None
            if cls is not None and class_names is not None and cls not in class_names:
                raise ValueError(f"{where}: class {cls!r} is not a workload class; accepted: "
                                 f"{', '.join(class_names)}")
            rows.append(TraceRow(arrival_s, cls))
    if not rows:
        raise ValueError(f"{path}: the trace has no arrivals")
    rows.sort(key=lambda r: r.arrival_s)  # stable: equal times keep their file order
    return rows


def arrival_times(arrival: ArrivalSpec, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` non-decreasing arrival times in seconds (poisson, bursts or poisson-bursts)."""
    if arrival.process == "poisson":
        # Poisson process: exponential inter-arrival times with mean 1/rate.
        return np.cumsum(rng.exponential(1.0 / arrival.rate_per_s, size=count))
    if arrival.process == "bursts":
        # burst_size services arrive together every burst_every_s, the first burst at 0.
        return (np.arange(count) // arrival.burst_size) * arrival.burst_every_s
    if arrival.process == "poisson-bursts":
        # Superposition: the first `count` of the merged streams take at most `count` from
        # each, so `count` of each suffice. Bursts start one period in (the Poisson stream
        # sets the scene first); a stable sort keeps a burst's services together.
        poisson = np.cumsum(rng.exponential(1.0 / arrival.rate_per_s, size=count))
        bursts = (np.arange(count) // arrival.burst_size + 1) * arrival.burst_every_s
        merged = np.concatenate([poisson, bursts])
        return merged[np.argsort(merged, kind="stable")][:count]
    raise ValueError(f"arrival.process {arrival.process!r}: use load_trace for traces")


# --------------------------------------------------------------------------- generation


@dataclass(frozen=True)
class _Rows:
    """What the source fixes per service: arrival times, and (a trace's) class, prompt tokens
    and true output length; None where the generator draws it."""

    times: np.ndarray
    classes: list[str | None]
    context_tokens: np.ndarray | None = None
    true_tokens: np.ndarray | None = None


def _azure_rows(spec: WorkloadSpec) -> _Rows:
    a = spec.arrival
    rows = azure_trace.window(azure_trace.read_trace(a.trace), a.start_s, a.duration_s,
                              a.count, a.time_scale)
    n = min(len(rows), spec.requests)
    context = rows.context_tokens[:n]
    classes: list[str | None] = [spec.classes[-1].name] * n
    for c in reversed(spec.classes[:-1]):  # the first class that matches wins
        if c.context_tokens is not None:
            lo, hi = c.context_tokens
            for i in np.flatnonzero((context >= lo) & (context <= hi)):
                classes[i] = c.name
    return _Rows(rows.arrival_s[:n], classes, context, rows.generated_tokens[:n])


def _source_rows(spec: WorkloadSpec, arrival_rng: np.random.Generator) -> _Rows:
    if spec.arrival.process == AZURE_TRACE:
        return _azure_rows(spec)
    if spec.arrival.process == "trace":
        trace = load_trace(spec.arrival.trace, [c.name for c in spec.classes])[: spec.requests]
        return _Rows(np.array([r.arrival_s for r in trace]), [r.service_class for r in trace])
    return _Rows(arrival_times(spec.arrival, spec.requests, arrival_rng), [None] * spec.requests)


class _OutputLength:
    """A class's true output length from one standard normal and one uniform draw per service
    (drawn for every service, whatever its class, so that one class's setting moves nothing
    else)."""

    def __init__(self, service_class: ServiceClassSpec) -> None:
        shape = service_class.output_length
        self.lognormal = shape.lognormal if isinstance(shape, LognormalLength) else None
        self.values: list[int] = []
        self.cumulative: list[float] = []
        if isinstance(shape, EmpiricalLength):
            self.values = shape.empirical.values
            self.cumulative = np.cumsum(shape.empirical.weights or [1.0] * len(self.values)
                                        ).tolist()

    def tokens(self, cap: int, normal: float, uniform: float) -> int:
        if self.lognormal is not None:
            length = round(self.lognormal.median * float(np.exp(self.lognormal.sigma * normal)))
        elif self.values:
            at = bisect.bisect_right(self.cumulative, uniform * self.cumulative[-1])
            length = self.values[min(at, len(self.values) - 1)]
        else:
            return cap
        return min(max(1, length), cap)


def _uniform(lo: float, hi: float, unit: float) -> float:
    return lo + unit * (hi - lo)


def _uniform_int(lo: int, hi: int, unit: float) -> int:
    return lo + int(unit * (hi - lo + 1))


def generate(spec: WorkloadSpec, seed: int) -> list[WorkloadItem]:
    """The services of a run, in arrival order, fully determined by (spec, seed).

    With a trace, the trace gives the arrivals (the first `requests` of them) and, where a row
    names one, the class; an Azure trace gives the sizes and true lengths too (module doc).
    """
    # Independent streams: the arrival process does not shift the services' attributes, and
    # the true output lengths shift neither.
    arrival_seq, service_seq, output_seq = np.random.SeedSequence(seed).spawn(3)
    arrival_rng = np.random.default_rng(arrival_seq)
    rng = np.random.default_rng(service_seq)
    classes = spec.classes
    by_name = {c.name: c for c in classes}
    rows = _source_rows(spec, arrival_rng)
    count = len(rows.times)

    weights = np.array([c.weight for c in classes], dtype=float)
    drawn = rng.choice(len(classes), size=count, p=weights / weights.sum())
    unit = rng.random(size=(count, 5))  # prompt, input size, tokens, deadline, prompt tokens
    seeds = rng.integers(0, 2**31 - 1, size=count)
    output_rng = np.random.default_rng(output_seq)
    normal, uniform = output_rng.standard_normal(count), output_rng.random(count)
    lengths = {c.name: _OutputLength(c) for c in classes}
    rule = spec.deadline_rule
    width = len(str(count - 1))
    clipped = 0

    items = []
    for i in range(count):
        cls = by_name[rows.classes[i]] if rows.classes[i] else classes[int(drawn[i])]
        prompts = prompts_for(cls.name)
        prompt = prompts[int(unit[i, 0] * len(prompts))]
        cap = _uniform_int(*cls.max_new_tokens, unit[i, 2])
        if rows.context_tokens is None:
            prompt_tokens = 0  # 0: the service estimates it from input_bytes
            if cls.prompt_tokens is not None:
                prompt_tokens = _uniform_int(*cls.prompt_tokens, unit[i, 4])
            input_bytes = _uniform_int(*cls.input_bytes, unit[i, 1])
            output_tokens = lengths[cls.name].tokens(cap, normal[i], uniform[i])
        else:
            context, generated = int(rows.context_tokens[i]), int(rows.true_tokens[i])
            prompt_tokens = max(1, context)
            input_bytes = TRACE_BYTES_PER_TOKEN * context
            if cls.attachment_bytes is not None:
                input_bytes += _uniform_int(*cls.attachment_bytes, unit[i, 1])
            clipped += generated > cap
            output_tokens = min(max(1, generated), cap)
        if cls.deadline_s is not None or rule is None:
            deadline_s = float(_uniform(*(cls.deadline_s or spec.deadline_s), unit[i, 3]))
        else:
            deadline_s = 1.0  # replaced below, from the service's prompt tokens and cap
        service = Service(
            id=f"s{i:0{width}d}",
            prompt=prompt,
            # input_bytes counts the prompt too, so it is never smaller than the prompt.
            input_bytes=max(input_bytes, len(prompt.encode())),
            max_new_tokens=cap,
            deadline_s=deadline_s,
            service_class=cls.name,
            temperature=spec.temperature,
            top_k=spec.top_k,
            seed=int(seeds[i]),
            prompt_tokens=prompt_tokens,
        )
        if cls.deadline_s is None and rule is not None:
            service = dataclasses.replace(service, deadline_s=rule.base_s + (
                rule.per_prompt_token_s * service.estimated_prompt_tokens
                + rule.per_output_token_s * cap))
        service.validate()
        items.append(WorkloadItem(arrival_s=float(rows.times[i]), service=service,
                                  output_tokens=output_tokens))
    if clipped:
        log.warning("%s: %d of %d rows generate more tokens than their max_new_tokens; their "
                    "true output length is clipped to the cap", spec.arrival.trace, clipped,
                    count)
    return items


@lru_cache(maxsize=64)
def _block(seed: int) -> bytes:
    rnd = random.Random(seed)
    text = []
    size = 0
    while size < ATTACHMENT_BLOCK_BYTES:
        word = rnd.choice(_WORDS)
        text.append(word)
        size += len(word) + 1
    return (" ".join(text) + "\n").encode()[:ATTACHMENT_BLOCK_BYTES]


def attachment_size(service: Service) -> int:
    """Bytes of the service's attached context: input_bytes minus the prompt's bytes."""
    return max(0, service.input_bytes - len(service.prompt.encode()))


def attachment_for(service: Service) -> bytes:
    """The service's attached context (attachment_size bytes), English-like text repeated
    from a 4 KiB block seeded by the service (same service, same bytes)."""
    size = attachment_size(service)
    if size == 0:
        return b""
    block = _block(service.seed)
    reps = -(-size // len(block))
    return (block * reps)[:size]
