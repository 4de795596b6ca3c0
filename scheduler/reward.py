"""The energy model of one service and the reward CS-UCB learns from (PerLLM eqs. 2 and 4).

Units: energy in J, power in W, time in s, sizes in bytes, link cost in J/bit.

A service's modelled energy on node j has three parts (eq. 2's E_tran, E_infer, E_idle):
- transmission: input_bytes · 8 · J/bit of j's link;
- inference: P · inference_s, where P is the service's share of the node's power,
  P = P_idle / concurrent + (P_max − P_idle) · u with u = 1 / slots (one slot's utilisation).
  Summed over `concurrent` services running together this gives the node's power at
  utilisation concurrent/slots, so running services never double-count the idle floor;
- idle: P_idle of j while the service is on its way and waiting for a slot,
  P_idle · (transmission_s + queueing_s). This is the part of the node's idle draw that the
  service is charged for; the run's idle energy (P_idle × idle time of every powered node,
  nodes.csv) is accounted separately by the results writer.

The formulas themselves live in scheduler/energy_models.py, with their variants (a GPU power
curve over batch size, time-based NIC power); these helpers take an EnergyModel, the linear
per-bit one by default, so a policy's predictions and the world it is judged in can share one.
"""

from __future__ import annotations

import math

from scheduler.cluster import NodeInfo, NodeState, Prediction
from scheduler.energy_models import DEFAULT_ENERGY, EnergyModel, per_bit_energy_j
from scheduler.outcome import Energy, Outcome, Status

# A service that took twice its requirement (or failed) counts as fully violated: bounding
# f to [-1, 1] keeps the reward's range fixed, so the UCB bonus δ has a meaningful scale.
F_FLOOR = -1.0


def transmission_energy_j(input_bytes: int, j_per_bit: float) -> float:
    """E_tran = bytes · 8 · J/bit."""
    return per_bit_energy_j(input_bytes, j_per_bit)


def inference_power_w(info: NodeInfo, concurrent: int = 1,
                      energy: EnergyModel = DEFAULT_ENERGY) -> float:
    """One service's share of the node's power with `concurrent` running, P(concurrent)/
    concurrent; linear: P_idle/concurrent + (P_max − P_idle)/slots."""
    return energy.share_power_w(info.kind, info.idle_power_w, info.max_power_w, info.slots,
                                min(max(1, concurrent), info.slots))


def service_energy(info: NodeInfo, input_bytes: int, transmission_s: float,
                   queueing_s: float, inference_s: float, concurrent: int = 1,
                   method: str = "modelled", energy: EnergyModel = DEFAULT_ENERGY) -> Energy:
    """The modelled energy of one service on a node, by part (see the module docstring)."""
    for name, value in (("input_bytes", input_bytes), ("transmission_s", transmission_s),
                        ("queueing_s", queueing_s), ("inference_s", inference_s)):
        if not value >= 0:
            raise ValueError(f"{name} must be >= 0 (got {value})")
    return Energy(
        transmission_j=energy.transmission_j(input_bytes, info.transmission_j_per_bit,
                                             transmission_s),
        inference_j=inference_power_w(info, concurrent, energy) * inference_s,
        idle_j=info.idle_power_w * (transmission_s + queueing_s),
        transmission_method=method, inference_method=method, idle_method=method)


def measured_f(outcome: Outcome) -> float:
    """Eq. 3's time term from the MEASURED total time: (D − D_measured)/D, in [-1, 1].

    A missed deadline gives f < 0; a failed service gives -1. The compute and bandwidth
    terms of eq. 3 are not observable per service after the fact; their violation shows up
    here as a longer measured time (a congested link or a full node makes the service slow).
    """
    if outcome.status is Status.FAILED:
        return F_FLOOR
    f = (outcome.deadline_s - outcome.total_s) / outcome.deadline_s
    if not math.isfinite(f):
        return F_FLOOR
    return max(F_FLOOR, min(1.0, f))


def weighted_energy_j(energy: Energy, omega_tran: float, omega_infer: float,
                      omega_idle: float) -> float:
    """ω_tran·E_tran + ω_infer·E_infer + ω_idle·E_idle (eq. 1's objective for one service)."""
    return (omega_tran * energy.transmission_j + omega_infer * energy.inference_j
            + omega_idle * energy.idle_j)


def reward(energy: Energy, f: float, *, lam: float, omega_tran: float, omega_infer: float,
           omega_idle: float, energy_ref_j: float, penalty_only: bool = False) -> float:
    """Eq. 4 for one service: −(Σ ω·E)/E_ref + λ·f (dimensionless; E_ref fixed, in J).

    penalty_only: λ·min(0, f) instead of λ·f, so time to spare earns nothing and only a
    violation costs (eq. 4 as written rewards slack, which can outweigh energy)."""
    constraint = min(0.0, f) if penalty_only else f
    return (-weighted_energy_j(energy, omega_tran, omega_infer, omega_idle) / energy_ref_j
            + lam * constraint)


def predicted_energy(node: NodeState, input_bytes: int, prediction: Prediction,
                     energy: EnergyModel = DEFAULT_ENERGY) -> Energy:
    """The modelled energy of a service if it ran as predicted on `node`."""
    concurrent = min(len(node.inflight) + 1, node.info.slots)
    return service_energy(node.info, input_bytes, prediction.transmission_s,
                          prediction.queueing_s, prediction.inference_s, concurrent,
                          energy=energy)
