"""The plots of a run, as PNG files beside its CSVs.

Matplotlib's object API with the Agg canvas (no pyplot, no display, no global backend state),
so plotting works in a root shell without X and inside the test suite.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from scenarios.results import LinkRow, RequestRow

STATUS_COLOURS = {"met": "#2ca02c", "missed": "#ff7f0e", "failed": "#d62728"}
PART_COLOURS = {"transmission": "#1f77b4", "inference": "#9467bd", "idle": "#bcbd22"}
_PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
            "#7f7f7f", "#bcbd22", "#17becf")
DPI = 110


def policy_colours(policies: Sequence[str]) -> dict[str, str]:
    return {p: _PALETTE[i % len(_PALETTE)] for i, p in enumerate(policies)}


def _save(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    return path


def plot_success(summary: dict[str, dict[str, Any]], path: Path) -> Path:
    """Stacked 100% bars: met (the success rate), missed, failed, per policy."""
    policies = list(summary)
    fig = Figure(figsize=(1.6 + 1.3 * len(policies), 4.2))
    ax = fig.add_subplot()
    x = np.arange(len(policies))
    bottom = np.zeros(len(policies))
    for status in ("met", "missed", "failed"):
        share = np.array([100 * summary[p][status] / max(1, summary[p]["requests"])
                          for p in policies])
        ax.bar(x, share, bottom=bottom, color=STATUS_COLOURS[status], label=status, width=0.6)
        bottom += share
    for i, p in enumerate(policies):
        ax.text(i, 100 * summary[p]["success_rate"] / 2, f"{100 * summary[p]['success_rate']:.0f}%",
                ha="center", va="center", color="white", fontweight="bold")
    ax.set_xticks(x, policies)
    ax.set_ylim(0, 100)
    ax.set_ylabel("services (%)")
    ax.set_title("Processing-time requirement met (success rate)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=3, frameon=False)
    return _save(fig, path)


def plot_cdf(requests: Sequence[RequestRow], policies: Sequence[str], path: Path) -> Path:
    """CDF of processing time per policy, as a share of all services (failed ones never arrive)."""
    colours = policy_colours(policies)
    fig = Figure(figsize=(6.4, 4.2))
    ax = fig.add_subplot()
    deadlines = [r.deadline_s for r in requests]
    if deadlines:
        ax.axvspan(min(deadlines), max(deadlines), color="0.9", label="requirement range")
    for policy in policies:
        rows = [r for r in requests if r.policy == policy]
        times = np.sort([r.total_s for r in rows if r.finished])
        if not rows or not times.size:
            continue
        y = np.arange(1, times.size + 1) / len(rows)
        ax.step(np.concatenate([[0.0], times]), np.concatenate([[0.0], y]), where="post",
                color=colours[policy], label=policy)
    ax.set_xlabel("processing time (s)")
    ax.set_ylabel("share of services finished")
    ax.set_ylim(0, 1.02)
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    ax.set_title("Processing time (CDF)")
    return _save(fig, path)


def plot_throughput(summary: dict[str, dict[str, Any]], path: Path) -> Path:
    policies = list(summary)
    colours = policy_colours(policies)
    fig = Figure(figsize=(1.6 + 1.3 * len(policies), 4.2))
    ax = fig.add_subplot()
    values = [summary[p]["throughput_tok_s"] for p in policies]
    bars = ax.bar(policies, values, color=[colours[p] for p in policies], width=0.6)
    ax.bar_label(bars, fmt="%.1f")
    ax.set_ylabel("tokens out / s (over the makespan)")
    ax.set_title("Throughput")
    ax.margins(y=0.15)
    return _save(fig, path)


def plot_energy(summary: dict[str, dict[str, Any]], path: Path) -> Path:
    """Stacked bars of energy by part (PerLLM eq. 2: transmission + inference + idle)."""
    policies = list(summary)
    fig = Figure(figsize=(1.6 + 1.3 * len(policies), 4.2))
    ax = fig.add_subplot()
    bottom = np.zeros(len(policies))
    scale, unit = _energy_unit(max([summary[p]["energy_j"]["total"] for p in policies] or [0]))
    for part in ("transmission", "inference", "idle"):
        values = np.array([summary[p]["energy_j"][part] for p in policies]) / scale
        ax.bar(policies, values, bottom=bottom, color=PART_COLOURS[part], label=part, width=0.6)
        bottom += values
    for i, total in enumerate(bottom):
        ax.text(i, total, f"{total:.3g}", ha="center", va="bottom")
    ax.set_ylabel(f"energy ({unit})")
    ax.set_title("Energy by part")
    ax.margins(y=0.15)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=3, frameon=False)
    return _save(fig, path)


def _energy_unit(largest_j: float) -> tuple[float, str]:
    if largest_j >= 1e6:
        return 1e6, "MJ"
    if largest_j >= 1e4:
        return 1e3, "kJ"
    return 1.0, "J"


def plot_bandwidth(requests: Sequence[RequestRow], links: Sequence[LinkRow],
                   policies: Sequence[str], path: Path) -> Path:
    """Per link: the applied rate over time, and below it one lane per policy with a mark at
    each arrival the policy sent to that link's node, coloured met / missed / failed."""
    colours = policy_colours(policies)
    by_link: dict[str, dict[str, list[LinkRow]]] = defaultdict(lambda: defaultdict(list))
    for row in links:
        by_link[row.link][row.policy].append(row)
    names = sorted(set(by_link) | {r.node_id for r in requests if r.node_id},
                   key=lambda n: (n == "cloud", len(n), n))
    if not names:
        names = ["(no links)"]
    end_s = max([r.arrival_s + r.total_s for r in requests] + [r.time_s for r in links] + [1.0])
    height_in = 0.9 + len(names) * (1.6 + 0.22 * len(policies))
    fig = Figure(figsize=(10, height_in))
    grid = fig.add_gridspec(2 * len(names), 1, hspace=0.2, top=1 - 0.45 / height_in,
                            bottom=0.45 / height_in,
                            height_ratios=[1.5, 0.22 * max(1, len(policies)) + 0.1] * len(names))
    first = None
    for k, name in enumerate(names):
        rate_ax = fig.add_subplot(grid[2 * k], sharex=first)
        first = first or rate_ax
        lane_ax = fig.add_subplot(grid[2 * k + 1], sharex=first)
        traces = {policy: sorted(((r.time_s, r.rate_mbit) for r in rows))
                  for policy, rows in by_link.get(name, {}).items()}
        # Same seed, same trace: draw it once in grey unless the policies' traces differ.
        same = len({tuple(t) for t in traces.values()}) == 1
        for policy, trace in list(traces.items())[:1] if same else traces.items():
            t = np.array([p[0] for p in trace] + [end_s])
            v = np.array([p[1] for p in trace] + [trace[-1][1]])
            rate_ax.step(t, v, where="post", color="0.25" if same else colours.get(policy, "0.3"),
                         lw=1, alpha=0.9)
        rate_ax.set_ylabel(f"{name}\nMbit/s", fontsize=8)
        rate_ax.tick_params(labelbottom=False, labelsize=7)
        rate_ax.set_ylim(bottom=0)
        rate_ax.grid(alpha=0.3)
        for lane, policy in enumerate(policies):
            sent = [r for r in requests if r.policy == policy and r.node_id == name]
            if sent:
                lane_ax.scatter([r.arrival_s for r in sent], [lane] * len(sent), s=16,
                                marker="|", c=[STATUS_COLOURS.get(r.status, "k") for r in sent])
        lane_ax.set_yticks(range(len(policies)), policies, fontsize=7)
        lane_ax.set_ylim(-0.6, len(policies) - 0.4)
        lane_ax.invert_yaxis()
        lane_ax.tick_params(labelbottom=k == len(names) - 1, labelsize=7)
        lane_ax.grid(axis="x", alpha=0.3)
    first.set_xlim(0, end_s)
    fig.axes[-1].set_xlabel("time since the policy's run started (s); marks: arrivals sent "
                            "to the node (green met, orange missed, red failed)")
    fig.suptitle("Link bandwidth and scheduling decisions", y=1 - 0.1 / height_in)
    return _save(fig, path)


def plot_tokens_by_class(requests: Sequence[RequestRow], path: Path) -> Path:
    """Per class, the distribution of prompt tokens and of generated tokens of the workload
    (one policy's finished services: every policy runs the same workload)."""
    first = requests[0].policy if requests else ""
    rows = [r for r in requests if r.policy == first and r.finished]
    classes = sorted({r.service_class for r in rows})
    fig = Figure(figsize=(10, 3.8))
    for k, (field, label) in enumerate((("tokens_in", "prompt tokens"),
                                        ("tokens_out", "generated tokens"))):
        ax = fig.add_subplot(1, 2, k + 1)
        values = [np.array([getattr(r, field) for r in rows if r.service_class == c])
                  for c in classes]
        top = max((v.max() for v in values if v.size), default=1)
        bins = np.linspace(0, max(top, 1), 40)
        for c, v, colour in zip(classes, values, _PALETTE):
            if v.size:
                ax.hist(v, bins=bins, histtype="step", linewidth=1.6, color=colour,
                        label=f"{c} (n={v.size}, median {np.median(v):.0f})")
        ax.set_xlabel(label)
        ax.set_ylabel("services")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(frameon=False, fontsize=8)
    fig.suptitle(f"Workload by class (finished services under {first})")
    return _save(fig, path)


def plot_prediction_error(requests: Sequence[RequestRow], policies: Sequence[str],
                          path: Path) -> Path:
    """CDF per policy of measured minus predicted processing time (D-hat at decision)."""
    fig = Figure(figsize=(7, 4.2))
    ax = fig.add_subplot()
    colours = policy_colours(policies)
    for p in policies:
        err = np.sort([r.total_s - r.predicted_total_s for r in requests
                       if r.policy == p and r.finished and r.predicted_total_s > 0])
        if err.size:
            ax.step(err, np.arange(1, err.size + 1) / err.size, where="post", color=colours[p],
                    label=f"{p} (mean {err.mean():+.2f} s)")
    ax.axvline(0, color="grey", linewidth=0.8)
    ax.set_xlabel("measured − predicted processing time (s); > 0: slower than predicted")
    ax.set_ylabel("fraction of finished services")
    ax.set_title("Prediction error of D̂ at decision time")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(frameon=False)
    return _save(fig, path)


def plot_regret(requests: Sequence[RequestRow], policies: Sequence[str], path: Path) -> Path:
    """Cumulative regret over services against the best fixed arm per class in hindsight
    (scenarios.regret)."""
    from scenarios.regret import regret_curves

    curves = regret_curves(requests)
    colours = policy_colours(policies)
    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    for policy in policies:
        curve = curves.get(policy)
        if curve:
            ax.plot(range(1, len(curve) + 1), curve, label=policy, color=colours[policy])
    ax.axhline(0.0, color="grey", linewidth=0.8)
    ax.set_xlabel("services (arrival order)")
    ax.set_ylabel("cumulative regret (eq. 4 reward)")
    ax.set_title("Regret against the best fixed node per class in hindsight")
    ax.legend(fontsize=8)
    return _save(fig, path)


def write_plots(run_dir: Path, requests: Sequence[RequestRow], links: Sequence[LinkRow],
                summary: dict[str, dict[str, Any]]) -> list[Path]:
    """Write every plot of a run into run_dir; returns their paths."""
    run_dir = Path(run_dir)
    policies = list(summary) or sorted({r.policy for r in requests})
    return [
        plot_success(summary, run_dir / "success_rate.png"),
        plot_cdf(requests, policies, run_dir / "processing_time_cdf.png"),
        plot_throughput(summary, run_dir / "throughput.png"),
        plot_energy(summary, run_dir / "energy.png"),
        plot_bandwidth(requests, links, policies, run_dir / "bandwidth.png"),
        plot_tokens_by_class(requests, run_dir / "tokens_by_class.png"),
        plot_prediction_error(requests, policies, run_dir / "prediction_error.png"),
        plot_regret(requests, policies, run_dir / "regret.png"),
    ]
