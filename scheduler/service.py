"""A service g_i (PerLLM section 3.1): one LLM request with a processing-time requirement."""

from __future__ import annotations

from dataclasses import dataclass


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
        if self.input_bytes < 0:
            raise ValueError(f"service.input_bytes must be >= 0 (got {self.input_bytes})")
        if self.max_new_tokens <= 0:
            raise ValueError(f"service.max_new_tokens must be > 0 (got {self.max_new_tokens})")
        if not self.deadline_s > 0:
            raise ValueError(f"service.deadline_s must be > 0 (got {self.deadline_s})")
        if self.prompt_tokens < 0:
            raise ValueError(f"service.prompt_tokens must be >= 0 (got {self.prompt_tokens})")
        if self.temperature < 0:
            raise ValueError(f"service.temperature must be >= 0 (got {self.temperature})")
        if self.top_k < 0:
            raise ValueError(f"service.top_k must be >= 0 (got {self.top_k})")

    @property
    def estimated_prompt_tokens(self) -> int:
        # ~4 bytes per token for English BPE; the attachment counts as context to prefill.
        return self.prompt_tokens or max(1, self.input_bytes // 4, len(self.prompt) // 4)
