"""A policy's margin over each other policy, paired by seed, with 95% confidence intervals.

Every policy of a seed ran on the same workload and the same bandwidth trace, so the margin is
taken seed by seed (reference − other, for success in points and for mean time and energy in
% of the other) and its CI is over those paired differences (campaign.stats.ci95): tighter and
more honest than comparing two CIs of means. Where a run has several cells (the paper matrix),
a seed's figure is its mean over the cells.

`python -m campaign.margins RUN_DIR [--reference cs-ucb]` reads RUN_DIR/per_seed.csv (written by
`python -m simulator run --seeds` and by emulated campaigns) and prints the table; the last
line is a JSON object {"reference", "seeds", "margins": {other: {metric: {"mean", "ci95", "n"}}}}.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from collections import defaultdict
from pathlib import Path

from campaign.stats import ci95

# metric -> how a difference is expressed
MARGINS = (("success_rate", "points"), ("mean_total_s", "pct"), ("energy_j", "pct"))


def per_seed_means(path: Path) -> dict[str, dict[int, dict[str, float]]]:
    """policy -> seed -> metric -> mean over the seed's cells."""
    sums: dict[tuple[str, int, str], list[float]] = defaultdict(list)
    with path.open() as f:
        for row in csv.DictReader(f):
            for metric, _ in MARGINS:
                value = row.get(metric)
                if value not in (None, "", "nan"):
                    sums[(row["policy"], int(row["seed"]), metric)].append(float(value))
    out: dict[str, dict[int, dict[str, float]]] = defaultdict(dict)
    for (policy, seed, metric), values in sums.items():
        out[policy].setdefault(seed, {})[metric] = sum(values) / len(values)
    return out


def margins(path: Path, reference: str) -> dict:
    data = per_seed_means(path)
    if reference not in data:
        raise ValueError(f"--reference: {reference!r} did not run; policies: {sorted(data)}")
    ref = data[reference]
    result: dict[str, dict] = {}
    for other, seeds in data.items():
        if other == reference:
            continue
        entry = {}
        for metric, unit in MARGINS:
            diffs = []
            for seed, figures in seeds.items():
                mine, theirs = ref.get(seed, {}).get(metric), figures.get(metric)
                if mine is None or theirs is None:
                    continue
                if unit == "points":
                    diffs.append(100.0 * (mine - theirs))
                elif theirs > 0:
                    diffs.append(100.0 * (mine - theirs) / theirs)
            if diffs:
                mean, half = ci95(diffs)
                entry[metric] = {"mean": mean, "ci95": half, "n": len(diffs), "unit": unit}
        result[other] = entry
    return {"reference": reference, "seeds": sorted(ref), "margins": result}


def runs_beating(path: Path, reference: str = "clairvoyant") -> dict[str, list[str]]:
    """Per policy, the (seed, cell) runs where it met more services than `reference`: a greedy
    reference is not a bound, and this says where it is not one."""
    success: dict[tuple[int, str], dict[str, float]] = defaultdict(dict)
    with path.open() as f:
        for row in csv.DictReader(f):
            if row.get("success_rate") not in (None, "", "nan"):
                key = (int(row["seed"]), row.get("cell", ""))
                success[key][row["policy"]] = float(row["success_rate"])
    beaten: dict[str, list[str]] = defaultdict(list)
    for (seed, cell), by_policy in sorted(success.items()):
        ref = by_policy.get(reference)
        if ref is None:
            continue
        for policy, value in by_policy.items():
            if policy != reference and value > ref:
                beaten[policy].append(f"seed {seed}" + (f" {cell}" if cell else ""))
    return dict(beaten)


def format_margins(data: dict) -> str:
    ref = data["reference"]
    lines = [f"{ref} against each policy, paired by seed (mean ± 95% CI over "
             f"{len(data['seeds'])} seeds)",
             f"{'policy':<14}{'success (points)':>20}{'mean time (%)':>18}{'energy (%)':>18}"]
    for other, entry in data["margins"].items():
        cells = []
        for metric, _ in MARGINS:
            m = entry.get(metric)
            cells.append("-" if m is None or math.isnan(m["mean"])
                         else f"{m['mean']:+.2f} ± {m['ci95']:.2f}")
        lines.append(f"{other:<14}{cells[0]:>20}{cells[1]:>18}{cells[2]:>18}")
    runs = sum(len(v) for v in data.get("beating_clairvoyant", {}).values())
    if runs:
        lines.append("clairvoyant is not a bound here: " + "; ".join(
            f"{policy} met more in {len(where)} run(s)"
            for policy, where in data["beating_clairvoyant"].items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m campaign.margins",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path, help="a multi-seed run folder (per_seed.csv)")
    parser.add_argument("--reference", default="cs-ucb")
    args = parser.parse_args(argv)
    path = args.run_dir / "per_seed.csv"
    if not path.exists():
        print(f"{path}: no per_seed.csv (run with --seeds N)", file=sys.stderr)
        return 2
    try:
        data = margins(path, args.reference)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    data["beating_clairvoyant"] = runs_beating(path)
    print(format_margins(data))
    print(json.dumps(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
