"""Shape of the tiny offline models (both backends share it)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CORPUS_PATH = Path(__file__).with_name("corpus.txt")


@dataclass(frozen=True, slots=True)
class TinyConfig:
    """A llama-architecture model small enough to build in a second and run on one core."""

    seed: int = 0
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 4
    ffn_size: int = 128
    context_length: int = 2048
    vocab_size: int = 800  # target; the SPM vocabulary may come out slightly smaller
    rms_eps: float = 1e-5
    rope_theta: float = 10000.0
    weight_std: float = 0.02

    def validate(self) -> None:
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not a multiple of "
                             f"num_heads {self.num_heads}")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_heads {self.num_heads} is not a multiple of "
                             f"num_kv_heads {self.num_kv_heads}")
        if not 300 <= self.vocab_size <= 4096:
            raise ValueError(f"vocab_size must be in [300, 4096] (got {self.vocab_size}): "
                             "256 byte tokens plus word pieces")


def corpus_text() -> str:
    return CORPUS_PATH.read_text(encoding="utf-8")


def prompts() -> list[str]:
    """The corpus lines, used as prompts by tests and the benchmark."""
    return [line for line in corpus_text().splitlines() if line.strip()]
