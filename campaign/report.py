"""The aggregate of a campaign over seeds: per policy, each metric's mean and 95% confidence
interval over seeds (one sample per seed: a seed's whole run, never its single services),
as a terminal table, aggregate.json, per_seed.csv, aggregate.png and report.md."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Iterable, Sequence

from campaign.stats import mean_ci, metric_of
from campaign.tasks import TaskOutcome

# (name in aggregate.json, metric of the summary (campaign.stats.METRICS), heading, scale, unit)
COLUMNS = (
    ("success_rate", "success_rate", "success", 100.0, "%"),
    ("mean_total_s", "mean_total_s", "mean s", 1.0, ""),
    ("p95_total_s", "p95_total_s", "p95 s", 1.0, ""),
    ("throughput_tok_s", "throughput_tok_s", "tok/s", 1.0, ""),
    ("energy_j", "energy_total_j", "E_total kJ", 1e-3, ""),
)
# The ceiling's success rate is a percentage (simulator.ceiling.Ceiling); the policies' is a
# fraction. The aggregate gives both as fractions so they compare directly.
_CEILING_PERCENT = {"success_rate"}


def aggregate_policies(samples: Iterable[tuple[int, str, dict[str, Any]]]
                       ) -> dict[str, dict[str, dict]]:
    """samples: (seed, policy, that policy's summary entry). -> policy -> name -> mean_ci."""
    values: dict[str, dict[str, list[float]]] = {}
    for _seed, policy, stats in samples:
        by_name = values.setdefault(policy, {})
        for name, metric, *_ in COLUMNS:
            by_name.setdefault(name, []).append(metric_of(stats, metric))
    return {p: {name: mean_ci(xs) for name, xs in by_name.items()} for p, by_name in values.items()}


def aggregate_ceiling(ceilings: Sequence[dict[str, Any] | None]) -> dict[str, dict] | None:
    """The ceiling (simulator.ceiling) over seeds: each numeric field's mean_ci (success rate
    as a fraction); None when no seed has one."""
    present = [c for c in ceilings if c]
    if not present:
        return None
    out = {}
    for name in present[0]:
        xs = [c[name] for c in present if isinstance(c.get(name), (int, float))]
        if len(xs) == len(present) and name != "services":
            scale = 0.01 if name in _CEILING_PERCENT else 1.0
            out[name] = mean_ci([scale * float(x) for x in xs])
    return out


def _cell(figure: dict, scale: float, unit: str) -> str:
    if figure["mean"] is None:
        return "-"
    return f"{scale * figure['mean']:.2f}{unit} ± {scale * figure['ci95']:.2f}"


def format_aggregate(policies: dict[str, dict[str, dict]], ceiling: dict | None = None,
                     title: str = "") -> str:
    """A fixed-width table: mean ± 95% CI half-width over seeds, n = seeds with a value."""
    widths = [14] + [19] * len(COLUMNS) + [4]
    head = (f"{'policy':<{widths[0]}}" + "".join(f"{c[2]:>19}" for c in COLUMNS) + f"{'n':>4}")
    lines = ([title] if title else []) + [head, "-" * len(head)]
    for policy, figures in policies.items():
        n = max(f["n"] for f in figures.values())
        lines.append(f"{policy:<14}" + "".join(
            f"{_cell(figures[name], scale, unit):>19}" for name, _m, _h, scale, unit in COLUMNS)
            + f"{n:>4}")
    if ceiling and "success_rate" in ceiling:
        best = ceiling.get("mean_best_total_s")
        lines.append(f"{'(ceiling)':<14}{_cell(ceiling['success_rate'], 100.0, '%'):>19}"
                     + (f"{_cell(best, 1.0, ''):>19}" if best else "")
                     + "   each service alone at its best node")
    return "\n".join(lines)


def plot_aggregate(policies: dict[str, dict[str, dict]], path: Path, title: str = "") -> Path:
    """Bars of success, mean time and energy per policy with 95% CI error bars over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [c for c in COLUMNS if c[0] in ("success_rate", "mean_total_s", "energy_j")]
    fig, axes = plt.subplots(1, len(shown), figsize=(4.2 * len(shown), 3.8))
    names = list(policies)
    for ax, (name, _metric, heading, scale, unit) in zip(axes, shown):
        means = [scale * (policies[p][name]["mean"] or 0.0) for p in names]
        errs = [scale * (policies[p][name]["ci95"] or 0.0) for p in names]
        ax.bar(range(len(names)), means, yerr=errs, capsize=4, color="#4c72b0")
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
        ax.set_title(f"{heading}{' (' + unit + ')' if unit else ''}, mean ± 95% CI", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_per_seed_csv(path: Path, samples: Iterable[tuple[int, str, dict[str, Any]]],
                       extra: Sequence[str] = ()) -> Path:
    """One row per (seed, policy) with every aggregated metric: the CI's raw material."""
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["seed", "policy", *extra, *(c[0] for c in COLUMNS)])
        for seed, policy, stats, *labels in samples:
            writer.writerow([seed, policy, *labels, *(metric_of(stats, c[1]) for c in COLUMNS)])
    return path


def failures_text(outcomes: Sequence[TaskOutcome]) -> list[str]:
    """One line per failed task with its reason (a failed run is reported, never dropped)."""
    return [f"{o.key}: {o.error.splitlines()[0] if o.error else 'failed'}"
            for o in outcomes if not o.ok]


def write_report(out_dir: Path, title: str, data: dict[str, Any], tables: Sequence[str],
                 plots: Sequence[Path], failures: Sequence[str]) -> Path:
    """aggregate.json (data) and report.md (tables, plots, failures) in out_dir."""
    (out_dir / "aggregate.json").write_text(json.dumps(data, indent=2) + "\n")
    lines = [f"# {title}", "",
             f"Seeds: {', '.join(str(s) for s in data.get('seeds', []))}. Each figure is the "
             f"mean over seeds ± the half-width of its 95% confidence interval (Student t, "
             f"n − 1 degrees of freedom); one sample per seed.", ""]
    for table in tables:
        lines += ["```", table, "```", ""]
    for plot in plots:
        lines += [f"![{plot.stem}]({plot.name})", ""]
    if failures:
        lines += [f"## Failed runs ({len(failures)})", "",
                  *(f"- {line}" for line in failures), "",
                  "They are left out of the figures above; resume the campaign to run them "
                  "again.", ""]
    path = out_dir / "report.md"
    path.write_text("\n".join(lines))
    return path
