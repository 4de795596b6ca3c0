"""`python -m clouddevice {run,place,bench-cpu,hw-error}`: the cloud-device paper's split.

run        sweep both groups, draw Fig. 6/7, write results/cloud-device/<ts>/; last line JSON
place      print the execution plan of one split (operators per side per layer, transfers)
bench-cpu  rerun the CPU GEMM/GEMV micro-benchmark and write its points (about a minute)
hw-error   the spline hardware model's error against the measured CPU points
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


def _add_sweep_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rate-mbit", type=float, default=300.0,
                   help="device-cloud link rate (default 300, the project's cloud link)")
    p.add_argument("--latency-ms", type=float, default=10.0,
                   help="one-way link latency per crossing (default 10)")
    p.add_argument("--order", choices=("work", "layer"), default="work",
                   help="Algorithm 1's order within linears and within attention")
    p.add_argument("--device-compute-efficiency", type=float, default=None,
                   help="override the devices' constant compute efficiency (sensitivity)")
    p.add_argument("--device-memory-efficiency", type=float, default=None,
                   help="override the devices' constant memory efficiency (sensitivity)")


def _config(args: argparse.Namespace, **extra):
    from clouddevice.evaluate import SweepConfig
    return SweepConfig(link_rate_mbit=args.rate_mbit, link_latency_ms=args.latency_ms,
                       order=args.order,
                       device_compute_efficiency=args.device_compute_efficiency,
                       device_memory_efficiency=args.device_memory_efficiency, **extra)


def _run(args: argparse.Namespace) -> int:
    from clouddevice.evaluate import format_table, headline, summarise, sweep, write_results
    from clouddevice.plots import plot_cost, plot_latency
    from scenarios.results import new_run_dir

    t0 = time.perf_counter()
    config = _config(args, **({"sizes": tuple(args.sizes)} if args.sizes else {}))
    rows = sweep(config)
    summary = summarise(rows)
    run_dir = None if args.no_results else new_run_dir("cloud-device", Path(args.results))
    if run_dir is not None:
        plot_latency(rows, run_dir / "fig6-latency.png")
        plot_cost(rows, run_dir / "fig7-cost.png")
    result = headline(summary, config, run_dir)
    if run_dir is not None:
        write_results(run_dir, config, rows, result)
    print(f"LLaMA2-7B FP16, Algorithm 1 over prefill and decode sizes "
          f"{', '.join(map(str, config.sizes))}; link {config.link_rate_mbit:g} Mbit/s, "
          f"{config.link_latency_ms:g} ms one-way where explicit "
          f"({time.perf_counter() - t0:.1f} s)")
    print(format_table(summary))
    for g, paper in result["paper_cost_reduction_pct"].items():
        print(f"{g}: average cost reduction {result['cost_reduction_pct'][g]:.1f}% "
              f"(paper {paper}%), SLA met at {result['sla_met_fraction'][g]:.0%} of points "
              f"[paper variant: link hidden, memory ignored]")
    if run_dir is not None:
        print(f"results: {run_dir}")
    print(json.dumps(result))
    return 0


def _place(args: argparse.Namespace) -> int:
    from clouddevice.evaluate import costing_for, split_for
    from clouddevice.placement import DeviceMemoryError

    c = costing_for(args.group, args.stage, args.size, args.variant, _config(args))
    placement = split_for(c, args.stage, args.variant, args.order)
    try:
        print(json.dumps(placement.execution_plan(), indent=1))
    except DeviceMemoryError as e:
        print(f"place: refused: {e}", file=sys.stderr)
        return 3
    return 0


def _bench_cpu(args: argparse.Namespace) -> int:
    from clouddevice.cpu_bench import format_error, measure, model_error, write_points
    doc = measure(rounds=args.rounds)
    path = write_points(doc, Path(args.out))
    print(f"wrote {path} ({doc['duration_s']} s; peak {doc['peak_flops'] / 1e9:.1f} GFLOP/s, "
          f"copy bandwidth {doc['bandwidth_bytes_s'] / 1e9:.1f} GB/s)")
    print(format_error(model_error(doc)))
    return 0


def _hw_error(args: argparse.Namespace) -> int:
    from clouddevice.cpu_bench import format_error, load_points, model_error
    doc = load_points(Path(args.points))
    err = model_error(doc)
    print(f"points: {args.points} (measured {doc.get('measured_at')}, {doc.get('cpu')}, "
          f"{doc.get('blas_threads')} BLAS thread(s); peak {doc['peak_flops'] / 1e9:.1f} GFLOP/s, "
          f"bandwidth {doc['bandwidth_bytes_s'] / 1e9:.1f} GB/s)")
    print(format_error(err))
    print(json.dumps({k: (round(v, 2) if isinstance(v, float) else v)
                      for k, v in err.items() if k != "held_out"}))
    return 0


def main(argv: list[str] | None = None) -> int:
    from clouddevice.cpu_bench import POINTS_PATH  # numpy loads here, after the thread setting
    from clouddevice.evaluate import GROUPS, VARIANTS

    parser = argparse.ArgumentParser(prog="python -m clouddevice", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser("run", help="the evaluation (the default command)")
    _add_sweep_arguments(run)
    run.add_argument("--sizes", type=int, nargs="+", help="prefill and decode sizes")
    run.add_argument("--results", default="results", help="results root (default results/)")
    run.add_argument("--no-results", action="store_true", help="print only")
    place = sub.add_parser("place", help="the execution plan of one split, as JSON")
    _add_sweep_arguments(place)
    place.add_argument("--group", choices=list(GROUPS), default="group-h")
    place.add_argument("--stage", choices=("prefill", "decode"), default="decode")
    place.add_argument("--size", type=int, default=512)
    place.add_argument("--variant", choices=list(VARIANTS), default="link")
    bench = sub.add_parser("bench-cpu", help="rerun the CPU micro-benchmark")
    bench.add_argument("--out", default=str(POINTS_PATH))
    bench.add_argument("--rounds", type=int, default=3,
                       help="interleaved rounds; each shape keeps its fastest (default 3)")
    err = sub.add_parser("hw-error", help="the hardware model's error on the CPU points")
    err.add_argument("--points", default=str(POINTS_PATH))
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv or ["run"])
    try:
        return {"run": _run, "place": _place, "bench-cpu": _bench_cpu,
                "hw-error": _hw_error}[args.command](args)
    except ValueError as e:
        print(f"clouddevice {args.command}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    if sys.argv[1:2] == ["bench-cpu"]:
        # one BLAS thread: must be set before numpy loads (see clouddevice.cpu_bench)
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(var, "1")
    sys.exit(main())
