"""Algorithm 1 of the cloud-device paper and the baselines it is measured against.

`algorithm1` follows the paper's pseudo-code line by line: every operator starts on the device
(lines 4-9), then, traversing linear operators first and attention after (line 3), while the
iteration's latency T is not below the target τ the next operator moves to the cloud and T is
updated (lines 10-18). Within each class the order is by device time, largest first, because
the paper moves "operators with higher computational and memory access requirements" first;
ties keep layer order. T is the placement's latency, so with an explicit link it includes
the crossings a move adds or removes (line 16 plus the link); with
`Link(hide_communication=True)` it is exactly line 16.

Baselines: device-only (the paper's TTFT/TPOT baseline), cloud-only (its cost baseline) and,
beyond the paper, layer-wise partitioning at the best cut (EdgeShard-style pipeline split:
the first k blocks on the device, the rest and the LM head on the cloud, the k that meets the
target at least cost) so the benefit of operator granularity is measured.
"""

from __future__ import annotations

import math

from clouddevice.graph import ATTENTION, CLOUD, DEVICE, LINEAR
from clouddevice.placement import Costing, Placement

ORDERS = ("work", "layer")


def _check_target(target_s: float) -> None:
    if not (math.isfinite(target_s) and target_s > 0):
        raise ValueError(f"target_s must be finite and > 0, got {target_s!r}")


def algorithm1(costing: Costing, target_s: float, order: str = "work",
               fit_memory: bool = False) -> Placement:
    """The paper's greedy: offload linears, then attention, until T < τ (Algorithm 1).

    fit_memory: also keep offloading, in the same order, until the device part fits the
    device's memory (the paper ignores memory; this refuses splits a device could not hold).
    """
    _check_target(target_s)
    if order not in ORDERS:
        raise ValueError(f"order must be one of {', '.join(ORDERS)}, got {order!r}")
    ops = list(costing.graph.operators)
    rank = {LINEAR: 0, ATTENTION: 1}
    device_s = costing.time_s[DEVICE]
    if order == "work":
        ops.sort(key=lambda op: (rank[op.kind], -device_s[op.key]))  # stable: layer order
    else:
        ops.sort(key=lambda op: rank[op.kind])
    sides = {op.key: DEVICE for op in ops}  # lines 4-5
    placement = costing.evaluate(sides)  # lines 6-9: T = Σ f(s, D_device)
    latency_s = placement.latency_s
    for op in ops:  # line 10
        if latency_s < target_s:  # line 11
            if not fit_memory:
                break
            placement = costing.evaluate(sides)
            if placement.fits_device_memory:
                break
        # line 16, plus the link time of the tensors this move makes or stops crossing
        touched = set(costing.tensors_of[op.key])
        before = sum(costing.tensor_link_s(sides, t) for t in touched)
        sides[op.key] = CLOUD  # lines 14-15
        after = sum(costing.tensor_link_s(sides, t) for t in touched)
        latency_s += (costing.time_s[CLOUD][op.key] - costing.time_s[DEVICE][op.key]
                      + after - before)
    return costing.evaluate(sides)


def device_only(costing: Costing) -> Placement:
    return costing.all_on(DEVICE)


def cloud_only(costing: Costing) -> Placement:
    return costing.all_on(CLOUD)


def layer_cuts(costing: Costing) -> list[Placement]:
    """Every layer-wise split: blocks [0, k) on the device, the rest on the cloud, k = 0..L+1
    (the LM head is block L)."""
    g = costing.graph
    return [costing.evaluate({op.key: DEVICE if op.layer < k else CLOUD for op in g.operators})
            for k in range(g.layers + 2)]


def best_layer_cut(costing: Costing, target_s: float, fit_memory: bool = False) -> Placement:
    """The cheapest layer-wise split that meets the target (and, with fit_memory, fits the
    device); the fastest when none does."""
    _check_target(target_s)
    cuts = layer_cuts(costing)
    meeting = [p for p in cuts if p.meets(target_s) and (p.fits_device_memory or not fit_memory)]
    if meeting:
        # cheapest first; at equal cost, more on the device
        return min(meeting, key=lambda p: (p.cost_usd, p.cloud_operators))
    return min(cuts, key=lambda p: p.latency_s)
