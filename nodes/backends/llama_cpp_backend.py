"""llama-cpp-python backend for GGUF models.

A `Llama` object is not thread-safe, so the backend keeps a pool of `options.instances`
independent instances (the server sets one per slot) and each generation holds one for its
whole length. Weights are memory-mapped, so extra instances share them and add only their KV
cache and compute buffers. Every request gets a full prefill (no prompt-prefix reuse between
requests), so measured prefill times do not depend on what ran before.
"""

from __future__ import annotations

import queue
from pathlib import Path
from typing import Callable, Iterator

from nodes.tiny import GGUF_NAME
from nodes.backends.base import (Backend, GenerationParams, IncrementalDetokenizer,
                                 ModelLoadError)


class LlamaCppBackend(Backend):
    name = "llama-cpp"
    model_kind = "GGUF file"
    tiny_model = GGUF_NAME
    instance_per_slot = True  # a Llama context is not thread-safe

    def load(self, path: str | Path) -> None:
        import llama_cpp

        path = Path(path)
        if not path.is_file():
            raise ModelLoadError(f"model file not found: {path} (expected a GGUF file)")
        self._instances: list[llama_cpp.Llama] = []
        try:
            for _ in range(self.options.instances):
                self._instances.append(llama_cpp.Llama(
                    model_path=str(path), n_ctx=self.options.context_length,
                    n_threads=self.options.n_threads,
                    n_threads_batch=self.options.n_threads, verbose=False))
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelLoadError(f"cannot load GGUF model {path}: {exc}") from None
        self._pool: queue.SimpleQueue = queue.SimpleQueue()
        for llm in self._instances:
            self._pool.put(llm)
        first = self._instances[0]
        self._first = first
        self._eos = frozenset({first.token_eos()})
        self.model_path = path

    def tokenize(self, text: str) -> list[int]:
        return self._first.tokenize(text.encode("utf-8"), add_bos=True, special=False)

    @property
    def context_length(self) -> int:
        return self._first.n_ctx()

    def eos_ids(self) -> frozenset[int]:
        return self._eos

    def _detokenizer(self) -> IncrementalDetokenizer:
        first = self._first
        # Reading the vocabulary is thread-safe; decode bytes leniently so an incomplete
        # UTF-8 sequence becomes U+FFFD and is held back by the detokenizer.
        return IncrementalDetokenizer(
            lambda ids: first.detokenize(list(ids)).decode("utf-8", errors="replace"))

    def _start(self, ids: list[int], params: GenerationParams
               ) -> tuple[Iterator[int], Callable[[], None]]:
        llm = self._pool.get()
        return self._run(llm, ids, params), lambda: self._pool.put(llm)

    def _run(self, llm, ids: list[int], params: GenerationParams) -> Iterator[int]:
        from llama_cpp import _internals

        sampler = _internals.LlamaSampler()
        try:
            if params.ignore_eos:
                sampler.add_logit_bias(llm.n_vocab(), {t: float("-inf") for t in self._eos})
            if params.temperature == 0:
                sampler.add_greedy()
            else:
                if params.top_k > 0:
                    sampler.add_top_k(params.top_k)
                sampler.add_temp(params.temperature)
                sampler.add_dist(params.seed & 0xFFFFFFFF)
            llm.reset()  # n_tokens = 0: eval() then clears the KV cache from position 0
            llm.eval(ids)
            while True:
                token = sampler.sample(llm._ctx, -1)  # also accepts the token
                yield token
                llm.eval([token])
        finally:
            sampler.close()

    def close(self) -> None:
        for llm in getattr(self, "_instances", []):
            llm.close()
        self._instances = []
