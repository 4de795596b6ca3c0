"""The testbed's network as a plain Mininet graph (no root needed to build it).

One Linux bridge `plm-br0`; the `user` host (workload driver and scheduler) on an unshaped
access link; each of edge1..edgeN and cloud on its own link to the bridge, later shaped with HTB
in both directions by `testbed.shaping`. The access link is never the bottleneck: a veth runs at
several Gbit/s, far above the sum of the shaped links at the default rates.
"""

from __future__ import annotations

from mininet.topo import Topo

from testbed.spec import TopologySpec

# Everything the testbed creates in the root namespace starts with this, so `python -m testbed
# clean` can remove what a crashed run left without touching anything else.
PREFIX = "plm-"
BRIDGE = f"{PREFIX}br0"
USER = "user"
SUBNET_PREFIXLEN = 24


def host_ip(name: str) -> str:
    """user 10.0.0.1, edgeK 10.0.0.(1+K), cloud 10.0.0.254."""
    if name == USER:
        return "10.0.0.1"
    if name == "cloud":
        return "10.0.0.254"
    if name.startswith("edge") and name[4:].isdigit() and 1 <= int(name[4:]) <= 32:
        return f"10.0.0.{1 + int(name[4:])}"
    raise ValueError(f"host name {name!r} is not user, cloud or edge1..edge32")


def host_intf(name: str) -> str:
    """The host-side interface of a host's only link (Mininet's naming)."""
    return f"{name}-eth0"


class EdgeCloudTopo(Topo):
    """user + edge1..edgeN (+ cloud), each on its own port of one bridge."""

    def build(self, spec: TopologySpec) -> None:  # type: ignore[override]
        self.spec = spec
        bridge = self.addSwitch(BRIDGE)
        # Port numbers fix the bridge-side names: user on plm-br0-eth1, then links in order.
        for port, name in enumerate([USER, *spec.link_names()], start=1):
            self.addHost(name, ip=f"{host_ip(name)}/{SUBNET_PREFIXLEN}")
            self.addLink(name, bridge, port1=0, port2=port)

    def switch_intf(self, name: str) -> str:
        """The bridge-side interface of host `name`'s link (in the root namespace)."""
        port = [USER, *self.spec.link_names()].index(name) + 1
        return f"{BRIDGE}-eth{port}"
