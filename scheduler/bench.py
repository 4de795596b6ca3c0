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

`--soak` runs a bounded load instead: --soak-threads client threads share --soak-calls
Schedule + ReportOutcome pairs, paced to finish in about --soak-seconds (never more than one
call in flight per thread; a machine too slow for the pace takes longer, wall_s says), each
outcome reported for the node its service was scheduled on, while every node heartbeats as a
real one would (the server keeps its default heartbeat timeout). After --soak-warmup pairs at
full speed it prints calls, errors, the latency of a pair (p50_ms, p99_ms), the server's VmRSS
after the warm-up and at the end (rss_start_kb, rss_end_kb, and rss_kb read every tenth of
the planned run), wall_s and the server's CPU time. Targets: 0 errors, RSS growth <= 10%,
p99_ms <= 5.
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
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from perllm.v1 import common_pb2, scheduler_pb2, scheduler_pb2_grpc
from scheduler import convert
from scheduler.cluster import CLOUD, EDGE, Cluster, NodeInfo
from scheduler.config import ServerConfig
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
def _server_process(seed: int, heartbeat_timeout_s: float = 3600.0
                    ) -> Iterator[tuple[int, int]]:
    """`python -m scheduler serve` on a free loopback port; yields its port and pid."""
    package_root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join(filter(None, [package_root,
                                                       os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen(
        [sys.executable, "-m", "scheduler", "serve", "--host", "127.0.0.1", "--port", "0",
         "--policy", "cs-ucb", "--seed", str(seed),
         "--heartbeat-timeout-s", str(heartbeat_timeout_s),
         "--log-level", "WARNING"], stdout=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline().split()
        if len(line) != 2 or line[0] != "READY":
            raise RuntimeError(f"scheduler did not start (exit {proc.wait()})")
        yield int(line[1]), proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _register_nodes(stub) -> None:
    for info in NODES:
        stub.RegisterNode(scheduler_pb2.RegisterNodeRequest(
            node_id=info.node_id, address=info.address, kind=convert.kind_to_proto(info.kind),
            slots=info.slots, link_rate_mbit=info.link_rate_mbit,
            idle_power_w=info.idle_power_w, max_power_w=info.max_power_w,
            prefill_tok_s=info.prefill_tok_s, decode_tok_s=info.decode_tok_s,
            transmission_j_per_bit=info.transmission_j_per_bit), timeout=10)


def bench_grpc(n: int, warmup: int, batches: int, batch_size: int, seed: int
               ) -> dict[str, float]:
    """Client here, server in its own process, as a researcher's client would see it."""
    rng = random.Random(seed)
    with _server_process(seed) as (port, _), \
            grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = scheduler_pb2_grpc.SchedulerServiceStub(channel)
        health = health_pb2_grpc.HealthStub(channel)
        _register_nodes(stub)
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


# --- soak: a bounded load for minutes --------------------------------------------------------
HEARTBEAT_INTERVAL_S = 0.5  # as a node's default (nodes.config)


def _rss_kb(pid: int) -> int:
    """VmRSS of a process, from /proc/<pid>/status."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS in /proc/{pid}/status")


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _SoakClient(threading.Thread):
    """`calls` pairs, the k-th sent no earlier than start_s + k x interval_s (late ones go at
    once: the load is bounded by the rate, never more than one call in flight per thread);
    every outcome is reported for the node its service was scheduled on."""

    def __init__(self, stub, name: str, calls: int, interval_s: float, start_s: float,
                 seed: int) -> None:
        super().__init__(name=name, daemon=True)
        self.stub, self.calls, self.interval_s, self.start_s = stub, calls, interval_s, start_s
        self.rng = random.Random(f"{seed}/{name}")
        self.latencies_ms: list[float] = []
        self.errors: dict[str, int] = {}  # status code name -> count

    def run(self) -> None:
        for k, service in enumerate(_services(self.rng, self.calls, f"{self.name}-")):
            delay_s = self.start_s + k * self.interval_s - time.perf_counter()
            if delay_s > 0:
                time.sleep(delay_s)
            t0 = time.perf_counter_ns()
            try:
                reply = self.stub.Schedule(scheduler_pb2.ScheduleRequest(
                    service=_schedule_request(service)), timeout=10)
                _report(self.stub, _outcome(service, reply.node_id, self.rng))
            except grpc.RpcError as e:
                self.errors[e.code().name] = self.errors.get(e.code().name, 0) + 1
                continue
            self.latencies_ms.append((time.perf_counter_ns() - t0) / 1e6)


class _Heartbeats(threading.Thread):
    """Every node heartbeats as a real one does, so the server keeps its default timeout."""

    def __init__(self, stub) -> None:
        super().__init__(name="heartbeats", daemon=True)
        self.stub, self.stop, self.errors = stub, threading.Event(), 0

    def run(self) -> None:
        while not self.stop.wait(HEARTBEAT_INTERVAL_S):
            for info in NODES:
                try:
                    self.stub.Heartbeat(scheduler_pb2.HeartbeatRequest(node_id=info.node_id),
                                        timeout=10)
                except grpc.RpcError:
                    self.errors += 1


def _start_clients(stub, prefix: str, calls: int, threads: int, interval_s: float,
                   seed: int) -> list[_SoakClient]:
    """`threads` started clients sharing `calls` pairs, each paced at `interval_s`."""
    start_s = time.perf_counter()
    # Phases spread over one interval, so the calls arrive evenly, not in bursts of `threads`.
    clients = [_SoakClient(stub, f"{prefix}{i}", calls // threads + (i < calls % threads),
                           interval_s, start_s + i * interval_s / threads, seed)
               for i in range(threads)]
    for c in clients:
        c.start()
    return clients


def _sum_counts(counts: list[dict[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for c in counts:
        for key, n in c.items():
            total[key] = total.get(key, 0) + n
    return total


def bench_soak(calls: int, threads: int, seconds: float, warmup: int, seed: int
               ) -> dict[str, object]:
    """Schedule + ReportOutcome pairs from `threads` client threads at calls / seconds."""
    with _server_process(seed, heartbeat_timeout_s=ServerConfig().heartbeat_timeout_s) \
            as (port, pid), grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = scheduler_pb2_grpc.SchedulerServiceStub(channel)
        _register_nodes(stub)
        beats = _Heartbeats(stub)
        beats.start()
        try:
            # The same threads at full speed: the server's thread pool and buffers grow to
            # what the soak needs before the first reading.
            warm = _start_clients(stub, "warmup", warmup, threads, 0.0, seed)
            for c in warm:
                c.join()
            rss_kb, cpu_start_s = [_rss_kb(pid)], _cpu_s(pid)
            start_s = time.perf_counter()
            clients = _start_clients(stub, "soak", calls, threads, seconds * threads / calls,
                                     seed)
            for c in clients:  # an RSS reading every tenth of the planned run
                while c.is_alive():
                    c.join(seconds / 10)
                    rss_kb.append(_rss_kb(pid))
            wall_s = time.perf_counter() - start_s
            server_cpu_s = _cpu_s(pid) - cpu_start_s
        finally:
            beats.stop.set()
            beats.join()
    samples = [x for c in clients for x in c.latencies_ms]
    codes = _sum_counts([c.errors for c in clients])
    return {
        "calls": sum(c.calls for c in clients), "errors": sum(codes.values()),
        "error_codes": codes,
        "latency_of": "Schedule+ReportOutcome pair (client-observed, loopback)",
        "p50_ms": round(statistics.median(samples), 3) if samples else None,
        "p99_ms": round(_pct(samples, 0.99), 3) if samples else None,
        "rss_start_kb": rss_kb[0], "rss_end_kb": rss_kb[-1],
        "rss_growth": round(rss_kb[-1] / rss_kb[0] - 1, 4), "rss_kb": rss_kb,
        "wall_s": round(wall_s, 1), "target_s": seconds,
        "pairs_per_s": round(len(samples) / wall_s),
        "server_cpu_s": round(server_cpu_s, 1), "threads": threads,
        "warmup_calls": warmup,
        "warmup_errors": sum(sum(c.errors.values()) for c in warm),
        "heartbeat_errors": beats.errors, "nodes": len(NODES), "policy": "cs-ucb",
        "cpus": os.cpu_count(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scheduler.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--decisions", type=int, default=20_000, help="timed in-process decisions")
    parser.add_argument("--rpcs", type=int, default=3000, help="timed RPCs of each kind")
    parser.add_argument("--batches", type=int, default=30, help="timed ScheduleBatch calls")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--soak", action="store_true",
                        help="run the soak benchmark (a bounded load) instead")
    parser.add_argument("--soak-calls", type=int, default=200_000,
                        help="Schedule + ReportOutcome pairs of the soak")
    parser.add_argument("--soak-threads", type=int, default=16, help="soak client threads")
    parser.add_argument("--soak-seconds", type=float, default=120.0,
                        help="the soak's calls are paced to last about this long")
    # The server remembers its last reported_ids_memory outcomes (a client's retry is answered,
    # not re-counted), in an OrderedDict that grows until it holds them all and once more, by
    # about 6 MB, when its table is first rebuilt after ~1.75 x that many insertions (CPython's
    # dict growth). Growth by design, not a leak: the first reading comes after it.
    memory = ServerConfig().reported_ids_memory
    parser.add_argument("--soak-warmup", type=int, default=2 * memory,
                        help="pairs before the soak's first RSS reading (default "
                             "%(default)s: twice the server's reported-id memory, so the "
                             "reading starts at steady state)")
    args = parser.parse_args(argv)
    if args.soak:
        for name in ("soak_calls", "soak_threads", "soak_seconds"):
            if not getattr(args, name) > 0:
                parser.error(f"--{name.replace('_', '-')} must be > 0 "
                             f"(got {getattr(args, name)})")
        json.dump(bench_soak(args.soak_calls, args.soak_threads, args.soak_seconds,
                             args.soak_warmup, args.seed), sys.stdout)
        sys.stdout.write("\n")
        return 0
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
