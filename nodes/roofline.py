"""Roofline model of LLM inference: model config × hardware peaks → a HardwareProfile.

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
measurements of the paper's machines are available here.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence, TypeVar

from nodes.profile import PROFILES_DIR, HardwareProfile, profile_to_yaml

GB = 1e9


@dataclass(frozen=True)
class Precision:
    """Bytes per stored weight and per activation / KV-cache element."""

    name: str
    weight_bytes: float
    activation_bytes: float
    note: str


PRECISIONS: dict[str, Precision] = {
    "fp32": Precision("fp32", 4, 4, "float32 weights and activations"),
    "bf16": Precision("bf16", 2, 2, "bfloat16 weights and activations"),
    "fp16": Precision("fp16", 2, 2, "float16 weights and activations"),
    "int8": Precision("int8", 1, 2, "8-bit weights (LLM.int8 / load_in_8bit), fp16 activations"),
    "q4_0": Precision("q4_0", 4.5 / 8, 4, "llama.cpp Q4_0 (4.5 bits per weight), fp32 activations"),
    # llama.cpp k-quants on CPU: Q4_K stores 4-bit weights in 256-weight super-blocks with
    # 6-bit block scales and mins, 4.5 bits per weight (144 bytes / 256 weights); Q8_0 stores
    # 32 int8 weights plus one fp16 scale, 8.5 bits per weight. Activations are fp32 and the
    # KV cache is f16 (llama.cpp's default cache type), so 2 bytes per cached element.
    "q4_k": Precision("q4_k", 4.5 / 8, 2, "llama.cpp Q4_K (4.5 bits per weight), f16 KV cache"),
    "q8_0": Precision("q8_0", 8.5 / 8, 2, "llama.cpp Q8_0 (8.5 bits per weight), f16 KV cache"),
}


@dataclass(frozen=True)
class ModelConfig:
    """The shape of a llama-architecture decoder (RMSNorm, RoPE, SwiGLU, GQA)."""

    name: str
    layers: int
    hidden: int
    ffn: int
    heads: int
    kv_heads: int
    vocab: int
    max_context: int
    precision: str  # as the PerLLM paper deployed it; overridable in derive_profile
    source: str
    note: str = ""

    def __post_init__(self) -> None:
        for key in ("layers", "hidden", "ffn", "heads", "kv_heads", "vocab", "max_context"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"model {self.name!r}: {key} must be an integer >= 1, "
                                 f"got {value!r}")
        if self.hidden % self.heads:
            raise ValueError(f"model {self.name!r}: hidden {self.hidden} is not a multiple of "
                             f"heads {self.heads}")
        if self.heads % self.kv_heads:
            raise ValueError(f"model {self.name!r}: heads {self.heads} is not a multiple of "
                             f"kv_heads {self.kv_heads}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"model {self.name!r}: precision must be one of "
                             f"{', '.join(PRECISIONS)}, got {self.precision!r}")

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    @property
    def params(self) -> int:
        """Parameter count (untied input embedding and LM head, as in all models here)."""
        per_layer = (2 * self.hidden * self.hidden + 2 * self.hidden * self.kv_dim
                     + 3 * self.hidden * self.ffn + 2 * self.hidden)
        return self.layers * per_layer + 2 * self.vocab * self.hidden + self.hidden

    def kv_cache_bytes(self, tokens: int, activation_bytes: float) -> float:
        """Bytes of K and V cache for `tokens` positions."""
        return 2 * self.layers * tokens * self.kv_dim * activation_bytes


def _tiny_config() -> ModelConfig:
    from nodes.tiny.config import TinyConfig  # the shape `python -m nodes build-tiny` writes

    t = TinyConfig()
    return ModelConfig("tiny", t.num_layers, t.hidden_size, t.ffn_size, t.num_heads,
                       t.num_kv_heads, t.vocab_size, t.context_length, "fp32",
                       "nodes/tiny/config.py TinyConfig defaults",
                       "the offline tiny model CI uses; vocab is the builder's target size")


_HF = "config.json of the Hugging Face repository"
MODELS: dict[str, ModelConfig] = {m.name: m for m in (
    ModelConfig("yi-6b", 32, 4096, 11008, 32, 4, 64000, 4096, "fp32",
                f"01-ai/Yi-6B {_HF}; Young et al. 2024, Yi: Open Foundation Models "
                "(arXiv 2403.04652)"),
    ModelConfig("llama2-7b", 32, 4096, 11008, 32, 32, 32000, 4096, "fp32",
                f"meta-llama/Llama-2-7b-hf {_HF}; Touvron et al. 2023, Llama 2 (arXiv 2307.09288)"),
    ModelConfig("llama3-8b", 32, 4096, 14336, 32, 8, 128256, 8192, "fp32",
                f"meta-llama/Meta-Llama-3-8B {_HF}; Meta 2024, The Llama 3 Herd of Models"),
    ModelConfig("yi-9b", 48, 4096, 11008, 32, 4, 64000, 4096, "fp32",
                f"01-ai/Yi-9B {_HF} (Yi-6B depth-upscaled to 48 layers)"),
    ModelConfig("llama2-33b", 60, 6656, 17920, 52, 52, 32000, 2048, "int8",
                "Touvron et al. 2023, LLaMA: Open and Efficient Foundation Language Models "
                "(arXiv 2302.13971) Table 2, 33B: dim 6656, 52 heads, 60 layers; FFN "
                "2/3·4·6656 rounded up to a multiple of 256 = 17920 (huggyllama/llama-30b "
                f"{_HF})",
                "PerLLM calls it LLaMA2-33B, but Llama 2 has no 33B model: this is the LLaMA-1 "
                "33B (a.k.a. 30B) architecture. int8: fp16 weights (65 GB) do not fit an A100 "
                "40 GB; 8-bit loading (32.5 GB) does"),
)}


_T = TypeVar("_T")


def _known(family: str, table: Mapping[str, _T], name: str, also: Sequence[str] = ()) -> _T:
    """table[name], or a ValueError naming the value and every accepted name (table's, then also)."""
    if name not in table:
        raise ValueError(f"unknown {family} {name!r}; accepted: {', '.join([*table, *also])}")
    return table[name]


def model_config(name: str) -> ModelConfig:
    """A known model config by name ('llama2-7b', ..., 'tiny')."""
    return _tiny_config() if name == "tiny" else _known("model", MODELS, name, also=["tiny"])


@dataclass(frozen=True)
class HardwareSpec:
    """Peak compute, memory bandwidth and power of one device, each number cited."""

    name: str
    kind: str  # 'edge' or 'cloud'
    description: str
    matmul_flops: float  # FLOP/s for matrix products at the compute dtype
    vector_flops: float  # FLOP/s for element-wise work (norms, softmax, activations)
    memory_bandwidth_bytes_s: float
    memory_gb: float
    idle_power_w: float
    max_power_w: float
    compute_efficiency: float  # fraction of the peak a real framework reaches
    memory_efficiency: float  # fraction of the peak bandwidth a real framework reaches
    default_precision: str
    citation: str  # the short form for a profile's `source`; details in `sources`
    sources: Mapping[str, str] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        for key in ("matmul_flops", "vector_flops", "memory_bandwidth_bytes_s", "memory_gb",
                    "max_power_w"):
            if not getattr(self, key) > 0:
                raise ValueError(f"hardware {self.name!r}: {key} must be > 0, "
                                 f"got {getattr(self, key)!r}")
        for key in ("compute_efficiency", "memory_efficiency"):
            if not 0 < getattr(self, key) <= 1:
                raise ValueError(f"hardware {self.name!r}: {key} must be in (0, 1], "
                                 f"got {getattr(self, key)!r}")
        if not 0 <= self.idle_power_w <= self.max_power_w:
            raise ValueError(f"hardware {self.name!r}: need 0 <= idle_power_w "
                             f"({self.idle_power_w}) <= max_power_w ({self.max_power_w})")


_ARK_4214R = ("Intel ARK, Intel Xeon Silver 4214R Processor (16.5M Cache, 2.40 GHz), "
              "product 199349")
_A100_DS = ("NVIDIA A100 Tensor Core GPU datasheet (2021), A100 40GB PCIe column")
HARDWARE: dict[str, HardwareSpec] = {h.name: h for h in (
    HardwareSpec(
        name="xeon-4214r", kind="edge",
        description="Intel Xeon Silver 4214R, 12 cores, AVX-512 (1 FMA unit per core), "
                    "6-channel DDR4-2400; CPU package power",
        # 12 cores × 2.4 GHz × 1 AVX-512 FMA unit × 16 fp32 lanes × 2 FLOP per FMA
        matmul_flops=12 * 2.4e9 * 1 * 16 * 2,
        # element-wise work issues adds and multiplies separately: half the FMA rate
        vector_flops=12 * 2.4e9 * 1 * 16,
        # 6 channels × 2400 MT/s × 8 bytes per transfer
        memory_bandwidth_bytes_s=6 * 2400e6 * 8,
        memory_gb=96.0,
        idle_power_w=25.0,
        max_power_w=100.0,
        compute_efficiency=0.5,
        memory_efficiency=0.75,
        default_precision="fp32",
        citation=f"{_ARK_4214R} (12 cores, 2.40 GHz base, 1 AVX-512 FMA unit per core, "
                 "6-channel DDR4-2400, TDP 100 W); idle power, memory size and efficiencies "
                 "are stated assumptions",
        sources={
            "cores": f"{_ARK_4214R}: 12 cores, 24 threads",
            "clock": f"{_ARK_4214R}: base frequency 2.40 GHz (turbo 3.50 GHz not used: "
                     "AVX-512 work runs at or below base)",
            "avx512": f"{_ARK_4214R}: Intel AVX-512, # of AVX-512 FMA units: 1",
            "matmul_flops": "12 cores × 2.4e9 Hz × 16 fp32 lanes × 2 FLOP/FMA = 921.6 GFLOP/s",
            "vector_flops": "non-FMA AVX-512: 12 × 2.4e9 × 16 = 460.8 GFLOP/s",
            "memory_bandwidth": f"{_ARK_4214R}: 6 memory channels, DDR4-2400; "
                                "6 × 2400e6 × 8 B = 115.2 GB/s",
            "memory_gb": "assumption: one 16 GB DIMM in each of the 6 channels (the smallest "
                         "fill that reaches the 6-channel bandwidth) = 96 GB",
            "max_power_w": f"{_ARK_4214R}: TDP 100 W (package)",
            "idle_power_w": "assumption: 25 W package power at idle with C-states (about a "
                            "quarter of TDP); replace with a RAPL reading of the real machine",
            "compute_efficiency": "assumption 0.5: AVX-512 licence clocks below base and "
                                  "PyTorch/oneDNN fp32 GEMM reach about half the FMA peak",
            "memory_efficiency": "assumption 0.75: STREAM triad typically reaches 70–80% of "
                                 "theoretical DDR4 bandwidth",
            "default_precision": "fp32: Transformers loads float32 on CPU by default and "
                                 "Cascade Lake has no AVX512_BF16 (bf16 arrived with "
                                 "Cooper Lake), so bf16 would be emulated and slower",
        }),
    HardwareSpec(
        name="a100-40gb", kind="cloud",
        description="NVIDIA A100 40GB PCIe, fp16 tensor cores, HBM2; board power",
        matmul_flops=312e12,
        vector_flops=78e12,
        memory_bandwidth_bytes_s=1555e9,
        memory_gb=40.0,
        idle_power_w=40.0,
        max_power_w=250.0,
        compute_efficiency=0.6,
        memory_efficiency=0.8,
        default_precision="fp16",
        citation=f"{_A100_DS} (312 TFLOPS FP16 tensor dense, 78 TFLOPS FP16, 1,555 GB/s HBM2, "
                 "40 GB, 250 W); idle power and efficiencies are stated assumptions",
        sources={
            "matmul_flops": f"{_A100_DS}: FP16 Tensor Core 312 TFLOPS (dense; 624 with "
                            "sparsity); also Table II of the cloud-device deployment paper",
            "vector_flops": f"{_A100_DS}: FP16 (non-tensor) 78 TFLOPS",
            "memory_bandwidth": f"{_A100_DS}: GPU memory bandwidth 1,555 GB/s HBM2 (the "
                                "2,039 GB/s in the deployment paper's Table II is the 80GB "
                                "SXM part)",
            "memory_gb": f"{_A100_DS}: 40 GB HBM2",
            "max_power_w": f"{_A100_DS}: max thermal design power 250 W (PCIe)",
            "idle_power_w": "assumption: about 40 W board power at idle as read by "
                            "nvidia-smi; replace with an NVML reading of the real machine",
            "compute_efficiency": "assumption 0.6: cuBLAS fp16 GEMMs from Transformers reach "
                                  "roughly 60% of tensor-core peak",
            "memory_efficiency": "assumption 0.8: decode GEMVs stream weights at about 80% of "
                                 "peak HBM bandwidth",
            "default_precision": "fp16 activations and KV cache; the shipped 33B profile "
                                 "stores weights in int8 to fit 40 GB",
        }),
)}


def hardware_spec(name: str) -> HardwareSpec:
    """A known hardware spec by name ('xeon-4214r', 'a100-40gb')."""
    return _known("hardware", HARDWARE, name)


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


# The paper's deployments (PerLLM §4.1): Xeon edges with four models, A100 cloud with 33B.
SHIPPED: tuple[tuple[str, str], ...] = (
    ("xeon-4214r", "yi-6b"), ("xeon-4214r", "llama2-7b"), ("xeon-4214r", "llama3-8b"),
    ("xeon-4214r", "yi-9b"), ("a100-40gb", "llama2-33b"),
)


def format_operator_table(title: str, times: Sequence[OperatorTime]) -> str:
    header = (f"{'operator':<13} {'count':>5} {'GFLOP':>10} {'MB moved':>10} {'FLOP/B':>8} "
              f"{'bound':>7} {'time ms':>10}")
    lines = [title, header, "-" * len(header)]
    for t in times:
        op = t.op
        lines.append(f"{op.name:<13} {op.count:>5} {op.count * op.flops / 1e9:>10.3f} "
                     f"{op.count * op.bytes_moved / 1e6:>10.2f} "
                     f"{op.intensity_flop_per_byte:>8.2f} {t.bound:>7} {t.time_s * 1e3:>10.3f}")
    flops = sum(t.op.count * t.op.flops for t in times)
    moved = sum(t.op.count * t.op.bytes_moved for t in times)
    lines.append(f"{'total':<13} {'':>5} {flops / 1e9:>10.3f} {moved / 1e6:>10.2f} "
                 f"{'':>8} {'':>7} {total_time_s(times) * 1e3:>10.3f}")
    return "\n".join(lines)


def profile_header(d: Derivation) -> str:
    p = d.profile
    return (f"Hardware profile {p.name}: generated by the roofline model, do not edit by hand.\n"
            f"Regenerate: {d.profile.derivation['command']} --write\n"
            f"Every hardware number's source is under derivation.hardware.sources.")


def write_profile(d: Derivation, profiles_dir: Path = PROFILES_DIR) -> Path:
    path = profiles_dir / f"{d.profile.name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(profile_to_yaml(d.profile, profile_header(d)))
    tmp.replace(path)
    return path


def add_derive_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `python -m nodes derive-profile`."""
    parser.add_argument("--model", help=f"one of {', '.join([*MODELS, 'tiny'])}")
    parser.add_argument("--hardware", help=f"one of {', '.join(HARDWARE)}")
    parser.add_argument("--all", action="store_true",
                        help="derive every shipped profile (the PerLLM paper's set)")
    parser.add_argument("--prompt-tokens", type=int, default=64)
    parser.add_argument("--output-tokens", type=int, default=64)
    parser.add_argument("--context", type=int, default=None,
                        help="KV cache length for the decode rate (default prompt + output/2)")
    parser.add_argument("--batch", type=int, default=4,
                        help="concurrency at which the slowdown is fitted")
    parser.add_argument("--precision", choices=sorted(PRECISIONS), default=None,
                        help="default: the model's deployed precision")
    parser.add_argument("--variant", default=None,
                        help="suffix of the profile name for a non-default deployment, "
                             "e.g. q4 gives xeon-4214r/llama2-7b-q4")
    parser.add_argument("--compute-efficiency", type=float, default=None)
    parser.add_argument("--memory-efficiency", type=float, default=None)
    parser.add_argument("--write", action="store_true",
                        help=f"write the YAML under {PROFILES_DIR}")
    parser.add_argument("--quiet", action="store_true", help="print only the resulting rates")


def cli_derive(args: argparse.Namespace | Sequence[str] | None = None) -> int:
    """`python -m nodes derive-profile`: print the operator tables and rates; --write the YAML."""
    parser = argparse.ArgumentParser(prog="python -m nodes derive-profile")
    add_derive_arguments(parser)
    if isinstance(args, argparse.Namespace):
        # a caller's own parser may define only some flags: the rest take our defaults
        given = {k: v for k, v in vars(args).items() if v is not None}
        args = argparse.Namespace(**{**vars(parser.parse_args([])), **given})
    else:
        args = parser.parse_args(args)
    pairs = list(SHIPPED) if args.all else [(args.hardware, args.model)]
    if not args.all and not (args.model and args.hardware):
        print("derive-profile: give --model and --hardware, or --all", file=sys.stderr)
        return 2
    for hw_name, model_name in pairs:
        try:
            d = derive(model_name, hw_name, prompt_tokens=args.prompt_tokens,
                       output_tokens=args.output_tokens, context=args.context,
                       batch=args.batch, precision=args.precision,
                       compute_efficiency=args.compute_efficiency,
                       memory_efficiency=args.memory_efficiency, variant=args.variant)
        except ValueError as exc:
            print(f"derive-profile: {exc}", file=sys.stderr)
            return 2
        p, info = d.profile, d.profile.derivation
        if not args.quiet:
            print(format_operator_table(
                f"prefill of {info['prompt_tokens']} tokens "
                f"({p.name}, {info['precision']['name']})",
                d.prefill))
            print()
            print(format_operator_table(
                f"one decoded token with {info['context']} cached ({p.name})", d.decode))
            print()
        print(f"{p.name}: prefill {p.prefill_tok_s:.1f} tok/s ({d.prefill_s:.3f} s for "
              f"{info['prompt_tokens']} tokens), decode {p.decode_tok_s:.2f} tok/s "
              f"({d.decode_token_s * 1e3:.1f} ms/token), concurrency_slowdown "
              f"{p.concurrency_slowdown:.4f} at batch {info['batch']}, "
              f"memory {p.memory_gb:.1f} GB, "
              f"power {p.idle_power_w:g}–{p.max_power_w:g} W")
        if args.write:
            print(f"wrote {write_profile(d)}")
    return 0
