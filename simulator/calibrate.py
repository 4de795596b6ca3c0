"""`python -m simulator calibrate RUN_DIR`: fit the simulator to an emulated run.

From requests.csv, nodes.csv and links.csv of an emulated results folder it fits, per node:
- prefill and decode rates and the concurrency slow-down s, from
  inference_s = (tokens_in / prefill + tokens_out / decode) · (1 + s·(n̄ − 1)),
  where n̄ is the mean number of the node's services running alongside (from the intervals
  [arrival + transmission + queueing, arrival + total]); least squares for 1/prefill and
  1/decode at each s of a grid, keeping the s of least squared error;
- idle power (idle_j / idle_s) and peak power from the busy power
  P_busy = P_idle + (P_max − P_idle)·ū, with ū the mean slot utilisation while busy;
and per link an efficiency: achieved goodput × concurrent uploads / applied rate (median),
which the simulator multiplies into the link's rate (TCP and HTB overheads).
Writes a YAML the simulator reads with `--calibration PATH`.
"""

from __future__ import annotations

import argparse
import bisect
from pathlib import Path
from statistics import median
from typing import Any

import numpy as np
import yaml

from scenarios.results import CONFIG_YAML, LinkRow, NodeRow, RequestRow, read_rows
from scenarios.spec import ScenarioSpec

SLOWDOWN_GRID = np.linspace(0.0, 2.0, 201)


def mean_overlap(intervals: list[tuple[float, float]]) -> list[float]:
    """For each interval, 1 + (time others overlap it) / its length: mean concurrency."""
    starts = np.array([a for a, _ in intervals])
    ends = np.array([b for _, b in intervals])
    out = []
    for i, (a, b) in enumerate(intervals):
        length = b - a
        if length <= 0:
            out.append(1.0)
            continue
        overlap = np.clip(np.minimum(ends, b) - np.maximum(starts, a), 0.0, None)
        out.append(1.0 + (overlap.sum() - length) / length)
    return out


def fit_rates(rows: list[RequestRow], concurrency: list[float]) -> dict[str, float] | None:
    """(prefill_tok_s, decode_tok_s, concurrency_slowdown, residual) or None if unfittable."""
    x = np.array([[r.tokens_in, r.tokens_out] for r in rows], dtype=float)
    y = np.array([r.inference_s for r in rows], dtype=float)
    n = np.array(concurrency)
    best = None
    for s in SLOWDOWN_GRID:
        factor = 1.0 + s * (n - 1.0)
        coef, *_ = np.linalg.lstsq(x * factor[:, None], y, rcond=None)
        if np.any(coef <= 0):
            continue
        err = float(np.sum((x * factor[:, None] @ coef - y) ** 2))
        if best is None or err < best[0] - 1e-12:
            best = (err, s, coef)
    if best is None:
        return None
    err, s, (a, b) = best
    return {"prefill_tok_s": float(1 / a), "decode_tok_s": float(1 / b),
            "concurrency_slowdown": float(s), "rms_error_s": float(np.sqrt(err / len(y)))}


def fit_power(node_rows: list[NodeRow], rows: list[RequestRow], slots: int,
              default_idle_w: float, default_max_w: float) -> dict[str, float]:
    idle_s = sum(n.idle_s for n in node_rows)
    idle_j = sum(n.idle_j for n in node_rows)
    busy_s = sum(n.busy_s for n in node_rows)
    inference_j = sum(n.inference_j for n in node_rows)
    idle_w = idle_j / idle_s if idle_s > 0 else default_idle_w
    max_w = default_max_w
    work_s = sum(r.inference_s for r in rows)
    if busy_s > 0 and work_s > 0:
        utilisation = min(1.0, work_s / (busy_s * slots))
        busy_w = inference_j / busy_s
        max_w = max(idle_w, idle_w + (busy_w - idle_w) / utilisation)
    return {"idle_power_w": float(idle_w), "max_power_w": float(max_w)}


def _rate_at(changes: list[LinkRow], time_s: float, nominal: float) -> float:
    times = [c.time_s for c in changes]
    i = bisect.bisect_right(times, time_s) - 1
    return changes[i].rate_mbit if i >= 0 else nominal


def fit_link(rows: list[RequestRow], changes: list[LinkRow], nominal: float) -> float | None:
    rows = [r for r in rows if r.transmission_s > 0 and r.input_bytes > 0]
    if not rows:
        return None
    intervals = [(r.arrival_s, r.arrival_s + r.transmission_s) for r in rows]
    sharing = mean_overlap(intervals)
    ratios = []
    for r, n in zip(rows, sharing):
        applied = _rate_at(changes, r.arrival_s, nominal)
        if applied > 0:
            ratios.append(r.input_bytes * 8 / 1e6 / r.transmission_s * n / applied)
    return float(min(1.0, median(ratios))) if ratios else None


def calibrate(run_dir: Path) -> tuple[dict[str, Any], ScenarioSpec]:
    """The calibration document (YAML-ready) of an emulated results folder."""
    from nodes.profile import load_profile

    run_dir = Path(run_dir)
    spec = ScenarioSpec.model_validate(yaml.safe_load((run_dir / CONFIG_YAML).read_text()))
    requests, nodes, links = read_rows(run_dir)
    if not requests:
        raise ValueError(f"{run_dir}: requests.csv is missing or empty")
    doc: dict[str, Any] = {"source": str(run_dir), "scenario": spec.name, "nodes": {},
                           "links": {}}
    for node_id in spec.topology.link_names():
        kind = "cloud" if node_id == "cloud" else "edge"
        group = spec.nodes.cloud if kind == "cloud" else spec.nodes.edge
        prior = load_profile(group.profile) if group.profile else None
        done = [r for r in requests if r.node_id == node_id and r.status != "failed"
                and r.inference_s > 0]
        entry: dict[str, Any] = {"name": f"calibrated/{node_id}", "samples": len(done)}
        fitted = None
        if len(done) >= 2:
            by_policy: dict[str, list[RequestRow]] = {}
            for r in done:
                by_policy.setdefault(r.policy, []).append(r)
            concurrency: dict[str, float] = {}
            for policy, rs in by_policy.items():  # runs of different policies never overlap
                spans = [(r.arrival_s + r.transmission_s + r.queueing_s,
                          r.arrival_s + r.total_s) for r in rs]
                for r, n in zip(rs, mean_overlap(spans)):
                    concurrency[f"{policy}/{r.service_id}"] = n
            fitted = fit_rates(done, [concurrency[f"{r.policy}/{r.service_id}"] for r in done])
        if fitted is None:
            if prior is None:
                continue  # nothing measured and no profile: the node keeps its spec
            fitted = {"prefill_tok_s": prior.prefill_tok_s, "decode_tok_s": prior.decode_tok_s,
                      "concurrency_slowdown": prior.concurrency_slowdown, "rms_error_s": None}
            entry["rates_from"] = f"profile {prior.name} (too few outcomes to fit)"
        entry.update(fitted)
        entry.update(fit_power([n for n in nodes if n.node_id == node_id], done, group.slots,
                               prior.idle_power_w if prior else 0.0,
                               prior.max_power_w if prior else 0.0))
        doc["nodes"][node_id] = entry
        # Links: the policies' runs are separate testbeds; pool their uploads per policy.
        efficiencies = []
        for policy in {r.policy for r in requests}:
            eff = fit_link([r for r in requests if r.node_id == node_id and r.policy == policy],
                           sorted((c for c in links if c.link == node_id and c.policy == policy),
                                  key=lambda c: c.time_s),
                           spec.topology.nominal_rate_mbit(node_id))
            if eff is not None:
                efficiencies.append(eff)
        if efficiencies:
            doc["links"][node_id] = {"efficiency": float(median(efficiencies))}
    return doc, spec


def cmd_calibrate(args: argparse.Namespace) -> int:
    doc, _spec = calibrate(Path(args.run_dir))
    out = Path(args.out) if args.out else Path(args.run_dir) / "calibration.yaml"
    out.write_text("# Simulator calibration fitted from an emulated run "
                   "(python -m simulator calibrate)\n" + yaml.safe_dump(doc, sort_keys=False))
    for node_id, e in doc["nodes"].items():
        print(f"{node_id:<7} prefill {e['prefill_tok_s']:9.2f} tok/s  decode "
              f"{e['decode_tok_s']:7.3f} tok/s  s {e['concurrency_slowdown']:.3f}  "
              f"P_idle {e['idle_power_w']:6.1f} W  P_max {e['max_power_w']:6.1f} W  "
              f"({e['samples']} outcomes)")
    for link, e in doc["links"].items():
        print(f"link {link:<7} efficiency {e['efficiency']:.3f}")
    print(f"wrote {out}")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("calibrate", help="Fit node rates and link efficiency from an emulated "
                                         "results folder; write a calibration YAML")
    p.add_argument("run_dir", help="results/<scenario>/<timestamp> of an emulated run")
    p.add_argument("--out", help="output YAML (default: RUN_DIR/calibration.yaml)")
    p.set_defaults(fn=cmd_calibrate)
