"""Roofline model of LLM inference: model config × hardware peaks → a HardwareProfile.

This module is the maths only: per-operator FLOPs and bytes, their times on a machine, and
`derive`, which turns them into a HardwareProfile with its derivation. The figures it is fed
(precisions, model shapes, hardware peaks, each cited) live in `nodes.catalogue`; printing the
operator tables, writing profile YAML and the `derive-profile` command live in
`nodes.roofline_cli`.

Follows the cloud-device deployment paper (Yang et al., ../shared/papers/
cloud-device-llm-deployment-paper.md): per-operator computation and memory access (its
Table I) and the operator time of its Eq. 8,

    T = Σ_i max(Operation_i / (P_i · compute_efficiency), DataSize_i / (BW · memory_efficiency))

Differences from Table I, each because the models we serve differ from its sketch:
- operations are FLOPs (2 per multiply-accumulate), to match peak FLOP/s; the table counts MACs;
- bytes are elements × bytes per element of the deployed precision; the table counts elements;
- K/V projections use the KV-head width (grouped-query attention in Yi and LLaMA3);
- the FFN is LLaMA's SwiGLU (gate, up, down: three matrices, not two);
- attention is split into scores (QKᵀ), softmax and AV; prefill counts the full n×n scores,
  as eager/SDPA attention on CPU computes them before masking;
- the LM head runs on the last position only in prefill (what `generate` does).
The paper fits measured curves by spline interpolation instead of a constant efficiency; we
use one documented efficiency per hardware and per roof (compute, memory) instead, because no
measurements of the paper's machines are available here. `clouddevice.hardware` has the
spline variant (fitted to this machine's CPU) and reuses these operator costs per layer.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Sequence

from nodes.catalogue import (PRECISIONS, HardwareSpec, ModelConfig, Precision, hardware_spec,
                             model_config)
from nodes.profile import HardwareProfile

GB = 1e9


@dataclass(frozen=True)
class OperatorCost:
    """One operator: FLOPs and bytes of one instance, times `count` instances (layers)."""

    name: str
    kind: str  # 'matmul' or 'vector': which compute peak applies
    flops: float
    bytes_moved: float
    count: int = 1

    @property
    def intensity_flop_per_byte(self) -> float:
        return self.flops / self.bytes_moved if self.bytes_moved else math.inf


@dataclass(frozen=True)
class OperatorTime:
    op: OperatorCost
    compute_s: float  # per instance
    memory_s: float  # per instance

    @property
    def time_s(self) -> float:
        """All instances: count × max(compute, memory) (Eq. 8)."""
        return self.op.count * max(self.compute_s, self.memory_s)

    @property
    def bound(self) -> str:
        return "compute" if self.compute_s >= self.memory_s else "memory"


def operator_costs(model: ModelConfig, precision: Precision, tokens: int, attended: int,
                   batch: int = 1, last_logits_only: bool = True) -> list[OperatorCost]:
    """Per-operator FLOPs and bytes for one forward pass.

    tokens: new positions per sequence (prompt length in prefill, 1 in decode);
    attended: positions each new token attends to (tokens in prefill, cache + 1 in decode);
    batch: sequences processed together (weights are read once for all of them).
    """
    for key, value in (("tokens", tokens), ("attended", attended), ("batch", batch)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{key} must be an integer >= 1, got {value!r}")
    h, kv, f, v = model.hidden, model.kv_dim, model.ffn, model.vocab
    H, d, L = model.heads, model.head_dim, model.layers
    wb, ab = precision.weight_bytes, precision.activation_bytes
    m = batch * tokens  # token rows in every linear layer
    s = batch * H * tokens * attended  # attention score elements
    logits_rows = batch if last_logits_only else m

    def linear(name: str, n_in: int, n_out: int, rows: int = m, count: int = L) -> OperatorCost:
        return OperatorCost(name, "matmul", 2 * rows * n_in * n_out,
                            rows * (n_in + n_out) * ab + n_in * n_out * wb, count)

    def norm(name: str, count: int) -> OperatorCost:
        return OperatorCost(name, "vector", 4 * m * h, 2 * m * h * ab + h * wb, count)

    return [
        # an embedding lookup reads one row per token
        OperatorCost("embed", "vector", 0, m * h * (wb + ab), 1),
        norm("attn_norm", L),
        linear("q_proj", h, h),
        linear("k_proj", h, kv),
        linear("v_proj", h, kv),
        OperatorCost("rope", "vector", 6 * m * (h + kv), 2 * m * (h + kv) * ab, L),
        OperatorCost("attn_scores", "matmul", 2 * s * d,
                     (m * h + batch * attended * kv + s) * ab, L),
        OperatorCost("attn_softmax", "vector", 5 * s, 2 * s * ab, L),
        OperatorCost("attn_av", "matmul", 2 * s * d,
                     (s + batch * attended * kv + m * h) * ab, L),
        linear("o_proj", h, h),
        norm("ffn_norm", L),
        linear("ffn_gate", h, f),
        linear("ffn_up", h, f),
        OperatorCost("ffn_act", "vector", 6 * m * f, 3 * m * f * ab, L),  # SiLU(gate) · up
        linear("ffn_down", f, h),
        norm("final_norm", 1),
        linear("lm_head", h, v, rows=logits_rows, count=1),
    ]


def operator_times(ops: Sequence[OperatorCost], hw: HardwareSpec,
                   compute_efficiency: float | None = None,
                   memory_efficiency: float | None = None) -> list[OperatorTime]:
    """Compute and memory time of each operator on `hw` (Eq. 8)."""
    ce = hw.compute_efficiency if compute_efficiency is None else compute_efficiency
    me = hw.memory_efficiency if memory_efficiency is None else memory_efficiency
    for key, value in (("compute_efficiency", ce), ("memory_efficiency", me)):
        if not 0 < value <= 1:
            raise ValueError(f"{key} must be in (0, 1], got {value!r}")
    out = []
    for op in ops:
        peak = hw.matmul_flops if op.kind == "matmul" else hw.vector_flops
        out.append(OperatorTime(op, op.flops / (peak * ce),
                                op.bytes_moved / (hw.memory_bandwidth_bytes_s * me)))
    return out


def total_time_s(times: Sequence[OperatorTime]) -> float:
    return sum(t.time_s for t in times)


@dataclass(frozen=True)
class Derivation:
    """Everything derive_profile computed, for the table and the YAML."""

    profile: HardwareProfile
    prefill: list[OperatorTime]
    decode: list[OperatorTime]
    prefill_s: float
    decode_token_s: float


def derive(model: str | ModelConfig, hardware: str | HardwareSpec, *, prompt_tokens: int = 64,
           output_tokens: int = 64, context: int | None = None, batch: int = 4,
           precision: str | None = None, compute_efficiency: float | None = None,
           memory_efficiency: float | None = None, variant: str | None = None) -> Derivation:
    """Roofline timings of `model` on `hardware` and the profile they give.

    prefill_tok_s = prompt_tokens / T_prefill(prompt_tokens); decode_tok_s = 1 / T_decode at
    a KV cache of `context` positions (default: the middle of the output, prompt + out/2).
    concurrency_slowdown s is fitted so that a reference request (prompt_tokens in,
    output_tokens out) run `batch` at a time takes (1 + s·(batch − 1)) × its time alone.
    variant: a suffix naming a non-default deployment (`xeon-4214r/llama2-7b-q4`), so a
    quantised profile never overwrites the paper-faithful one.
    """
    m = model if isinstance(model, ModelConfig) else model_config(model)
    hw = hardware if isinstance(hardware, HardwareSpec) else hardware_spec(hardware)
    prec_name = precision or m.precision
    if prec_name not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {prec_name!r}")
    prec = PRECISIONS[prec_name]
    for key, value in (("prompt_tokens", prompt_tokens), ("output_tokens", output_tokens),
                       ("batch", batch)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{key} must be an integer >= 1, got {value!r}")
    if context is None:
        context = prompt_tokens + output_tokens // 2
    if isinstance(context, bool) or not isinstance(context, int) or context < 0:
        raise ValueError(f"context must be an integer >= 0, got {context!r}")
    if prompt_tokens + output_tokens > m.max_context:
        raise ValueError(f"prompt_tokens + output_tokens = {prompt_tokens + output_tokens} "
                         f"exceeds {m.name}'s context of {m.max_context}")
    eff = dict(compute_efficiency=compute_efficiency, memory_efficiency=memory_efficiency)

    def prefill_time(b: int) -> float:
        return total_time_s(operator_times(
            operator_costs(m, prec, prompt_tokens, prompt_tokens, b), hw, **eff))

    def decode_time(cache: int, b: int) -> float:
        return total_time_s(operator_times(operator_costs(m, prec, 1, cache + 1, b), hw, **eff))

    def request_time(b: int) -> float:
        # KV grows by one per token: average the decode step over the output
        steps = sum(decode_time(prompt_tokens + i, b) for i in range(output_tokens))
        return prefill_time(b) + steps

    prefill = operator_times(operator_costs(m, prec, prompt_tokens, prompt_tokens), hw, **eff)
    decode = operator_times(operator_costs(m, prec, 1, context + 1), hw, **eff)
    prefill_s, decode_token_s = total_time_s(prefill), total_time_s(decode)
    slowdown = 0.0
    if batch > 1:
        slowdown = max(0.0, (request_time(batch) / request_time(1) - 1) / (batch - 1))

    weights_gb = m.params * prec.weight_bytes / GB
    kv_gb = m.kv_cache_bytes(batch * (prompt_tokens + output_tokens), prec.activation_bytes) / GB
    memory_gb = weights_gb + kv_gb
    if memory_gb > hw.memory_gb:
        raise ValueError(f"{m.name} in {prec.name} needs {memory_gb:.1f} GB (weights "
                         f"{weights_gb:.1f} GB + KV cache {kv_gb:.1f} GB) but {hw.name} has "
                         f"{hw.memory_gb:g} GB; choose a smaller precision")
    ce = hw.compute_efficiency if compute_efficiency is None else compute_efficiency
    me = hw.memory_efficiency if memory_efficiency is None else memory_efficiency
    if variant is not None and not re.fullmatch(r"[a-z0-9][a-z0-9_.]*", variant):
        raise ValueError(f"variant must be lower-case letters, digits, '_' or '.', "
                         f"got {variant!r}")
    name = f"{hw.name}/{m.name}" + (f"-{variant}" if variant else "")
    source = "; ".join([
        f"roofline (nodes/roofline.py, Eq. 8 of the cloud-device deployment paper) with "
        f"compute_efficiency {ce:g}, memory_efficiency {me:g}",
        f"hardware: {hw.citation}",
        f"model: {m.source}" + (f" ({m.note})" if m.note else ""),
        "every number's source: derivation.hardware.sources",
    ])
    derivation = {
        "method": "roofline",
        "command": (f"python -m nodes derive-profile --model {m.name} --hardware {hw.name} "
                    f"--prompt-tokens {prompt_tokens} --output-tokens {output_tokens} "
                    f"--context {context} --batch {batch} --precision {prec.name}"
                    + (f" --compute-efficiency {ce:g}" if compute_efficiency is not None else "")
                    + (f" --memory-efficiency {me:g}" if memory_efficiency is not None else "")
                    + (f" --variant {variant}" if variant else "")),
        "prompt_tokens": prompt_tokens,
        "output_tokens": output_tokens,
        "context": context,
        "batch": batch,
        "precision": {"name": prec.name, "weight_bytes": prec.weight_bytes,
                      "activation_bytes": prec.activation_bytes, "note": prec.note},
        "prefill_s": _sig(prefill_s),
        "decode_token_s": _sig(decode_token_s),
        "weights_gb": _sig(weights_gb),
        "kv_cache_gb": _sig(kv_gb),
        "hardware": {
            "name": hw.name,
            "matmul_flops": hw.matmul_flops,
            "vector_flops": hw.vector_flops,
            "memory_bandwidth_bytes_s": hw.memory_bandwidth_bytes_s,
            "memory_gb": hw.memory_gb,
            "idle_power_w": hw.idle_power_w,
            "max_power_w": hw.max_power_w,
            "compute_efficiency": ce,
            "memory_efficiency": me,
            "sources": dict(hw.sources),
        },
        "model": {
            "name": m.name, "layers": m.layers, "hidden": m.hidden, "ffn": m.ffn,
            "heads": m.heads, "kv_heads": m.kv_heads, "vocab": m.vocab,
            "max_context": m.max_context, "params": m.params, "source": m.source,
            **({"note": m.note} if m.note else {}),
        },
    }
    profile = HardwareProfile(
        # the deployed artefact: a quantised variant is its own model file (llama2-7b-q4)
        name=name, kind=hw.kind, hardware=hw.name, model=name.split("/", 1)[1],
        prefill_tok_s=_sig(prompt_tokens / prefill_s), decode_tok_s=_sig(1 / decode_token_s),
        concurrency_slowdown=_sig(slowdown), idle_power_w=hw.idle_power_w,
        max_power_w=hw.max_power_w, memory_gb=_sig(memory_gb), source=source,
        derivation=derivation)
    return Derivation(profile, prefill, decode, prefill_s, decode_token_s)


def _sig(x: float, digits: int = 5) -> float:
    """Round to significant digits, so tiny and huge figures both keep their precision."""
    return float(f"{x:.{digits}g}")


def derive_profile(model: str | ModelConfig, hardware: str | HardwareSpec,
                   **kwargs: Any) -> HardwareProfile:
    """The HardwareProfile the roofline gives (keywords as for `derive`)."""
    return derive(model, hardware, **kwargs).profile
