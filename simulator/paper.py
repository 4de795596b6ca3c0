"""The paper's evaluation as a matrix of cells: Table 1 (success rate, edge model × policy, per
bandwidth condition), throughput and energy by part per policy, and CS-UCB / baseline ratios,
printed beside the figures PerLLM reports (section 5, Table 1, Figs. 5-6).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from statistics import fmean
from typing import Any, Sequence

from scenarios.results import REFERENCE_POLICY as REFERENCE
from simulator.cells import CellResult

# Table 1 of the paper: success rate (%) per edge model for FineInfer (cloud-only), AGOD
# (edge-only), RewardlessGuidance (edge-cloud) and PerLLM (cs-ucb).
PAPER_TABLE1 = {
    "yi-6b": {"cloud-only": 58, "edge-only": 67, "edge-cloud": 74, "cs-ucb": 98},
    "llama2-7b": {"cloud-only": 58, "edge-only": 69, "edge-cloud": 77, "cs-ucb": 99},
    "llama3-8b": {"cloud-only": 58, "edge-only": 66, "edge-cloud": 74, "cs-ucb": 98},
    "yi-9b": {"cloud-only": 58, "edge-only": 66, "edge-cloud": 71, "cs-ucb": 97},
}
# Section 4.3: PerLLM's throughput relative to each baseline; section 4.4: energy "more than
# 50%" lower (read as CS-UCB / baseline <= 0.5).
PAPER_THROUGHPUT_RATIO = {"cloud-only": 2.2, "edge-only": 2.1, "edge-cloud": 1.6}
PAPER_ENERGY_RATIO_MAX = 0.5


def _model(cell_result: CellResult) -> str:
    profile = cell_result.cell.edge_profile or ""
    return profile.rsplit("/", 1)[-1] or "(spec)"


def _condition(cell_result: CellResult) -> str:
    return cell_result.cell.condition or "(spec)"


def _ordered_policies(policies: Sequence[str]) -> list[str]:
    # Baselines first, CS-UCB last, as in Table 1.
    return [p for p in policies if p != REFERENCE] + ([REFERENCE] if REFERENCE in policies else [])


def table1(results: Sequence[CellResult], policies: Sequence[str]) -> str:
    """Success rate (%) per edge model × policy, one block per condition, paper row beside."""
    order = _ordered_policies(policies)
    width = max(11, *(len(p) + 2 for p in order))
    lines = []
    for condition in dict.fromkeys(_condition(r) for r in results):
        lines.append(f"Success rate (%), bandwidth {condition}  [paper's Table 1 in brackets]")
        lines.append(f"{'edge model':<12}" + "".join(f"{p:>{width}}" for p in order)
                     + f"{'ceiling':>{width}}")
        for r in results:
            if _condition(r) != condition:
                continue
            model = _model(r)
            # a precision variant (yi-6b-q4) is compared with the paper's row for its model
            paper = PAPER_TABLE1.get(model) or PAPER_TABLE1.get(re.sub(r"-q\d+$", "", model), {})
            cells = []
            for p in order:
                ours = 100 * r.summary[p]["success_rate"]
                cells.append(f"{ours:5.1f} [{paper[p]:>2}]" if p in paper else f"{ours:5.1f}     ")
            bound = r.ceiling.get("success_rate") if r.ceiling else None
            lines.append(f"{model:<12}" + "".join(f"{c:>{width}}" for c in cells)
                         + (f"{bound:>{width}.1f}" if bound is not None else f"{'-':>{width}}"))
        lines.append("")
    return "\n".join(lines).rstrip()


def aggregate(results: Sequence[CellResult], policies: Sequence[str]) -> dict[str, Any]:
    """Per policy, means over cells; ratios CS-UCB / baseline per cell, then their mean."""
    per_policy: dict[str, Any] = {}
    for p in policies:
        stats = [r.summary[p] for r in results]
        per_policy[p] = {
            "success_rate": fmean(s["success_rate"] for s in stats),
            "mean_total_s": fmean(s["mean_total_s"] or 0.0 for s in stats),
            "throughput_tok_s": fmean(s["throughput_tok_s"] for s in stats),
            "energy_j": {part: fmean(s["energy_j"][part] for s in stats)
                         for part in ("transmission", "inference", "idle", "total")},
        }
    ratios: dict[str, Any] = {}
    if REFERENCE in policies:
        for p in policies:
            if p == REFERENCE:
                continue
            tp, en = [], []
            for r in results:
                ref, other = r.summary[REFERENCE], r.summary[p]
                if other["throughput_tok_s"] > 0:
                    tp.append(ref["throughput_tok_s"] / other["throughput_tok_s"])
                if other["energy_j"]["total"] > 0:
                    en.append(ref["energy_j"]["total"] / other["energy_j"]["total"])
            ratios[p] = {"throughput": fmean(tp) if tp else None,
                         "energy": fmean(en) if en else None,
                         "paper_throughput": PAPER_THROUGHPUT_RATIO.get(p)}
    return {"policies": per_policy, "ratios_vs_cs_ucb": ratios}


def format_aggregate(agg: dict[str, Any]) -> str:
    head = (f"{'policy':<14}{'success':>9}{'mean s':>9}{'tok/s':>9}{'E_tx kJ':>10}"
            f"{'E_inf kJ':>10}{'E_idle kJ':>10}{'E_tot kJ':>10}")
    lines = ["Means over cells", head, "-" * len(head)]
    for p, s in agg["policies"].items():
        e = s["energy_j"]
        lines.append(f"{p:<14}{100 * s['success_rate']:>8.1f}%{s['mean_total_s']:>9.2f}"
                     f"{s['throughput_tok_s']:>9.2f}{e['transmission'] / 1e3:>10.2f}"
                     f"{e['inference'] / 1e3:>10.1f}{e['idle'] / 1e3:>10.1f}"
                     f"{e['total'] / 1e3:>10.1f}")
    if agg["ratios_vs_cs_ucb"]:
        lines += ["", "CS-UCB / baseline (mean over cells)  [paper]",
                  f"{'baseline':<14}{'throughput':>16}{'energy':>18}"]
        for p, r in agg["ratios_vs_cs_ucb"].items():
            tp = "-" if r["throughput"] is None else f"{r['throughput']:.2f}x"
            paper_tp = f" [{r['paper_throughput']}x]" if r["paper_throughput"] else ""
            en = "-" if r["energy"] is None else f"{r['energy']:.2f}x"
            paper_en = f" [<={PAPER_ENERGY_RATIO_MAX}x]" if p in PAPER_THROUGHPUT_RATIO else ""
            lines.append(f"{p:<14}{tp + paper_tp:>16}{en + paper_en:>18}")
    return "\n".join(lines)


def write_matrix(run_dir: Path, spec_name: str, results: Sequence[CellResult],
                 policies: Sequence[str], extra: dict[str, Any]) -> tuple[Path, Path]:
    """summary.json (every cell's summary, the aggregate) and report.md at the run's top."""
    agg = aggregate(results, policies)
    data = {
        "world": "simulated",
        "scenario": spec_name,
        "cells": [{"edge_profile": r.cell.edge_profile, "condition": r.cell.condition,
                   "folder": r.cell.label, "policies": r.summary,
                   "simulation_wall_s": r.wall_s} for r in results],
        **agg,
        "paper": {"table1_success_pct": PAPER_TABLE1,
                  "throughput_ratio": PAPER_THROUGHPUT_RATIO,
                  "energy_ratio_max": PAPER_ENERGY_RATIO_MAX},
        **extra,
    }
    summary_path = run_dir / "summary.json"
    summary_path.write_text(json.dumps(data, indent=2) + "\n")
    report = [f"# Simulated evaluation: {spec_name}", "",
              "World: simulated (simulator/, discrete-event). Each cell's folder holds the usual "
              "results layout (requests.csv, nodes.csv, links.csv, summary.json, plots).", "",
              "```", table1(results, policies), "```", "",
              "```", format_aggregate(agg), "```", ""]
    report_path = run_dir / "report.md"
    report_path.write_text("\n".join(report))
    return summary_path, report_path
