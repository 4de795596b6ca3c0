"""A service g_i (PerLLM section 3.1): one LLM request with a processing-time requirement."""

from __future__ import annotations

from dataclasses import dataclass

from scheduler.limits import (MAX_BYTES, MAX_DURATION_S, MAX_TEMPERATURE, MAX_TOKENS,
                              MAX_TOP_K, check_number)


@dataclass(frozen=True, slots=True)
class Service:
    id: str
    prompt: str
    input_bytes: int  # prompt plus attached context, as uploaded
    max_new_tokens: int
    deadline_s: float  # processing-time requirement D^Delta_i (eq. 2, C1)
    service_class: str = "default"
    temperature: float = 0.8
    top_k: int = 200
    seed: int = 0
    prompt_tokens: int = 0  # tokens to prefill; 0: estimated from input_bytes (~4 B/token)

    def validate(self) -> None:
        """Raise ValueError naming the first bad field and its value."""
        if not self.id:
            raise ValueError(f"service.id must not be empty (got {self.id!r})")
        if not self.prompt:
            raise ValueError(f"service.prompt must not be empty (got {self.prompt!r})")
        # Ranges: scheduler.limits (every number finite, so every prediction is too).
        check_number("service.input_bytes", self.input_bytes, 0, MAX_BYTES)
        check_number("service.max_new_tokens", self.max_new_tokens, 1, MAX_TOKENS)
        check_number("service.deadline_s", self.deadline_s, 0, MAX_DURATION_S, low_open=True)
        check_number("service.prompt_tokens", self.prompt_tokens, 0, MAX_TOKENS)
        check_number("service.temperature", self.temperature, 0, MAX_TEMPERATURE)
        check_number("service.top_k", self.top_k, 0, MAX_TOP_K)

    @property
    def estimated_prompt_tokens(self) -> int:
        # ~4 bytes per token for English BPE; the attachment counts as context to prefill.
        return self.prompt_tokens or max(1, self.input_bytes // 4, len(self.prompt) // 4)
