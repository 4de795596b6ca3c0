"""A tiny llama-architecture GGUF with a SentencePiece-style vocabulary, written with `gguf`.

llama.cpp's SPM tokenizer merges adjacent symbols only when the merged string is in the
vocabulary, so every prefix of each `▁word` piece is included (else words stay split), and
the 256 `<0xNN>` byte tokens give a fallback for any character outside the vocabulary.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np

from nodes.tiny.config import TinyConfig, corpus_text

SPACE = "\u2581"  # SentencePiece's visible space
UNK_ID, BOS_ID, EOS_ID = 0, 1, 2


def spm_vocabulary(text: str, vocab_size: int) -> tuple[list[str], list[float], list[int]]:
    """Tokens, scores and token types: specials, byte tokens, characters, word prefixes."""
    import gguf

    tokens = ["<unk>", "<s>", "</s>"]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    types += [gguf.TokenType.BYTE] * 256
    pieces: list[str] = []
    seen: set[str] = set()

    def add(piece: str) -> None:
        if piece not in seen:
            seen.add(piece)
            pieces.append(piece)

    # ASCII characters only: accented ones take the byte fallback, which keeps UTF-8
    # reassembly across tokens exercised by the tiny model.
    for ch in sorted({c for c in text if c.isascii() and not c.isspace()}):
        add(ch)
    add(SPACE)
    budget = vocab_size - len(tokens)
    words = Counter(re.findall(r"[A-Za-z0-9]+", text))
    for word, _ in sorted(words.items(), key=lambda kv: (-kv[1], kv[0])):
        piece = SPACE + word
        missing = [piece[:i] for i in range(2, len(piece) + 1) if piece[:i] not in seen]
        if len(pieces) + len(missing) > budget:
            continue
        for prefix in missing:
            add(prefix)
    # Higher score merges first in llama.cpp's SPM tokenizer: frequent pieces win.
    scores = [0.0] * len(tokens) + [-float(i) for i in range(len(pieces))]
    types += [gguf.TokenType.NORMAL] * len(pieces)
    return tokens + pieces, scores, [int(t) for t in types]


def write_gguf(path: Path, config: TinyConfig) -> int:
    """Write the model to `path` (atomically); returns the vocabulary size."""
    import gguf

    config.validate()
    tokens, scores, types = spm_vocabulary(corpus_text(), config.vocab_size)
    rng = np.random.default_rng(config.seed)
    head_dim = config.hidden_size // config.num_heads
    kv_dim = head_dim * config.num_kv_heads
    h, f, v = config.hidden_size, config.ffn_size, len(tokens)

    def weight(*shape_out_in: int) -> np.ndarray:
        # numpy shape is the GGUF dims reversed: [out, in] for a matmul weight.
        return (rng.standard_normal(shape_out_in) * config.weight_std).astype(np.float32)

    tmp = path.with_name(path.name + ".tmp")
    writer = gguf.GGUFWriter(str(tmp), "llama")
    writer.add_name("perllm-tiny")
    writer.add_context_length(config.context_length)
    writer.add_embedding_length(h)
    writer.add_block_count(config.num_layers)
    writer.add_feed_forward_length(f)
    writer.add_head_count(config.num_heads)
    writer.add_head_count_kv(config.num_kv_heads)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(config.rope_theta)
    writer.add_layer_norm_rms_eps(config.rms_eps)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_vocab_size(v)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_bos_token_id(BOS_ID)
    writer.add_eos_token_id(EOS_ID)
    writer.add_unk_token_id(UNK_ID)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)

    writer.add_tensor("token_embd.weight", weight(v, h))
    writer.add_tensor("output_norm.weight", np.ones(h, dtype=np.float32))
    writer.add_tensor("output.weight", weight(v, h))
    for i in range(config.num_layers):
        blk = f"blk.{i}"
        writer.add_tensor(f"{blk}.attn_norm.weight", np.ones(h, dtype=np.float32))
        writer.add_tensor(f"{blk}.attn_q.weight", weight(h, h))
        writer.add_tensor(f"{blk}.attn_k.weight", weight(kv_dim, h))
        writer.add_tensor(f"{blk}.attn_v.weight", weight(kv_dim, h))
        writer.add_tensor(f"{blk}.attn_output.weight", weight(h, h))
        writer.add_tensor(f"{blk}.ffn_norm.weight", np.ones(h, dtype=np.float32))
        writer.add_tensor(f"{blk}.ffn_gate.weight", weight(f, h))
        writer.add_tensor(f"{blk}.ffn_up.weight", weight(f, h))
        writer.add_tensor(f"{blk}.ffn_down.weight", weight(h, f))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    tmp.replace(path)
    return v
