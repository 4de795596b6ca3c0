"""How both of the project's servers are built and stopped: one helper, not two shapes.

`build_grpc_server` makes a bound, not yet started grpc.Server with the project's servicers,
grpc.health.v1 and server reflection; `wait_for_signal` blocks until SIGTERM or SIGINT (and
restores the previous handlers), so `serve()` functions stop gracefully: health NOT_SERVING,
then `server.stop(grace)` (the gRPC graceful-shutdown example's order).
"""

from __future__ import annotations

import logging
import signal
import threading
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

log = logging.getLogger(__name__)


@dataclass
class BoundServer:
    """A bound gRPC server, the port it got and its health servicer."""

    server: grpc.Server
    port: int
    health: health.HealthServicer
    service_names: tuple[str, ...]

    def set_serving(self, serving: bool) -> None:
        status = (health_pb2.HealthCheckResponse.SERVING if serving
                  else health_pb2.HealthCheckResponse.NOT_SERVING)
        for name in ("",) + self.service_names:
            self.health.set(name, status)


def build_grpc_server(*, host: str, port: int, max_workers: int, thread_name_prefix: str,
                      servicers: Sequence[tuple[Callable[[Any, grpc.Server], None], Any]],
                      service_names: Sequence[str], reflected: Sequence[str] = (),
                      max_receive_bytes: int, max_send_bytes: int | None = None,
                      maximum_concurrent_rpcs: int | None = None,
                      serving: bool = False) -> BoundServer:
    """Bind `servicers` (pairs of add_*_to_server and servicer), health and reflection.

    `service_names` are the services health reports on (besides ""); `reflected` adds names
    reflection lists beyond them. ValueError when the address cannot be bound.
    """
    options = [("grpc.max_receive_message_length", max_receive_bytes),
               # Without this a second server could silently share an explicit port.
               ("grpc.so_reuseport", 0)]
    if max_send_bytes is not None:
        options.append(("grpc.max_send_message_length", max_send_bytes))
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers,
                                   thread_name_prefix=thread_name_prefix),
        maximum_concurrent_rpcs=maximum_concurrent_rpcs, options=options)
    for add, servicer in servicers:
        add(servicer, server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = tuple(service_names)
    listed = tuple(dict.fromkeys(names + tuple(reflected)
                                 + (health.SERVICE_NAME, reflection.SERVICE_NAME)))
    reflection.enable_server_reflection(listed, server)
    try:
        bound_port = server.add_insecure_port(f"{host}:{port}")
    except RuntimeError as e:
        raise ValueError(f"cannot bind {host}:{port}: {e}") from None
    if bound_port == 0:
        raise ValueError(f"cannot bind {host}:{port}")
    bound = BoundServer(server, bound_port, health_servicer, names)
    bound.set_serving(serving)
    return bound


@contextmanager
def wait_for_signal() -> Iterator[threading.Event]:
    """An event set by SIGTERM or SIGINT while the block runs; the old handlers come back."""
    stop = threading.Event()

    def on_signal(signum, frame) -> None:
        log.info("signal %d: shutting down", signum)
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
