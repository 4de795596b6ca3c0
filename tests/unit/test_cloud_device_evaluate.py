"""The evaluation: SLA and cost arithmetic, the sweep's rows, the CLI's last line."""

import json

import pytest

from clouddevice.__main__ import main
from clouddevice.evaluate import (GROUPS, PAPER_COST_REDUCTION_PCT, TARGET_S, VARIANTS,
                                  SweepConfig, costing_for, headline, reduction_pct, summarise,
                                  sweep, sweep_point)
from clouddevice.greedy import cloud_only


def test_cost_is_cloud_busy_seconds_times_price():
    c = costing_for("group-l", "decode", 128, "paper", SweepConfig())
    full = cloud_only(c)
    assert full.cost_usd == pytest.approx(full.cloud_s * 1.5e-5)
    # LLaMA2-7B FP16 decode on a V100S is bandwidth-bound: ~13.5 GB at 1134 GB/s × 0.8
    assert 0.013 < full.cloud_s < 0.017
    assert reduction_pct(0.8, 1.0) == pytest.approx(20.0)
    assert reduction_pct(1.2, 1.0) == pytest.approx(-20.0)
    with pytest.raises(ValueError, match="reference cost must be > 0, got 0"):
        reduction_pct(1.0, 0)


def test_sla_targets_and_a_point():
    assert TARGET_S == {"prefill": 0.4, "decode": 0.1}
    row = sweep_point("group-h", "decode", 256, "paper", SweepConfig())
    assert row["split_sla_met"] == (row["split_latency_s"] <= 0.1)
    assert row["split_latency_s"] < 0.1 <= row["device_only_latency_s"]
    assert row["split_reduction_pct"] == pytest.approx(
        100 * (1 - row["split_cost_usd"] / row["cloud_only_cost_usd"]))
    assert 0 < row["split_reduction_pct"] < 100
    assert row["split_link_s"] == 0  # the paper's variant hides communication
    linked = sweep_point("group-h", "decode", 256, "link", SweepConfig())
    assert linked["cloud_only_latency_s"] == pytest.approx(
        row["cloud_only_latency_s"] + 2 * (0.010 + 4 * 8 / 300e6), rel=1e-6)


def test_summary_means_and_headline_keys():
    config = SweepConfig(sizes=(64,))
    rows = sweep(config)
    assert len(rows) == len(VARIANTS) * len(GROUPS) * 2
    summary = summarise(rows)
    for v in VARIANTS:
        for g in GROUPS:
            rs = [r for r in rows if r["variant"] == v and r["group"] == g]
            s = summary[v][g]
            assert s["cost_reduction_pct"] == pytest.approx(
                sum(r["split_reduction_pct"] for r in rs) / 2)
            assert s["sla_met_fraction"] == sum(r["split_sla_met"] for r in rs) / 2
            if v.endswith("+memory"):
                assert s["fits_device_memory_fraction"] == 1.0
    head = headline(summary, config, None)
    assert head["paper_cost_reduction_pct"] == PAPER_COST_REDUCTION_PCT
    assert set(head["cost_reduction_pct"]) == set(head["sla_met_fraction"]) == set(GROUPS)


def test_cli_last_line_is_the_json(capsys, tmp_path):
    assert main(["run", "--sizes", "32", "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    result = json.loads(out[-1])
    assert result["paper_cost_reduction_pct"] == {"group-l": 11.6, "group-h": 20.7}
    for key in ("cost_reduction_pct", "sla_met_fraction"):
        assert set(result[key]) == {"group-l", "group-h"}
    run_dir = next((tmp_path / "cloud-device").iterdir())
    for name in ("points.csv", "summary.json", "config.json", "fig6-latency.png",
                 "fig7-cost.png"):
        assert (run_dir / name).stat().st_size > 0
    assert any((run_dir / "plans").iterdir())


def test_cli_place_and_bad_input(capsys):
    assert main(["place", "--group", "group-h", "--stage", "decode", "--size", "64",
                 "--variant", "link+memory"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["fits_device_memory"] and len(plan["layers"]) == 33
    assert main(["run", "--sizes", "5000", "--no-results"]) == 2
    assert "exceeds llama2-7b's context of 4096" in capsys.readouterr().err
    with pytest.raises(ValueError, match="groups must be among group-l, group-h"):
        SweepConfig(groups=("group-x",))
