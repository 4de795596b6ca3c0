"""Algorithm 1 on a hand-made four-operator graph; placements, link, memory, baselines."""

import pytest

from clouddevice.graph import ATTENTION, LINEAR, Operator, OperatorGraph, Tensor, build_graph
from clouddevice.greedy import algorithm1, best_layer_cut, cloud_only, device_only, layer_cuts
from clouddevice.hardware import HardwareModel
from clouddevice.placement import Costing, DeviceMemoryError, Link
from nodes.catalogue import PRECISIONS, HardwareSpec, ModelConfig
from nodes.roofline import OperatorCost

TOY = ModelConfig("toy", layers=2, hidden=8, ffn=12, heads=1, kv_heads=1, vocab=10,
                  max_context=64, precision="fp16", source="test")


def machine(name, flops, memory_gb=1.0, price=None):
    return HardwareModel.constant(HardwareSpec(
        name=name, kind="edge", description="test", matmul_flops=flops, vector_flops=flops,
        memory_bandwidth_bytes_s=1e12, memory_gb=memory_gb, idle_power_w=0.0, max_power_w=1.0,
        compute_efficiency=1.0, memory_efficiency=1.0, default_precision="fp16",
        citation="test", price_usd_s=price))


DEVICE = machine("dev", 1e9)  # device 1 GFLOP/s, cloud 10 GFLOP/s: times are flops / rate
CLOUD = machine("cld", 1e10, memory_gb=100.0, price=2.0)


def four_operator_graph(weight_bytes=0.0):
    """input → lin0 → att0 → lin1 → att1 → token; device times 0.4, 0.3, 0.2, 0.1 s."""
    spec = [(0, "lin0", LINEAR, 0.4e9), (0, "att0", ATTENTION, 0.3e9),
            (1, "lin1", LINEAR, 0.2e9), (1, "att1", ATTENTION, 0.1e9)]
    ops, tensors, prev = [], {"x0": Tensor("x0", 1000.0, "input")}, "x0"
    for i, (layer, name, kind, flops) in enumerate(spec):
        out = "token" if i == len(spec) - 1 else f"t{i}"
        op = Operator(layer, name, kind, OperatorCost(name, "matmul", flops, 1.0),
                      weight_bytes, 0.0, (prev,), out)
        ops.append(op)
        tensors[out] = Tensor(out, 1000.0, op.key)
        prev = out
    return OperatorGraph(TOY, PRECISIONS["fp16"], "decode", 1, 0, tuple(ops), tensors, 0.0)


def costing(link=Link(hide_communication=True), graph=None, device=DEVICE):
    return Costing(graph or four_operator_graph(), device, CLOUD, link)


def cloud_set(p):
    return {k for k, side in p.sides.items() if side == "cloud"}


def test_algorithm1_by_hand_linears_first_until_below_target():
    c = costing()
    assert device_only(c).latency_s == pytest.approx(1.0)
    # T = 1.0 ≥ 0.6: lin0 moves, T = 1.0 − 0.4 + 0.04 = 0.64 ≥ 0.6: lin1 moves, T = 0.46 < 0.6
    p = algorithm1(c, target_s=0.6)
    assert cloud_set(p) == {"L0.lin0", "L1.lin1"}
    assert p.latency_s == pytest.approx(0.46)
    assert p.cloud_s == pytest.approx(0.06) and p.cost_usd == pytest.approx(0.12)
    # a tighter target reaches attention, the larger first
    p = algorithm1(c, target_s=0.3)
    assert cloud_set(p) == {"L0.lin0", "L1.lin1", "L0.att0"}
    assert p.latency_s == pytest.approx(0.19)
    # already below the target: nothing moves, nothing costs
    assert cloud_set(algorithm1(c, target_s=1.5)) == set()
    assert algorithm1(c, target_s=1.5).cost_usd == 0
    # the target is strict (T < τ, line 11): T exactly at τ still moves lin0
    assert cloud_set(algorithm1(c, target_s=device_only(c).latency_s)) == {"L0.lin0"}


def test_layer_order_traverses_linears_in_layer_order():
    graph = four_operator_graph()
    ops = list(graph.operators)
    ops[0] = Operator(0, "lin0", LINEAR, OperatorCost("lin0", "matmul", 0.05e9, 1.0), 0.0, 0.0,
                      ops[0].inputs, ops[0].output)
    c = costing(graph=OperatorGraph(TOY, graph.precision, "decode", 1, 0, tuple(ops),
                                    graph.tensors, 0.0))
    # device times lin0 0.05, att0 0.3, lin1 0.2, att1 0.1 = 0.65; target 0.5
    assert cloud_set(algorithm1(c, 0.5, order="work")) == {"L1.lin1"}
    assert cloud_set(algorithm1(c, 0.5, order="layer")) == {"L0.lin0", "L1.lin1"}
    with pytest.raises(ValueError, match="order must be one of work, layer, got 'size'"):
        algorithm1(c, 0.5, order="size")


def test_explicit_link_counts_every_crossing():
    link = Link(rate_mbit=8e-3, one_way_latency_ms=50.0)  # 1000 bytes take 1 s + 0.05 s
    assert link.transfer_s(1000.0) == pytest.approx(1.05)
    c = costing(link)
    only_lin0 = c.evaluate({"L0.lin0": "cloud", "L0.att0": "device", "L1.lin1": "device",
                            "L1.att1": "device"})
    # x0 goes up (1000 B), t0 comes back (1000 B)
    assert [x.tensor for x in only_lin0.crossings] == ["x0", "t0"]
    assert only_lin0.link_s == pytest.approx(2.1)
    assert only_lin0.latency_s == pytest.approx(0.04 + 0.6 + 2.1)
    # cloud-only: the prompt goes up and the token comes down
    assert cloud_only(c).link_s == pytest.approx(2.1)
    # each move adds crossings: T 1.0 → 2.74 → 4.66 → 2.29 → 2.2, and the greedy ends with
    # everything on the cloud, missing a target the device alone nearly met
    p = algorithm1(c, target_s=0.9)
    assert cloud_set(p) == set(p.sides) and p.latency_s == pytest.approx(2.2)
    assert not p.meets(0.9)
    hidden = costing(Link(rate_mbit=8e-3, one_way_latency_ms=50.0, hide_communication=True))
    assert cloud_only(hidden).link_s == 0


def test_device_part_that_does_not_fit_is_flagged_and_refused():
    small = machine("dev", 1e9, memory_gb=2.5e-9)  # 2.5 bytes... of weights, at most
    c = costing(graph=four_operator_graph(weight_bytes=1.0), device=small)
    p = algorithm1(c, target_s=0.6)  # the paper's greedy ignores memory
    assert cloud_set(p) == {"L0.lin0", "L1.lin1"}
    # device holds att0, att1 (1 B each) and its largest output (1000 B)
    assert p.device_memory_bytes == pytest.approx(1002.0)
    assert not p.fits_device_memory and p.summary()["fits_device_memory"] is False
    with pytest.raises(DeviceMemoryError, match="device part needs 0.00 GB but dev has"):
        p.execution_plan()
    # refusing: keep offloading until the device part fits (here: everything)
    fitted = algorithm1(c, target_s=0.6, fit_memory=True)
    assert fitted.fits_device_memory and cloud_set(fitted) == set(fitted.sides)


def test_baselines_and_layer_cut_on_a_small_llama():
    c = Costing(build_graph(TOY, "decode", 8), machine("dev", 1e6), CLOUD,
                Link(rate_mbit=1000.0, one_way_latency_ms=1.0))
    cuts = layer_cuts(c)
    assert len(cuts) == TOY.layers + 2
    assert cuts[0].sides == cloud_only(c).sides and cuts[-1].sides == device_only(c).sides
    # one device block: x0 stays, x1 goes up once, the token comes down
    assert [x.tensor for x in cuts[1].crossings] == ["x1", "token"]
    best = best_layer_cut(c, target_s=1.0)
    assert best.meets(1.0)
    assert best.cost_usd == min(p.cost_usd for p in cuts if p.meets(1.0))
    # nothing meets a zero-ish target: the fastest cut
    assert best_layer_cut(c, 1e-9).latency_s == min(p.latency_s for p in cuts)


def test_execution_plan_names_sides_and_bytes():
    c = Costing(build_graph(TOY, "prefill", 4), machine("dev", 1e6), CLOUD, Link())
    sides = {op.key: ("cloud" if op.name.startswith("ffn") else "device")
             for op in c.graph.operators}
    plan = c.evaluate(sides).execution_plan()
    assert plan["layers"][0] == {"layer": 0, "device": ["q_proj", "k_proj", "v_proj",
                                                        "attn_scores", "attn_av", "o_proj"],
                                 "cloud": ["ffn_gate", "ffn_up", "ffn_down"]}
    assert plan["layers"][-1] == {"layer": "head", "device": ["lm_head"], "cloud": []}
    up = [t for t in plan["transfers"] if t["tensor"] == "h0"][0]
    assert up == {"tensor": "h0", "after": "L0.o_proj", "from": "device", "to": "cloud",
                  "consumers": ["L0.ffn_gate", "L0.ffn_up", "L0.ffn_down"], "bytes": 4 * 8 * 2}
    assert [t["tensor"] for t in plan["transfers"]] == ["h0", "x1", "h1", "x2"]


@pytest.mark.parametrize("bad, match", [
    ({"rate_mbit": 0.0}, "rate_mbit must be finite and > 0, got 0.0"),
    ({"one_way_latency_ms": -1.0}, "one_way_latency_ms must be finite and >= 0, got -1.0"),
])
def test_link_rejects_bad_values(bad, match):
    with pytest.raises(ValueError, match=match):
        Link(**bad)


def test_placement_and_costing_reject_bad_input():
    c = costing()
    with pytest.raises(ValueError, match="must be one of device, cloud, got 'edge'"):
        c.evaluate({"L0.lin0": "edge", "L0.att0": "device", "L1.lin1": "device",
                    "L1.att1": "device"})
    with pytest.raises(ValueError, match="missing"):
        c.evaluate({"L0.lin0": "device"})
    with pytest.raises(ValueError, match="target_s must be finite and > 0, got 0"):
        algorithm1(c, 0)
    with pytest.raises(ValueError, match="has no price_usd_s"):
        Costing(four_operator_graph(), DEVICE, DEVICE, Link())
