"""transformers backend: `AutoModelForCausalLM` from a local directory, a manual decode loop.

The loop (one forward per token over the KV cache) gives exact control over the token count,
sampling (temperature, top-k, a per-request seeded generator) and stopping between tokens.
Forward passes hold no shared mutable state, so concurrent generations share one model.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Callable, Iterator

from nodes.tiny import HF_NAME
from nodes.backends.base import (Backend, GenerationParams, IncrementalDetokenizer,
                                 ModelLoadError)


class TransformersBackend(Backend):
    name = "transformers"
    model_kind = "model directory"
    tiny_model = HF_NAME
    instance_per_slot = False  # forward passes share no mutable state

    def load(self, path: str | Path) -> None:
        path = Path(path)
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"model directory not found or has no config.json: {path}")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
        torch.set_num_threads(self.options.n_threads)
        try:
            self._tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            self._model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True)
        except (OSError, ValueError, RuntimeError) as exc:
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelLoadError(f"cannot load transformers model {path}: {first_line}") from None
        self._model.eval()
        # A fast tokenizer may mutate its Rust-side settings on each call ("Already borrowed"
        # from concurrent slots), so calls into it are serialised; they are microseconds.
        self._tokenizer_lock = threading.Lock()
        self._torch = torch
        cfg = self._model.config
        model_ctx = int(getattr(cfg, "max_position_embeddings", 0) or 2048)
        want = self.options.context_length
        self._context_length = min(want, model_ctx) if want else model_ctx
        eos = cfg.eos_token_id if cfg.eos_token_id is not None else self._tokenizer.eos_token_id
        self._eos = frozenset(eos if isinstance(eos, list) else ([] if eos is None else [eos]))
        self._add_bos = (self._tokenizer.bos_token_id is not None
                         and getattr(cfg, "model_type", "") == "llama")
        self.model_path = path

    def tokenize(self, text: str) -> list[int]:
        with self._tokenizer_lock:
            ids = self._tokenizer(text, add_special_tokens=True)["input_ids"]
        bos = self._tokenizer.bos_token_id
        # Tokenizers without a post-processor add no BOS; llama models expect one.
        if self._add_bos and (not ids or ids[0] != bos):
            ids = [bos] + ids
        return ids

    @property
    def context_length(self) -> int:
        return self._context_length

    def eos_ids(self) -> frozenset[int]:
        return self._eos

    def _detokenizer(self) -> IncrementalDetokenizer:
        tok, lock = self._tokenizer, self._tokenizer_lock

        def decode(ids) -> str:
            with lock:
                return tok.decode(list(ids), skip_special_tokens=True,
                                  clean_up_tokenization_spaces=False)

        return IncrementalDetokenizer(decode)

    def _start(self, ids: list[int], params: GenerationParams
               ) -> tuple[Iterator[int], Callable[[], None]]:
        return self._steps(ids, params), lambda: None  # one shared model: nothing to release

    def _steps(self, prompt_ids: list[int], params: GenerationParams) -> Iterator[int]:
        torch = self._torch
        model = self._model
        generator = torch.Generator().manual_seed(params.seed)
        eos = sorted(self._eos)
        with torch.inference_mode():
            out = model(input_ids=torch.tensor([prompt_ids]), use_cache=True)
            while True:
                logits = out.logits[0, -1].float()
                if params.ignore_eos and eos:
                    logits[eos] = float("-inf")
                if params.temperature == 0:
                    token = int(torch.argmax(logits))
                else:
                    logits = logits / params.temperature
                    if 0 < params.top_k < logits.numel():
                        kth = torch.topk(logits, params.top_k).values[-1]
                        logits = logits.masked_fill(logits < kth, float("-inf"))
                    probs = torch.softmax(logits, dim=-1)
                    token = int(torch.multinomial(probs, 1, generator=generator))
                yield token
                out = model(input_ids=torch.tensor([[token]]),
                            past_key_values=out.past_key_values, use_cache=True)

    def close(self) -> None:
        self._model = None
