"""The gateway's connections to the nodes (issue 13): a burst gets up to `per_node` TCP
connections per node, idle ones are reused, calls beyond share the least busy."""

from __future__ import annotations

import pytest

from scheduler.config import ServerConfig
from scheduler.node_channels import NodeChannels


def test_a_burst_opens_at_most_per_node_connections_and_shares_the_least_busy():
    pool = NodeChannels(None, 1024, per_node=3)
    try:
        calls = [pool.acquire("10.0.0.2:50061") for _ in range(7)]
        distinct = {id(c) for c in calls}
        assert len(distinct) == 3  # three connections for seven calls
        assert sorted(c.calls for c in {id(c): c for c in calls}.values()) == [2, 2, 3]
        other = pool.acquire("10.0.0.3:50061")  # another node has its own
        assert id(other) not in distinct
        for call in calls:
            pool.release(call)
        again = pool.acquire("10.0.0.2:50061")
        assert id(again) in distinct and again.calls == 1  # an idle one, reused
    finally:
        pool.close()
    with pytest.raises(RuntimeError, match="closed"):
        pool.acquire("10.0.0.2:50061")


def test_node_connections_must_be_positive():
    with pytest.raises(ValueError, match=r"node_connections must be >= 1 \(got 0\)"):
        ServerConfig(node_connections=0).validate()
