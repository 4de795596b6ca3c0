"""The gateway's connections to the nodes: up to `per_node` per node, the least busy taken.

A single channel per node carried every forwarded upload as an HTTP/2 stream of one TCP
connection, and gRPC's flow control shared that connection among a few streams at a time,
first come first served: under a burst of 50 multi-MB uploads on a backlogged 300 Mbit/s link
the emulation met 18-24 points more requirements than the simulator's equal sharing (python -m
simulator validate, cell 8). Users upload independently, each on its own connection, and TCP
flows through the link's shaper share it: with a connection per call the gap fell to 6-10
points, but a burst of 30 then opened 30 connections, and on 2 cores the project's threads
queued for a core (CPU queue peak 0.4-0.6 -> 0.9-1.9 threads in `fluctuating`). So a call
takes an idle connection, else opens one while the node has fewer than `per_node`, else
shares the least busy one.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import grpc

from perllm.v1 import inference_pb2
from scheduler.channels import open_channel
from scheduler.config import DEFAULT_NODE_CONNECTIONS
from scheduler.security import Security

# InferenceService.Generate, called with a request serialised by scheduler.node_request.
GENERATE_METHOD = (f"/{inference_pb2.DESCRIPTOR.services_by_name['InferenceService'].full_name}"
                   "/Generate")


@dataclass(eq=False)
class NodeConnection:
    """One channel (its own TCP connection), its Generate call taking wire bytes, and how
    many calls it carries now."""

    channel: grpc.Channel
    generate: grpc.UnaryStreamMultiCallable
    calls: int = 0


@dataclass
class NodeChannels:
    """Connections to the nodes, per address: `acquire` one for a call, `release` it after."""

    security: Security | None
    max_message_bytes: int
    per_node: int = DEFAULT_NODE_CONNECTIONS
    _open: dict[str, list[NodeConnection]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _closed: bool = False

    def acquire(self, address: str) -> NodeConnection:
        """The least busy connection to `address`; a new one while none is idle and the node
        has fewer than `per_node`."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the gateway's node connections are closed")
            connections = self._open.setdefault(address, [])
            if connections:
                least = min(connections, key=lambda c: c.calls)
                if least.calls == 0 or len(connections) >= self.per_node:
                    least.calls += 1
                    return least
            channel = open_channel(address, self.security, options=[
                ("grpc.max_receive_message_length", self.max_message_bytes),
                ("grpc.max_send_message_length", self.max_message_bytes),
                # Channels with equal arguments share one connection through gRPC's global
                # subchannel pool: a local pool gives this channel its own.
                ("grpc.use_local_subchannel_pool", 1)])
            connection = NodeConnection(channel, channel.unary_stream(
                GENERATE_METHOD, request_serializer=None,
                response_deserializer=inference_pb2.GenerateResponse.FromString), calls=1)
            connections.append(connection)
            return connection

    def release(self, connection: NodeConnection) -> None:
        """One call on `connection` has ended."""
        with self._lock:
            connection.calls = max(0, connection.calls - 1)

    def close(self) -> None:
        """Close every connection; acquire fails from now on."""
        with self._lock:
            self._closed = True
            connections = [c for group in self._open.values() for c in group]
            self._open.clear()
        for connection in connections:
            connection.channel.close()
