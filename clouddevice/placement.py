"""A placement (a side per operator) and what it costs: latency, cloud dollars, link, memory.

Latency: one iteration runs its operators in order, one at a time (batch 1 leaves nothing to
overlap), so T = Σ device times + Σ cloud times + link time. Every tensor whose producer and
some consumer sit on different sides crosses once, taking the link's one-way latency plus
bytes / rate; with `hide_communication` (the paper's assumption that pipelining conceals the
activations, §III-A) crossings cost nothing. The KV cache lives beside the attention operator
that reads it (the paper's description): a step sends the new k and v, never the cache.

Cost: the cloud's busy seconds times its price (pay per busy second; the paper's "minimise the
use of cloud hardware"). The device's energy and the link are free.

Memory: the device must hold the weights of its operators, the K/V cache of its attention
operators, the embedding table and the largest tensor it produces. The paper ignores memory;
we flag a placement that does not fit (`fits_device_memory`), and `execution_plan` refuses
one, because a node pair could not run it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

from clouddevice.graph import CLOUD, DEVICE, OperatorGraph
from clouddevice.hardware import HardwareModel

SIDES = (DEVICE, CLOUD)


class DeviceMemoryError(ValueError):
    """The device part of a split does not fit the device's memory."""


@dataclass(frozen=True)
class Link:
    """The device–cloud link: one-way latency and rate, the same both ways."""

    rate_mbit: float = 300.0
    one_way_latency_ms: float = 10.0
    hide_communication: bool = False

    def __post_init__(self) -> None:
        if not (math.isfinite(self.rate_mbit) and self.rate_mbit > 0):
            raise ValueError(f"link rate_mbit must be finite and > 0, got {self.rate_mbit!r}")
        if not (math.isfinite(self.one_way_latency_ms) and self.one_way_latency_ms >= 0):
            raise ValueError(f"link one_way_latency_ms must be finite and >= 0, "
                             f"got {self.one_way_latency_ms!r}")

    def transfer_s(self, nbytes: float) -> float:
        if self.hide_communication:
            return 0.0
        return self.one_way_latency_ms / 1e3 + nbytes * 8 / (self.rate_mbit * 1e6)


@dataclass(frozen=True)
class Crossing:
    tensor: str
    producer: str
    source: str  # the side that sends
    consumers: tuple[str, ...]  # operator keys on the other side
    bytes: float


class Costing:
    """Per-operator times on both machines for one graph, so placements are cheap to score."""

    def __init__(self, graph: OperatorGraph, device: HardwareModel, cloud: HardwareModel,
                 link: Link) -> None:
        if cloud.price_usd_s is None:
            raise ValueError(f"cloud machine {cloud.name!r} has no price_usd_s; give one in "
                             f"nodes/catalogue.py")
        self.graph, self.device, self.cloud, self.link = graph, device, cloud, link
        self.time_s = {DEVICE: {op.key: device.time_s(op.cost) for op in graph.operators},
                       CLOUD: {op.key: cloud.time_s(op.cost) for op in graph.operators}}
        self.consumers = graph.consumers()
        # tensors each operator produces or reads: the only ones a move of it can make cross
        self.tensors_of: dict[str, list[str]] = {op.key: [op.output, *op.inputs]
                                                 for op in graph.operators}

    @staticmethod
    def side_of(sides: Mapping[str, str], key: str) -> str:
        return DEVICE if key in ("input", "output") else sides[key]

    def tensor_link_s(self, sides: Mapping[str, str], name: str) -> float:
        """Link time of one tensor under `sides`: one transfer if any consumer is across."""
        src = self.side_of(sides, self.graph.tensors[name].producer)
        if any(self.side_of(sides, c) != src for c in self.consumers[name]):
            return self.link.transfer_s(self.graph.tensors[name].bytes)
        return 0.0

    def evaluate(self, sides: Mapping[str, str]) -> "Placement":
        return Placement(self, dict(sides))

    def all_on(self, side: str) -> "Placement":
        return self.evaluate({op.key: side for op in self.graph.operators})


class Placement:
    """A side for every operator of one iteration, and everything that follows from it."""

    def __init__(self, costing: Costing, sides: dict[str, str]) -> None:
        keys = {op.key for op in costing.graph.operators}
        if set(sides) != keys:
            missing, extra = sorted(keys - set(sides))[:3], sorted(set(sides) - keys)[:3]
            raise ValueError(f"placement must give a side to every operator; missing "
                             f"{missing}, unknown {extra}")
        bad = {k: v for k, v in sides.items() if v not in SIDES}
        if bad:
            key, value = next(iter(bad.items()))
            raise ValueError(f"side of {key} must be one of {', '.join(SIDES)}, got {value!r}")
        self.costing, self.sides = costing, sides
        self.device_s = sum(t for k, t in costing.time_s[DEVICE].items() if sides[k] == DEVICE)
        self.cloud_s = sum(t for k, t in costing.time_s[CLOUD].items() if sides[k] == CLOUD)
        self.crossings = self._crossings()
        self.link_s = sum(costing.link.transfer_s(c.bytes) for c in self.crossings)
        self.latency_s = self.device_s + self.cloud_s + self.link_s
        self.cost_usd = self.cloud_s * costing.cloud.price_usd_s
        self.device_memory_bytes = self._device_memory()
        cap = costing.device.memory_bytes
        self.fits_device_memory = cap is None or self.device_memory_bytes <= cap

    def side(self, key: str) -> str:
        return Costing.side_of(self.sides, key)

    def _crossings(self) -> list[Crossing]:
        out = []
        for name, tensor in self.costing.graph.tensors.items():
            src = self.side(tensor.producer)
            away = tuple(c for c in self.costing.consumers[name] if self.side(c) != src)
            if away:
                out.append(Crossing(name, tensor.producer, src, away, tensor.bytes))
        return out

    def _device_memory(self) -> float:
        g = self.costing.graph
        on_device = [op for op in g.operators if self.sides[op.key] == DEVICE]
        produced = [g.tensors[op.output].bytes for op in on_device]
        return (sum(op.weight_bytes + op.kv_cache_bytes for op in on_device)
                + g.embedding_bytes + max(produced, default=0.0))

    @property
    def cloud_operators(self) -> int:
        return sum(1 for s in self.sides.values() if s == CLOUD)

    def meets(self, target_s: float) -> bool:
        return self.latency_s <= target_s

    def summary(self) -> dict[str, Any]:
        return {"latency_s": self.latency_s, "device_s": self.device_s, "cloud_s": self.cloud_s,
                "link_s": self.link_s, "cost_usd": self.cost_usd,
                "cloud_operators": self.cloud_operators,
                "operators": len(self.sides), "crossings": len(self.crossings),
                "crossing_bytes": sum(c.bytes for c in self.crossings),
                "device_memory_gb": self.device_memory_bytes / 1e9,
                "fits_device_memory": self.fits_device_memory}

    def execution_plan(self) -> dict[str, Any]:
        """What a device node and a cloud node would run: per layer the operators of each side
        in order, and every tensor that crosses (after which operator, which way, bytes)."""
        if not self.fits_device_memory:
            cap = self.costing.device.memory_bytes or 0.0
            raise DeviceMemoryError(
                f"device part needs {self.device_memory_bytes / 1e9:.2f} GB but "
                f"{self.costing.device.name} has {cap / 1e9:.2f} GB; move more operators to "
                f"the cloud")
        g = self.costing.graph
        layers = []
        for layer in range(g.layers + 1):
            ops = [op for op in g.operators if op.layer == layer]
            layers.append({"layer": layer if layer < g.layers else "head",
                           DEVICE: [op.name for op in ops if self.sides[op.key] == DEVICE],
                           CLOUD: [op.name for op in ops if self.sides[op.key] == CLOUD]})
        return {
            "model": g.model.name, "precision": g.precision.name, "stage": g.stage,
            "tokens": g.tokens, "context": g.context,
            "device": self.costing.device.name, "cloud": self.costing.cloud.name,
            "layers": layers,
            "transfers": [{"tensor": c.tensor, "after": c.producer, "from": c.source,
                           "to": CLOUD if c.source == DEVICE else DEVICE,
                           "consumers": list(c.consumers), "bytes": c.bytes}
                          for c in self.crossings],
            "kv_cache": "beside each attention operator (K with attn_scores, V with attn_av)",
            **self.summary(),
        }
