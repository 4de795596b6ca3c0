"""The memory check (nodes/memory.py): weights + KV cache at a node's slots and longest
context against its hardware's memory, in the scenario spec and in the node's own config."""

from __future__ import annotations

import pytest

from nodes.config import NodeConfig
from nodes.memory import check_memory, memory_fit
from nodes.profile import load_profile
from scenarios.spec import SpecError, available, load_spec, longest_service_tokens

CLOUD = "a100-40gb/llama2-33b"


def test_the_issue_count_by_hand():
    # LLaMA-33B: 60 layers, 52 heads of 128 (6656 wide), fp16 KV cache:
    # 2 x 60 x 6656 x 2 B = 1,597,440 B per token; int8 weights: 32.53e9 parameters x 1 B.
    fit = memory_fit(load_profile(CLOUD), slots=8, context_tokens=848, node="cloud")
    assert fit.kv_bytes_per_token == 2 * 60 * 6656 * 2
    assert fit.weights_gb == pytest.approx(32.529, abs=1e-3)
    assert fit.kv_cache_gb == pytest.approx(8 * 848 * 1_597_440 / 1e9)
    assert fit.need_gb == pytest.approx(43.37, abs=0.01)  # "about 43 GB"
    assert not fit.fits
    assert fit.max_slots == 5 and fit.max_context_tokens == 584


def test_over_full_is_refused_with_the_numbers():
    with pytest.raises(ValueError) as err:
        check_memory(load_profile(CLOUD), 8, 848, node="cloud")
    message = str(err.value)
    for figure in ("43.37 GB", "32.53 GB", "10.84 GB", "8 slots x 848 tokens", "40 GB",
                   "at most 5 slot(s)", "584 tokens per slot"):
        assert figure in message
    assert check_memory(load_profile(CLOUD), 5, 848, node="cloud").fits


def test_context_is_clipped_to_the_model_window():
    fit = memory_fit(load_profile(CLOUD), 1, 10**9)
    assert fit.context_tokens == fit.max_context == 2048


def test_spec_refuses_an_over_full_cloud():
    with pytest.raises(SpecError) as err:
        load_spec("paper-q4", **{"nodes.cloud.slots": 8})
    assert "nodes.cloud: a100-40gb/llama2-33b needs 43.37 GB" in str(err.value)
    assert "longest service is 848 tokens" in str(err.value)


@pytest.mark.parametrize("name", available())
def test_shipped_scenarios_fit(name):
    spec = load_spec(name)  # validation runs the check
    for kind in ("edge", "cloud"):
        group = getattr(spec.nodes, kind)
        longest = longest_service_tokens(spec.workload)
        fit = memory_fit(load_profile(group.profile), group.slots, longest or 10**9)
        assert fit is None or fit.fits, fit.describe()


def test_node_config_refuses_an_over_full_node():
    config = NodeConfig(node_id="cloud", kind="cloud", model="models/tiny.gguf",
                        profile=CLOUD, slots=8, max_context_tokens=848)
    with pytest.raises(ValueError, match=r"node cloud: .* needs 43.37 GB .* at most 5 slot"):
        config.validate()
    NodeConfig(node_id="cloud", kind="cloud", model="models/tiny.gguf", profile=CLOUD,
               slots=5, max_context_tokens=848).validate()
    # without a context: the model's whole window, 2048 tokens
    with pytest.raises(ValueError, match="2 slot"):
        NodeConfig(node_id="cloud", kind="cloud", model="models/tiny.gguf", profile=CLOUD,
                   slots=5).validate()
