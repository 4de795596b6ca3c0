"""Shaper fidelity on the real testbed (issue 13): a link saturated by iperf3 has backlogged
windows that deliver its configured rate; an idle link has none. ~10 s, root."""

import pytest

from scenarios.fidelity import SHAPER_RATIO_BAND, shaper_fidelity
from testbed import verify
from testbed.net import Testbed
from testbed.spec import TopologySpec

pytestmark = pytest.mark.root

SMALL = TopologySpec(edges=1, edge_rate_mbit=100, cloud_rate_mbit=300)


def test_a_saturated_link_is_backlogged_and_delivers_its_rate():
    with Testbed(SMALL) as tb:
        verify.start_iperf_server(tb, "cloud")
        tb.reset_counters()
        verify.iperf_mbit(tb, "cloud", duration_s=4.0, reverse=False)
        figures = shaper_fidelity(tb.shaper_windows())
    cloud, edge = figures["cloud/up"], figures["edge1/up"]
    assert cloud["backlogged"] >= 2, figures
    lo, hi = SHAPER_RATIO_BAND
    assert lo <= cloud["ratio_median"] <= hi, figures
    assert edge["backlogged"] == 0 and edge["windows"] >= 3, figures
