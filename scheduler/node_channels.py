"""The gateway's connections to the nodes: one per call in flight, reused once idle.

A single channel per node carried every forwarded upload as an HTTP/2 stream of one TCP
connection, and gRPC's flow control shared that connection among a handful of streams at a
time, first come first served: under a burst of 30 multi-MB uploads the emulation favoured
early arrivals and met 5-10 points more requirements than the simulator's equal sharing of
the link (python -m simulator validate). Users upload independently, each on its own
connection, and TCP flows through the link's shaper share it about equally, so each call in
flight gets its own connection here. Idle connections are kept for the next call (as an HTTP
client's pool), so a steady load opens none.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import grpc

from perllm.v1 import inference_pb2
from scheduler.channels import open_channel
from scheduler.security import Security

# InferenceService.Generate, called with a request serialised by scheduler.node_request.
GENERATE_METHOD = (f"/{inference_pb2.DESCRIPTOR.services_by_name['InferenceService'].full_name}"
                   "/Generate")


@dataclass
class NodeConnection:
    """One channel (its own TCP connection) and its Generate call taking wire bytes."""

    channel: grpc.Channel
    generate: grpc.UnaryStreamMultiCallable


@dataclass
class NodeChannels:
    """Connections to the nodes, per address: `acquire` one for a call, `release` it after."""

    security: Security | None
    max_message_bytes: int
    _idle: dict[str, list[NodeConnection]] = field(default_factory=dict)
    _all: list[NodeConnection] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _closed: bool = False

    def acquire(self, address: str) -> NodeConnection:
        """An idle connection to `address`, or a new one."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the gateway's node connections are closed")
            idle = self._idle.get(address)
            if idle:
                return idle.pop()
        channel = open_channel(address, self.security, options=[
            ("grpc.max_receive_message_length", self.max_message_bytes),
            ("grpc.max_send_message_length", self.max_message_bytes),
            # Channels with equal arguments share one connection through gRPC's global
            # subchannel pool: a local pool gives this channel its own.
            ("grpc.use_local_subchannel_pool", 1)])
        connection = NodeConnection(channel, channel.unary_stream(
            GENERATE_METHOD, request_serializer=None,
            response_deserializer=inference_pb2.GenerateResponse.FromString))
        with self._lock:
            self._all.append(connection)
            if self._closed:
                channel.close()
                raise RuntimeError("the gateway's node connections are closed")
        return connection

    def release(self, address: str, connection: NodeConnection) -> None:
        """`connection` is free for the next call to `address`."""
        with self._lock:
            if not self._closed:
                self._idle.setdefault(address, []).append(connection)

    def close(self) -> None:
        """Close every connection; acquire fails from now on."""
        with self._lock:
            self._closed = True
            connections, self._all = self._all, []
            self._idle.clear()
        for connection in connections:
            connection.channel.close()
