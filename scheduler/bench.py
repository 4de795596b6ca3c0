"""`python -m scheduler.bench`: the scheduler's decision cost, printed as one JSON object.

- decide_us_p50/p99: one in-process CS-UCB `select` on a cluster of 6 nodes (5 edge, 1 cloud),
  after a warm-up; each decision is booked and completed out of the timing, so the in-flight
  load stays bounded and the arm statistics keep moving as in a real run.
- The gRPC figures come from a client in this process calling `python -m scheduler serve` in
  another one over loopback, as a researcher's client would.
- grpc_empty_ms_p50: the transport's floor, measured with grpc.health.v1 Check on the same
  server (the cheapest RPC it serves: no lock, no policy, a one-field reply).
- grpc_schedule_ms_p50/p99: one Schedule RPC. The empty and Schedule calls alternate, so both
  see the same machine load; each decision's outcome is reported by ReportOutcome out of the
  timing, which keeps the booked load bounded.
- batch_decisions_per_s: ScheduleBatch of 100 services (one super arm), decisions per second.

Targets on the project's 2-core machines: decide_us_p50 <= 50, grpc_schedule_ms_p50 <=
1.25 x grpc_empty_ms_p50, batch_decisions_per_s >= 20,000.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from perllm.v1 import common_pb2, scheduler_pb2, scheduler_pb2_grpc
from scheduler import convert
from scheduler.cluster import CLOUD, EDGE, Cluster, NodeInfo
from scheduler.outcome import Energy, Outcome
from scheduler.policies import create_policy
from scheduler.service import Service

# Five edge servers and one cloud, as in PerLLM's setup (section 5.1); rates are round figures
# of a 7B model on a Xeon edge server and a 33B model on an A100.
NODES = [NodeInfo(f"edge{i}", f"127.0.0.1:{50061 + i}", EDGE, slots=2, link_rate_mbit=100.0,
                  idle_power_w=60.0, max_power_w=180.0, prefill_tok_s=200.0, decode_tok_s=12.0,
                  transmission_j_per_bit=2e-8) for i in range(1, 6)]
NODES.append(NodeInfo("cloud", "127.0.0.1:50070", CLOUD, slots=8, link_rate_mbit=300.0,
                      idle_power_w=100.0, max_power_w=400.0, prefill_tok_s=2000.0,
                      decode_tok_s=40.0, transmission_j_per_bit=5e-8))
CLASSES = ("chat", "code", "summary")


def _services(rng: random.Random, n: int, prefix: str) -> list[Service]:
    return [Service(id=f"{prefix}{i}", prompt="Summarise the attached report.",
                    input_bytes=rng.randint(200, 200_000), max_new_tokens=rng.randint(8, 64),
                    deadline_s=rng.uniform(2.0, 6.0), service_class=rng.choice(CLASSES))
            for i in range(n)]


def _outcome(service: Service, node_id: str, rng: random.Random) -> Outcome:
    total_s = rng.uniform(0.5, 8.0)
    return Outcome(service_id=service.id, node_id=node_id,
                   status=Outcome.status_for(total_s, service.deadline_s),
                   deadline_s=service.deadline_s, total_s=total_s,
                   service_class=service.service_class, transmission_s=0.1,
                   inference_s=total_s - 0.1, tokens_in=50, tokens_out=service.max_new_tokens,
                   input_bytes=service.input_bytes,
                   energy=Energy(transmission_j=0.05, inference_j=30.0 * total_s, idle_j=2.0))


def _pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def bench_decide(n: int, warmup: int, seed: int) -> dict[str, float]:
    rng = random.Random(seed)
    cluster = Cluster(clock=time.monotonic, heartbeat_timeout_s=3600.0)
    for info in NODES:
        cluster.register(info)
    policy = create_policy("cs-ucb", seed=seed)
    services = _services(rng, n + warmup, "d")
    samples_us = []
    for i, service in enumerate(services):
        t0 = time.perf_counter_ns()
        decision = policy.select(service, cluster)
        t1 = time.perf_counter_ns()
        cluster.on_assign(service, decision.prediction)
        outcome = _outcome(service, decision.node_id, rng)
        cluster.on_complete(outcome)
        policy.update(outcome)
        if i >= warmup:
            samples_us.append((t1 - t0) / 1e3)
    return {"decide_us_p50": round(statistics.median(samples_us), 2),
            "decide_us_p99": round(_pct(samples_us, 0.99), 2)}


def _schedule_request(s: Service) -> common_pb2.Service:
    return common_pb2.Service(id=s.id, prompt=s.prompt, input_bytes=s.input_bytes,
                              max_new_tokens=s.max_new_tokens, deadline_s=s.deadline_s,
                              service_class=s.service_class)


def _report(stub, outcome: Outcome) -> None:
    stub.ReportOutcome(scheduler_pb2.ReportOutcomeRequest(
        outcome=convert.outcome_to_proto(outcome)), timeout=10)


@contextmanager
def _server_process(seed: int) -> Iterator[int]:
    """`python -m scheduler serve` on a free loopback port; yields the port."""
    package_root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join(filter(None, [package_root,
                                                       os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen(
        [sys.executable, "-m", "scheduler", "serve", "--host", "127.0.0.1", "--port", "0",
         "--policy", "cs-ucb", "--seed", str(seed), "--heartbeat-timeout-s", "3600",
         "--log-level", "WARNING"], stdout=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline().split()
        if len(line) != 2 or line[0] != "READY":
            raise RuntimeError(f"scheduler did not start (exit {proc.wait()})")
        yield int(line[1])
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def bench_grpc(n: int, warmup: int, batches: int, batch_size: int, seed: int
               ) -> dict[str, float]:
    """Client here, server in its own process, as a researcher's client would see it."""
    rng = random.Random(seed)
    with _server_process(seed) as port, grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = scheduler_pb2_grpc.SchedulerServiceStub(channel)
        health = health_pb2_grpc.HealthStub(channel)
        for info in NODES:
            stub.RegisterNode(scheduler_pb2.RegisterNodeRequest(
                node_id=info.node_id, address=info.address, kind=convert.kind_to_proto(info.kind),
                slots=info.slots, link_rate_mbit=info.link_rate_mbit,
                idle_power_w=info.idle_power_w, max_power_w=info.max_power_w,
                prefill_tok_s=info.prefill_tok_s, decode_tok_s=info.decode_tok_s,
                transmission_j_per_bit=info.transmission_j_per_bit), timeout=10)
        check = health_pb2.HealthCheckRequest(service="")
        empty_ms, schedule_ms = [], []
        for i, service in enumerate(_services(rng, n + warmup, "g")):
            request = scheduler_pb2.ScheduleRequest(service=_schedule_request(service))
            t0 = time.perf_counter_ns()
            health.Check(check, timeout=10)
            t1 = time.perf_counter_ns()
            reply = stub.Schedule(request, timeout=10)
            t2 = time.perf_counter_ns()
            _report(stub, _outcome(service, reply.node_id, rng))
            if i >= warmup:
                empty_ms.append((t1 - t0) / 1e6)
                schedule_ms.append((t2 - t1) / 1e6)

        rates = []
        for b in range(batches + 1):
            services = _services(rng, batch_size, f"b{b}-")
            request = scheduler_pb2.ScheduleBatchRequest(
                services=[_schedule_request(s) for s in services])
            t0 = time.perf_counter_ns()
            reply = stub.ScheduleBatch(request, timeout=10)
            t1 = time.perf_counter_ns()
            for s, a in zip(services, reply.assignments):
                _report(stub, _outcome(s, a.node_id, rng))
            if b > 0:  # the first batch warms up
                rates.append(batch_size / ((t1 - t0) / 1e9))
    p50_empty = statistics.median(empty_ms)
    p50_schedule = statistics.median(schedule_ms)
    return {
        "grpc_empty_ms_p50": round(p50_empty, 4),
        "grpc_empty_rpc": "grpc.health.v1.Health/Check",
        "grpc_schedule_ms_p50": round(p50_schedule, 4),
        "grpc_schedule_ms_p99": round(_pct(schedule_ms, 0.99), 4),
        "grpc_schedule_over_empty": round(p50_schedule / p50_empty, 3),
        "batch_decisions_per_s": round(statistics.median(rates)),
        "batch_size": batch_size,
        "grpc_client": "separate process, loopback",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scheduler.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--decisions", type=int, default=20_000, help="timed in-process decisions")
    parser.add_argument("--rpcs", type=int, default=3000, help="timed RPCs of each kind")
    parser.add_argument("--batches", type=int, default=30, help="timed ScheduleBatch calls")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    figures = {
        **bench_decide(args.decisions, warmup=2000, seed=args.seed),
        **bench_grpc(args.rpcs, warmup=300, batches=args.batches, batch_size=args.batch_size,
                     seed=args.seed),
        "nodes": len(NODES), "policy": "cs-ucb", "cpus": os.cpu_count(),
        "python": platform.python_version(), "grpc": grpc.__version__,
    }
    json.dump(figures, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
