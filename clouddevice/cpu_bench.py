"""The CPU micro-benchmark behind the spline hardware model, and the model's error on it.

`measure` times float32 GEMM and GEMV with numpy and a large copy, on one BLAS thread
(`python -m clouddevice bench-cpu` sets OPENBLAS_NUM_THREADS=1 before numpy loads: on a
shared two-core VM a second BLAS thread waits for time slices and measures the neighbours):
- the roofs: bandwidth from a 128 MB copy (read + write bytes, STREAM's count), peak compute
  the best GEMM rate measured (this machine's attainable peak, not a datasheet figure);
- the fit points: x[m×4096] · W[4096×4096] for m from 1 to 1024, weights 64 MB so every point
  streams them from DRAM; each point's efficiency is its rate over the roofline at its
  intensity (`clouddevice.hardware`);
- the held-out points: the operators of a TinyLlama-1.1B-shaped decoder (hidden 2048,
  FFN 5632, 32 heads of 64, 4 KV heads, vocab 32000) in float32: projections, FFN, LM head,
  and batched attention scores and S·V, for prefill and decode sizes. These shapes differ from
  the fit grid (other widths, caches that fit or not), as an LLM's operators would.

`model_error` fits the spline on the fit points and reports the mean absolute percentage
error of predicted against measured time on the held-out points (the paper's per-operator
error, 4.78% on its GPUs), leave-one-out on the fit points, and Eq. 8 at the measured roofs
with efficiency 1 for contrast. The points are committed in data/cpu-gemm-points.json;
`python -m clouddevice bench-cpu` regenerates them (about a minute on two cores).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from clouddevice.hardware import EfficiencySpline, HardwareModel
from nodes.roofline import OperatorCost

POINTS_PATH = Path(__file__).parent / "data" / "cpu-gemm-points.json"
BENCH_COMMAND = "python -m clouddevice bench-cpu --out clouddevice/data/cpu-gemm-points.json"
ELEMENT_BYTES = 4  # float32: what numpy's BLAS runs natively
FIT_WIDTH = 4096
FIT_ROWS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)
# TinyLlama-1.1B's shape (config.json of TinyLlama/TinyLlama-1.1B-intermediate-step-1431k-3T)
HIDDEN, FFN, HEADS, HEAD_DIM, KV_DIM, VOCAB = 2048, 5632, 32, 64, 256, 32000


def _timed_s(call: Callable[[], Any], min_total_s: float = 0.2, max_calls: int = 50) -> float:
    """Fastest seconds per call after one warm-up call: on a shared machine other processes
    only ever add time, so the minimum is the best estimate of the uncontended cost."""
    call()
    times: list[float] = []
    while len(times) < 3 or (sum(times) < min_total_s and len(times) < max_calls):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return min(times)


def _gemm_point(rows: int, inner: int, cols: int, rng: np.random.Generator,
                name: str) -> dict[str, Any]:
    x = rng.standard_normal((rows, inner), dtype=np.float32)
    w = rng.standard_normal((inner, cols), dtype=np.float32)
    out = np.empty((rows, cols), dtype=np.float32)
    t = _timed_s(lambda: np.matmul(x, w, out=out))
    return {"name": name, "shape": [rows, inner, cols], "flops": 2.0 * rows * inner * cols,
            "bytes": float(ELEMENT_BYTES * (rows * inner + inner * cols + rows * cols)),
            "time_s": t}


def _batched_point(heads: int, rows: int, inner: int, cols: int, rng: np.random.Generator,
                   name: str) -> dict[str, Any]:
    a = rng.standard_normal((heads, rows, inner), dtype=np.float32)
    b = rng.standard_normal((heads, inner, cols), dtype=np.float32)
    out = np.empty((heads, rows, cols), dtype=np.float32)
    t = _timed_s(lambda: np.matmul(a, b, out=out))
    return {"name": name, "shape": [heads, rows, inner, cols],
            "flops": 2.0 * heads * rows * inner * cols,
            "bytes": float(ELEMENT_BYTES * heads * (rows * inner + inner * cols + rows * cols)),
            "time_s": t}


def _copy_bandwidth_bytes_s(nbytes: int = 128 * 2**20) -> float:
    a = np.ones(nbytes // ELEMENT_BYTES, dtype=np.float32)
    b = np.empty_like(a)
    return 2 * a.nbytes / _timed_s(lambda: np.copyto(b, a), min_total_s=0.5)


def _held_out_shapes() -> list[tuple]:
    shapes: list[tuple] = []
    for rows in (1, 16, 128, 512):
        shapes += [("q_proj", rows, HIDDEN, HIDDEN), ("k_proj", rows, HIDDEN, KV_DIM),
                   ("ffn_up", rows, HIDDEN, FFN), ("ffn_down", rows, FFN, HIDDEN)]
    shapes.append(("lm_head", 1, HIDDEN, VOCAB))
    for n in (128, 512, 2048):  # decode: one query over n cached positions
        shapes += [("attn_scores", HEADS, 1, HEAD_DIM, n), ("attn_av", HEADS, 1, n, HEAD_DIM)]
    for n in (64, 256, 512):  # prefill: n queries over n positions
        shapes += [("attn_scores", HEADS, n, HEAD_DIM, n), ("attn_av", HEADS, n, n, HEAD_DIM)]
    return shapes


def measure(seed: int = 0, rounds: int = 3) -> dict[str, Any]:
    """Run the micro-benchmark; the document `write_points` stores.

    Every shape is timed once per round, rounds interleaved, and keeps its fastest round: a
    neighbour's burst then spoils one round of a shape, not all of them.
    """
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds must be an integer >= 1, got {rounds!r}")
    rng = np.random.default_rng(seed)
    started, load_before = time.time(), os.getloadavg()
    specs = ([("gemm", (m, FIT_WIDTH, FIT_WIDTH), f"gemm{FIT_WIDTH}") for m in FIT_ROWS]
             + [("gemm" if len(s) == 4 else "batched", s[1:], s[0]) for s in _held_out_shapes()])
    timed: list[list[dict[str, Any]]] = [[] for _ in specs]
    bandwidths = []
    for _ in range(rounds):
        bandwidths.append(_copy_bandwidth_bytes_s())
        for i, (kind, shape, name) in enumerate(specs):
            point = (_gemm_point if kind == "gemm" else _batched_point)(*shape, rng, name)
            timed[i].append(point)
    points = []
    for runs in timed:
        best = min(runs, key=lambda p: p["time_s"])
        best["slowest_round_ratio"] = max(p["time_s"] for p in runs) / best["time_s"]
        points.append(best)
    fit, held = points[:len(FIT_ROWS)], points[len(FIT_ROWS):]
    bandwidth = max(bandwidths)
    peak = max(p["flops"] / p["time_s"] for p in fit + held)
    for p in fit + held:
        intensity = p["flops"] / p["bytes"]
        p["intensity_flop_per_byte"] = intensity
        p["efficiency"] = (p["flops"] / p["time_s"]) / min(peak, intensity * bandwidth)
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
               platform.processor()) if Path("/proc/cpuinfo").exists() else platform.processor()
    return {
        "command": BENCH_COMMAND,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
        "duration_s": round(time.time() - started, 1),
        "cpu": cpu, "logical_cpus": os.cpu_count(), "numpy": np.__version__,
        "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS", "numpy's default (all)"),
        "load_average_before": list(load_before), "load_average_after": list(os.getloadavg()),
        "dtype": "float32", "element_bytes": ELEMENT_BYTES, "rounds": rounds,
        "peak_flops": peak, "bandwidth_bytes_s": bandwidth,
        "fit": fit, "held_out": held,
    }


def write_points(doc: dict[str, Any], path: Path = POINTS_PATH) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    tmp.replace(path)
    return path


def load_points(path: Path = POINTS_PATH) -> dict[str, Any]:
    doc = json.loads(Path(path).read_text())
    for key in ("peak_flops", "bandwidth_bytes_s", "fit", "held_out"):
        if key not in doc:
            raise ValueError(f"{path}: missing key {key!r}; regenerate with {BENCH_COMMAND}")
    return doc


def cpu_model(doc: dict[str, Any], fit: list[dict[str, Any]] | None = None) -> HardwareModel:
    """The spline hardware model of this CPU, fitted on `fit` (default: the fit points)."""
    pts = doc["fit"] if fit is None else fit
    curve = EfficiencySpline([p["intensity_flop_per_byte"] for p in pts],
                             [p["efficiency"] for p in pts])
    return HardwareModel.measured("this-cpu", doc["peak_flops"], doc["bandwidth_bytes_s"], curve)


def _cost(p: dict[str, Any]) -> OperatorCost:
    return OperatorCost(p["name"], "matmul", p["flops"], p["bytes"], 1)


def _ape_pct(predicted_s: float, measured_s: float) -> float:
    return 100 * abs(predicted_s - measured_s) / measured_s


def model_error(doc: dict[str, Any]) -> dict[str, Any]:
    """Mean absolute % error of the spline model (and of plain Eq. 8) against measured times."""
    model = cpu_model(doc)
    rows = []
    for p in doc["held_out"]:
        cost = _cost(p)
        rows.append({"name": p["name"], "shape": p["shape"],
                     "intensity_flop_per_byte": p["intensity_flop_per_byte"],
                     "measured_s": p["time_s"], "spline_s": model.time_s(cost),
                     "roofline_s": model.roofline_s(cost)})
    loo = []
    for i, p in enumerate(doc["fit"]):
        rest = doc["fit"][:i] + doc["fit"][i + 1:]
        loo.append(_ape_pct(cpu_model(doc, rest).time_s(_cost(p)), p["time_s"]))
    return {
        "held_out": rows,
        "held_out_mape_pct": statistics.fmean(_ape_pct(r["spline_s"], r["measured_s"])
                                              for r in rows),
        # the operators whose time matters: small cache-resident ones carry most of the error
        "held_out_over_1ms_mape_pct": statistics.fmean(
            _ape_pct(r["spline_s"], r["measured_s"]) for r in rows if r["measured_s"] > 1e-3),
        "held_out_roofline_mape_pct": statistics.fmean(
            _ape_pct(r["roofline_s"], r["measured_s"]) for r in rows),
        "fit_leave_one_out_mape_pct": statistics.fmean(loo),
        "fit_points": len(doc["fit"]), "held_out_points": len(rows),
        "paper_mape_pct": 4.78,
    }


def format_error(err: dict[str, Any]) -> str:
    lines = [f"{'operator':<12} {'shape':<22} {'FLOP/B':>8} {'measured ms':>12} "
             f"{'spline ms':>10} {'err %':>7} {'Eq.8 ms':>9} {'err %':>7}"]
    for r in err["held_out"]:
        lines.append(
            f"{r['name']:<12} {'x'.join(map(str, r['shape'])):<22} "
            f"{r['intensity_flop_per_byte']:>8.2f} {r['measured_s'] * 1e3:>12.3f} "
            f"{r['spline_s'] * 1e3:>10.3f} {_ape_pct(r['spline_s'], r['measured_s']):>7.1f} "
            f"{r['roofline_s'] * 1e3:>9.3f} {_ape_pct(r['roofline_s'], r['measured_s']):>7.1f}")
    lines.append(f"held-out operators ({err['held_out_points']}): spline MAPE "
                 f"{err['held_out_mape_pct']:.1f}% (operators over 1 ms: "
                 f"{err['held_out_over_1ms_mape_pct']:.1f}%), Eq. 8 at the measured roofs "
                 f"{err['held_out_roofline_mape_pct']:.1f}%; leave-one-out on the "
                 f"{err['fit_points']} fit points {err['fit_leave_one_out_mape_pct']:.1f}% "
                 f"(paper: {err['paper_mape_pct']}% per operator on its GPUs)")
    return "\n".join(lines)
