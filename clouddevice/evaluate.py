"""The paper's evaluation (§IV): both hardware groups, prefill and decode sizes, three variants.

Each swept point is one iteration of LLaMA2-7B in FP16: a prefill of `size` tokens (its TTFT
against 400 ms) or one decode step with `size` positions cached (its TPOT against 100 ms).
For every point Algorithm 1 places the operators; device-only, cloud-only and the best
layer-wise cut are computed beside it. Variants:
- `paper`: communication hidden (the paper's pipelining assumption), memory ignored (flagged);
- `link`: every crossing pays the link's latency and bytes / rate, memory ignored (flagged);
- `+memory`: Algorithm 1 also keeps offloading until the device part fits (splits a device
  could not hold are refused).

Cost reduction of a point = 1 − split cost / cloud-only cost, where cost is the cloud's busy
seconds × its price (`clouddevice.placement`); a group's figure is the mean over its prefill
and decode points, the counterpart of the paper's "average end-to-end inference cost".
"""

from __future__ import annotations

import csv
import dataclasses
import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from clouddevice.graph import STAGES, build_graph
from clouddevice.greedy import algorithm1, best_layer_cut, cloud_only, device_only
from clouddevice.hardware import HardwareModel
from clouddevice.placement import Costing, Link
from nodes.catalogue import hardware_spec

MODEL, PRECISION = "llama2-7b", "fp16"
GROUPS = {"group-l": ("jetson-nano", "v100s"), "group-h": ("snapdragon-8s-gen3", "a100-80gb-sxm")}
PAPER_COST_REDUCTION_PCT = {"group-l": 11.6, "group-h": 20.7}
TARGET_S = {"prefill": 0.4, "decode": 0.1}  # the paper's SLA: TTFT 400 ms, TPOT 100 ms
SIZES = (32, 64, 128, 256, 512, 1024, 2048)
VARIANTS = ("paper", "paper+memory", "link", "link+memory")


@dataclass(frozen=True)
class SweepConfig:
    sizes: tuple[int, ...] = SIZES
    link_rate_mbit: float = 300.0
    link_latency_ms: float = 10.0
    order: str = "work"
    groups: tuple[str, ...] = tuple(GROUPS)
    # overrides of the devices' constant efficiencies, for sensitivity (None: the catalogue's)
    device_compute_efficiency: float | None = None
    device_memory_efficiency: float | None = None

    def __post_init__(self) -> None:
        unknown = [g for g in self.groups if g not in GROUPS]
        if unknown or not self.groups:
            raise ValueError(f"groups must be among {', '.join(GROUPS)}, got {list(self.groups)}")
        if not self.sizes:
            raise ValueError("sizes must not be empty")

    def link(self, variant: str) -> Link:
        return Link(self.link_rate_mbit, self.link_latency_ms,
                    hide_communication=variant.startswith("paper"))


def costing_for(group: str, stage: str, size: int, variant: str, config: SweepConfig) -> Costing:
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
    device_name, cloud = GROUPS[group]
    device = hardware_spec(device_name)
    overrides = {k: v for k, v in (("compute_efficiency", config.device_compute_efficiency),
                                   ("memory_efficiency", config.device_memory_efficiency))
                 if v is not None}
    # HardwareSpec validates the overrides (in (0, 1])
    device = dataclasses.replace(device, **overrides) if overrides else device
    return Costing(build_graph(MODEL, stage, size, PRECISION), HardwareModel.constant(device),
                   HardwareModel.constant(cloud), config.link(variant))


def split_for(costing: Costing, stage: str, variant: str, order: str = "work"):
    return algorithm1(costing, TARGET_S[stage], order, fit_memory=variant.endswith("+memory"))


def reduction_pct(cost_usd: float, reference_usd: float) -> float:
    """How much cheaper than the reference, in percent (negative: dearer)."""
    if not reference_usd > 0:
        raise ValueError(f"reference cost must be > 0, got {reference_usd!r}")
    return 100.0 * (1.0 - cost_usd / reference_usd)


def sweep_point(group: str, stage: str, size: int, variant: str,
                config: SweepConfig) -> dict[str, Any]:
    c = costing_for(group, stage, size, variant, config)
    target = TARGET_S[stage]
    split, cloud, device = split_for(c, stage, variant, config.order), cloud_only(c), device_only(c)
    cut = best_layer_cut(c, target, fit_memory=variant.endswith("+memory"))
    return {
        "group": group, "variant": variant, "stage": stage, "size": size, "target_s": target,
        "split_latency_s": split.latency_s, "split_cost_usd": split.cost_usd,
        "split_reduction_pct": reduction_pct(split.cost_usd, cloud.cost_usd),
        "split_sla_met": split.meets(target),
        "split_fits_device_memory": split.fits_device_memory,
        "split_device_memory_gb": split.device_memory_bytes / 1e9,
        "split_cloud_operators": split.cloud_operators, "split_crossings": len(split.crossings),
        "split_link_s": split.link_s,
        "device_only_latency_s": device.latency_s, "device_only_sla_met": device.meets(target),
        "device_only_fits_device_memory": device.fits_device_memory,
        "cloud_only_latency_s": cloud.latency_s, "cloud_only_cost_usd": cloud.cost_usd,
        "cloud_only_sla_met": cloud.meets(target),
        "layer_cut_latency_s": cut.latency_s, "layer_cut_cost_usd": cut.cost_usd,
        "layer_cut_reduction_pct": reduction_pct(cut.cost_usd, cloud.cost_usd),
        "layer_cut_sla_met": cut.meets(target),
        "layer_cut_device_blocks": sum(1 for op in c.graph.operators
                                       if op.name == "q_proj" and cut.sides[op.key] == "device"),
        "layer_cut_fits_device_memory": cut.fits_device_memory,
    }


def sweep(config: SweepConfig) -> list[dict[str, Any]]:
    return [sweep_point(g, stage, size, v, config)
            for v in VARIANTS for g in config.groups for stage in STAGES for size in config.sizes]


def _mean(values: Iterable[float]) -> float:
    values = list(values)
    return statistics.fmean(values) if values else float("nan")


def summarise(rows: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per variant and group: mean reductions, SLA and memory fractions."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for v in VARIANTS:
        for g in GROUPS:
            rs = [r for r in rows if r["variant"] == v and r["group"] == g]
            if not rs:
                continue
            by_stage = {s: [r for r in rs if r["stage"] == s] for s in STAGES}
            out.setdefault(v, {})[g] = {
                "cost_reduction_pct": _mean(r["split_reduction_pct"] for r in rs),
                "prefill_cost_reduction_pct": _mean(r["split_reduction_pct"]
                                                    for r in by_stage["prefill"]),
                "decode_cost_reduction_pct": _mean(r["split_reduction_pct"]
                                                   for r in by_stage["decode"]),
                "sla_met_fraction": _mean(float(r["split_sla_met"]) for r in rs),
                "fits_device_memory_fraction": _mean(float(r["split_fits_device_memory"])
                                                     for r in rs),
                "layer_cut_cost_reduction_pct": _mean(r["layer_cut_reduction_pct"] for r in rs),
                "layer_cut_sla_met_fraction": _mean(float(r["layer_cut_sla_met"]) for r in rs),
                "device_only_sla_met_fraction": _mean(float(r["device_only_sla_met"])
                                                      for r in rs),
                "cloud_only_sla_met_fraction": _mean(float(r["cloud_only_sla_met"]) for r in rs),
                "points": len(rs),
            }
    return out


def headline(summary: dict[str, dict[str, dict[str, Any]]], config: SweepConfig,
             results_dir: Path | None) -> dict[str, Any]:
    """The last printed line: the paper variant's figures beside the paper's, and the rest."""
    paper = summary["paper"]
    return {
        "cost_reduction_pct": {g: round(paper[g]["cost_reduction_pct"], 2) for g in paper},
        "paper_cost_reduction_pct": {g: PAPER_COST_REDUCTION_PCT[g] for g in paper},
        "sla_met_fraction": {g: round(paper[g]["sla_met_fraction"], 3) for g in paper},
        "variant": "paper (communication hidden, memory ignored)",
        "variants": {v: {g: {k: (round(x, 3) if isinstance(x, float) else x)
                             for k, x in s.items()} for g, s in groups.items()}
                     for v, groups in summary.items()},
        "link": {"rate_mbit": config.link_rate_mbit, "one_way_latency_ms": config.link_latency_ms},
        "device_efficiency_override": {"compute": config.device_compute_efficiency,
                                       "memory": config.device_memory_efficiency},
        "hardware_model": "Eq. 8 with the catalogue's constant efficiencies (fallback: no "
                          "published measurements of these GPUs and devices here)",
        "results_dir": str(results_dir) if results_dir else None,
    }


def format_table(summary: dict[str, dict[str, dict[str, Any]]]) -> str:
    head = (f"{'variant':<12} {'group':<8} {'cost red. %':>11} {'prefill %':>9} {'decode %':>9} "
            f"{'paper %':>8} {'SLA met':>8} {'fits mem':>8} {'layer-cut %':>11} {'cut SLA':>8}")
    lines = [head, "-" * len(head)]
    for v, groups in summary.items():
        for g, s in groups.items():
            lines.append(
                f"{v:<12} {g:<8} {s['cost_reduction_pct']:>11.1f} "
                f"{s['prefill_cost_reduction_pct']:>9.1f} {s['decode_cost_reduction_pct']:>9.1f} "
                f"{PAPER_COST_REDUCTION_PCT[g]:>8.1f} {s['sla_met_fraction']:>8.2f} "
                f"{s['fits_device_memory_fraction']:>8.2f} "
                f"{s['layer_cut_cost_reduction_pct']:>11.1f} {s['layer_cut_sla_met_fraction']:>8.2f}")
    return "\n".join(lines)


def write_results(run_dir: Path, config: SweepConfig, rows: list[dict[str, Any]],
                  result: dict[str, Any]) -> None:
    with open(run_dir / "points.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    (run_dir / "config.json").write_text(json.dumps({
        **dataclasses.asdict(config), "model": MODEL, "precision": PRECISION,
        "groups": {g: dict(zip(("device", "cloud"), GROUPS[g])) for g in config.groups},
        "target_s": TARGET_S, "variants": VARIANTS}, indent=1) + "\n")
    (run_dir / "summary.json").write_text(json.dumps(result, indent=1) + "\n")
    plans = run_dir / "plans"
    plans.mkdir(exist_ok=True)
    for g in config.groups:
        for stage in STAGES:
            for v in VARIANTS:
                c = costing_for(g, stage, 512, v, config)
                placement = split_for(c, stage, v, config.order)
                plan = (placement.execution_plan() if placement.fits_device_memory else
                        {"refused": "device part does not fit", **placement.summary()})
                (plans / f"{g}-{stage}-512-{v.replace('+', '-')}.json").write_text(
                    json.dumps(plan, indent=1) + "\n")
