"""Energy model variants (issue 13): a node's power over its busy slots, and a service's upload.

One implementation of each formula, used by every world: the scheduler's predictions
(scheduler/reward.py), the simulator's nodes and outcomes (simulator/), the emulated node's
meter (nodes/energy.py) and the emulated run's transmission attribution (scenarios/emulate.py).
A scenario picks the variants in its `energy:` section (scenarios/spec.py EnergySpec); the
registries below are the only lists of their names.

Node power, n of a node's `slots` busy (P(0) = P_idle; each running service is charged P(n)/n):

- ``linear`` (default; the model every figure before issue 13 used):
  P(n) = P_idle + (P_max − P_idle)·n/slots. A node at batch 1 of 8 slots draws an eighth of its
  dynamic range; a full node draws P_max.
- ``gpu-batch-curve``: GPU nodes (the cloud) draw P(n) = max(P_idle, P_max·g(n)), where g is
  the fraction of the board's maximum power a GPU draws while decoding a batch of n sequences,
  interpolated linearly in log2(n) between published measurements (``GPU_BATCH_CURVE``, each
  point cited; ML.ENERGY fits its own power-versus-batch data on the same log2 axis) and flat
  beyond them. Decoding is memory-bound: streaming the weights costs most of the power at batch
  1 already, so batch 1 draws far more than the linear model's P_idle + (P_max − P_idle)/slots
  and a full batch draws less than P_max. Edge nodes (CPUs) keep the linear model.

Transmission of one service's upload:

- ``per-bit`` (default): E = bytes · 8 · J/bit of the node's link (PerLLM eq. 2's E_tran).
- ``nic-time``: E = P_nic · t, t the seconds the upload was in flight, including the time it
  shared a congested link with other uploads. The sender's network interface draws its active
  power for as long as it is sending, so congestion costs energy as well as time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from scheduler.registry import Registry

EDGE, CLOUD = "edge", "cloud"

# (batch size, fraction of the board's maximum power) while a GPU decodes that many sequences.
# Approximate: no published curve for the A100 40GB PCIe with a 33B int8 model exists; these
# are the nearest published measurements (notes/energy-models.md compares them).
GPU_BATCH_CURVE: tuple[tuple[int, float], ...] = (
    # Batch 1: 0.50. ML.ENERGY Leaderboard v1, data/A100_chat_benchmark.csv (ml-energy/leaderboard,
    # commit 4717739): mean GPU power at batch 1 = energy per response / latency = 235 W
    # (Llama-2-13B-chat), 232 W (LLaMA-13B), 220 W (Vicuna-13B), 194 W (Llama-2-7B-chat) on an
    # A100, 0.49-0.59 of a 400 W board. ML.ENERGY Benchmark v3 (Chung et al. 2025, arXiv
    # 2505.06371) on H100 SXM: about 300 W of 700 W (0.43) at batch 1, the anchor the vLLM
    # semantic router's fleet simulator calibrates its power model to.
    (1, 0.50),
    # Batch 128: 0.86. The same ML.ENERGY v3 H100 SXM anchor: about 600 W of 700 W at batch
    # 128; power saturates as compute and memory bandwidth fill (ML.ENERGY v3.0 blog, "Batch
    # Size": power draw increases with batch size, then plateaus).
    (128, 0.86),
)

# Active power of the sender's network interface while it sends (W): an LTE radio's power in
# its active state, beta = 1288.04 mW (Huang et al., "A Close Examination of Performance and
# Power Characteristics of 4G LTE Networks", MobiSys 2012, Table 3). Its per-throughput term
# (alpha_u = 438.39 mW/Mbit/s) is left out: it was fitted below 20 Mbit/s, and at the
# testbed's 100-300 Mbit/s it would be an extrapolation.
DEFAULT_NIC_POWER_W = 1.28804

PowerCurve = Callable[[float, float, int, int], float]  # (P_idle, P_max, slots, busy) -> W


def _check_node(idle_power_w: float, max_power_w: float, slots: int, busy: int) -> None:
    if not (math.isfinite(idle_power_w) and math.isfinite(max_power_w)
            and 0 <= idle_power_w <= max_power_w):
        raise ValueError(f"need finite 0 <= idle_power_w <= max_power_w (got {idle_power_w}, "
                         f"{max_power_w})")
    if slots < 1 or busy < 0:
        raise ValueError(f"need slots >= 1 and busy >= 0 (got slots={slots}, busy={busy})")


def linear_power_w(idle_power_w: float, max_power_w: float, slots: int, busy: int) -> float:
    """P_idle + (P_max − P_idle)·min(busy, slots)/slots."""
    _check_node(idle_power_w, max_power_w, slots, busy)
    return idle_power_w + (max_power_w - idle_power_w) * min(busy, slots) / slots


def gpu_batch_fraction(batch: int) -> float:
    """g(batch): the fraction of P_max a GPU draws decoding `batch` sequences (GPU_BATCH_CURVE,
    linear in log2(batch) between its points, flat outside them)."""
    if batch < 1:
        raise ValueError(f"batch must be >= 1 (got {batch})")
    x = math.log2(batch)
    points = [(math.log2(b), f) for b, f in GPU_BATCH_CURVE]
    if x <= points[0][0]:
        return points[0][1]
    for (x0, f0), (x1, f1) in zip(points, points[1:]):
        if x <= x1:
            return f0 + (f1 - f0) * (x - x0) / (x1 - x0)
    return points[-1][1]


def gpu_batch_power_w(idle_power_w: float, max_power_w: float, slots: int, busy: int) -> float:
    """P_idle when nothing runs, else max(P_idle, P_max·g(busy))."""
    _check_node(idle_power_w, max_power_w, slots, busy)
    if busy == 0:
        return idle_power_w
    return max(idle_power_w, max_power_w * gpu_batch_fraction(min(busy, slots)))


@dataclass(frozen=True)
class PowerModel:
    """The power curve of each node kind under one variant."""

    edge: PowerCurve
    cloud: PowerCurve

    def curve(self, kind: str) -> PowerCurve:
        if kind not in (EDGE, CLOUD):
            raise ValueError(f"node kind must be {EDGE} or {CLOUD} (got {kind!r})")
        return self.cloud if kind == CLOUD else self.edge


POWER_MODELS: Registry[PowerModel] = Registry("energy model")
POWER_MODELS.register("linear")(PowerModel(edge=linear_power_w, cloud=linear_power_w))
# The cloud is the only GPU in every shipped scenario; the edges are Xeon CPUs.
POWER_MODELS.register("gpu-batch-curve")(PowerModel(edge=linear_power_w, cloud=gpu_batch_power_w))

# (input_bytes, J/bit of the link, seconds in flight, sender's NIC power W) -> J
TransmissionEnergy = Callable[[int, float, float, float], float]
TRANSMISSION_MODELS: Registry[TransmissionEnergy] = Registry("transmission model")


def _check_upload(input_bytes: int, j_per_bit: float, transmission_s: float,
                  nic_power_w: float) -> None:
    for name, value in (("input_bytes", input_bytes), ("j_per_bit", j_per_bit),
                        ("transmission_s", transmission_s), ("nic_power_w", nic_power_w)):
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a finite number >= 0 (got {value})")


@TRANSMISSION_MODELS.register("per-bit")
def per_bit_energy_j(input_bytes: int, j_per_bit: float, transmission_s: float = 0.0,
                     nic_power_w: float = 0.0) -> float:
    """E_tran = bytes · 8 · J/bit (PerLLM eq. 2)."""
    _check_upload(input_bytes, j_per_bit, transmission_s, nic_power_w)
    return input_bytes * 8 * j_per_bit


@TRANSMISSION_MODELS.register("nic-time")
def nic_time_energy_j(input_bytes: int, j_per_bit: float, transmission_s: float,
                      nic_power_w: float) -> float:
    """E_tran = P_nic · seconds in flight (queueing behind other uploads included)."""
    _check_upload(input_bytes, j_per_bit, transmission_s, nic_power_w)
    return nic_power_w * transmission_s


DEFAULT_POWER = "linear"
DEFAULT_TRANSMISSION = "per-bit"


@dataclass(frozen=True)
class EnergyModel:
    """The variants one run uses (names in POWER_MODELS and TRANSMISSION_MODELS)."""

    power: str = DEFAULT_POWER
    transmission: str = DEFAULT_TRANSMISSION
    nic_power_w: float = DEFAULT_NIC_POWER_W

    def __post_init__(self) -> None:
        if self.power not in POWER_MODELS:
            raise ValueError(f"energy model {self.power!r} unknown; accepted: "
                             f"{', '.join(POWER_MODELS.names())}")
        if self.transmission not in TRANSMISSION_MODELS:
            raise ValueError(f"transmission model {self.transmission!r} unknown; accepted: "
                             f"{', '.join(TRANSMISSION_MODELS.names())}")
        if not (math.isfinite(self.nic_power_w) and self.nic_power_w >= 0):
            raise ValueError(f"nic_power_w must be a finite number >= 0 "
                             f"(got {self.nic_power_w})")

    @property
    def transmission_per_bit(self) -> bool:
        """True when upload energy is bytes x J/bit, which interface counters measure."""
        return TRANSMISSION_MODELS.get(self.transmission) is per_bit_energy_j

    def curve(self, kind: str) -> PowerCurve:
        """The node power curve of a node of this kind."""
        return POWER_MODELS.get(self.power).curve(kind)

    def node_power_w(self, kind: str, idle_power_w: float, max_power_w: float, slots: int,
                     busy: int) -> float:
        return self.curve(kind)(idle_power_w, max_power_w, slots, busy)

    def share_power_w(self, kind: str, idle_power_w: float, max_power_w: float, slots: int,
                      busy: int) -> float:
        """What each of `busy` running services is charged: P(busy)/busy (busy >= 1)."""
        busy = max(1, busy)
        return self.node_power_w(kind, idle_power_w, max_power_w, slots, busy) / busy

    def transmission_j(self, input_bytes: int, j_per_bit: float, transmission_s: float) -> float:
        return TRANSMISSION_MODELS.get(self.transmission)(
            input_bytes, j_per_bit, transmission_s, self.nic_power_w)


DEFAULT_ENERGY = EnergyModel()
