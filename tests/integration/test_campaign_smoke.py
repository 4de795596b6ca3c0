"""An emulated campaign end to end (root): 2 seeds of `smoke` on the local executor, each
(policy, seed) a fresh testbed, ending in an aggregate report with 95% CIs over seeds. 12
services per run (of smoke's 30) keep the four runs near a minute in all."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from scenarios.spec import load_spec

pytestmark = [pytest.mark.root, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


def test_a_two_seed_smoke_campaign_writes_an_aggregate_with_confidence_intervals(tmp_path):
    spec = load_spec("smoke")
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-m", "scenarios", "campaign", "smoke", "--seeds", "2",
                           "--requests", "12", "--executor", "local", "--results", str(tmp_path)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (campaign,) = (tmp_path / "smoke-campaign").iterdir()
    seeds = [spec.seed, spec.seed + 1]
    data = json.loads((campaign / "aggregate.json").read_text())
    assert data["world"] == "emulated" and data["seeds"] == seeds and data["failed"] == []
    assert set(data["policies"]) == set(spec.policies)
    for figures in data["policies"].values():
        for name in ("success_rate", "mean_total_s", "energy_j"):
            assert figures[name]["n"] == 2 and figures[name]["ci95"] is not None
        # Two seeds, two workloads: the energy differs between them, so its CI is wide open.
        assert figures["energy_j"]["ci95"] > 0
    # Every (policy, seed) is its own fresh run with its own results folder and seed.
    for policy in spec.policies:
        for seed in seeds:
            run = campaign / "runs" / policy / f"seed-{seed}"
            summary = json.loads((run / "summary.json").read_text())
            assert summary["seed"] == seed and list(summary["policies"]) == [policy]
            assert summary["policies"][policy]["requests"] == 12
            assert (run / "requests.csv").stat().st_size > 0
    with (campaign / "per_seed.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert sorted((int(r["seed"]), r["policy"]) for r in rows) == sorted(
        (s, p) for s in seeds for p in spec.policies)
    report = (campaign / "report.md").read_text()
    assert "95% confidence interval" in report and "aggregate.png" in report
    assert (campaign / "aggregate.png").stat().st_size > 1000
    assert "mean ± 95% CI over 2 seeds" in proc.stdout
