"""Property-based tests of the inference node's Generate: random and extreme requests against a
real node (the tiny llama-cpp GGUF model, in-process on port 0).

Each call either streams chunks then exactly one GenerateResult whose tokens_out is the number
of tokens streamed and at most max_new_tokens (exactly stop_after_tokens when that is in
(0, max_new_tokens]), with finite times and energies, or ends with a code inference.proto documents
for Generate that the call can provoke (a loaded node, a client that waits: not UNAVAILABLE,
CANCELLED or DEADLINE_EXCEEDED), never UNKNOWN or INTERNAL. A request the proto calls invalid
is refused, a plainly valid one is served, and the node stays healthy after every call.
"""

from __future__ import annotations

import math
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from nodes.config import NodeConfig
from nodes.server import create_server
from nodes.servicer import INFERENCE_SERVICE
from nodes.tiny import build_tiny
from perllm.v1 import common_pb2, inference_pb2, inference_pb2_grpc
from tests.unit.proto_contract import INT32, NEVER, UINT64, documented_codes, wild_int

CONTEXT_TOKENS = 256  # short, so even the longest generation takes well under a second
TIMEOUT_S = 30.0
# Codes for a client that stays and a node that has loaded its model and is not stopping.
NOT_PROVOKED = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED,
                grpc.StatusCode.DEADLINE_EXCEEDED}
ALLOWED = documented_codes("inference.proto")["Generate"] - NOT_PROVOKED

LONG_PROMPT = st.builds(  # far past the context: refused unless truncate_prompt
    lambda word, n: word * n, st.sampled_from(["edge ", "漢", "\x00", "é "]),
    st.integers(200, 5_000))
WILD_TEMPERATURE = st.one_of(  # a float on the wire: 1e308 arrives as inf
    st.sampled_from([-0.0, 1e-45, -1.0, 100.0, 3.4e38, 1e308, math.inf, -math.inf, math.nan]),
    st.floats())


@st.composite
def requests(draw) -> dict:
    """GenerateRequest fields: one in three wild (each field ordinary or extreme)."""
    wild = draw(st.sampled_from([False, False, True]))

    def either(valid, extreme):
        return draw(st.one_of(valid, extreme) if wild else valid)

    return dict(
        prompt=either(st.text(min_size=1, max_size=40), st.one_of(st.just(""), LONG_PROMPT)),
        max_new_tokens=either(st.integers(1, 40), wild_int(*INT32)),
        sampling=common_pb2.SamplingParams(
            temperature=either(st.floats(0, 2, width=32), WILD_TEMPERATURE),
            top_k=either(st.integers(0, 1000), wild_int(*INT32)),
            seed=draw(wild_int(*UINT64))),
        prompt_tokens=either(st.integers(0, 1000), wild_int(*INT32)),
        chunk_tokens=either(st.integers(0, 16), wild_int(*INT32)),
        stop_after_tokens=either(st.integers(0, 45), wild_int(*INT32)),
        truncate_prompt=draw(st.booleans()),
        attachment=draw(st.binary(max_size=256)),
        sent_unix_s=either(st.one_of(st.just(0.0), st.floats(0, 2e9)), st.floats()))


class NodeUnderTest:
    def __init__(self, tiny) -> None:
        self.server = create_server(NodeConfig(
            node_id="edge1", backend="llama-cpp", model=str(tiny.gguf_path), host="127.0.0.1",
            context_length=CONTEXT_TOKENS, chunk_tokens=8)).start()
        self.server.load_model()
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.server.port}")
        self.stub = inference_pb2_grpc.InferenceServiceStub(self.channel)
        self.health = health_pb2_grpc.HealthStub(self.channel)

    def count_tokens(self, prompt: str) -> int:
        return len(self.server.backend.tokenize(prompt))

    def close(self) -> None:
        self.channel.close()
        self.server.close()


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    # The same folder as test_node_server's fixture: built once per session.
    n = NodeUnderTest(build_tiny(tmp_path_factory.getbasetemp() / "tiny-models"))
    yield n
    n.close()


def documented_invalid(n: NodeUnderTest, fields: dict) -> bool:
    """inference.proto's INVALID_ARGUMENT conditions for Generate."""
    s = fields["sampling"]
    too_long = (fields["prompt"] and not fields["truncate_prompt"]
                and n.count_tokens(fields["prompt"]) > CONTEXT_TOKENS)
    return (not fields["prompt"] or too_long or fields["max_new_tokens"] <= 0
            or s.temperature < 0 or s.top_k < 0)


def plainly_valid(n: NodeUnderTest, fields: dict) -> bool:
    """A request nobody could refuse: short prompt, few tokens, ordinary sampling."""
    s = fields["sampling"]
    return (0 < len(fields["prompt"]) <= 40 and n.count_tokens(fields["prompt"]) <= 64
            and 1 <= fields["max_new_tokens"] <= 64 and 0 <= s.temperature <= 2
            and 0 <= s.top_k and fields["prompt_tokens"] >= 0 and fields["chunk_tokens"] >= 0
            and fields["stop_after_tokens"] >= 0)


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(fields=requests())
def test_generate_streams_a_result_or_a_documented_refusal(node, fields):
    request = inference_pb2.GenerateRequest(request_id="prop", **fields)
    code = grpc.StatusCode.OK
    try:
        messages = list(node.stub.Generate(request, timeout=TIMEOUT_S))
    except grpc.RpcError as e:
        code = e.code()
        assert code not in NEVER, f"Generate answered {code.name}: {e.details()}"
        assert code in ALLOWED, f"Generate answered {code.name} ({e.details()}); " \
                                f"documented: {sorted(c.name for c in ALLOWED)}"
    event(f"Generate {code.name}")  # --hypothesis-show-statistics
    if documented_invalid(node, fields):
        assert code == grpc.StatusCode.INVALID_ARGUMENT, code
    elif plainly_valid(node, fields):
        assert code == grpc.StatusCode.OK, code
    if code == grpc.StatusCode.OK:
        assert messages and messages[-1].HasField("result"), messages[-1:]
        assert all(m.HasField("chunk") for m in messages[:-1])
        result = messages[-1].result
        streamed = sum(len(m.chunk.token_ids) for m in messages[:-1])
        assert streamed == result.tokens_out <= fields["max_new_tokens"]
        # The tiny model never ends on its own (nodes.backends: end of sequence is blocked),
        # so the answer ends at stop_after_tokens when that is in (0, max_new_tokens].
        stop = fields["stop_after_tokens"]
        assert result.tokens_out == (stop if 0 < stop <= fields["max_new_tokens"]
                                     else fields["max_new_tokens"])
        assert result.finish_reason in ("length", "stop"), result.finish_reason
        assert result.truncated <= fields["truncate_prompt"]
        for part in (result, result.energy):
            for f, value in part.ListFields():
                if f.type == f.TYPE_DOUBLE:
                    assert math.isfinite(value), f"{f.name} = {value}"
    # The node stays healthy: GetStatus answers and it still serves.
    status = node.stub.GetStatus(inference_pb2.GetStatusRequest(), timeout=TIMEOUT_S)
    assert status.serving
    assert node.health.Check(health_pb2.HealthCheckRequest(service=INFERENCE_SERVICE),
                             timeout=TIMEOUT_S).status == health_pb2.HealthCheckResponse.SERVING


def test_the_proto_documents_refusals_for_generate():
    assert ALLOWED == {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT,
                       grpc.StatusCode.RESOURCE_EXHAUSTED}


def test_the_node_serves_after_the_property_run(node):
    """A slot freed by every call above: a plain request is served at once."""
    t0 = time.monotonic()
    messages = list(node.stub.Generate(inference_pb2.GenerateRequest(
        request_id="after", prompt="Edge servers sit close to the users.", max_new_tokens=4),
        timeout=TIMEOUT_S))
    assert messages[-1].result.tokens_out == 4
    assert time.monotonic() - t0 < TIMEOUT_S
