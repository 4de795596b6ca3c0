"""Each link gets its own schedule (regression: every change was labelled with the last link)."""

import pytest

from testbed.fluctuation import rate_schedule
from testbed.spec import FluctuationSpec


@pytest.mark.parametrize("profile", ["uniform", "random-walk", "sine"])
def test_every_link_has_its_own_changes_within_its_band(profile):
    links = {"edge1": 100.0, "edge2": 100.0, "cloud": 300.0}
    spec = FluctuationSpec(profile=profile, amplitude=0.2, period_s=1.0)
    changes = rate_schedule(spec, links, duration_s=10.0, seed=42)
    assert {c.link for c in changes} == set(links)
    for c in changes:
        assert 0.8 * links[c.link] - 1e-9 <= c.rate_mbit <= 1.2 * links[c.link] + 1e-9
    edge1 = [c.rate_mbit for c in changes if c.link == "edge1"]
    edge2 = [c.rate_mbit for c in changes if c.link == "edge2"]
    assert edge1 != edge2, "links share one random stream"
