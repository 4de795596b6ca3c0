"""Quantised edge variants (llama.cpp Q4_K / Q8_0) of the paper's Xeon profiles."""

import pytest

from nodes.catalogue import PRECISIONS
from nodes.profile import list_profiles, load_profile
from nodes.roofline import derive, derive_profile

EDGE_MODELS = ("yi-6b", "llama2-7b", "llama3-8b", "yi-9b")


@pytest.mark.parametrize("model", EDGE_MODELS)
@pytest.mark.parametrize("variant,precision", [("q4", "q4_k"), ("q8", "q8_0")])
def test_shipped_variant_is_what_the_roofline_derives(model, variant, precision):
    name = f"xeon-4214r/{model}-{variant}"
    assert name in list_profiles()
    shipped = load_profile(name)
    derived = derive_profile(model, "xeon-4214r", precision=precision, variant=variant)
    assert shipped.name == derived.name == name
    assert shipped.model == f"{model}-{variant}"
    for key in ("prefill_tok_s", "decode_tok_s", "concurrency_slowdown", "memory_gb"):
        assert getattr(shipped, key) == pytest.approx(getattr(derived, key)), key
    assert shipped.derivation["precision"]["name"] == precision
    assert f"--variant {variant}" in shipped.derivation["command"]


@pytest.mark.parametrize("model", EDGE_MODELS)
def test_decode_is_memory_bound_and_scales_with_bits_per_weight(model):
    fp32 = load_profile(f"xeon-4214r/{model}")
    q8 = load_profile(f"xeon-4214r/{model}-q8")
    q4 = load_profile(f"xeon-4214r/{model}-q4")
    # decode streams the weights once per token: 32 / 4.5 bits ≈ 7× fewer bytes (a little
    # less, as the KV cache and activations do not shrink as much)
    assert 5.0 < q4.decode_tok_s / fp32.decode_tok_s < 7.2
    assert 3.0 < q8.decode_tok_s / fp32.decode_tok_s < 3.8
    # prefill is compute-bound on the fp32 FMA roof for every precision: about equal
    assert q4.prefill_tok_s == pytest.approx(fp32.prefill_tok_s, rel=0.05)
    assert q4.memory_gb < q8.memory_gb < fp32.memory_gb


def test_precisions_state_bits_per_weight():
    assert PRECISIONS["q4_k"].weight_bytes * 8 == pytest.approx(4.5)
    assert PRECISIONS["q8_0"].weight_bytes * 8 == pytest.approx(8.5)


def test_default_name_unchanged_and_bad_variant_rejected():
    assert derive("llama2-7b", "xeon-4214r").profile.name == "xeon-4214r/llama2-7b"
    with pytest.raises(ValueError, match="variant"):
        derive("llama2-7b", "xeon-4214r", precision="q4_k", variant="Q4/x")
