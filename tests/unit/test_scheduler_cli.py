"""`python -m scheduler serve` as a real subprocess: READY line, health, a Schedule from a
generated client, SIGTERM shutdown, and clean errors for bad arguments."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from perllm.v1 import common_pb2, scheduler_pb2, scheduler_pb2_grpc

REPO = Path(__file__).resolve().parents[2]
RPC_TIMEOUT_S = 10.0
START_TIMEOUT_S = 30.0


class CliServer:
    """A `python -m scheduler serve` subprocess whose stdout lines are read by a thread."""

    def __init__(self, *args: str) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "scheduler", "serve", "--host", "127.0.0.1", *args],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)  # EOF

    def wait_ready(self) -> int:
        line = self.lines.get(timeout=START_TIMEOUT_S)
        if line is None:
            raise AssertionError(f"server exited before READY: {self.proc.wait()} "
                                 f"{self.proc.stderr.read()}")
        word, port = line.split()
        assert word == "READY"
        return int(port)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(RPC_TIMEOUT_S)
        self.proc.stdout.close()
        self.proc.stderr.close()


@pytest.fixture
def cli():
    started: list[CliServer] = []

    def _start(*args: str) -> CliServer:
        server = CliServer(*args)
        started.append(server)
        return server

    yield _start
    for server in started:
        server.stop()


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scheduler", "serve", "--host", "127.0.0.1",
                           "--port", "0", *args], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=START_TIMEOUT_S)


def test_serve_answers_health_and_schedule_then_stops_on_sigterm(cli, tmp_path):
    state = tmp_path / "state.json"
    server = cli("--port", "0", "--policy", "cs-ucb", "--seed", "42",
                 "--policy-params", '{"delta": 0.5}', "--state-file", str(state),
                 "--heartbeat-timeout-s", "30", "--grace-s", "2")
    port = server.wait_ready()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        assert health.Check(health_pb2.HealthCheckRequest(), timeout=RPC_TIMEOUT_S).status == \
            health_pb2.HealthCheckResponse.SERVING
        stub = scheduler_pb2_grpc.SchedulerServiceStub(channel)
        stub.RegisterNode(scheduler_pb2.RegisterNodeRequest(
            node_id="edge1", address="127.0.0.1:50061", kind=common_pb2.NODE_KIND_EDGE,
            slots=1, link_rate_mbit=100.0, prefill_tok_s=500, decode_tok_s=50),
            timeout=RPC_TIMEOUT_S)
        reply = stub.Schedule(scheduler_pb2.ScheduleRequest(service=common_pb2.Service(
            id="s1", prompt="hi", input_bytes=100, max_new_tokens=8, deadline_s=5.0)),
            timeout=RPC_TIMEOUT_S)
        assert (reply.node_id, reply.policy) == ("edge1", "cs-ucb")
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(RPC_TIMEOUT_S) == 0
    assert state.exists()  # written at shutdown even without an outcome


@pytest.mark.parametrize("args, needle", [
    # argparse rejects these (ServerConfig's fields make the flags), naming the flag.
    (("--policy", "no-such-policy"),
     "argument --policy: invalid choice: 'no-such-policy' (choose from "),
    (("--policy", "cs-ucb", "--policy-params", "{not json"),
     "argument --policy-params: not valid JSON"),
    (("--policy", "cs-ucb", "--policy-params", "[1]"),
     "argument --policy-params: must be a JSON object"),
    (("--policy", "cs-ucb", "--port", "many"), "argument --port: invalid int value: 'many'"),
    # The server rejects these.
    (("--policy", "cs-ucb", "--policy-params", '{"no_such_knob": 1}'), "no_such_knob"),
    (("--policy", "cs-ucb", "--heartbeat-timeout-s", "-1"), "heartbeat_timeout_s"),
    (("--policy", "cs-ucb", "--booking-ttl-s", "-2"),
     "booking_ttl_s must be >= 0 or None (got -2.0)"),
])
def test_bad_arguments_exit_non_zero_with_one_error_line(args, needle):
    done = run_cli(*args)
    assert done.returncode == 2
    assert done.stdout == ""  # never READY
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and needle in errors[0], done.stderr


def test_corrupt_state_file_is_a_clean_error(tmp_path):
    state = tmp_path / "state.json"
    state.write_text("{ half a file")
    done = run_cli("--policy", "cs-ucb", "--state-file", str(state))
    assert done.returncode == 2 and "is not valid JSON" in done.stderr


def test_bench_prints_one_json_object_with_every_figure():
    done = subprocess.run([sys.executable, "-m", "scheduler.bench", "--decisions", "200",
                           "--rpcs", "30", "--batches", "2", "--batch-size", "20"],
                          cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    for key in ("decide_us_p50", "decide_us_p99", "grpc_empty_ms_p50", "grpc_schedule_ms_p50",
                "grpc_schedule_ms_p99", "batch_decisions_per_s"):
        assert figures[key] > 0, key
    assert figures["decide_us_p99"] >= figures["decide_us_p50"]
