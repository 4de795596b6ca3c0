"""`python -m simulator validate` rebuilds its table from kept run JSONs, without root."""

from __future__ import annotations

import json

import pytest

from simulator import validate
from simulator.validate import GRID, REPEATED, cell_spec, matrix, simulate_cell, summary_line


def test_the_grid_covers_every_level_and_each_cell_is_a_valid_spec():
    assert len({c.name for c in GRID}) == len(GRID) and set(REPEATED) <= {c.name for c in GRID}
    assert {c.deadline_s for c in GRID} == {(1.0, 3.0), (2.0, 6.0)}
    assert {c.burst for c in GRID} == {1, 30, 50}
    assert {c.cloud_mbit for c in GRID} == {300, 1000} and {c.edge_mbit for c in GRID} == {50, 100}
    assert {c.large for c in GRID} == {True, False}
    spec = cell_spec(GRID[5])
    assert spec.workload.arrival.burst_size == 50 and spec.topology.cloud_rate_mbit == 1000
    assert spec.workload.classes[0].input_bytes == validate.LARGE_BYTES
    assert 40 <= spec.workload.requests <= 80


def _record(cell, repeat: int, figures: dict, status: str = "faithful") -> dict:
    return {"cell": cell.name, "repeat": repeat, "seed": 42, "incomplete": False,
            "policies": figures, "services": {},
            "fidelity": {"status": status, "reasons": [] if status == "faithful"
                         else ["cloud-only: frontend_delay_p95_s = 0.9 > 0.05 s"],
                         "policies": {}}}


def test_differences_spread_and_the_json_line(tmp_path, capsys):
    cell = GRID[0]
    sim = simulate_cell(cell, 42)
    shifted = {p: dict(f, success_rate=f["success_rate"] - 0.05) for p, f in sim.items()}
    (tmp_path / f"{cell.name}.run1.json").write_text(json.dumps(_record(cell, 1, sim)))
    (tmp_path / f"{cell.name}.run2.json").write_text(json.dumps(_record(cell, 2, shifted)))
    other = GRID[4]
    (tmp_path / f"{other.name}.run1.json").write_text(json.dumps(
        _record(other, 1, simulate_cell(other, 42), status="degraded")))
    rows = matrix(validate.load_runs(tmp_path))
    first = next(r for r in rows if r["cell"] == cell.name and r["policy"] == "cloud-only")
    assert first["runs"] == 2 and first["faithful"]
    assert first["success_diff_points"] == pytest.approx(2.5)  # sim - mean(emu, emu - 5)
    assert first["repeat_success_spread_points"] == pytest.approx(5.0)
    assert first["mean_time_diff_pct"] == pytest.approx(0.0)
    line = summary_line(rows)
    assert line["cells"] == 2 and line["faithful_cells"] == 1
    assert line["max_abs_success_diff_points"] == pytest.approx(2.5)
    assert line["max_repeat_success_spread_points"] == pytest.approx(5.0)

    class Args:
        run, cells, repeats, results, data = False, "", None, "results", str(tmp_path)

    assert validate.cmd_validate(Args()) == 0
    out = capsys.readouterr().out.strip().splitlines()
    last = json.loads(out[-1])
    assert {"cells", "faithful_cells", "max_abs_success_diff_points", "max_mean_time_diff_pct",
            "max_energy_diff_pct"} <= set(last)
    assert any(line.startswith(f"degraded {other.name}") for line in out)
