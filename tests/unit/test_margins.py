"""Paired margins over seeds (campaign.margins): the hand-computed case."""

from __future__ import annotations

import pytest

from campaign.margins import margins, runs_beating

CSV = """seed,policy,cell,success_rate,mean_total_s,p95_total_s,throughput_tok_s,energy_j
1,cs-ucb,a,0.90,1.0,2.0,10,110
1,clairvoyant,a,0.85,1.0,2.0,10,100
2,cs-ucb,a,0.80,2.0,2.0,10,120
2,clairvoyant,a,0.82,1.0,2.0,10,100
"""


def test_margins_are_paired_by_seed_in_points_and_percent(tmp_path):
    path = tmp_path / "per_seed.csv"
    path.write_text(CSV)
    m = margins(path, "cs-ucb")["margins"]["clairvoyant"]
    # success: +5 and -2 points -> mean 1.5, t(1) = 12.706 x sd 4.95 / sqrt 2
    assert m["success_rate"]["mean"] == pytest.approx(1.5)
    assert m["success_rate"]["ci95"] == pytest.approx(12.706 * 4.949747 / 2 ** 0.5, rel=1e-5)
    assert m["mean_total_s"]["mean"] == pytest.approx(50.0)  # 0% and +100%
    assert m["energy_j"]["mean"] == pytest.approx(15.0)  # +10% and +20%
    assert runs_beating(path) == {"cs-ucb": ["seed 1 a"]}
    with pytest.raises(ValueError, match="did not run"):
        margins(path, "linucb")
