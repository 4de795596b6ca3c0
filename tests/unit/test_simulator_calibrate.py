"""Calibration recovers known node rates, power and link efficiency from a run's results
folder, and compare() reproduces a run from its folder (here a run whose truth we know: the
simulator's own, written in the results layout as an emulated run would be)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from nodes.profile import load_profile
from scenarios.spec import load_spec
from simulator.calibrate import calibrate
from simulator.cells import Cell, run_cell
from simulator.compare import compare, format_comparison
from simulator.world import load_calibration


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("emulated")
    # No give-up: calibration needs every service that ran, however late.
    spec = load_spec("paper", **{"workload.requests": 600, "workload.give_up_s": 1e9})
    run_cell(spec, Cell(None, None), ["round-robin", "cs-ucb"], out_dir=out, plots=False)
    summary = json.loads((out / "summary.json").read_text())
    summary["world"] = "emulated"  # stands in for an emulated run whose truth we know
    (out / "summary.json").write_text(json.dumps(summary))
    return out


def test_calibration_recovers_the_rates_and_power_the_run_was_made_with(run_dir):
    doc, spec = calibrate(run_dir)
    edge = load_profile(spec.nodes.edge.profile)
    cloud = load_profile(spec.nodes.cloud.profile)
    for node_id, truth in (("edge1", edge), ("edge3", edge), ("cloud", cloud)):
        fitted = doc["nodes"][node_id]
        assert fitted["samples"] > 20, node_id
        assert fitted["prefill_tok_s"] == pytest.approx(truth.prefill_tok_s, rel=0.1), node_id
        assert fitted["decode_tok_s"] == pytest.approx(truth.decode_tok_s, rel=0.05), node_id
        assert fitted["idle_power_w"] == pytest.approx(truth.idle_power_w, rel=1e-6), node_id
        assert fitted["max_power_w"] == pytest.approx(truth.max_power_w, rel=1e-6), node_id
    # Edges run one service at a time: their slow-down cannot be seen and stays near 0.
    assert doc["nodes"]["cloud"]["concurrency_slowdown"] == pytest.approx(
        cloud.concurrency_slowdown, abs=0.02)
    for link in ("edge1", "cloud"):
        assert doc["links"][link]["efficiency"] == pytest.approx(1.0, abs=0.02)


def test_cli_writes_a_calibration_the_simulator_loads_and_compare_agrees(run_dir, tmp_path):
    path = tmp_path / "calibration.yaml"
    proc = subprocess.run([sys.executable, "-m", "simulator", "calibrate", str(run_dir),
                           "--out", str(path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    calibration = load_calibration(path)
    assert set(calibration.nodes) == {"edge1", "edge2", "edge3", "edge4", "edge5", "cloud"}
    assert yaml.safe_load(path.read_text())["scenario"] == "paper"

    uncalibrated = compare(run_dir)
    for policy, row in uncalibrated["policies"].items():  # same seed, same world: identical
        assert row["success_rate"]["difference"] == pytest.approx(0.0, abs=1e-12), policy
        assert row["energy_total_j"]["difference"] == pytest.approx(0.0, abs=1e-6), policy
    calibrated = compare(run_dir, str(path))
    for policy, row in calibrated["policies"].items():
        assert abs(row["success_rate"]["difference"]) < 0.05, policy
    text = format_comparison(calibrated)
    assert "round-robin" in text and "cs-ucb" in text


def test_compare_refuses_a_simulated_run(tmp_path):
    spec = load_spec("paper")
    run_cell(spec, Cell(None, None), ["round-robin"], requests=20, out_dir=tmp_path, plots=False)
    with pytest.raises(ValueError, match="simulated run"):
        compare(tmp_path)
