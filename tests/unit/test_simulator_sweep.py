"""The sweep: confidence intervals, one run per (value, seed), and a plot."""

from __future__ import annotations

import math

import pytest

from simulator.sweep import ci95, plot, run_sweep, tabulate


def test_ci95_is_the_student_t_half_width_of_the_mean():
    mean, half = ci95([1.0, 2.0, 3.0])
    assert mean == 2.0
    assert half == pytest.approx(4.303 * 1.0 / math.sqrt(3))
    assert ci95([5.0]) == (5.0, 0.0)


def test_a_sweep_runs_every_value_and_seed_and_load_lowers_success(tmp_path):
    # 30/s: paper's answers are shorter than their caps (output_length), so the cloud still
    # meets nearly every service at 12/s
    rows = run_sweep("paper", "workload.arrival.rate_per_s", [2.0, 30.0], [1, 2],
                     ["edge-cloud"], requests=300, processes=1)
    assert sorted((value, seed) for value, seed, _ in rows) == [(2.0, 1), (2.0, 2),
                                                                (30.0, 1), (30.0, 2)]
    table = tabulate(rows, "success_rate")["edge-cloud"]
    assert table["2.0"][2] == 2  # two seeds per value
    assert table["2.0"][0] > table["30.0"][0]
    path = plot(tabulate(rows, "success_rate"), "workload.arrival.rate_per_s",
                "success_rate", tmp_path / "sweep.png")
    assert path.stat().st_size > 1000


def test_a_value_that_does_not_validate_fails_before_any_run():
    with pytest.raises(Exception, match="rate_per_s"):
        run_sweep("paper", "workload.arrival.rate_per_s", [-1.0], [1], ["edge-cloud"], 10)


def test_run_cli_prints_the_table_1_matrix_and_writes_each_cell(tmp_path):
    import json
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "simulator", "run", "paper", "--requests", "150",
         "--policies", "cs-ucb,edge-cloud", "--no-plots", "--results", str(tmp_path)],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "Success rate (%), bandwidth stable" in proc.stdout
    assert "Success rate (%), bandwidth fluctuating" in proc.stdout
    for model in ("yi-6b", "llama2-7b", "llama3-8b", "yi-9b"):
        assert model in proc.stdout
    (run_dir,) = (tmp_path / "paper").iterdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["world"] == "simulated" and len(summary["cells"]) == 8
    assert (run_dir / "yi-9b" / "stable" / "requests.csv").exists()
    assert set(summary["ratios_vs_cs_ucb"]) == {"edge-cloud"}
