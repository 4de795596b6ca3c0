"""The tiny offline models: shape, determinism from a seed, idempotent rebuilds, the CLI."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nodes.tiny import GGUF_NAME, HF_NAME, TinyConfig, build_tiny
from nodes.tiny.gguf_model import SPACE, spm_vocabulary
from nodes.tiny.config import corpus_text

REPO = Path(__file__).resolve().parents[2]


def _digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny(tmp_path_factory.getbasetemp() / "tiny-models")


def test_same_seed_same_bytes_other_seed_other_weights(tmp_path):
    a = build_tiny(tmp_path / "a", force=True)
    b = build_tiny(tmp_path / "b", force=True)
    c = build_tiny(tmp_path / "c", TinyConfig(seed=1), force=True)
    assert _digests(tmp_path / "a") == _digests(tmp_path / "b")
    assert a.fingerprint == b.fingerprint != c.fingerprint
    da, dc = _digests(tmp_path / "a"), _digests(tmp_path / "c")
    assert da[GGUF_NAME] != dc[GGUF_NAME]
    assert da[f"{HF_NAME}/model.safetensors"] != dc[f"{HF_NAME}/model.safetensors"]
    # the tokenizer comes from the corpus, not the seed
    assert da[f"{HF_NAME}/tokenizer.json"] == dc[f"{HF_NAME}/tokenizer.json"]


def test_rebuild_is_skipped_when_up_to_date(tmp_path):
    first = build_tiny(tmp_path)
    before = _digests(tmp_path)
    mtime = (tmp_path / GGUF_NAME).stat().st_mtime_ns
    again = build_tiny(tmp_path)
    assert first.built and not again.built
    assert (tmp_path / GGUF_NAME).stat().st_mtime_ns == mtime and _digests(tmp_path) == before
    (tmp_path / GGUF_NAME).unlink()  # a missing output forces a rebuild
    assert build_tiny(tmp_path).built and _digests(tmp_path) == before


def test_transformers_model_shape_and_tokenizer_class(tiny):
    config = json.loads((tiny.hf_dir / "config.json").read_text())
    assert config["model_type"] == "llama"
    assert (config["hidden_size"], config["num_hidden_layers"], config["num_attention_heads"],
            config["intermediate_size"], config["max_position_embeddings"]) == (64, 2, 4, 128,
                                                                                2048)
    assert 700 <= config["vocab_size"] <= 1000
    tok_config = json.loads((tiny.hf_dir / "tokenizer_config.json").read_text())
    assert tok_config["tokenizer_class"] == "PreTrainedTokenizerFast"


def test_gguf_metadata_and_tensors(tiny):
    import gguf

    reader = gguf.GGUFReader(tiny.gguf_path)

    def field(name):
        f = reader.fields[name]
        return f.parts[f.data[0]]

    assert bytes(field("general.architecture")).decode() == "llama"
    assert bytes(field("tokenizer.ggml.model")).decode() == "llama"
    assert int(field("llama.context_length")[0]) == 2048
    assert int(field("llama.embedding_length")[0]) == 64
    assert int(field("llama.block_count")[0]) == 2
    names = {t.name for t in reader.tensors}
    assert {"token_embd.weight", "output_norm.weight", "output.weight",
            "blk.1.ffn_down.weight", "blk.0.attn_q.weight"} <= names
    vocab = len(reader.fields["tokenizer.ggml.tokens"].data)
    assert 700 <= vocab <= 1000


def test_spm_vocabulary_has_bytes_and_every_word_prefix():
    tokens, scores, types = spm_vocabulary(corpus_text(), 800)
    assert len(tokens) == len(scores) == len(types) <= 800
    assert tokens[:3] == ["<unk>", "<s>", "</s>"]
    assert tokens[3] == "<0x00>" and tokens[258] == "<0xFF>"
    assert len(set(tokens)) == len(tokens)
    vocab = set(tokens)
    for piece in tokens:
        if piece.startswith(SPACE) and len(piece) > 1:
            assert all(piece[:i] in vocab for i in range(1, len(piece)))


def test_cli_builds_then_reports_up_to_date(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "nodes", "build-tiny", "--out", str(tmp_path / "m")]
    first = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, check=True)
    second = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, check=True)
    assert first.stdout.startswith("tiny models built:")
    assert second.stdout.startswith("tiny models up to date:")
    assert len(first.stdout.splitlines()) == 1 and first.stderr == ""
