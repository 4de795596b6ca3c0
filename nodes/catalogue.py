"""The hardware and model catalogue the roofline is computed from: every figure, cited.

This module holds the data: precisions (bytes per weight and per activation), the shapes of the
models the PerLLM paper deploys (`MODELS`, plus the offline `tiny` model), the peak compute,
bandwidth and power of its machines (`HARDWARE`, each number with its source; the four
machines of the cloud-device deployment paper's Table II with its cloud prices), the
hardware × model pairs it deploys (`SHIPPED`), and the by-name lookups whose errors list
every accepted name. The maths that turns these into operator times and a profile lives in
`nodes.roofline`; printing, writing profiles and the `derive-profile` command in
`nodes.roofline_cli`. A new model or machine is an entry here, and no code elsewhere changes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence, TypeVar


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
    # what renting it costs per busy second, for the cloud machines of the cloud-device paper
    price_usd_s: float | None = None

    def __post_init__(self) -> None:
        if self.price_usd_s is not None and not (math.isfinite(self.price_usd_s)
                                                 and self.price_usd_s > 0):
            raise ValueError(f"hardware {self.name!r}: price_usd_s must be a finite number > 0 "
                             f"or None, got {self.price_usd_s!r}")
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


# The cloud-device deployment paper (Yang et al., ../shared/papers/
# cloud-device-llm-deployment-paper.md): its Table II gives frequency, peak compute and memory
# bandwidth of its four machines, §IV-A the two cloud prices. Memory sizes and powers are not
# in the paper: vendor figures where we know them, stated assumptions otherwise.
_CD_PAPER = "cloud-device deployment paper (Yang et al.), Table II"
_V100S_DS = "NVIDIA V100S PCIe datasheet (Tesla V100S, 32 GB HBM2)"
_A100_80_DS = "NVIDIA A100 Tensor Core GPU datasheet (2021), A100 80GB SXM column"
_NANO_DS = "NVIDIA Jetson Nano module data sheet (4 GB LPDDR4, 128-core Maxwell GPU)"
_SD8S = "Qualcomm Snapdragon 8s Gen 3 Mobile Platform product brief"
_GPU_EFF = ("assumption (no published measurement of this part is available here): the "
            "constant-efficiency fallback of the hardware model, the same figures as the "
            "project's A100 40GB entry")
_DEVICE_EFF = ("assumption (no published measurement available here): an embedded GPU under "
               "an fp16 GEMM/GEMV runtime reaches about half its compute peak and 70% of its "
               "memory bandwidth; the constant-efficiency fallback of the hardware model")
_CLOUD_DEVICE_HARDWARE = (
    HardwareSpec(
        name="v100s", kind="cloud",
        description="NVIDIA V100S PCIe 32GB, fp16 tensor cores, HBM2 (Group-L cloud)",
        matmul_flops=130e12, vector_flops=32.8e12, memory_bandwidth_bytes_s=1134e9,
        memory_gb=32.0, idle_power_w=25.0, max_power_w=250.0,
        compute_efficiency=0.6, memory_efficiency=0.8, default_precision="fp16",
        citation=f"{_CD_PAPER} (1597 MHz, 130 TFLOPS tensor core, 1134 GB/s); {_V100S_DS}; "
                 "price 1.5e-5 $/s from the paper's §IV-A",
        price_usd_s=1.5e-5,
        sources={
            "frequency": f"{_CD_PAPER}: 1597 MHz",
            "matmul_flops": f"{_CD_PAPER}: 130 TFLOPS (Tensor Core, fp16); {_V100S_DS}",
            "vector_flops": f"{_V100S_DS}: 16.4 TFLOPS fp32, fp16 non-tensor twice that",
            "memory_bandwidth": f"{_CD_PAPER}: 1134 GB/s",
            "memory_gb": f"{_V100S_DS}: 32 GB HBM2",
            "max_power_w": f"{_V100S_DS}: 250 W",
            "idle_power_w": "assumption: 25 W board power at idle",
            "compute_efficiency": _GPU_EFF, "memory_efficiency": _GPU_EFF,
            "price_usd_s": "cloud-device deployment paper §IV-A a): 1.5e-5 $/s",
        }),
    HardwareSpec(
        name="a100-80gb-sxm", kind="cloud",
        description="NVIDIA A100 80GB SXM, fp16 tensor cores, HBM2e (Group-H cloud)",
        matmul_flops=312e12, vector_flops=78e12, memory_bandwidth_bytes_s=2039e9,
        memory_gb=80.0, idle_power_w=50.0, max_power_w=400.0,
        compute_efficiency=0.6, memory_efficiency=0.8, default_precision="fp16",
        citation=f"{_CD_PAPER} (1410 MHz, 312 TFLOPS tensor core, 2039 GB/s); {_A100_80_DS}; "
                 "price 4e-5 $/s from the paper's §IV-A",
        price_usd_s=4e-5,
        sources={
            "frequency": f"{_CD_PAPER}: 1410 MHz",
            "matmul_flops": f"{_CD_PAPER}: 312 TFLOPS (Tensor Core, fp16); {_A100_80_DS}",
            "vector_flops": f"{_A100_80_DS}: FP16 (non-tensor) 78 TFLOPS",
            "memory_bandwidth": f"{_CD_PAPER}: 2039 GB/s, which is the 80GB SXM part "
                                f"({_A100_80_DS})",
            "memory_gb": f"{_A100_80_DS}: 80 GB HBM2e",
            "max_power_w": f"{_A100_80_DS}: 400 W (SXM)",
            "idle_power_w": "assumption: 50 W board power at idle",
            "compute_efficiency": _GPU_EFF, "memory_efficiency": _GPU_EFF,
            "price_usd_s": "cloud-device deployment paper §IV-A b): 4e-5 $/s",
        }),
    HardwareSpec(
        name="jetson-nano", kind="edge",
        description="NVIDIA Jetson Nano 4GB, 128-core Maxwell GPU (fp16), LPDDR4 shared with "
                    "the CPU (Group-L device)",
        matmul_flops=0.47e12, vector_flops=0.47e12, memory_bandwidth_bytes_s=25.6e9,
        memory_gb=4.0, idle_power_w=1.5, max_power_w=10.0,
        compute_efficiency=0.5, memory_efficiency=0.7, default_precision="fp16",
        citation=f"{_CD_PAPER} (1430 MHz, 0.47 TFLOPS GPU, 25.6 GB/s); {_NANO_DS}",
        sources={
            "frequency": f"{_CD_PAPER}: 1430 MHz (the CPU cluster's clock)",
            "matmul_flops": f"{_CD_PAPER}: 0.47 TFLOPS (GPU, fp16); {_NANO_DS}: 472 GFLOPS",
            "vector_flops": "no tensor cores: the same CUDA-core fp16 peak",
            "memory_bandwidth": f"{_CD_PAPER}: 25.6 GB/s (64-bit LPDDR4)",
            "memory_gb": f"{_NANO_DS}: 4 GB, shared by CPU, GPU and the operating system",
            "max_power_w": f"{_NANO_DS}: 10 W mode (5 W mode also offered)",
            "idle_power_w": "assumption: 1.5 W module power at idle",
            "compute_efficiency": _DEVICE_EFF, "memory_efficiency": _DEVICE_EFF,
        }),
    HardwareSpec(
        name="snapdragon-8s-gen3", kind="edge",
        description="Qualcomm Snapdragon 8s Gen 3, Adreno GPU (fp16), LPDDR5X shared "
                    "(Group-H device)",
        matmul_flops=8.5e12, vector_flops=8.5e12, memory_bandwidth_bytes_s=76.6e9,
        memory_gb=12.0, idle_power_w=0.5, max_power_w=8.0,
        compute_efficiency=0.5, memory_efficiency=0.7, default_precision="fp16",
        citation=f"{_CD_PAPER} (921 MHz, 8.50 TFLOPS GPU, 76.6 GB/s); {_SD8S}",
        sources={
            "frequency": f"{_CD_PAPER}: 921 MHz (GPU clock)",
            "matmul_flops": f"{_CD_PAPER}: 8.50 TFLOPS (GPU); taken as given, fp16",
            "vector_flops": "no separate matrix unit modelled: the same GPU peak",
            "memory_bandwidth": f"{_CD_PAPER}: 76.6 GB/s (LPDDR5X)",
            "memory_gb": "assumption: 12 GB, a common memory size of phones built on this "
                         "platform, shared with the operating system and apps",
            "max_power_w": "assumption: 8 W sustained SoC power in a phone",
            "idle_power_w": "assumption: 0.5 W",
            "compute_efficiency": _DEVICE_EFF, "memory_efficiency": _DEVICE_EFF,
        }),
)


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
    *_CLOUD_DEVICE_HARDWARE,
)}


def hardware_spec(name: str) -> HardwareSpec:
    """A known hardware spec by name ('xeon-4214r', 'a100-40gb', 'v100s', ...)."""
    return _known("hardware", HARDWARE, name)


# The paper's deployments (PerLLM §4.1): Xeon edges with four models, A100 cloud with 33B.
SHIPPED: tuple[tuple[str, str], ...] = (
    ("xeon-4214r", "yi-6b"), ("xeon-4214r", "llama2-7b"), ("xeon-4214r", "llama3-8b"),
    ("xeon-4214r", "yi-9b"), ("a100-40gb", "llama2-33b"),
)
