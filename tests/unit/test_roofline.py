"""Roofline model: operator figures computed by hand, real model sizes, shipped profiles."""

import argparse

import pytest

from nodes.catalogue import MODELS, PRECISIONS, SHIPPED, HardwareSpec, ModelConfig, model_config
from nodes.profile import load_profile, load_profile_file
from nodes.roofline import derive, derive_profile, operator_costs, operator_times
from nodes.roofline_cli import cli_derive, write_profile

# A toy model and a 1 GFLOP/s, 1 GB/s machine, so every figure below is easy to check by hand.
TOY = ModelConfig("toy", layers=2, hidden=64, ffn=128, heads=4, kv_heads=4, vocab=100,
                  max_context=512, precision="fp32", source="test")
SLOW = HardwareSpec(name="slow", kind="edge", description="test", matmul_flops=1e9,
                    vector_flops=1e9, memory_bandwidth_bytes_s=1e9, memory_gb=1.0,
                    idle_power_w=1.0, max_power_w=2.0, compute_efficiency=1.0,
                    memory_efficiency=1.0, default_precision="fp32", citation="test")
FP32 = PRECISIONS["fp32"]


def op(times, name):
    return next(t for t in times if t.op.name == name)


def test_decode_projection_is_bandwidth_bound_by_hand():
    times = operator_times(operator_costs(TOY, FP32, tokens=1, attended=1), SLOW)
    q = op(times, "q_proj")
    # 2·1·64·64 FLOPs; bytes: input 64 + output 64 activations + 64·64 weights, all 4 B
    assert q.op.flops == 8192
    assert q.op.bytes_moved == (64 + 64) * 4 + 64 * 64 * 4 == 16896
    assert q.bound == "memory"
    assert q.time_s == pytest.approx(2 * 16896 / 1e9)  # two layers
    half_bw = operator_times(operator_costs(TOY, FP32, 1, 1), SLOW, memory_efficiency=0.5)
    assert op(half_bw, "q_proj").time_s == pytest.approx(2 * 16896 / 0.5e9)


def test_prefill_projection_is_compute_bound_by_hand():
    times = operator_times(operator_costs(TOY, FP32, tokens=256, attended=256), SLOW,
                           compute_efficiency=0.5)
    q = op(times, "q_proj")
    assert q.op.flops == 2 * 256 * 64 * 64 == 2097152
    assert q.op.bytes_moved == 256 * 128 * 4 + 64 * 64 * 4 == 147456
    assert q.bound == "compute"
    assert q.time_s == pytest.approx(2 * 2097152 / 0.5e9)


def test_attention_and_lm_head_by_hand():
    # decode with 9 cached positions: the new token attends to 10
    ops = operator_costs(TOY, FP32, tokens=1, attended=10)
    scores = next(o for o in ops if o.name == "attn_scores")
    # 4 heads × 10 positions scores, each a 16-long dot product
    assert scores.flops == 2 * 4 * 10 * 16
    assert scores.bytes_moved == (64 + 10 * 64 + 4 * 10) * 4
    lm = next(o for o in ops if o.name == "lm_head")
    assert (lm.flops, lm.count) == (2 * 64 * 100, 1)
    # prefill: logits for the last position only, by default
    lm_prefill = next(o for o in operator_costs(TOY, FP32, 8, 8) if o.name == "lm_head")
    assert lm_prefill.flops == 2 * 64 * 100


def test_batching_reads_weights_once():
    one = next(o for o in operator_costs(TOY, FP32, 1, 1, batch=1) if o.name == "ffn_up")
    four = next(o for o in operator_costs(TOY, FP32, 1, 1, batch=4) if o.name == "ffn_up")
    assert four.flops == 4 * one.flops
    assert four.bytes_moved - one.bytes_moved == 3 * (64 + 128) * 4


@pytest.mark.parametrize("name, billions", [
    ("yi-6b", 6.06), ("llama2-7b", 6.74), ("llama3-8b", 8.03), ("yi-9b", 8.83),
    ("llama2-33b", 32.5)])
def test_model_configs_match_published_sizes(name, billions):
    assert model_config(name).params / 1e9 == pytest.approx(billions, rel=0.005)


def test_33b_is_said_to_be_llama1():
    assert "LLaMA-1" in MODELS["llama2-33b"].note


def test_decode_streams_the_weights_once():
    m = MODELS["llama2-7b"]
    ops = operator_costs(m, FP32, tokens=1, attended=97)
    moved = sum(o.count * o.bytes_moved for o in ops)
    weights = (m.params - m.vocab * m.hidden) * 4  # all but the embedding table
    assert moved == pytest.approx(weights, rel=0.03)


def test_derive_profile_rates_equal_the_operator_sums():
    d = derive(TOY, SLOW, prompt_tokens=16, output_tokens=8, context=20, batch=1)
    prefill = sum(t.time_s for t in operator_times(operator_costs(TOY, FP32, 16, 16), SLOW))
    decode = sum(t.time_s for t in operator_times(operator_costs(TOY, FP32, 1, 21), SLOW))
    assert d.profile.prefill_tok_s == pytest.approx(16 / prefill, rel=1e-4)
    assert d.profile.decode_tok_s == pytest.approx(1 / decode, rel=1e-4)
    assert d.profile.concurrency_slowdown == 0.0  # fitted at batch 1: nothing to fit
    assert d.profile.name == "slow/toy" and d.profile.kind == "edge"


def test_derive_rejects_a_model_that_does_not_fit():
    with pytest.raises(ValueError, match=r"llama2-33b in fp16 needs .* GB .* a100-40gb has 40"):
        derive_profile("llama2-33b", "a100-40gb", precision="fp16")
    with pytest.raises(ValueError, match="accepted: .*llama2-7b"):
        derive_profile("gpt-5", "a100-40gb")
    with pytest.raises(ValueError, match="accepted: .*xeon-4214r"):
        derive_profile("llama2-7b", "tpu")
    with pytest.raises(ValueError, match="compute_efficiency"):
        derive_profile("llama2-7b", "xeon-4214r", compute_efficiency=1.5)


@pytest.mark.parametrize("hardware, model", SHIPPED)
def test_shipped_yaml_is_what_the_roofline_gives(hardware, model):
    shipped = load_profile(f"{hardware}/{model}")
    fresh = derive_profile(model, hardware)
    for key in ("prefill_tok_s", "decode_tok_s", "concurrency_slowdown", "idle_power_w",
                "max_power_w", "memory_gb", "kind"):
        assert getattr(shipped, key) == getattr(fresh, key), key


def test_tiny_model_derives():
    p = derive_profile("tiny", "xeon-4214r")
    assert p.decode_tok_s > 1000 and p.memory_gb > 0


def test_write_and_reload(tmp_path):
    d = derive("llama2-7b", "xeon-4214r", prompt_tokens=32, output_tokens=16)
    path = write_profile(d, tmp_path)
    assert path == tmp_path / "xeon-4214r" / "llama2-7b.yaml"
    assert path.read_text().startswith("# Hardware profile xeon-4214r/llama2-7b")
    assert load_profile_file(path) == d.profile


def test_cli_prints_the_operator_table_and_rates(capsys):
    assert cli_derive(["--model", "llama2-7b", "--hardware", "xeon-4214r"]) == 0
    out = capsys.readouterr().out
    assert "ffn_gate" in out and "attn_scores" in out and "memory" in out
    assert "xeon-4214r/llama2-7b: prefill" in out and "decode" in out
    # a caller's own argparse namespace with only some of our flags works too
    assert cli_derive(argparse.Namespace(model="yi-6b", hardware="xeon-4214r", write=False,
                                         quiet=True)) == 0
    assert capsys.readouterr().out.startswith("xeon-4214r/yi-6b: prefill")
    assert cli_derive(["--model", "llama2-7b"]) == 2
    assert cli_derive(["--model", "nope", "--hardware", "xeon-4214r"]) == 2
    assert "unknown model 'nope'" in capsys.readouterr().err
