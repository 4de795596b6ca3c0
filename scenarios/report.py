"""report.md: what ran, what came out, and everything needed to run it again."""

from __future__ import annotations

import platform
import subprocess
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from scenarios.results import REFERENCE_POLICY as REFERENCE
from scenarios.results import SUMMARY_COLUMNS, format_ceiling, ratios

REPO_ROOT = Path(__file__).resolve().parents[1]
# Distribution names; read from package metadata, so nothing heavy (torch) is imported.
VERSIONED = ("grpcio", "protobuf", "numpy", "pydantic", "simpy", "matplotlib",
             "llama-cpp-python", "transformers", "torch", "mininet")


def versions() -> dict[str, str]:
    """Python and the installed versions of the packages a run depends on."""
    out = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def git_commit(repo: Path = REPO_ROOT) -> str:
    """HEAD's commit, with "+dirty" if tracked files differ from it; "unknown" outside git."""
    try:
        head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain",
                                "--untracked-files=no"], capture_output=True, text=True,
                               timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head}+dirty" if dirty else head


def _num(value: float | None, fmt: str) -> str:
    return "–" if value is None else format(value, fmt)


def summary_table(summary: dict[str, dict[str, Any]]) -> str:
    """The per-policy results as a Markdown table (columns: results.SUMMARY_COLUMNS)."""
    lines = ["| " + " | ".join(c.header for c in SUMMARY_COLUMNS) + " |",
             "|" + "|".join("---" if c.left else "---:" for c in SUMMARY_COLUMNS) + "|"]
    lines += ["| " + " | ".join(c.cell(policy, s, missing="–") for c in SUMMARY_COLUMNS) + " |"
              for policy, s in summary.items()]
    return "\n".join(lines)


def ratio_table(summary: dict[str, dict[str, Any]], reference: str = REFERENCE) -> str:
    """Reference / each baseline, as a Markdown table ("" when it cannot be formed)."""
    if reference not in summary or len(summary) < 2:
        return ""
    lines = [f"| {reference} / baseline | throughput ratio | energy ratio | success rate Δ |",
             "|---|---:|---:|---:|"]
    for policy, r in ratios(summary, reference).items():
        lines.append(f"| {policy} | {_num(r['throughput'], '.2f')}× "
                     f"| {_num(r['energy'], '.2f')}× | {100 * r['success_rate_delta']:+.1f} pts |")
    return "\n".join(lines)


def _failures(summary: dict[str, dict[str, Any]]) -> list[str]:
    lines = []
    for policy, s in summary.items():
        for reason, count in s.get("failure_reasons", {}).items():
            lines.append(f"- {policy}: {count} × {reason}")
    return lines


def fidelity_section(fidelity: dict[str, Any]) -> list[str]:
    """report.md's "Fidelity" section: the verdict, its reasons and each policy run's worst
    figures (scenarios/fidelity.py has the measures and the thresholds with their reasons)."""
    from scenarios.fidelity import headline

    out = ["## Fidelity", "",
           f"**{fidelity['status']}**" + (": " + "; ".join(fidelity["reasons"])
                                         if fidelity.get("reasons") else
                                         ": no threshold crossed"), "",
           "| policy | status | CPU queue peak | cores used | host CPU pressure "
           "| tokens >20 ms late | driver late p99 s | front-end delay p95 s "
           "| shaper windows off | shaper ratio min |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for policy, figures in fidelity.get("policies", {}).items():
        h = headline(figures)
        out.append(f"| {policy} | {h['status']} | {_num(h['cpu_queue_peak'], '.2f')} "
                   f"| {_num(h['cores_used'], '.2f')} | {_num(h['psi_some_share'], '.0%')} "
                   f"| {_num(h['pacing_late_share'], '.2%')} "
                   f"| {_num(h['driver_late_p99_s'], '.3f')} "
                   f"| {_num(h['frontend_delay_p95_s'], '.3f')} "
                   f"| {_num(h['shaper_off_share'], '.0%')} "
                   f"| {_num(h['shaper_ratio_min'], '.2f')} |")
    out += ["", "Thresholds and their reasons: `scenarios/fidelity.py` (THRESHOLDS); every "
            "figure per node and link is in summary.json under `fidelity`.", ""]
    return out


def write_report(run_dir: Path, spec: Any, summary: dict[str, dict[str, Any]],
                 plots: Sequence[Path], seed: int, incomplete: bool = False,
                 ceiling: dict[str, Any] | None = None,
                 fidelity: dict[str, Any] | None = None) -> Path:
    """Write report.md into run_dir and return its path."""
    run_dir = Path(run_dir)
    topo, work = spec.topology, spec.workload
    fluct = topo.fluctuation
    band = "fixed" if fluct.profile == "stable" else (
        f"{fluct.profile} ±{100 * fluct.amplitude:.0f}% every {fluct.period_s:g} s")
    out = [f"# Scenario `{spec.name}`", ""]
    if incomplete:
        out += ["> **INCOMPLETE RUN**: interrupted before every policy finished; the figures "
                "below cover only what had completed.", ""]
    if spec.description:
        out += [spec.description.strip(), ""]
    out += [
        "## Setup", "",
        f"- Network: {topo.edges} edge(s) at {topo.edge_rate_mbit:g} Mbit/s"
        + (f", cloud at {topo.cloud_rate_mbit:g} Mbit/s" if topo.cloud else ", no cloud")
        + f"; bandwidth {band}",
        f"- Nodes: edge {spec.nodes.edge.backend} `{spec.nodes.edge.model}` paced to "
        f"`{spec.nodes.edge.profile or 'native speed'}` ({spec.nodes.edge.slots} slot(s)); "
        f"cloud {spec.nodes.cloud.backend} `{spec.nodes.cloud.model}` paced to "
        f"`{spec.nodes.cloud.profile or 'native speed'}` ({spec.nodes.cloud.slots} slot(s))",
        f"- Workload: {work.requests} services, {work.describe_arrivals()}, requirement "
        f"{work.describe_requirement()}, classes "
        + ", ".join(f"{c.name} ({c.weight:g})" for c in work.classes),
        f"- Mode: {spec.mode}; policies: {', '.join(spec.policies)}",
        f"- Information (scheduler.information): {spec.scheduler.information}"
        + (f", declared rates off by up to ±{100 * spec.scheduler.declared_error:.0f}%"
           if spec.scheduler.declared_error else ", declared rates = the profiles'")
        + "; the clairvoyant, if run, knows the truth",
        f"- Faults: " + ("; ".join(f"{f.kind} {f.target} at {f.at_s:g} s"
                                   + (f" for {f.duration_s:g} s" if f.duration_s else "")
                                   + (f", {f.factor:g}x slower" if f.kind == "slow-node"
                                      else "")
                                   for f in spec.faults) or "none"),
        "",
        "## Results", "",
        "Success: the processing time (transmission + queueing + inference) met the service's "
        "requirement. Mean and p95 are over services that finished; throughput is tokens "
        "generated by finished services over the makespan (first arrival to last finish); "
        "energy follows PerLLM eq. 2 (idle energy is every node's idle power over its idle "
        "time).", "",
        summary_table(summary), "",
    ]
    if ceiling:
        out += [format_ceiling(ceiling).capitalize() + ".", ""]
    table = ratio_table(summary)
    if table:
        out += ["### CS-UCB against each baseline", "",
                "Throughput ratio > 1: CS-UCB served more tokens per second; energy ratio < 1: "
                "CS-UCB used less energy.", "", table, ""]
    failures = _failures(summary)
    if failures:
        out += ["### Failures", "", *failures, ""]
    if fidelity:
        out += fidelity_section(fidelity)
    if plots:
        out += ["## Plots", ""]
        for plot in plots:
            name = Path(plot).name
            out += [f"![{Path(plot).stem.replace('_', ' ')}]({name})", ""]
    out += [
        "## Reproduce", "",
        f"- Seed: {seed}",
        f"- Command: `make scenario NAME={spec.name} SEED={seed}`",
        f"- Git commit: `{git_commit()}`",
        f"- Written: {time.strftime('%Y-%m-%d %H:%M:%S %z')}",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in versions().items()),
        "- Resolved configuration: [config.yaml](config.yaml); rows: "
        "[requests.csv](requests.csv), [nodes.csv](nodes.csv), [links.csv](links.csv); "
        "[summary.json](summary.json)",
        "",
    ]
    path = run_dir / "report.md"
    path.write_text("\n".join(out))
    return path
