"""Operator graph of the cloud-device split: FLOPs and bytes against Table I, by hand."""

import pytest

from clouddevice.graph import LAYER_OPERATORS, build_graph
from nodes.catalogue import ModelConfig

# One head and no grouped KV: the shape Table I sketches. h = 8, h' = 12, h_v = 10, FP16.
H, F, V = 8, 12, 10
TOY = ModelConfig("toy", layers=2, hidden=H, ffn=F, heads=1, kv_heads=1, vocab=V,
                  max_context=64, precision="fp16", source="test")
B = 2  # bytes per FP16 element; Table I counts elements and multiply-accumulates


def ops(graph, layer=0):
    return {op.name: op for op in graph.operators if op.layer == layer}


def test_prefill_operators_match_table_one():
    s = 4
    o = ops(build_graph(TOY, "prefill", s))
    # Q/K/V/O: s·h² MACs, 2·s·h + h² elements
    for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
        assert o[name].flops == 2 * s * H * H == 512
        assert o[name].bytes_moved == (2 * s * H + H * H) * B == 256
        assert o[name].kind == "linear"
    # S·V: s²·h MACs, 2·s·h + s² elements
    assert o["attn_av"].flops == 2 * s * s * H == 256
    assert o["attn_av"].bytes_moved == (2 * s * H + s * s) * B == 160
    # QKᵀ has S·V's counts; the softmax fused into it adds 5 FLOPs and a read + write per score
    assert o["attn_scores"].flops == 2 * s * s * H + 5 * s * s
    assert o["attn_scores"].bytes_moved == (2 * s * H + s * s) * B + 2 * s * s * B
    # FFN (each of gate, up, down): s·h·h' MACs, s·h + s·h' + h·h' elements
    for name in ("ffn_gate", "ffn_up", "ffn_down"):
        assert o[name].flops == 2 * s * H * F == 768
        assert o[name].bytes_moved == (s * H + s * F + H * F) * B == 352


def test_decode_operators_match_table_one():
    s_in = 5  # cached positions: the new token attends to s_in + 1
    g = build_graph(TOY, "decode", s_in)
    o = ops(g)
    assert o["q_proj"].flops == 2 * H * H
    assert o["q_proj"].bytes_moved == (2 * H + H * H) * B
    assert o["attn_av"].flops == 2 * (s_in + 1) * H == 96
    assert o["attn_av"].bytes_moved == (H + (s_in + 1) * H + s_in + 1) * B == 124
    assert o["ffn_up"].flops == 2 * H * F
    assert o["ffn_up"].bytes_moved == (H + F + H * F) * B
    lm = next(op for op in g.operators if op.name == "lm_head")
    assert lm.flops == 2 * H * V
    # Table I writes 2h + h·h_v; the logits written are h_v wide, so we count h + h_v + h·h_v
    assert lm.bytes_moved == (H + V + H * V) * B


def test_graph_shape_weights_cache_and_tensors():
    g = build_graph(TOY, "decode", 5)
    assert [op.name for op in g.operators] == [*LAYER_OPERATORS] * 2 + ["lm_head"]
    o = ops(g, 1)
    assert o["ffn_down"].weight_bytes == H * F * B
    assert o["attn_scores"].weight_bytes == 0
    assert o["attn_scores"].kv_cache_bytes == 6 * H * B  # K of 6 positions after this step
    assert o["o_proj"].inputs == ("a1", "x1")  # the residual stream
    assert o["ffn_down"].output == "x2"
    assert g.tensors["x0"].bytes == 4  # one token id
    assert g.tensors["p1"].bytes == 1 * 1 * 6 * B  # heads × tokens × attended scores
    assert g.tensors["g1"].bytes == F * B
    assert g.consumers()["token"] == ["output"]
    assert g.consumers()["x1"] == ["L1.q_proj", "L1.k_proj", "L1.v_proj", "L1.o_proj"]
    prefill = build_graph(TOY, "prefill", 4)
    assert prefill.tensors["x0"].bytes == 16 and prefill.tensors["p0"].bytes == 16 * B


def test_llama2_7b_heads_count_in_the_score_matrix():
    g = build_graph("llama2-7b", "prefill", 128)
    assert g.tensors["p0"].bytes == 32 * 128 * 128 * 2
    assert sum(op.weight_bytes for op in g.operators) == pytest.approx(
        32 * (4 * 4096**2 + 3 * 4096 * 11008) * 2 + 4096 * 32000 * 2)


@pytest.mark.parametrize("kwargs, match", [
    ({"stage": "train", "size": 4}, "stage must be one of prefill, decode, got 'train'"),
    ({"stage": "prefill", "size": 0}, "size must be an integer >= 1, got 0"),
    ({"stage": "decode", "size": 64}, "exceeds toy's context of 64"),
    ({"stage": "prefill", "size": 4, "precision": "fp8"}, "precision must be one of"),
])
def test_bad_input_names_the_field(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_graph(TOY, **kwargs)
