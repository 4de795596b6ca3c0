"""The workload generator: when services arrive and what each one asks for.

Arrivals: Poisson at a rate, bursts of services at fixed intervals, both superposed, or a
trace CSV. Each service draws its class (by weight), a prompt from prompts.txt (the class's
group if it has one), its input size and token budget from the class's ranges, and its
processing-time requirement uniformly from `deadline_s` (PerLLM section 5.1: U[2 s, 6 s]).
Everything follows from the seed, so every policy of a run sees the identical workload.
"""

from __future__ import annotations

import csv
import random
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from scenarios.spec import SCENARIO_DIR, ArrivalSpec, WorkloadSpec
from scheduler.service import Service

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


def _resolve(path: Path) -> Path:
    # A relative trace path is tried from the working directory, then from scenarios/.
    if path.is_absolute() or path.exists():
        return path
    candidate = SCENARIO_DIR / path
    return candidate if candidate.exists() else path


def load_trace(path: Path, class_names: Sequence[str] | None = None) -> list[TraceRow]:
    """Read a trace CSV of `arrival_s[,class]` (optional header); errors name the line."""
    path = _resolve(Path(path))
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


def generate(spec: WorkloadSpec, seed: int) -> list[WorkloadItem]:
    """The services of a run, in arrival order, fully determined by (spec, seed).

    With a trace, the trace gives the arrivals (the first `requests` of them) and, where a row
    names one, the class.
    """
    # Independent streams: the arrival process does not shift the services' attributes.
    arrival_seq, service_seq = np.random.SeedSequence(seed).spawn(2)
    arrival_rng = np.random.default_rng(arrival_seq)
    rng = np.random.default_rng(service_seq)
    classes = spec.classes
    names = [c.name for c in classes]
    by_name = {c.name: c for c in classes}

    if spec.arrival.process == "trace":
        trace = load_trace(spec.arrival.trace, names)[: spec.requests]
        times = np.array([r.arrival_s for r in trace])
        fixed_classes = [r.service_class for r in trace]
    else:
        times = arrival_times(spec.arrival, spec.requests, arrival_rng)
        fixed_classes = [None] * spec.requests
    count = len(times)

    weights = np.array([c.weight for c in classes], dtype=float)
    drawn = rng.choice(len(classes), size=count, p=weights / weights.sum())
    unit = rng.random(size=(count, 5))  # prompt, input size, tokens, deadline, prompt tokens
    seeds = rng.integers(0, 2**31 - 1, size=count)
    lo_d, hi_d = spec.deadline_s
    width = len(str(count - 1))

    items = []
    for i in range(count):
        cls = by_name[fixed_classes[i]] if fixed_classes[i] else classes[int(drawn[i])]
        prompts = prompts_for(cls.name)
        prompt = prompts[int(unit[i, 0] * len(prompts))]
        lo_b, hi_b = cls.input_bytes
        lo_t, hi_t = cls.max_new_tokens
        # input_bytes counts the prompt too, so it is never smaller than the prompt.
        input_bytes = max(lo_b + int(unit[i, 1] * (hi_b - lo_b + 1)), len(prompt.encode()))
        prompt_tokens = 0  # 0: the service estimates it from input_bytes
        if cls.prompt_tokens is not None:
            lo_p, hi_p = cls.prompt_tokens
            prompt_tokens = lo_p + int(unit[i, 4] * (hi_p - lo_p + 1))
        service = Service(
            id=f"s{i:0{width}d}",
            prompt=prompt,
            input_bytes=input_bytes,
            max_new_tokens=lo_t + int(unit[i, 2] * (hi_t - lo_t + 1)),
            deadline_s=float(lo_d + unit[i, 3] * (hi_d - lo_d)),
            service_class=cls.name,
            temperature=spec.temperature,
            top_k=spec.top_k,
            seed=int(seeds[i]),
            prompt_tokens=prompt_tokens,
        )
        service.validate()
        items.append(WorkloadItem(arrival_s=float(times[i]), service=service))
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


def attachment_for(service: Service) -> bytes:
    """The service's attached context: input_bytes minus the prompt's bytes, English-like
    text repeated from a 4 KiB block seeded by the service (same service, same bytes)."""
    size = max(0, service.input_bytes - len(service.prompt.encode()))
    if size == 0:
        return b""
    block = _block(service.seed)
    reps = -(-size // len(block))
    return (block * reps)[:size]
