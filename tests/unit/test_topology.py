"""The topology graph and the HTB parameter rule, without root."""

import pytest

from testbed.shaping import MIN_BURST_BYTES, WIRE_PER_PAYLOAD, htb_params
from testbed.spec import TopologySpec
from testbed.topology import BRIDGE, EdgeCloudTopo, host_ip, host_intf


def test_default_graph_is_user_five_edges_and_cloud_on_one_bridge():
    topo = EdgeCloudTopo(TopologySpec())
    assert topo.hosts() == ["cloud", "edge1", "edge2", "edge3", "edge4", "edge5", "user"]
    assert topo.switches() == [BRIDGE] and BRIDGE.startswith("plm-")
    links = topo.links(sort=True, withInfo=True)
    assert len(links) == 7
    for a, b, info in links:
        host = a if b == BRIDGE else b
        assert BRIDGE in (a, b) and host in topo.hosts()
        ports = {info["node1"]: info["port1"], info["node2"]: info["port2"]}
        assert ports[host] == 0  # host side is <host>-eth0
    assert topo.nodeInfo("user")["ip"] == "10.0.0.1/24"
    assert topo.nodeInfo("edge3")["ip"] == "10.0.0.4/24"
    assert topo.nodeInfo("cloud")["ip"] == "10.0.0.254/24"


def test_bridge_ports_follow_link_order():
    topo = EdgeCloudTopo(TopologySpec(edges=2))
    assert [topo.switch_intf(n) for n in ["user", "edge1", "edge2", "cloud"]] == [
        "plm-br0-eth1", "plm-br0-eth2", "plm-br0-eth3", "plm-br0-eth4"]
    assert topo.port("edge2", BRIDGE) == (0, 3)
    assert host_intf("edge2") == "edge2-eth0"
    # Linux limits interface names to 15 characters.
    big = EdgeCloudTopo(TopologySpec(edges=32))
    assert len(big.switch_intf("cloud")) <= 15 and len(host_intf("edge32")) <= 15


def test_without_cloud():
    topo = EdgeCloudTopo(TopologySpec(edges=1, cloud=False))
    assert topo.hosts() == ["edge1", "user"]


def test_host_ip_refuses_unknown_names():
    assert host_ip("edge32") == "10.0.0.33"
    with pytest.raises(ValueError, match="'edge33'"):
        host_ip("edge33")
    with pytest.raises(ValueError, match="'router'"):
        host_ip("router")


@pytest.mark.parametrize("rate_mbit", [1.0, 80.0, 100.0, 300.0, 1000.0, 10000.0 * WIRE_PER_PAYLOAD])
def test_htb_params_are_legal_and_sized_from_the_rate(rate_mbit):
    p = htb_params(rate_mbit)
    assert p.rate_Bps == p.ceil_Bps == round(rate_mbit * 125_000)
    assert p.burst_bytes == p.cburst_bytes >= MIN_BURST_BYTES
    assert p.burst_bytes >= p.rate_Bps * 0.004
    assert 1514 <= p.quantum_bytes <= 200_000
    assert p.rate_Bps < 2**32  # fits HTB's 32-bit rate field up to 10 Gbit/s


def test_htb_params_refuse_out_of_range_rates():
    with pytest.raises(ValueError, match="0.5"):
        htb_params(0.5)
    with pytest.raises(ValueError, match="20000"):
        htb_params(20000.0)


def test_spec_rate_basis_defaults_to_payload():
    assert TopologySpec().rate_basis == "payload"
    with pytest.raises(ValueError):
        TopologySpec(rate_basis="bits")
