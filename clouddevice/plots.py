"""Fig. 6 and Fig. 7 analogues of the cloud-device paper, from the sweep's rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from clouddevice.evaluate import GROUPS, PAPER_COST_REDUCTION_PCT, STAGES, TARGET_S

_METRIC = {"prefill": "TTFT", "decode": "TPOT"}


def _series(rows: list[dict[str, Any]], group: str, stage: str, variant: str,
            key: str) -> tuple[list[int], list[float]]:
    rs = sorted((r for r in rows if r["group"] == group and r["stage"] == stage
                 and r["variant"] == variant), key=lambda r: r["size"])
    return [r["size"] for r in rs], [r[key] for r in rs]


def _figure(groups: list[str]):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(len(groups), 2, figsize=(10, 3.4 * len(groups)), squeeze=False)
    return plt, fig, axes


def plot_latency(rows: list[dict[str, Any]], path: Path) -> Path:
    """Fig. 6: TTFT against prefill size and TPOT against decode size, per group."""
    groups = [g for g in GROUPS if any(r["group"] == g for r in rows)]
    plt, fig, axes = _figure(groups)
    for i, g in enumerate(groups):
        for j, stage in enumerate(STAGES):
            ax = axes[i][j]
            lines = [("device_only_latency_s", "paper", "device only", "k:", None),
                     ("split_latency_s", "paper", "Alg. 1, link hidden (paper)", "C0-", "o"),
                     ("split_latency_s", "link", "Alg. 1, explicit link", "C3-", "s"),
                     ("layer_cut_latency_s", "link", "best layer cut, explicit link", "C2--", "^"),
                     ("cloud_only_latency_s", "link", "cloud only, explicit link", "C7-.", None)]
            for key, variant, label, style, marker in lines:
                x, y = _series(rows, g, stage, variant, key)
                ax.plot(x, [v * 1e3 for v in y], style, marker=marker, ms=4, label=label)
            ax.axhline(TARGET_S[stage] * 1e3, color="C1", lw=1, label="SLA")
            ax.set(xscale="log", yscale="log", xlabel=f"{stage} size (tokens)",
                   ylabel=f"{_METRIC[stage]} (ms)",
                   )
            ax.set_title(f"{g}: {GROUPS[g][1]} cloud, {GROUPS[g][0]} device", fontsize=9)
            ax.set_xticks(x, [str(v) for v in x])
            ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_cost(rows: list[dict[str, Any]], path: Path) -> Path:
    """Fig. 7: cloud cost per prefill and per decode step, split against cloud-only, with the
    decrement rate on the right axis."""
    groups = [g for g in GROUPS if any(r["group"] == g for r in rows)]
    plt, fig, axes = _figure(groups)
    for i, g in enumerate(groups):
        for j, stage in enumerate(STAGES):
            ax = axes[i][j]
            x, cloud = _series(rows, g, stage, "paper", "cloud_only_cost_usd")
            _, split = _series(rows, g, stage, "paper", "split_cost_usd")
            pos = range(len(x))
            ax.bar([p - 0.2 for p in pos], [c * 1e6 for c in cloud], 0.4, color="C7",
                   label="cloud only")
            ax.bar([p + 0.2 for p in pos], [c * 1e6 for c in split], 0.4, color="C0",
                   label="Alg. 1 split (link hidden)")
            ax.set(xticks=list(pos), xlabel=f"{stage} size (tokens)", ylabel="cost (µ$)",
                   title=f"{g}: {'per prefill' if stage == 'prefill' else 'per decode step'}")
            ax.set_xticklabels([str(v) for v in x])
            right = ax.twinx()
            for variant, style, label in (("paper", "C3-o", "decrement, link hidden"),
                                          ("link", "C3--s", "decrement, explicit link")):
                _, red = _series(rows, g, stage, variant, "split_reduction_pct")
                right.plot(list(pos), red, style, ms=4, label=label)
            _, cut = _series(rows, g, stage, "link", "layer_cut_reduction_pct")
            right.plot(list(pos), cut, "C2:^", ms=4, label="layer cut, explicit link")
            right.axhline(PAPER_COST_REDUCTION_PCT[g], color="C1", lw=1,
                          label=f"paper's average ({PAPER_COST_REDUCTION_PCT[g]}%)")
            right.set(ylabel="decrement rate (%)", ylim=(-5, 105))
            if i == 0 and j == 0:
                ax.legend(fontsize=7, loc="upper left")
                right.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
