"""The gateway holds a service as long as its policy says (cloud-only's deferred batching), as
the simulator does: before, the emulation forwarded at once and cloud-only's mean time was
half the simulator's in a quiet regime (simulator validate, control cell: 0.17 s vs 0.37 s)."""

from __future__ import annotations

import time

from perllm.v1 import common_pb2
from tests.unit.test_scheduler_grpc import (FakeNode, fake_nodes, node_request,  # noqa: F401
                                            service_pb, start, submit)

RPC_TIMEOUT_S = 10.0
HOLD_S = 0.3


def test_cloud_only_holds_a_service_its_deferral_then_forwards(start, fake_nodes):  # noqa: F811
    srv = start(policy="cloud-only", policy_params={"max_wait_s": HOLD_S, "batch_size": 4})
    node = FakeNode("cloud", tokens=1)
    (address,) = fake_nodes(node)
    srv.stub.RegisterNode(node_request("cloud", address=address,
                                       kind=common_pb2.NODE_KIND_CLOUD, slots=4),
                          timeout=RPC_TIMEOUT_S)
    started = time.monotonic()
    events = submit(srv.stub, service_pb("held"))  # first of a batch of 4: held HOLD_S
    elapsed_s = time.monotonic() - started
    out = events[-1].outcome
    assert out.status == common_pb2.OUTCOME_STATUS_MET and len(node.requests) == 1
    assert elapsed_s >= HOLD_S and out.total_s >= HOLD_S
    assert events[0].decision.predicted_total_s >= HOLD_S  # the prediction included it
