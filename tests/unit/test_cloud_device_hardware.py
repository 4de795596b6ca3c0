"""The spline hardware model: through the measured points, monotone where they are, Eq. 8."""

import math

import numpy as np
import pytest

from clouddevice.cpu_bench import POINTS_PATH, cpu_model, load_points, model_error
from clouddevice.hardware import EfficiencySpline, HardwareModel
from nodes.catalogue import hardware_spec
from nodes.roofline import OperatorCost, operator_times

INTENSITY = [0.5, 1, 2, 4, 8, 16, 64, 256]
RISING = [0.05, 0.08, 0.1, 0.2, 0.45, 0.5, 0.8, 0.9]


def test_spline_passes_through_the_points():
    curve = EfficiencySpline(INTENSITY, RISING)
    for x, y in zip(INTENSITY, RISING):
        assert curve(x) == pytest.approx(y, rel=1e-12)


def test_spline_is_monotone_where_the_points_are():
    curve = EfficiencySpline(INTENSITY, RISING)
    grid = np.geomspace(INTENSITY[0], INTENSITY[-1], 2000)
    values = np.array([curve(x) for x in grid])
    assert np.all(np.diff(values) >= -1e-12)
    # a bump: rising, then falling; each monotone run stays monotone, no overshoot
    bump = EfficiencySpline([1, 2, 4, 8, 16], [0.2, 0.6, 0.9, 0.5, 0.4])
    up = np.array([bump(x) for x in np.geomspace(1, 4, 500)])
    down = np.array([bump(x) for x in np.geomspace(4, 16, 500)])
    assert np.all(np.diff(up) >= -1e-12) and np.all(np.diff(down) <= 1e-12)
    assert up.max() <= 0.9 + 1e-12 and down.min() >= 0.4 - 1e-12


def test_spline_is_flat_beyond_the_points_and_merges_equal_intensities():
    curve = EfficiencySpline([1, 1, 10], [0.2, 0.4, 0.8])
    assert curve(1) == pytest.approx(0.3)  # the median of the two at intensity 1
    assert curve(0.01) == pytest.approx(0.3) and curve(1e6) == pytest.approx(0.8)


@pytest.mark.parametrize("x, y, match", [
    ([1, 2], [0.5], "equal-length"),
    ([1, -2], [0.5, 0.6], "intensity_flop_per_byte must be finite and > 0, got -2.0"),
    ([1, 2], [0.5, math.nan], "efficiency must be finite and > 0"),
    ([3, 3], [0.5, 0.6], "2 or more distinct intensities, got 1"),
])
def test_spline_rejects_bad_points(x, y, match):
    with pytest.raises(ValueError, match=match):
        EfficiencySpline(x, y)


def test_time_is_eq8_over_the_efficiency():
    curve = EfficiencySpline([1, 100], [0.5, 0.5])
    hw = HardwareModel.measured("m", peak_flops=1e9, bandwidth_bytes_s=1e8, curve=curve)
    memory_bound = OperatorCost("gemv", "matmul", flops=2e6, bytes_moved=4e6)
    compute_bound = OperatorCost("gemm", "matmul", flops=4e9, bytes_moved=1e6)
    assert hw.time_s(memory_bound) == pytest.approx(4e6 / 1e8 / 0.5)
    assert hw.time_s(compute_bound) == pytest.approx(4e9 / 1e9 / 0.5)
    with pytest.raises(ValueError, match="peak_flops must be finite and > 0"):
        HardwareModel.measured("m", 0.0, 1e8, curve)


def test_constant_fallback_is_the_catalogue_roofline():
    spec = hardware_spec("jetson-nano")
    hw = HardwareModel.constant("jetson-nano")
    op = OperatorCost("q_proj", "matmul", 2 * 4096 * 4096, (2 * 4096 + 4096 * 4096) * 2)
    assert hw.time_s(op) == pytest.approx(operator_times([op], spec)[0].time_s)
    assert hw.time_s(op) == pytest.approx(op.bytes_moved / (25.6e9 * 0.7))
    assert hw.memory_bytes == 4e9 and hw.price_usd_s is None
    assert HardwareModel.constant("v100s").price_usd_s == 1.5e-5
    assert HardwareModel.constant("a100-80gb-sxm").price_usd_s == 4e-5


def test_committed_cpu_points_fit_and_report_an_error():
    doc = load_points(POINTS_PATH)
    model = cpu_model(doc)
    for p in doc["fit"]:  # the spline runs through its own points
        cost = OperatorCost(p["name"], "matmul", p["flops"], p["bytes"])
        assert model.time_s(cost) == pytest.approx(p["time_s"], rel=0.02)
    err = model_error(doc)
    assert err["held_out_points"] == len(doc["held_out"]) > 10
    for key in ("held_out_mape_pct", "fit_leave_one_out_mape_pct", "held_out_roofline_mape_pct"):
        assert math.isfinite(err[key]) and err[key] >= 0
