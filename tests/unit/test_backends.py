"""Both backends on the tiny models: exact token counts, sampling, timings, bad parameters,
early stop, lazy imports."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from nodes.backends import (BACKENDS, BackendOptions, GenerationParams, InvalidParameter,
                            ModelLoadError, backend_class, create_backend, describe_models)
from nodes.backends.base import IncrementalDetokenizer
from nodes.tiny import build_tiny

REPO = Path(__file__).resolve().parents[2]
PROMPT = "Edge servers sit close to the users. Café"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny(tmp_path_factory.getbasetemp() / "tiny-models")


@pytest.fixture(scope="module", params=["llama-cpp", "transformers"])
def backend(request, tiny):
    b = create_backend(request.param)
    b.load(tiny.gguf_path if request.param == "llama-cpp" else tiny.hf_dir)
    yield b
    b.close()


def _ids(backend, params: GenerationParams, prompt: str = PROMPT) -> list[int]:
    return [t.id for t in backend.generate(prompt, params)]


def test_registry_names_both_backends():
    assert BACKENDS.names() == ["llama-cpp", "transformers"]
    with pytest.raises(KeyError, match="accepted: llama-cpp, transformers"):
        create_backend("vllm")


@pytest.mark.parametrize("n", [1, 2, 33, 300])
def test_exact_token_count(backend, n):
    generation = backend.generate(PROMPT, GenerationParams(max_new_tokens=n))
    tokens = list(generation)
    assert len(tokens) == n
    t = generation.timings
    assert t.tokens_out == n and t.finish_reason == "length"
    assert t.tokens_in == backend.count_tokens(PROMPT) == len(backend.tokenize(PROMPT))
    assert t.prefill_s > 0 and (t.decode_s > 0) == (n > 1)


def test_end_of_sequence_stops_unless_ignored(backend):
    """Random weights emit EOS at some point at a high temperature; ignore_eos (the default)
    blocks it so the requested count comes out."""
    assert backend.eos_ids()
    for seed in range(10):
        p = GenerationParams(max_new_tokens=600, temperature=4.0, seed=seed, ignore_eos=False)
        generation = backend.generate("Edge servers sit", p)
        tokens = list(generation)
        if generation.timings.finish_reason == "stop":
            break
    else:
        pytest.fail("no seed produced an end of sequence")
    assert len(tokens) == generation.timings.tokens_out < 600
    blocked = _ids(backend, GenerationParams(max_new_tokens=600, temperature=4.0, seed=seed),
                   "Edge servers sit")
    assert len(blocked) == 600 and not backend.eos_ids() & set(blocked)


def test_context_length(backend):
    assert backend.context_length == 2048


def test_greedy_is_deterministic_and_top_k_1_equals_greedy(backend):
    greedy = _ids(backend, GenerationParams(max_new_tokens=20))
    assert _ids(backend, GenerationParams(max_new_tokens=20)) == greedy
    # top_k=1 leaves one candidate whatever the temperature: top_k is honoured
    assert _ids(backend, GenerationParams(max_new_tokens=20, temperature=1.5, top_k=1,
                                          seed=9)) == greedy


def test_seed_and_temperature_are_honoured(backend):
    p = GenerationParams(max_new_tokens=30, temperature=1.0, seed=5)
    first = _ids(backend, p)
    assert _ids(backend, p) == first
    assert _ids(backend, GenerationParams(max_new_tokens=30, temperature=1.0, seed=6)) != first
    assert first != _ids(backend, GenerationParams(max_new_tokens=30))


def test_top_k_limits_the_candidates(backend):
    # With top_k=3 each token is one of the 3 most likely; sampling many seeds stays inside
    # a set far smaller than the vocabulary's spread at temperature 5.
    first_tokens = {_ids(backend, GenerationParams(max_new_tokens=1, temperature=5.0, top_k=3,
                                                   seed=s))[0] for s in range(40)}
    wide = {_ids(backend, GenerationParams(max_new_tokens=1, temperature=5.0, seed=s))[0]
            for s in range(40)}
    assert len(first_tokens) <= 3 < len(wide)


@pytest.mark.parametrize("params, field", [
    (GenerationParams(max_new_tokens=0), "max_new_tokens"),
    (GenerationParams(max_new_tokens=-1), "max_new_tokens"),
    (GenerationParams(max_new_tokens=4, temperature=-0.1), "temperature"),
    (GenerationParams(max_new_tokens=4, temperature=float("nan")), "temperature"),
    (GenerationParams(max_new_tokens=4, top_k=-2), "top_k"),
    (GenerationParams(max_new_tokens=4, seed=-1), "seed"),
])
def test_bad_parameters_name_the_field(backend, params, field):
    with pytest.raises(InvalidParameter) as err:
        backend.generate(PROMPT, params)
    assert err.value.field == field and field in str(err.value)


def test_prompt_plus_tokens_over_context_is_rejected(backend):
    with pytest.raises(InvalidParameter, match="context_length 2048"):
        backend.generate("word " * 3000, GenerationParams(max_new_tokens=4))
    with pytest.raises(InvalidParameter, match="prompt"):
        backend.generate([], GenerationParams(max_new_tokens=4))


def test_close_mid_generation_frees_the_model(backend):
    generation = backend.generate(PROMPT, GenerationParams(max_new_tokens=100))
    next(generation), next(generation)
    generation.close()
    assert generation.timings.finish_reason == "cancelled"
    assert generation.timings.tokens_out == 2
    # llama.cpp holds one instance (options.instances=1): a leak would block this forever
    done = threading.Event()
    threading.Thread(target=lambda: (list(backend.generate(PROMPT, GenerationParams(3))),
                                     done.set()), daemon=True).start()
    assert done.wait(10)


def test_streamed_text_reassembles_multibyte_characters(backend):
    generation = backend.generate(PROMPT, GenerationParams(max_new_tokens=60, temperature=1.0,
                                                           seed=1))
    tokens = list(generation)
    full = backend._detokenizer().decode([t.id for t in tokens])
    text = "".join(t.text for t in tokens)
    assert full.startswith(text) and len(full) - len(text) <= 1


def test_incremental_detokenizer_holds_back_partial_utf8():
    table = {1: b"caf", 2: b"\xc3", 3: b"\xa9", 4: b"!"}
    detok = IncrementalDetokenizer(
        lambda ids: b"".join(table[i] for i in ids).decode("utf-8", errors="replace"))
    assert [detok.push(i) for i in (1, 2, 3, 4)] == ["caf", "", "é", "!"]


def test_concurrent_generations_on_two_instances(tiny):
    b = create_backend("llama-cpp", BackendOptions(instances=2))
    b.load(tiny.gguf_path)
    try:
        expected = _ids(b, GenerationParams(max_new_tokens=50))
        results: list[list[int]] = []
        threads = [threading.Thread(target=lambda: results.append(
            _ids(b, GenerationParams(max_new_tokens=50)))) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert results == [expected] * 4
    finally:
        b.close()


def test_missing_or_bad_model_is_a_load_error(tmp_path):
    (tmp_path / "bad.gguf").write_bytes(b"GGUF but not really")
    for name, path, message in [("llama-cpp", tmp_path / "none.gguf", "not found"),
                                ("llama-cpp", tmp_path / "bad.gguf", "cannot load"),
                                ("transformers", tmp_path / "none", "not found")]:
        with pytest.raises(ModelLoadError, match=message):
            create_backend(name).load(path)


def test_capabilities_are_the_backend_classes_own():
    # A Llama context is not thread-safe: one per slot; a transformers model serves all slots.
    llama, hf = backend_class("llama-cpp"), backend_class("transformers")
    assert llama.instance_per_slot and llama.instances_for(4) == 4
    assert not hf.instance_per_slot and hf.instances_for(4) == 1
    assert [backend_class(n).name for n in BACKENDS.names()] == BACKENDS.names()
    assert describe_models() == "GGUF file (llama-cpp) or model directory (transformers)"


def test_importing_the_server_loads_neither_torch_nor_llama_cpp():
    # nor does reading the backend classes' capabilities (nodes.config does at import)
    code = ("import sys, nodes.server, nodes.backends, nodes.tiny, nodes.__main__; "
            "[nodes.backends.backend_class(n) for n in nodes.backends.BACKENDS.names()]; "
            "print(sorted(m for m in ('torch', 'llama_cpp', 'transformers') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, check=True, env={"PYTHONPATH": str(REPO)}).stdout
    assert out.strip() == "[]"
