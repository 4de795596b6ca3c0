"""The inference node over gRPC, in-process on port 0: streaming, results, bad input,
cancellation, the queue, pacing, health, shutdown, registration with a real scheduler, the
backend's instances per slot, and the CLI (flags from NodeConfig, READY line, SIGTERM, a bad
model)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from nodes.backends import BACKENDS, Backend
from nodes.config import NodeConfig
from nodes.server import create_server
from nodes.servicer import INFERENCE_SERVICE
from nodes.tiny import build_tiny
from perllm.v1 import common_pb2, inference_pb2, inference_pb2_grpc

REPO = Path(__file__).resolve().parents[2]
TIMEOUT_S = 30


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny(tmp_path_factory.getbasetemp() / "tiny-models")


@pytest.fixture(scope="module")
def slow_profile(tmp_path_factory) -> Path:
    """A profile slow enough that a generation is reliably still running when we act on it."""
    return _profile(tmp_path_factory.mktemp("profiles"), "slow", prefill_tok_s=1000.0,
                    decode_tok_s=20.0)


def _profile(folder: Path, name: str, *, prefill_tok_s: float, decode_tok_s: float,
             idle_power_w: float = 10.0, max_power_w: float = 50.0) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(
        f"name: {name}\nkind: edge\nhardware: test-cpu\nmodel: tiny\n"
        f"prefill_tok_s: {prefill_tok_s}\ndecode_tok_s: {decode_tok_s}\n"
        f"concurrency_slowdown: 0.0\nidle_power_w: {idle_power_w}\n"
        f"max_power_w: {max_power_w}\nmemory_gb: 0.001\nsource: unit test\n")
    return path


class Node:
    """A started node plus stubs; closed by the fixture."""

    def __init__(self, config: NodeConfig, load: bool = True) -> None:
        self.server = create_server(config).start()
        if load:
            self.server.load_model()
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.server.port}")
        self.stub = inference_pb2_grpc.InferenceServiceStub(self.channel)
        self.health = health_pb2_grpc.HealthStub(self.channel)

    def generate(self, prompt: str = "Edge servers sit close to the users.",
                 max_new_tokens: int = 16, timeout: float = TIMEOUT_S, **kw):
        return self.stub.Generate(inference_pb2.GenerateRequest(
            request_id=kw.pop("request_id", "r"), prompt=prompt,
            max_new_tokens=max_new_tokens, sent_unix_s=time.time(), **kw), timeout=timeout)

    def run(self, *args, **kw) -> tuple[list[inference_pb2.TokenChunk],
                                        inference_pb2.GenerateResult]:
        messages = list(self.generate(*args, **kw))
        assert messages[-1].HasField("result")
        assert all(m.HasField("chunk") for m in messages[:-1])
        return [m.chunk for m in messages[:-1]], messages[-1].result

    def status(self) -> inference_pb2.GetStatusResponse:
        return self.stub.GetStatus(inference_pb2.GetStatusRequest(), timeout=TIMEOUT_S)

    def health_status(self) -> int:
        return self.health.Check(health_pb2.HealthCheckRequest(service=INFERENCE_SERVICE),
                                 timeout=TIMEOUT_S).status

    def close(self) -> None:
        self.channel.close()
        self.server.close()


def _config(tiny, backend: str = "llama-cpp", **kw) -> NodeConfig:
    model = tiny.gguf_path if backend == "llama-cpp" else tiny.hf_dir
    return NodeConfig(node_id=kw.pop("node_id", "edge1"), backend=backend, model=str(model),
                      host="127.0.0.1", **kw)


@pytest.fixture(scope="module", params=["llama-cpp", "transformers"])
def node(request, tiny):
    n = Node(_config(tiny, request.param, chunk_tokens=8))
    yield n
    n.close()


@pytest.fixture
def slow_node(tiny, slow_profile):
    n = Node(_config(tiny, profile=str(slow_profile), slots=1, queue_capacity=1))
    yield n
    n.close()


# -- streaming and results ----------------------------------------------------------------

@pytest.mark.parametrize("max_new_tokens", [1, 9, 100])
def test_streams_exactly_the_requested_tokens(node, max_new_tokens):
    sent = time.time()
    chunks, result = node.run(max_new_tokens=max_new_tokens)
    ids = [t for c in chunks for t in c.token_ids]
    assert len(ids) == result.tokens_out == max_new_tokens
    assert all(1 <= len(c.token_ids) <= 8 for c in chunks)
    assert result.finish_reason == "length"
    assert result.tokens_in == node.server.backend.count_tokens(
        "Edge servers sit close to the users.")
    assert sent <= result.received_unix_s <= result.started_unix_s <= result.finished_unix_s
    assert result.queueing_s >= 0
    assert result.prefill_s_native > 0 and result.decode_s_native >= 0
    # unpaced: the reported times are the backend's own
    assert result.prefill_s == result.prefill_s_native
    assert result.decode_s == result.decode_s_native
    assert result.inference_s == pytest.approx(result.prefill_s + result.decode_s)
    assert result.node_id == "edge1" and not result.truncated


@pytest.mark.parametrize("stop_after, cap, expected", [(3, 10, 3), (10, 10, 10), (25, 10, 10),
                                                    (0, 6, 6)])
def test_an_emulated_answer_ends_at_its_true_length_never_past_the_cap(node, stop_after, cap,
                                                                        expected):
    chunks, result = node.run(max_new_tokens=cap, stop_after_tokens=stop_after)
    assert len([t for c in chunks for t in c.token_ids]) == result.tokens_out == expected


def test_chunk_tokens_per_request(node):
    chunks, result = node.run(max_new_tokens=5, chunk_tokens=1)
    assert [len(c.token_ids) for c in chunks] == [1] * 5


def test_seeded_sampling_is_reproducible_through_grpc(node):
    sampling = common_pb2.SamplingParams(temperature=1.0, top_k=50, seed=11)
    first = [t for c in node.run(max_new_tokens=24, sampling=sampling)[0] for t in c.token_ids]
    again = [t for c in node.run(max_new_tokens=24, sampling=sampling)[0] for t in c.token_ids]
    other = [t for c in node.run(max_new_tokens=24, sampling=common_pb2.SamplingParams(
        temperature=1.0, top_k=50, seed=12))[0] for t in c.token_ids]
    assert first == again
    assert first != other


def test_text_is_the_decoded_tokens(node):
    chunks, _ = node.run(max_new_tokens=40)
    text = "".join(c.text for c in chunks)
    ids = [t for c in chunks for t in c.token_ids]
    full = node.server.backend._detokenizer().decode(ids)
    # the detokenizer may hold back an incomplete UTF-8 tail at the very end
    assert full.startswith(text) and len(full) - len(text) <= 1


def test_get_status_counts_requests_and_time(node):
    before = node.status()
    node.run(max_new_tokens=4)
    after = node.status()
    assert after.requests_done == before.requests_done + 1
    assert after.serving and after.slots == 1 and after.busy_slots == 0
    assert after.queue_length == 0 and after.queue_capacity == 64
    assert after.kind == common_pb2.NODE_KIND_EDGE
    assert after.busy_s > before.busy_s and after.idle_s >= before.idle_s
    assert after.decode_tok_s > 0 and after.prefill_tok_s > 0
    assert after.backend == node.server.config.backend


# -- bad input ----------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, field, value", [
    (dict(max_new_tokens=0), "max_new_tokens", "0"),
    (dict(max_new_tokens=-3), "max_new_tokens", "-3"),
    (dict(sampling=common_pb2.SamplingParams(temperature=-0.5)), "temperature", "-0.5"),
    (dict(sampling=common_pb2.SamplingParams(top_k=-1)), "top_k", "-1"),
    (dict(prompt=""), "prompt", "''"),
    (dict(prompt_tokens=-5), "prompt_tokens", "-5"),
    (dict(max_new_tokens=5000), "max_new_tokens", "5000"),
])
def test_bad_input_is_invalid_argument_naming_field_and_value(node, kwargs, field, value):
    kwargs.setdefault("max_new_tokens", 4)
    with pytest.raises(grpc.RpcError) as err:
        node.run(**kwargs)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in err.value.details() and value in err.value.details()


def test_prompt_longer_than_context(node):
    prompt = "Edge servers sit close to the users. " * 400  # well over 2048 tokens
    with pytest.raises(grpc.RpcError) as err:
        node.run(prompt=prompt, max_new_tokens=8)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "context length 2048" in err.value.details()
    chunks, result = node.run(prompt=prompt, max_new_tokens=8, truncate_prompt=True)
    assert result.truncated and result.tokens_out == 8
    assert result.tokens_in == 2048 - 8


# -- cancellation, deadlines, the queue --------------------------------------------------

def test_cancel_mid_stream_frees_the_slot(slow_node):
    call = slow_node.generate(max_new_tokens=200)  # 10 s at the profile's 20 tok/s
    first = next(call)
    assert first.HasField("chunk")
    call.cancel()
    assert slow_node.server.servicer.slots.wait_until(busy=0, timeout_s=5)
    started = time.monotonic()
    _, result = slow_node.run(max_new_tokens=2)
    assert result.tokens_out == 2
    assert time.monotonic() - started < 2.0


def test_deadline_expiry_frees_the_slot(slow_node):
    with pytest.raises(grpc.RpcError) as err:
        slow_node.run(max_new_tokens=200, timeout=0.5)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert slow_node.server.servicer.slots.wait_until(busy=0, timeout_s=5)
    _, result = slow_node.run(max_new_tokens=2)
    assert result.tokens_out == 2 and result.queueing_s < 1.0


def test_queue_full_is_resource_exhausted_and_cancelled_waiter_leaves(slow_node):
    slots = slow_node.server.servicer.slots
    running = slow_node.generate(max_new_tokens=200, request_id="running")
    assert next(running).HasField("chunk")
    waiting = slow_node.generate(max_new_tokens=2, request_id="waiting")
    assert slots.wait_until(busy=1, waiting=1, timeout_s=5)
    assert slow_node.status().queue_length == 1
    with pytest.raises(grpc.RpcError) as err:
        slow_node.run(max_new_tokens=2, request_id="rejected")
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "queue_capacity 1" in err.value.details()
    waiting.cancel()
    assert slots.wait_until(busy=1, waiting=0, timeout_s=5)
    running.cancel()
    assert slots.wait_until(busy=0, waiting=0, timeout_s=5)


def test_queued_requests_are_served_in_order(tiny, slow_profile):
    n = Node(_config(tiny, profile=str(slow_profile), slots=1, queue_capacity=4))
    try:
        results: dict[str, inference_pb2.GenerateResult] = {}
        threads = []
        for i in range(3):
            t = threading.Thread(target=lambda i=i: results.__setitem__(
                f"r{i}", n.run(max_new_tokens=3, request_id=f"r{i}")[1]))
            t.start()
            threads.append(t)
            # the next request must arrive after this one is admitted
            assert n.server.servicer.slots.wait_until(busy=1, waiting=i, timeout_s=5)
        for t in threads:
            t.join(TIMEOUT_S)
        order = sorted(results, key=lambda r: results[r].started_unix_s)
        assert order == ["r0", "r1", "r2"]
        assert results["r2"].queueing_s > results["r1"].queueing_s > 0.1
        # A waiting service is charged the node's idle power (10 W) while it travels and waits.
        r2 = results["r2"]
        assert r2.energy.idle_j == pytest.approx(10.0 * r2.queueing_s, abs=10.0 * 0.05)
        assert r2.energy.idle_j >= 10.0 * r2.queueing_s
    finally:
        n.close()


@pytest.mark.parametrize("backend", ["llama-cpp", "transformers"])
def test_cloud_node_runs_its_slots_in_parallel(tiny, slow_profile, backend):
    n = Node(_config(tiny, backend, kind="cloud", profile=str(slow_profile)))
    try:
        assert n.server.servicer.slots.slots == 4  # the cloud default
        results = []
        threads = [threading.Thread(target=lambda i=i: results.append(
            n.run(max_new_tokens=6, request_id=f"c{i}")[1])) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(TIMEOUT_S)
        assert sorted(r.tokens_out for r in results) == [6] * 4
        # six tokens take 0.3 s at 20 tok/s: in parallel nobody waited for another
        assert max(r.queueing_s for r in results) < 0.25
        assert n.status().kind == common_pb2.NODE_KIND_CLOUD
    finally:
        n.close()


# -- pacing and energy -------------------------------------------------------------------

def test_paced_run_holds_the_profile_rate_and_energy_parts_sum(tiny, tmp_path):
    profile = _profile(tmp_path, "paced", prefill_tok_s=200.0, decode_tok_s=100.0,
                       idle_power_w=10.0, max_power_w=50.0)
    n = Node(_config(tiny, profile=str(profile)))
    try:
        _, r = n.run(max_new_tokens=40)
        expected_prefill_s = r.tokens_in / 200.0 + 1 / 100.0  # token 1 is due after one step
        assert r.prefill_s == pytest.approx(expected_prefill_s, rel=0.1)
        assert 39 / r.decode_s == pytest.approx(100.0, rel=0.1)
        assert r.inference_s == pytest.approx(r.tokens_in / 200.0 + 40 / 100.0, rel=0.1)
        assert r.prefill_s_native < r.prefill_s and r.decode_s_native < r.decode_s
        e = r.energy
        assert e.inference_method == common_pb2.ENERGY_METHOD_MODELLED
        assert e.total_j == pytest.approx(e.transmission_j + e.inference_j + e.idle_j)
        # one slot of one busy: the node draws max power for the whole request
        busy_s = r.finished_unix_s - r.started_unix_s
        assert e.inference_j == pytest.approx(50.0 * busy_s, rel=0.1)
        # a declared prompt size is paced as prefill of that many tokens
        _, declared = n.run(max_new_tokens=2, prompt_tokens=60)
        assert declared.tokens_in == 60
        assert declared.prefill_s == pytest.approx(60 / 200.0 + 1 / 100.0, rel=0.1)
        status = n.status()
        assert status.energy.total_j == pytest.approx(
            status.energy.inference_j + status.energy.idle_j)
        assert status.idle_power_w == 10.0 and status.max_power_w == 50.0
        assert status.decode_tok_s == pytest.approx(100.0, rel=0.1)
        assert status.prefill_tok_s == pytest.approx(200.0, rel=0.1)
    finally:
        n.close()


# -- health, shutdown ---------------------------------------------------------------------

def test_health_not_serving_until_loaded_and_during_shutdown(tiny, slow_profile):
    n = Node(_config(tiny, profile=str(slow_profile)), load=False)
    try:
        assert n.health_status() == health_pb2.HealthCheckResponse.NOT_SERVING
        with pytest.raises(grpc.RpcError) as err:
            n.run(max_new_tokens=2)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        n.server.load_model()
        assert n.health_status() == health_pb2.HealthCheckResponse.SERVING

        in_flight = n.generate(max_new_tokens=20)  # about 1 s at 20 tok/s
        assert next(in_flight).HasField("chunk")
        # Await the health service's own push of NOT_SERVING (Watch streams every change)
        # rather than spinning on the servicer's flag, which stop() clears before health.
        watch = n.health.Watch(health_pb2.HealthCheckRequest(service=INFERENCE_SERVICE),
                               timeout=TIMEOUT_S)
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        stopper = threading.Thread(target=lambda: n.server.stop(grace_s=10).wait())
        stopper.start()
        assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
        watch.cancel()
        assert n.health_status() == health_pb2.HealthCheckResponse.NOT_SERVING
        with pytest.raises(grpc.RpcError) as err:
            n.run(max_new_tokens=2)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        rest = list(in_flight)  # the in-flight request finishes within the grace period
        assert rest[-1].HasField("result") and rest[-1].result.tokens_out == 20
        stopper.join(TIMEOUT_S)
        assert not stopper.is_alive()
    finally:
        n.close()


def test_reflection_lists_the_inference_service(node):
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
        ProtoReflectionDescriptorDatabase)

    services = ProtoReflectionDescriptorDatabase(node.channel).get_services()
    assert INFERENCE_SERVICE in services and "grpc.health.v1.Health" in services


# -- registration with a real scheduler ---------------------------------------------------

def test_registers_and_heartbeats_with_a_real_scheduler_and_survives_its_restart(tiny):
    from scheduler.server import ServerConfig, create_server as create_scheduler, stop_server

    sched, port, servicer = create_scheduler(ServerConfig(host="127.0.0.1", port=0))
    sched.start()
    n = Node(_config(tiny, node_id="edge7", scheduler=f"127.0.0.1:{port}",
                     heartbeat_interval_s=0.05, link_rate_mbit=80.0, j_per_bit=2e-8))
    try:
        registrar = n.server.register()
        assert registrar.wait_for(registrations=1, heartbeats=3, timeout_s=10)
        state = servicer.cluster.nodes["edge7"]
        assert state.info.address == f"127.0.0.1:{n.server.port}"
        assert state.info.kind == "edge" and state.info.slots == 1
        assert state.info.link_rate_mbit == 80.0
        assert state.info.transmission_j_per_bit == 2e-8
        assert state.info.queue_capacity == 64
        assert state.serving and state.last_heartbeat_s > 0

        # A restarted scheduler does not know the node: the heartbeat's NOT_FOUND makes the
        # node register again.
        stop_server(sched, servicer, grace_s=0)
        sched, port2, servicer = create_scheduler(ServerConfig(host="127.0.0.1", port=port))
        sched.start()
        beats = registrar.heartbeats
        assert registrar.wait_for(registrations=2, heartbeats=beats + 2, timeout_s=10)
        assert "edge7" in servicer.cluster.nodes
    finally:
        n.close()
        stop_server(sched, servicer, grace_s=0)
    # stopping the node sent a last heartbeat with serving=False
    assert not servicer.cluster.nodes["edge7"].serving


# -- the CLI ------------------------------------------------------------------------------

def _cli(*args: str, **kw) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen([sys.executable, "-m", "nodes", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def test_cli_serves_until_sigterm_and_finishes_in_flight(tiny, slow_profile):
    proc = _cli("serve", "--id", "edge1", "--backend", "llama-cpp", "--model",
                str(tiny.gguf_path), "--profile", str(slow_profile), "--host", "127.0.0.1",
                "--port", "0", "--grace-s", "10")
    try:
        line = proc.stdout.readline()
        assert line.startswith("READY "), (line, proc.stderr.read() if proc.poll() else "")
        port = int(line.split()[1])
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = inference_pb2_grpc.InferenceServiceStub(channel)
            call = stub.Generate(inference_pb2.GenerateRequest(
                request_id="cli", prompt="Hello", max_new_tokens=12), timeout=TIMEOUT_S)
            assert next(call).HasField("chunk")
            proc.send_signal(signal.SIGTERM)
            rest = list(call)
        assert rest[-1].result.tokens_out == 12
        assert proc.wait(TIMEOUT_S) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("backend, make_model, expected", [
    ("llama-cpp", lambda d: d / "absent.gguf", "model not found"),
    ("llama-cpp", lambda d: (d / "garbage.gguf").write_bytes(b"not a gguf") and
     d / "garbage.gguf", "cannot load GGUF model"),
    ("transformers", lambda d: d / "absent", "model not found"),
    ("transformers", lambda d: ((d / "bad").mkdir(), (d / "bad/config.json").write_text("{")) and
     d / "bad", "cannot load transformers model"),
])
def test_cli_bad_model_is_one_line_and_exit_2(tmp_path, backend, make_model, expected):
    model = make_model(tmp_path)
    proc = _cli("serve", "--id", "edge1", "--backend", backend, "--model", str(model),
                "--port", "0", "--host", "127.0.0.1")
    out, err = proc.communicate(timeout=TIMEOUT_S)
    assert proc.returncode == 2
    assert "READY" not in out
    assert "Traceback" not in err and expected in err
    assert len(err.strip().splitlines()) == 1, err


def test_cli_bad_flag_value_names_it():
    proc = _cli("serve", "--id", "edge1", "--model", "x.gguf", "--chunk-tokens", "0")
    _, err = proc.communicate(timeout=TIMEOUT_S)
    assert proc.returncode == 2 and "chunk_tokens must be >= 1 (got 0)" in err


def test_reported_rates_are_single_request_rates():
    # The scheduler applies the concurrency slow-down itself: a request that ran at half speed
    # because another shared the node must not lower the rate the node reports.
    from nodes.rates import MeasuredRates

    rates = MeasuredRates()
    rates.observe(tokens_in=100, prefill_s=1.1, tokens_out=11, decode_s=1.0, slowdown=2.0)
    assert rates.decode_tok_s == pytest.approx(20.0)
    assert rates.prefill_tok_s == pytest.approx(100 / (0.55 - 1 / 20.0))


# -- the backend's capability, the flags NodeConfig derives ---------------------------------

def _stub_backend(per_slot: bool) -> type[Backend]:
    class Stub(Backend):
        """Never loaded: only its options are looked at."""

        name = "stub"
        instance_per_slot = per_slot
        context_length = 16
        load = tokenize = _start = _detokenizer = eos_ids = None

    return Stub


@pytest.mark.parametrize("per_slot, slots, instances", [
    (True, 3, 3), (False, 3, 1), (True, 0, 4)])  # slots 0: a cloud node's default, 4
def test_node_gives_the_backend_one_instance_per_slot_only_when_it_says_so(
        monkeypatch, per_slot, slots, instances):
    monkeypatch.setitem(BACKENDS._items, "stub", lambda: _stub_backend(per_slot))
    node = create_server(NodeConfig(node_id="c1", kind="cloud", backend="stub", model="m",
                                    slots=slots, host="127.0.0.1"))
    try:
        assert node.backend.options.instances == instances
    finally:
        node.server.stop(0)


def _main_config(monkeypatch, *argv: str) -> NodeConfig:
    """The config `python -m nodes serve ARGV` would serve (serve itself replaced)."""
    import nodes.__main__
    import nodes.server

    served = []
    monkeypatch.setattr(nodes.server, "serve", lambda config: served.append(config) or 0)
    assert nodes.__main__.main(["serve", *argv]) == 0
    return served[0]


def test_serve_refuses_an_unknown_backend_naming_the_accepted_ones(capsys):
    from nodes.__main__ import main

    with pytest.raises(SystemExit) as exit_:
        main(["serve", "--id", "edge1", "--model", "m.gguf", "--backend", "nope"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "--backend" in err and "'nope'" in err
    assert all(repr(name) in err for name in BACKENDS.names())


def test_serve_argv_round_trips_a_config_through_the_cli(monkeypatch):
    from nodes.config import serve_argv

    config = NodeConfig(node_id="cloud", kind="cloud", backend="transformers",
                        model="models/tiny-hf", profile="a100/llama2-13b", port=50061,
                        metrics_port=9100, slots=3, queue_capacity=9, chunk_interval_s=0.125,
                        grace_s=1.5,
                        scheduler="10.0.0.1:50051", advertise="10.0.0.3:50061",
                        link_rate_mbit=12.5, j_per_bit=2.5e-8, heartbeat_interval_s=0.2)
    argv = serve_argv(config)
    assert argv[:4] == [sys.executable, "-m", "nodes", "serve"]
    assert _main_config(monkeypatch, *argv[4:]) == config
    default = NodeConfig(model="m")
    assert _main_config(monkeypatch, *serve_argv(default)[4:]) == default


def test_the_flags_the_emulated_runner_passes_keep_their_names(monkeypatch):
    config = _main_config(
        monkeypatch, "--id", "edge2", "--kind", "edge", "--backend", "llama-cpp", "--model",
        "models/tiny.gguf", "--port", "50061", "--slots", "2", "--queue-capacity", "5",
        "--scheduler", "10.0.0.1:50051", "--advertise", "10.0.0.2:50061",
        "--link-rate-mbit", "20", "--j-per-bit", "1e-8", "--heartbeat-interval-s", "0.25",
        "--profile", "xeon-4214r/llama2-7b")
    assert config == NodeConfig(
        node_id="edge2", kind="edge", backend="llama-cpp", model="models/tiny.gguf",
        port=50061, slots=2, queue_capacity=5, scheduler="10.0.0.1:50051",
        advertise="10.0.0.2:50061", link_rate_mbit=20.0, j_per_bit=1e-8,
        heartbeat_interval_s=0.25, profile="xeon-4214r/llama2-7b")


def test_a_combined_energy_method_goes_as_its_first_part():
    from nodes.servicer import _wire_energy
    from scheduler.outcome import Energy

    pb = _wire_energy(Energy(inference_j=2.0, idle_j=1.0, transmission_method="",
                             inference_method="rapl+nvml", idle_method="nvml"))
    assert pb.inference_method == common_pb2.ENERGY_METHOD_RAPL
    assert pb.idle_method == common_pb2.ENERGY_METHOD_NVML
    assert pb.transmission_method == common_pb2.ENERGY_METHOD_UNSPECIFIED
    assert pb.total_j == 3.0
