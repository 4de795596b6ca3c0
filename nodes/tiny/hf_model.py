"""A tiny transformers LlamaForCausalLM with a byte-level BPE tokenizer trained locally."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from nodes.tiny.config import TinyConfig, corpus_text

SPECIAL_TOKENS = ["<unk>", "<s>", "</s>"]


def train_tokenizer(text: str, vocab_size: int):
    """Byte-level BPE (any text encodes; nothing maps to <unk>), deterministic for a corpus."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(text.splitlines(), trainer=trainer)
    return tok


def write_hf(out_dir: Path, config: TinyConfig) -> int:
    """Write config, weights and tokenizer to `out_dir` (replaced atomically); returns vocab."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    config.validate()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=train_tokenizer(corpus_text(), config.vocab_size),
        unk_token="<unk>", bos_token="<s>", eos_token="</s>",
        model_max_length=config.context_length)
    vocab = len(tok)
    model_config = LlamaConfig(
        vocab_size=vocab, hidden_size=config.hidden_size,
        intermediate_size=config.ffn_size, num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads, num_key_value_heads=config.num_kv_heads,
        max_position_embeddings=config.context_length, rms_norm_eps=config.rms_eps,
        rope_theta=config.rope_theta, initializer_range=config.weight_std,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        tie_word_embeddings=False)
    torch.manual_seed(config.seed)
    model = LlamaForCausalLM(model_config)

    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    # transformers 5 records "TokenizersBackend", which older loaders and AutoTokenizer in
    # some versions reject; the fast tokenizer class loads the same tokenizer.json.
    tc_path = tmp / "tokenizer_config.json"
    tc = json.loads(tc_path.read_text())
    tc["tokenizer_class"] = "PreTrainedTokenizerFast"
    tc_path.write_text(json.dumps(tc, indent=2, sort_keys=True) + "\n")
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.replace(out_dir)
    return vocab
