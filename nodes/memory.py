"""Does a node's model fit its hardware's memory at its slots and longest context?

need = weights + KV cache of every slot at the longest context a slot must hold, where
weights = parameters × bytes per weight and the KV cache of one token is
2 (K and V) × layers × kv_heads × head_dim × bytes per cached element
(ModelConfig.kv_cache_bytes in nodes/catalogue.py, the formula the roofline uses). A server that preallocates its cache
(llama.cpp reserves n_ctx tokens for its parallel slots) needs all of it before it serves; one
that pages it (vLLM) needs it when every slot holds its longest service at once. Either way a
node configured beyond its memory fails when the workload reaches its worst case, so such a
configuration is refused here with the numbers.

The shape, precision and hardware memory come from the profile's derivation (every roofline
profile records them); a profile written from measurement without them cannot be checked
(memory_fit returns None). GB = 1e9 bytes, as in nodes/roofline.py and the catalogue.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

GB = 1e9


@dataclass(frozen=True)
class MemoryFit:
    """The memory a node needs at `slots` slots of `context_tokens` tokens, against its own."""

    node: str
    profile: str
    memory_gb: float  # the hardware's
    weights_gb: float
    kv_bytes_per_token: float
    slots: int
    context_tokens: int  # per slot, prompt and answer
    max_context: int  # the model's own window

    @property
    def kv_cache_gb(self) -> float:
        return self.slots * self.context_tokens * self.kv_bytes_per_token / GB

    @property
    def need_gb(self) -> float:
        return self.weights_gb + self.kv_cache_gb

    @property
    def fits(self) -> bool:
        return self.need_gb <= self.memory_gb

    @property
    def free_gb(self) -> float:
        """Memory left for the KV cache once the weights are loaded."""
        return self.memory_gb - self.weights_gb

    @property
    def max_slots(self) -> int:
        """The most slots of `context_tokens` that fit (0: not even one)."""
        per_slot_gb = self.context_tokens * self.kv_bytes_per_token / GB
        return max(0, math.floor(self.free_gb / per_slot_gb)) if per_slot_gb > 0 else self.slots

    @property
    def max_context_tokens(self) -> int:
        """The longest context per slot that fits at `slots` slots (0: none)."""
        per_token_gb = self.slots * self.kv_bytes_per_token / GB
        return max(0, math.floor(self.free_gb / per_token_gb)) if per_token_gb > 0 else 0

    def describe(self) -> str:
        """The count in words: what is needed, what the hardware has, and what would fit."""
        text = (f"{self.node}: {self.profile} needs {self.need_gb:.2f} GB (weights "
                f"{self.weights_gb:.2f} GB + KV cache {self.kv_cache_gb:.2f} GB = {self.slots} "
                f"slots x {self.context_tokens} tokens x "
                f"{self.kv_bytes_per_token / 1e6:.3f} MB/token) and the hardware has "
                f"{self.memory_gb:g} GB")
        if self.fits:
            return text
        return (text + f"; at most {self.max_slots} slot(s) of {self.context_tokens} tokens, "
                f"or {self.max_context_tokens} tokens per slot at {self.slots} slots, would fit")


def _number(data: Mapping[str, Any], key: str) -> float | None:
    value = data.get(key) if isinstance(data, Mapping) else None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
        else None


def memory_fit(profile, slots: int, context_tokens: int, node: str = "node") -> MemoryFit | None:
    """The fit of a HardwareProfile at `slots` × `context_tokens` (clipped to the model's own
    window); None when the profile does not record its model's shape and hardware memory."""
    if slots < 1 or context_tokens < 1:
        raise ValueError(f"{node}: slots and context_tokens must be >= 1 (got {slots}, "
                         f"{context_tokens})")
    derivation = profile.derivation or {}
    model = derivation.get("model") or {}
    precision = derivation.get("precision") or {}
    hardware = derivation.get("hardware") or {}
    shape = {k: _number(model, k) for k in ("layers", "hidden", "heads", "kv_heads",
                                            "max_context", "params")}
    weight_bytes = _number(precision, "weight_bytes")
    kv_element_bytes = _number(precision, "activation_bytes")
    memory_gb = _number(hardware, "memory_gb")
    if None in shape.values() or None in (weight_bytes, kv_element_bytes, memory_gb):
        return None
    head_dim = shape["hidden"] / shape["heads"]
    kv_bytes_per_token = 2 * shape["layers"] * shape["kv_heads"] * head_dim * kv_element_bytes
    max_context = int(shape["max_context"])
    return MemoryFit(node=node, profile=profile.name, memory_gb=memory_gb,
                     weights_gb=shape["params"] * weight_bytes / GB,
                     kv_bytes_per_token=kv_bytes_per_token, slots=slots,
                     context_tokens=min(context_tokens, max_context), max_context=max_context)


def check_memory(profile, slots: int, context_tokens: int, node: str = "node"
                 ) -> MemoryFit | None:
    """memory_fit, raising ValueError with the count when the node does not fit."""
    fit = memory_fit(profile, slots, context_tokens, node)
    if fit is not None and not fit.fits:
        raise ValueError(f"memory: {fit.describe()}")
    return fit
