"""Energy model variants (scheduler/energy_models.py): each formula by hand, and the same
formula in every world (scheduler predictions, simulator, emulated node meter, emulated
transmission attribution)."""

from __future__ import annotations

import math

import pytest

from nodes.energy import EnergyMeter
from scenarios.emulate import attribute_transmission
from scenarios.spec import ScenarioSpec, SpecError, load_spec
from scenarios.workload import WorkloadItem
from scheduler.cluster import NodeInfo
from scheduler.energy_models import (DEFAULT_NIC_POWER_W, GPU_BATCH_CURVE, POWER_MODELS,
                                     TRANSMISSION_MODELS, EnergyModel, gpu_batch_fraction,
                                     gpu_batch_power_w, linear_power_w, nic_time_energy_j,
                                     per_bit_energy_j)
from scheduler.outcome import Energy, Outcome, Status
from scheduler.reward import inference_power_w, service_energy
from scheduler.service import Service
from simulator.model import NodeModel
from simulator.runner import NodeSetup, simulate
from testbed.accounting import LinkCounters

A100 = dict(idle_power_w=40.0, max_power_w=250.0)


def test_linear_power_by_hand():
    # P_idle + (P_max - P_idle) * busy / slots
    assert linear_power_w(40, 250, 8, 0) == 40
    assert linear_power_w(40, 250, 8, 1) == pytest.approx(40 + 210 / 8)
    assert linear_power_w(40, 250, 8, 8) == 250
    assert linear_power_w(40, 250, 8, 12) == 250  # never beyond full


def test_gpu_curve_by_hand():
    (b1, f1), (b2, f2) = GPU_BATCH_CURVE
    assert gpu_batch_fraction(1) == f1
    assert gpu_batch_fraction(b2) == f2
    assert gpu_batch_fraction(4 * b2) == f2  # flat beyond the last measurement
    # linear in log2(batch): batch 8 is 3 of the 7 doublings from 1 to 128
    assert gpu_batch_fraction(8) == pytest.approx(f1 + (f2 - f1) * 3 / math.log2(b2))
    assert gpu_batch_power_w(40, 250, 8, 0) == 40  # idle
    assert gpu_batch_power_w(40, 250, 8, 1) == pytest.approx(250 * f1)
    assert gpu_batch_power_w(200, 250, 8, 1) == 200  # never below idle


def test_batch_one_gpu_draw_is_above_the_linear_model():
    # The case: the A100 cloud with 8 slots decoding one sequence.
    linear = linear_power_w(40, 250, 8, 1)  # 66.25 W
    curve = gpu_batch_power_w(40, 250, 8, 1)  # 125 W
    assert curve > 1.5 * linear
    # ... and a full batch draws less than P_max (batching is energy-efficient).
    assert gpu_batch_power_w(40, 250, 8, 8) < linear_power_w(40, 250, 8, 8)


def test_gpu_curve_only_for_the_cloud():
    model = EnergyModel(power="gpu-batch-curve")
    assert model.curve("cloud") is gpu_batch_power_w
    assert model.curve("edge") is linear_power_w
    assert EnergyModel().curve("cloud") is linear_power_w
    with pytest.raises(ValueError, match="node kind"):
        model.curve("fog")


def test_transmission_by_hand():
    assert per_bit_energy_j(1_000_000, 2e-8, 3.0, 9.0) == pytest.approx(0.16)
    assert nic_time_energy_j(1_000_000, 2e-8, 3.0, 1.5) == pytest.approx(4.5)
    nic = EnergyModel(transmission="nic-time")
    assert nic.transmission_j(1_000_000, 2e-8, 2.0) == pytest.approx(2 * DEFAULT_NIC_POWER_W)
    assert not nic.transmission_per_bit and EnergyModel().transmission_per_bit


def test_unknown_names_and_bad_numbers_are_refused():
    with pytest.raises(ValueError, match="accepted: gpu-batch-curve, linear"):
        EnergyModel(power="cubic")
    with pytest.raises(ValueError, match="accepted: nic-time, per-bit"):
        EnergyModel(transmission="per-packet")
    with pytest.raises(ValueError, match="nic_power_w"):
        EnergyModel(nic_power_w=math.inf)
    with pytest.raises(ValueError, match="transmission_s"):
        nic_time_energy_j(10, 0.0, -1.0, 1.0)
    assert POWER_MODELS.names() == ["gpu-batch-curve", "linear"]
    assert TRANSMISSION_MODELS.names() == ["nic-time", "per-bit"]


def test_scheduler_prediction_uses_the_same_formula():
    info = NodeInfo(node_id="cloud", address="x:1", kind="cloud", slots=8, link_rate_mbit=100,
                    transmission_j_per_bit=6e-8, **A100)
    gpu = EnergyModel(power="gpu-batch-curve", transmission="nic-time")
    assert inference_power_w(info, 1) == pytest.approx(linear_power_w(40, 250, 8, 1))
    assert inference_power_w(info, 4, gpu) == pytest.approx(gpu_batch_power_w(40, 250, 8, 4) / 4)
    e = service_energy(info, 1000, transmission_s=2.0, queueing_s=0.0, inference_s=1.0,
                       energy=gpu)
    assert e.transmission_j == pytest.approx(2 * DEFAULT_NIC_POWER_W)
    assert e.inference_j == pytest.approx(gpu_batch_power_w(40, 250, 8, 1))


def test_node_meter_uses_the_curve():
    t = [0.0]
    meter = EnergyMeter(40, 250, slots=8, clock=lambda: t[0], counters=[],
                        power_curve=gpu_batch_power_w)
    meter.begin("a")
    t[0] = 2.0
    energy = meter.end("a")
    assert energy.inference_j == pytest.approx(2.0 * gpu_batch_power_w(40, 250, 8, 1))


def _service(sid: str, input_bytes: int) -> Service:
    return Service(id=sid, prompt="hello", input_bytes=input_bytes, max_new_tokens=10,
                   deadline_s=100.0, prompt_tokens=10)


def _cloud(slots: int = 8) -> NodeSetup:
    model = NodeModel(prefill_tok_s=1000.0, decode_tok_s=10.0, concurrency_slowdown=0.0,
                      name="hand", **A100)
    return NodeSetup("cloud", "cloud", model, slots=slots, queue_capacity=100,
                     link_rate_mbit=8.0, j_per_bit=6e-8)


def test_simulated_batch_one_inference_energy_follows_the_variant():
    items = [WorkloadItem(0.0, _service("a", 1), output_tokens=10)]
    linear = simulate("round-robin", [_cloud()], items).requests[0]
    gpu = simulate("round-robin", [_cloud()], items,
                   energy=EnergyModel(power="gpu-batch-curve")).requests[0]
    # 10 prompt tokens at 1000/s + 10 output tokens at 10/s = 1.01 s alone on the node
    assert linear.inference_j == pytest.approx(1.01 * linear_power_w(40, 250, 8, 1))
    assert gpu.inference_j == pytest.approx(1.01 * gpu_batch_power_w(40, 250, 8, 1))


def test_nic_time_energy_grows_with_time_in_a_congested_link():
    # 1 MB over an 8 Mbit/s link alone takes 1 s; with 4 uploads sharing the link, 4 s.
    nic = EnergyModel(transmission="nic-time")
    alone = simulate("round-robin", [_cloud()],
                     [WorkloadItem(0.0, _service("a", 1_000_000), output_tokens=1)],
                     energy=nic).requests[0]
    crowd = simulate("round-robin", [_cloud()],
                     [WorkloadItem(0.0, _service(f"s{i}", 1_000_000), output_tokens=1)
                      for i in range(4)], energy=nic).requests
    assert alone.transmission_s == pytest.approx(1.0)
    assert alone.transmission_j == pytest.approx(DEFAULT_NIC_POWER_W * 1.0)
    for row in crowd:
        assert row.transmission_s == pytest.approx(4.0)
        assert row.transmission_j == pytest.approx(DEFAULT_NIC_POWER_W * 4.0)
    # per-bit: the same bytes cost the same, congested or not
    per_bit = simulate("round-robin", [_cloud()],
                       [WorkloadItem(0.0, _service(f"s{i}", 1_000_000), output_tokens=1)
                        for i in range(4)]).requests
    assert {round(r.transmission_j, 9) for r in per_bit} == {round(8e6 * 6e-8, 9)}


def test_emulated_attribution_follows_the_variant():
    def outcome(sid: str, transmission_s: float) -> Outcome:
        return Outcome(sid, "cloud", Status.MET, 5.0, 3.0, transmission_s=transmission_s,
                       input_bytes=1_000_000, energy=Energy(transmission_j=0.5))

    outcomes = [(outcome("a", 1.0), 0.0), (outcome("b", 4.0), 0.0)]
    counters = {"cloud": LinkCounters(0, 2_000_000, 5.0, 0.96)}
    per_bit = attribute_transmission(outcomes, counters)
    assert [o.energy.transmission_j for o, _ in per_bit] == pytest.approx([0.48, 0.48])
    nic = attribute_transmission(outcomes, counters, EnergyModel(transmission="nic-time",
                                                                 nic_power_w=2.0))
    assert [o.energy.transmission_j for o, _ in nic] == pytest.approx([2.0, 8.0])
    assert all(o.energy.transmission_method == "modelled" for o, _ in nic)


def test_spec_energy_section():
    spec = load_spec("smoke", **{"energy.model": "gpu-batch-curve",
                                 "energy.transmission": "nic-time"})
    assert spec.energy.to_model() == EnergyModel("gpu-batch-curve", "nic-time")
    assert load_spec("smoke").energy.to_model() == EnergyModel()  # the default
    with pytest.raises(SpecError, match="energy.model: unknown 'cubic'"):
        load_spec("smoke", **{"energy.model": "cubic"})
    with pytest.raises(SpecError, match="energy.nic_power_w"):
        load_spec("smoke", **{"energy.nic_power_w": -1})
    assert "energy" in ScenarioSpec.model_fields
