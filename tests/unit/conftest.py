"""Helpers shared by the unit tests: a clock the test moves, and node and cluster builders."""

from __future__ import annotations

from scheduler.cluster import Cluster, NodeInfo


class FakeClock:
    """A clock that stands still until the test sets `now_s`."""

    def __init__(self, now_s: float = 0.0) -> None:
        self.now_s = now_s

    def __call__(self) -> float:
        return self.now_s


def node_info(node_id: str, kind: str = "edge", slots: int = 1, decode: float = 20.0,
              prefill: float = 1000.0, rate: float = 100.0, idle_w: float = 50.0,
              max_w: float = 100.0, **kw) -> NodeInfo:
    """A node as it registers: declared rates (tokens/s), link (Mbit/s) and powers (W)."""
    return NodeInfo(node_id=node_id, address=f"{node_id}:1", kind=kind, slots=slots,
                    link_rate_mbit=rate, prefill_tok_s=prefill, decode_tok_s=decode,
                    idle_power_w=idle_w, max_power_w=max_w, **kw)


def make_cluster(*infos: NodeInfo, learn_rates: bool = True,
                 clock: FakeClock | None = None) -> Cluster:
    # learn_rates=False: a perfect-information cluster (scheduler.information).
    cluster = Cluster(clock or FakeClock(), information="measured" if learn_rates else "perfect")
    for info in infos:
        cluster.register(info)
    return cluster
