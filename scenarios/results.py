"""The results of a run, shared by the emulated runner and the simulator.

Layout: `results/<scenario>/<YYYYmmdd-HHMMSS>/` holding config.yaml, requests.csv, nodes.csv,
links.csv, summary.json, the plots and report.md (notes/CONTRACTS.md, "Results layout").
Rows are plain dataclasses so both producers fill them the same way; `summarise` checks the
accounting identity (every service has exactly one outcome, energy total = sum of parts).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_type_hints

import numpy as np
import yaml

STATUSES = ("met", "missed", "failed")
REQUESTS_CSV = "requests.csv"
NODES_CSV = "nodes.csv"
LINKS_CSV = "links.csv"
SUMMARY_JSON = "summary.json"
CONFIG_YAML = "config.yaml"


class AccountingError(AssertionError):
    """The outcomes do not add up (a service lost or counted twice, energy parts != total)."""


@dataclass(slots=True)
class RequestRow:
    """One service's outcome under one policy (a row of requests.csv)."""

    policy: str
    service_id: str
    service_class: str
    node_id: str  # "" when no node was ever chosen (e.g. rejected before dispatch)
    arrival_s: float  # since the start of this policy's run
    input_bytes: int
    tokens_in: int
    tokens_out: int
    transmission_s: float
    queueing_s: float
    inference_s: float
    total_s: float
    deadline_s: float
    status: str  # met | missed | failed
    transmission_j: float
    inference_j: float
    idle_j: float
    total_j: float
    error: str = ""
    # The processing time the scheduler predicted at decision time (D-hat); 0: no decision.
    predicted_total_s: float = 0.0

    @classmethod
    def from_outcome(cls, policy: str, outcome: Any, arrival_s: float) -> "RequestRow":
        """Build a row from a scheduler.outcome.Outcome."""
        energy = outcome.energy
        status = getattr(outcome.status, "value", outcome.status)
        return cls(
            policy=policy, service_id=outcome.service_id, service_class=outcome.service_class,
            node_id=outcome.node_id, arrival_s=float(arrival_s),
            input_bytes=int(outcome.input_bytes), tokens_in=int(outcome.tokens_in),
            tokens_out=int(outcome.tokens_out), transmission_s=float(outcome.transmission_s),
            queueing_s=float(outcome.queueing_s), inference_s=float(outcome.inference_s),
            total_s=float(outcome.total_s), deadline_s=float(outcome.deadline_s),
            status=str(status), transmission_j=float(energy.transmission_j),
            inference_j=float(energy.inference_j), idle_j=float(energy.idle_j),
            total_j=float(energy.total_j), error=outcome.error,
            predicted_total_s=float(outcome.predicted_total_s))

    @property
    def finished(self) -> bool:
        """A finished service produced an answer (met or missed its requirement)."""
        return self.status != "failed"


@dataclass(slots=True)
class NodeRow:
    """Busy/idle time and energy of one node over one policy's run (a row of nodes.csv)."""

    policy: str
    node_id: str
    kind: str  # edge | cloud
    busy_s: float
    idle_s: float
    inference_j: float
    idle_j: float  # P_idle x idle_s: the idle part of eq. 2's energy, counted once per node
    method: str  # how the energy was obtained: "modelled" (profile) or "measured" (RAPL/NVML)


@dataclass(slots=True)
class LinkRow:
    """One applied link rate (a row of links.csv)."""

    policy: str
    time_s: float
    link: str
    rate_mbit: float


_ROW_TYPES = (RequestRow, NodeRow, LinkRow)


def columns(row_type: type) -> list[str]:
    """CSV columns of a row type, in order."""
    return [f.name for f in dataclasses.fields(row_type)]


# --------------------------------------------------------------------------- run directory


def new_run_dir(scenario_name: str, root: Path = Path("results")) -> Path:
    """Create results/<scenario>/<YYYYmmdd-HHMMSS>/ (suffixed -1, -2.. if it exists)."""
    if not scenario_name or "/" in scenario_name or scenario_name in (".", ".."):
        raise ValueError(f"scenario_name must be a plain name (got {scenario_name!r})")
    parent = Path(root) / scenario_name
    parent.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(1000):
        path = parent / (stamp if n == 0 else f"{stamp}-{n}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path
    raise FileExistsError(f"{parent}: could not make a unique run directory for {stamp}")


def _atomic_write_text(path: Path, text: str) -> None:
    # tmp + rename: an interrupted run never leaves a half-written file behind.
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_config(run_dir: Path, spec: Any) -> Path:
    """Write the resolved scenario (every default filled in) as config.yaml."""
    data = spec.model_dump(mode="json")
    path = Path(run_dir) / CONFIG_YAML
    _atomic_write_text(path, yaml.safe_dump(data, sort_keys=False))
    return path


# --------------------------------------------------------------------------- CSV


def _write_csv(path: Path, row_type: type, rows: Iterable[Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    names = columns(row_type)
    with tmp.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(names)
        for row in rows:
            if not isinstance(row, row_type):
                raise TypeError(f"{path.name}: expected {row_type.__name__}, "
                                f"got {type(row).__name__}")
            writer.writerow([getattr(row, name) for name in names])
    os.replace(tmp, path)


def write_rows(run_dir: Path, requests: Sequence[RequestRow], nodes: Sequence[NodeRow],
               links: Sequence[LinkRow]) -> list[Path]:
    """Write requests.csv, nodes.csv and links.csv (each replaced whole, atomically)."""
    run_dir = Path(run_dir)
    paths = [run_dir / REQUESTS_CSV, run_dir / NODES_CSV, run_dir / LINKS_CSV]
    for path, row_type, rows in zip(paths, _ROW_TYPES, (requests, nodes, links)):
        _write_csv(path, row_type, rows)
    return paths


def _read_csv(path: Path, row_type: type) -> list[Any]:
    hints = get_type_hints(row_type)
    names = columns(row_type)
    rows = []
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames != names:
            raise ValueError(f"{path}: columns {reader.fieldnames} != expected {names}")
        for line, raw in enumerate(reader, start=2):
            try:
                rows.append(row_type(**{k: hints[k](raw[k]) for k in names}))
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{path}:{line}: {exc}") from None
    return rows


def read_rows(run_dir: Path) -> tuple[list[RequestRow], list[NodeRow], list[LinkRow]]:
    """Read back the three CSVs of a run directory (missing files read as empty)."""
    run_dir = Path(run_dir)
    out = []
    for name, row_type in zip((REQUESTS_CSV, NODES_CSV, LINKS_CSV), _ROW_TYPES):
        path = run_dir / name
        out.append(_read_csv(path, row_type) if path.exists() else [])
    return out[0], out[1], out[2]


# --------------------------------------------------------------------------- summary


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-6)


def _policies_in_order(requests: Sequence[RequestRow], nodes: Sequence[NodeRow]) -> list[str]:
    seen: dict[str, None] = {}
    for row in (*requests, *nodes):
        seen.setdefault(row.policy, None)
    return list(seen)


def summarise(requests: Sequence[RequestRow], nodes: Sequence[NodeRow],
              generated: int | None = None) -> dict[str, dict[str, Any]]:
    """Per-policy success, time, throughput and energy; raises AccountingError if they don't add up.

    `generated`: the number of services the workload generated; every policy must then have
    exactly that many rows (no service lost, none counted twice).
    """
    summary: dict[str, dict[str, Any]] = {}
    for policy in _policies_in_order(requests, nodes):
        rows = [r for r in requests if r.policy == policy]
        ids = Counter(r.service_id for r in rows)
        dupes = [sid for sid, n in ids.items() if n > 1]
        if dupes:
            raise AccountingError(f"policy {policy}: services recorded more than once: "
                                  f"{', '.join(sorted(dupes)[:5])}")
        if generated is not None and len(rows) != generated:
            raise AccountingError(f"policy {policy}: {len(rows)} outcomes recorded for "
                                  f"{generated} generated services")
        counts = Counter(r.status for r in rows)
        unknown = set(counts) - set(STATUSES)
        if unknown:
            raise AccountingError(f"policy {policy}: status {sorted(unknown)} not one of "
                                  f"{', '.join(STATUSES)}")
        for r in rows:
            parts = r.transmission_j + r.inference_j + r.idle_j
            if not _close(r.total_j, parts):
                raise AccountingError(f"policy {policy}, service {r.service_id}: total_j "
                                      f"{r.total_j} != sum of parts {parts}")
        met, missed, failed = (counts.get(s, 0) for s in STATUSES)
        if met + missed + failed != len(rows):
            raise AccountingError(f"policy {policy}: met {met} + missed {missed} + failed "
                                  f"{failed} != requests {len(rows)}")

        finished = [r for r in rows if r.finished]
        totals = np.array([r.total_s for r in finished], dtype=float)
        if finished and rows:
            start = min(r.arrival_s for r in rows)
            end = max(r.arrival_s + r.total_s for r in finished)
            makespan = end - start
        else:
            makespan = 0.0
        tokens_out = sum(r.tokens_out for r in finished)
        node_rows = [n for n in nodes if n.policy == policy]
        # Energy the system spent (eq. 2's parts): transmission from the requests (interface
        # counters in emulation), inference and idle from the nodes over the run. The nodes'
        # inference energy also holds work on services that were later failed or abandoned,
        # which the request rows cannot carry; without node rows, the requests' sum stands.
        requests_inference = float(sum(r.inference_j for r in rows))
        energy = {
            "transmission": float(sum(r.transmission_j for r in rows)),
            "inference": (float(sum(n.inference_j for n in node_rows)) if node_rows
                          else requests_inference),
            "idle": float(sum(n.idle_j for n in node_rows)),
        }
        energy["total"] = energy["transmission"] + energy["inference"] + energy["idle"]
        reasons = Counter(r.error or "unknown" for r in rows if r.status == "failed")
        # Measured minus predicted processing time of the finished services that were decided
        # (> 0: slower than the scheduler believed at decision time).
        errors = np.array([r.total_s - r.predicted_total_s for r in finished
                           if r.predicted_total_s > 0], dtype=float)
        summary[policy] = {
            "requests": len(rows),
            "met": met,
            "missed": missed,
            "failed": failed,
            "success_rate": met / len(rows) if rows else 0.0,
            "mean_total_s": float(totals.mean()) if totals.size else None,
            "p95_total_s": float(np.percentile(totals, 95)) if totals.size else None,
            "throughput_tok_s": tokens_out / makespan if makespan > 0 else 0.0,
            "tokens_out": int(tokens_out),
            "makespan_s": float(makespan),
            "energy_j": energy,
            # Inference energy the request rows do not account for (failed or abandoned work).
            "inference_unattributed_j": energy["inference"] - requests_inference,
            "failure_reasons": dict(reasons.most_common()),
            "prediction_error_s": None if not errors.size else {
                "mean": float(errors.mean()),
                "mean_abs": float(np.abs(errors).mean()),
                "p95_abs": float(np.percentile(np.abs(errors), 95))},
        }
    return summary


# The policy every ratio table compares the others against: the paper's (PerLLM's CS-UCB).
REFERENCE_POLICY = "cs-ucb"


def ratios(summary: dict[str, dict[str, Any]], reference: str = REFERENCE_POLICY
           ) -> dict[str, dict[str, float | None]]:
    """Reference / each other policy: throughput ratio (>1: reference faster) and energy ratio
    (<1: reference cheaper). None where the other policy's value is zero."""
    if reference not in summary:
        raise KeyError(f"reference policy {reference!r} not in summary; have: "
                       f"{', '.join(summary) or '(none)'}")
    ref = summary[reference]
    out: dict[str, dict[str, float | None]] = {}
    for policy, stats in summary.items():
        if policy == reference:
            continue
        tp, energy = stats["throughput_tok_s"], stats["energy_j"]["total"]
        out[policy] = {
            "throughput": ref["throughput_tok_s"] / tp if tp else None,
            "energy": ref["energy_j"]["total"] / energy if energy else None,
            "success_rate_delta": ref["success_rate"] - stats["success_rate"],
        }
    return out


def write_summary(run_dir: Path, summary: dict[str, dict[str, Any]], incomplete: bool = False,
                  extra: dict[str, Any] | None = None) -> Path:
    """Write summary.json: {"incomplete", "policies", "ratios" (vs the reference policy, if it
    ran), **extra}."""
    data: dict[str, Any] = {"incomplete": bool(incomplete), "policies": summary}
    if REFERENCE_POLICY in summary and len(summary) > 1:
        data["ratios"] = {"reference": REFERENCE_POLICY, "vs": ratios(summary)}
    data.update(extra or {})
    path = Path(run_dir) / SUMMARY_JSON
    _atomic_write_text(path, json.dumps(data, indent=2) + "\n")
    return path


def read_summary(run_dir: Path) -> dict[str, Any]:
    """The whole summary.json of a run directory."""
    return json.loads((Path(run_dir) / SUMMARY_JSON).read_text())


@dataclass(frozen=True, slots=True)
class Column:
    """One column of the per-policy results table, shared by report.md and the terminal."""

    header: str  # report.md's heading
    short: str  # the terminal's heading
    width: int  # the terminal's width in characters
    get: Callable[[str, dict[str, Any]], Any]  # (policy, its summary) -> value; None: no value
    fmt: str = "{}"  # str.format template for a value
    left: bool = False  # left-aligned (the policy name); numbers are right-aligned

    def cell(self, policy: str, stats: dict[str, Any], missing: str = "-") -> str:
        value = self.get(policy, stats)
        return missing if value is None else self.fmt.format(value)


def _energy(part: str) -> Callable[[str, dict[str, Any]], float]:
    return lambda _policy, s: s["energy_j"][part]


OUTCOMES_COLUMN = Column("met / missed / failed", "met/miss/fail", 20,
                         lambda _p, s: (s["met"], s["missed"], s["failed"]),
                         "{0[0]} / {0[1]} / {0[2]}")
# report.md's order; the terminal keeps the outcome counts last (TERMINAL_COLUMNS).
SUMMARY_COLUMNS = (
    Column("policy", "policy", 14, lambda policy, _s: policy, left=True),
    Column("success", "success", 9, lambda _p, s: 100 * s["success_rate"], "{:.1f}%"),
    OUTCOMES_COLUMN,
    Column("mean s", "mean s", 9, lambda _p, s: s["mean_total_s"], "{:.2f}"),
    Column("p95 s", "p95 s", 9, lambda _p, s: s["p95_total_s"], "{:.2f}"),
    Column("throughput tok/s", "tok/s", 9, lambda _p, s: s["throughput_tok_s"], "{:.2f}"),
    Column("E transmission J", "E_tx J", 11, _energy("transmission"), "{:.1f}"),
    Column("E inference J", "E_inf J", 11, _energy("inference"), "{:.1f}"),
    Column("E idle J", "E_idle J", 11, _energy("idle"), "{:.1f}"),
    Column("E total J", "E_total J", 11, _energy("total"), "{:.1f}"),
    # Mean |measured - predicted| processing time of the finished services (D-hat at decision).
    Column("mean abs D-hat error s", "|err| s", 10,
           lambda _p, s: (s.get("prediction_error_s") or {}).get("mean_abs"), "{:.2f}"),
)
TERMINAL_COLUMNS = tuple(c for c in SUMMARY_COLUMNS if c is not OUTCOMES_COLUMN) + (
    OUTCOMES_COLUMN,)


def format_table(summary: dict[str, dict[str, Any]], ceiling: dict[str, Any] | None = None) -> str:
    """A fixed-width comparison table for the terminal (columns: TERMINAL_COLUMNS), and the
    workload's ceiling (simulator.ceiling) under it when given."""

    def line(cells: Iterable[str]) -> str:
        return "".join(f"{text:<{c.width}}" if c.left else f"{text:>{c.width}}"
                       for c, text in zip(TERMINAL_COLUMNS, cells))

    head = line(c.short for c in TERMINAL_COLUMNS)
    lines = [head, "-" * len(head)]
    lines += [line(c.cell(policy, s) for c in TERMINAL_COLUMNS) for policy, s in summary.items()]
    if ceiling:
        lines.append(format_ceiling(ceiling))
    return "\n".join(lines)


def format_ceiling(ceiling: dict[str, Any] | None) -> str:
    """The per-service ceiling (simulator.ceiling) in one line; "" when there is none."""
    if not ceiling:
        return ""
    return (f"ceiling: {ceiling['success_rate']:.1f}% of the services could meet their "
            f"requirement alone on an idle system at their best node (no policy can do better "
            f"in the simulated world); their mean best time {ceiling['mean_best_total_s']:.2f} s")


def format_ratios(summary: dict[str, dict[str, Any]], reference: str = REFERENCE_POLICY) -> str:
    """One line per other policy: throughput and energy ratios and the success difference;
    "" when the reference did not run or ran alone."""
    if reference not in summary or len(summary) < 2:
        return ""
    lines = []
    for other, figures in ratios(summary, reference).items():
        tp, energy = figures["throughput"], figures["energy"]
        lines.append(f"{reference} / {other}: throughput "
                     f"{'-' if tp is None else f'{tp:.2f}x'}, energy "
                     f"{'-' if energy is None else f'{energy:.2f}x'}, success "
                     f"{figures['success_rate_delta'] * 100:+.1f} points")
    return "\n".join(lines)
