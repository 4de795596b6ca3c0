"""The per-layer, per-operator graph of a decoder iteration (the paper's Table I), placeable op by op.

One iteration is a prefill of `tokens` positions or one decode step with `context` positions
already cached. Each layer has nine placeable operators: the Q/K/V/O linears, attention as
scores (QKᵀ with its softmax) and S·V, and the FFN's three SwiGLU linears (gate, up, down:
each is Table I's FFN row); the LM head closes the iteration. Their FLOPs and bytes come from
`nodes.roofline.operator_costs`, which follows Table I (FLOPs are 2 per multiply-accumulate,
bytes are elements × bytes per element; with one head and no grouped KV the two agree
exactly, see tests/unit/test_cloud_device_graph.py).

Element-wise work Table I leaves out (RMSNorm, RoPE, SiLU·mul, residual adds, the embedding
lookup) is not placed: it runs fused into the operator that consumes it, on that operator's
side, and its time is not counted (at most 3.2% of LLaMA2-7B's roofline time on these machines,
prefill of 32 to 2048 tokens or a decode step).

Tensors name what crosses the link when producer and consumer sit on different sides: the
layer input x_l (also the residual of o_proj), q, k, v, the score matrix p, the attention
output a, the post-attention stream h (also the residual of ffn_down), g and u, and the
sampled token. The prompt's token ids start on the device; the embedding table is held on
both sides, so x_0 costs 4 bytes per token to send, not its hidden width.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from nodes.catalogue import PRECISIONS, ModelConfig, Precision, model_config
from nodes.roofline import OperatorCost, operator_costs

STAGES = ("prefill", "decode")
LINEAR, ATTENTION = "linear", "attention"
LAYER_OPERATORS = ("q_proj", "k_proj", "v_proj", "attn_scores", "attn_av", "o_proj",
                   "ffn_gate", "ffn_up", "ffn_down")
TOKEN_ID_BYTES = 4  # an int32 token id
DEVICE, CLOUD = "device", "cloud"  # where the prompt enters and the answer leaves: the device


@dataclass(frozen=True)
class Tensor:
    """A value one operator produces and others consume; `bytes` is what crossing costs."""

    name: str
    bytes: float
    producer: str  # an operator key, or "input" (the device, where the prompt is)


@dataclass(frozen=True)
class Operator:
    """One placeable operator of one layer; its work is `cost` (count 1)."""

    layer: int  # 0..layers-1; `layers` for the LM head
    name: str
    kind: str  # LINEAR or ATTENTION: Algorithm 1 moves linears first
    cost: OperatorCost
    weight_bytes: float  # weights the side that runs it must hold
    kv_cache_bytes: float  # cache the side that runs it must hold (K for scores, V for S·V)
    inputs: tuple[str, ...]
    output: str

    @property
    def key(self) -> str:
        return f"L{self.layer}.{self.name}" if self.name != "lm_head" else "lm_head"

    @property
    def flops(self) -> float:
        return self.cost.flops

    @property
    def bytes_moved(self) -> float:
        return self.cost.bytes_moved

    @property
    def intensity_flop_per_byte(self) -> float:
        return self.cost.intensity_flop_per_byte


@dataclass(frozen=True)
class OperatorGraph:
    """Every operator of one iteration in execution order, and the tensors between them."""

    model: ModelConfig
    precision: Precision
    stage: str
    tokens: int  # new positions this iteration
    context: int  # positions already cached before it
    operators: tuple[Operator, ...]
    tensors: Mapping[str, Tensor]
    embedding_bytes: float  # the table each side holds to embed the prompt

    @property
    def layers(self) -> int:
        return self.model.layers

    def consumers(self) -> dict[str, list[str]]:
        """Tensor name → keys of the operators that read it ("output": the device's sampler)."""
        out: dict[str, list[str]] = {name: [] for name in self.tensors}
        for op in self.operators:
            for name in op.inputs:
                out[name].append(op.key)
        out["token"].append("output")
        return out


def build_graph(model: str | ModelConfig, stage: str, size: int, precision: str = "fp16",
                batch: int = 1) -> OperatorGraph:
    """The operator graph of one iteration: a prefill of `size` tokens, or one decode step
    with `size` positions cached (the paper's "decode size")."""
    m = model if isinstance(model, ModelConfig) else model_config(model)
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {', '.join(STAGES)}, got {stage!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    for key, value in (("size", size), ("batch", batch)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{key} must be an integer >= 1, got {value!r}")
    tokens, context = (size, 0) if stage == "prefill" else (1, size)
    if tokens + context > m.max_context:
        raise ValueError(f"size {size} ({stage}) exceeds {m.name}'s context of {m.max_context}")
    prec = PRECISIONS[precision]
    attended = context + tokens
    costs = {c.name: OperatorCost(c.name, c.kind, c.flops, c.bytes_moved, 1)
             for c in operator_costs(m, prec, tokens, attended, batch)}
    # softmax is fused into the scores kernel: its work joins QKᵀ's
    soft = costs.pop("attn_softmax")
    sc = costs["attn_scores"]
    costs["attn_scores"] = OperatorCost(sc.name, "matmul", sc.flops + soft.flops,
                                        sc.bytes_moved + soft.bytes_moved, 1)
    h, kv, f, ab, wb = m.hidden, m.kv_dim, m.ffn, prec.activation_bytes, prec.weight_bytes
    rows = batch * tokens
    cache = batch * attended * kv * ab  # one layer's K (or V) after this iteration
    weights = {"q_proj": h * h, "k_proj": h * kv, "v_proj": h * kv, "o_proj": h * h,
               "ffn_gate": h * f, "ffn_up": h * f, "ffn_down": f * h}
    width = {"q": h, "k": kv, "v": kv, "a": h, "h": h, "g": f, "u": f}
    # (operator, kind, inputs, output): the dataflow of one llama block, residuals included
    block = (("q_proj", LINEAR, ("x",), "q"), ("k_proj", LINEAR, ("x",), "k"),
             ("v_proj", LINEAR, ("x",), "v"), ("attn_scores", ATTENTION, ("q", "k"), "p"),
             ("attn_av", ATTENTION, ("p", "v"), "a"), ("o_proj", LINEAR, ("a", "x"), "h"),
             ("ffn_gate", LINEAR, ("h",), "g"), ("ffn_up", LINEAR, ("h",), "u"),
             ("ffn_down", LINEAR, ("g", "u", "h"), "x+"))
    tensors: dict[str, Tensor] = {"x0": Tensor("x0", rows * TOKEN_ID_BYTES, "input")}
    operators: list[Operator] = []
    for layer in range(m.layers):
        def tensor_name(short: str) -> str:
            return f"x{layer + 1}" if short == "x+" else f"{short}{layer}"
        for name, kind, ins, out in block:
            op = Operator(layer, name, kind, costs[name], weights.get(name, 0) * wb,
                          cache if kind == ATTENTION else 0.0,
                          tuple(tensor_name(i) for i in ins), tensor_name(out))
            operators.append(op)
            if out == "x+":
                size_b = rows * h * ab
            elif out == "p":
                size_b = batch * m.heads * tokens * attended * ab
            else:
                size_b = rows * width[out] * ab
            tensors[op.output] = Tensor(op.output, size_b, op.key)
    lm = Operator(m.layers, "lm_head", LINEAR, costs["lm_head"], h * m.vocab * wb, 0.0,
                  (f"x{m.layers}",), "token")
    operators.append(lm)
    # the LM head's side samples: one id per sequence goes back to the device
    tensors["token"] = Tensor("token", batch * TOKEN_ID_BYTES, lm.key)
    return OperatorGraph(m, prec, stage, tokens, context, tuple(operators), tensors,
                         m.vocab * h * wb)
