"""The hardware model: Eq. 8 per operator, the efficiency a spline over arithmetic intensity.

Eq. 8 of the cloud-device paper times an operator as max(Operation / (P · Parallelism),
DataSize / BW). We read Parallelism as the efficiency the paper fits "by spline interpolation
on empirically measured data" (§III-B): the attained fraction of the roofline at the
operator's arithmetic intensity I = FLOPs / bytes,

    T(op) = max(FLOPs / P, bytes / BW) / e(I),   e(I) = attained FLOP/s / min(P, I · BW),

with e interpolated by a PCHIP spline over log10(I) through measured points (shape-preserving:
monotone wherever the points are, never overshooting between them) and held flat beyond the
outermost points. For the paper's GPUs and devices no measurements are available here, so
`HardwareModel.constant` uses the catalogue's constant efficiencies per roof
(`nodes.roofline.operator_times`), the documented fallback.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy.interpolate import PchipInterpolator

from nodes.catalogue import HardwareSpec, hardware_spec
from nodes.roofline import OperatorCost, operator_times


class EfficiencySpline:
    """Efficiency as a function of arithmetic intensity: PCHIP through measured points."""

    def __init__(self, intensity_flop_per_byte: Sequence[float],
                 efficiency: Sequence[float]) -> None:
        x = np.asarray(intensity_flop_per_byte, dtype=float)
        y = np.asarray(efficiency, dtype=float)
        if x.shape != y.shape or x.ndim != 1:
            raise ValueError(f"intensity and efficiency must be equal-length lists, got "
                             f"{x.shape} and {y.shape}")
        for key, values in (("intensity_flop_per_byte", x), ("efficiency", y)):
            bad = values[~(np.isfinite(values) & (values > 0))]
            if bad.size:
                raise ValueError(f"{key} must be finite and > 0, got {float(bad[0])!r}")
        log_x = np.log10(x)
        # points at one intensity (different shapes, same ratio) merge into their median,
        # because a spline needs strictly increasing abscissae
        keys = np.round(log_x, 9)
        groups = [keys == k for k in np.unique(keys)]
        unique = np.array([log_x[g].mean() for g in groups])
        merged = np.array([np.median(y[g]) for g in groups])
        if unique.size < 2:
            raise ValueError(f"need points at 2 or more distinct intensities, got {unique.size}")
        self.log_intensity = unique
        self.efficiency = merged
        self._pchip = PchipInterpolator(unique, merged, extrapolate=False)

    def __call__(self, intensity_flop_per_byte: float) -> float:
        if not (math.isfinite(intensity_flop_per_byte) and intensity_flop_per_byte > 0):
            raise ValueError(f"intensity must be finite and > 0, got {intensity_flop_per_byte!r}")
        lx = min(max(math.log10(intensity_flop_per_byte), self.log_intensity[0]),
                 self.log_intensity[-1])
        return float(self._pchip(lx))


@dataclass(frozen=True)
class HardwareModel:
    """Operator times on one machine: the spline model when `curve` is set, else the fallback."""

    name: str
    peak_flops: float
    bandwidth_bytes_s: float
    spec: HardwareSpec | None = None  # price and memory of a catalogued machine
    curve: EfficiencySpline | None = None

    @classmethod
    def constant(cls, spec: HardwareSpec | str) -> "HardwareModel":
        """The fallback: the catalogue's peaks at its constant efficiency per roof."""
        hw = spec if isinstance(spec, HardwareSpec) else hardware_spec(spec)
        return cls(hw.name, hw.matmul_flops, hw.memory_bandwidth_bytes_s, hw)

    @classmethod
    def measured(cls, name: str, peak_flops: float, bandwidth_bytes_s: float,
                 curve: EfficiencySpline) -> "HardwareModel":
        for key, value in (("peak_flops", peak_flops), ("bandwidth_bytes_s", bandwidth_bytes_s)):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name}: {key} must be finite and > 0, got {value!r}")
        return cls(name, peak_flops, bandwidth_bytes_s, None, curve)

    def roofline_s(self, op: OperatorCost) -> float:
        """Eq. 8 at the peaks, efficiency 1."""
        return max(op.flops / self.peak_flops, op.bytes_moved / self.bandwidth_bytes_s)

    def time_s(self, op: OperatorCost) -> float:
        """One instance of `op` (Eq. 8 with the efficiency of its intensity)."""
        if self.curve is None:
            assert self.spec is not None
            return operator_times([OperatorCost(op.name, op.kind, op.flops, op.bytes_moved, 1)],
                                  self.spec)[0].time_s
        return self.roofline_s(op) / self.curve(op.intensity_flop_per_byte)

    @property
    def price_usd_s(self) -> float | None:
        return self.spec.price_usd_s if self.spec else None

    @property
    def memory_bytes(self) -> float | None:
        return self.spec.memory_gb * 1e9 if self.spec else None
