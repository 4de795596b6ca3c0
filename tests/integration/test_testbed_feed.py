"""A link taken down shows as 0 Mbit/s in the rate log and the scheduler's bandwidth feed."""

import json

import pytest

from testbed.net import Testbed
from testbed.spec import TopologySpec

pytestmark = pytest.mark.root


def feed(tb: Testbed) -> dict[str, float]:
    return json.loads(tb.bandwidth_feed_path.read_text())["rates_mbit"]


def test_link_down_and_up_reach_the_feed_and_the_log(tmp_path):
    with Testbed(TopologySpec(edges=1, edge_rate_mbit=100, cloud_rate_mbit=300),
                 run_dir=tmp_path) as tb:
        assert feed(tb) == {"edge1": 100.0, "cloud": 300.0}
        tb.link_down("cloud")
        assert feed(tb) == {"edge1": 100.0, "cloud": 0.0}
        tb.set_rate("cloud", 250.0)  # a change while down is applied but the link stays 0
        assert feed(tb)["cloud"] == 0.0
        tb.link_up("cloud")
        assert feed(tb) == {"edge1": 100.0, "cloud": 250.0}
        cloud_log = [c.rate_mbit for c in tb.rate_log if c.link == "cloud"]
        assert cloud_log == [300.0, 0.0, 250.0, 250.0]
