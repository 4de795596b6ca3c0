"""How both of the project's servers are built and stopped: one helper, not two shapes.

`build_grpc_server` makes a bound, not yet started grpc.Server with the project's servicers,
grpc.health.v1 and server reflection. Requests reach the servicers as bytes and are parsed here:
grpcio would answer an undecodable message (random bytes, a truncated message, invalid UTF-8 in
a string field) with INTERNAL and log a traceback per call before any project code runs; here
it gets INVALID_ARGUMENT with a short reason and at most one log line per interval. Given a
scheduler.security.Security it serves TLS and checks the bearer token; plaintext otherwise.
`wait_for_signal` blocks until SIGTERM or SIGINT (and restores the previous handlers), so
`serve()` functions stop gracefully: health NOT_SERVING, then `server.stop(grace)` (the gRPC
graceful-shutdown example's order).
"""

from __future__ import annotations

import logging
import math
import signal
import threading
import time
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import grpc
from google.protobuf import message_factory
from google.protobuf.message import DecodeError
from grpc_health.v1 import health, health_pb2
from grpc_reflection.v1alpha import reflection

from scheduler.security import BearerTokenInterceptor, Security

log = logging.getLogger(__name__)


@dataclass
class BoundServer:
    """A bound gRPC server, the port it got and its health servicer."""

    server: grpc.Server
    port: int
    health: health.HealthServicer
    service_names: tuple[str, ...]
    undecodable: "UndecodableLog"

    def set_serving(self, serving: bool) -> None:
        status = (health_pb2.HealthCheckResponse.SERVING if serving
                  else health_pb2.HealthCheckResponse.NOT_SERVING)
        for name in ("",) + self.service_names:
            self.health.set(name, status)


class UndecodableLog:
    """At most one log line per `interval_s` about undecodable requests, with the count."""

    def __init__(self, interval_s: float = 10.0, clock: Callable[[], float] = time.monotonic
                 ) -> None:
        self.interval_s = interval_s
        self.clock = clock
        self.suppressed = 0
        self._last_s = -math.inf
        self._lock = threading.Lock()

    def record(self, method: str, reason: str) -> bool:
        """Count one undecodable request; True when a line was logged for it."""
        with self._lock:
            now = self.clock()
            if now - self._last_s < self.interval_s:
                self.suppressed += 1
                return False
            suppressed, self.suppressed, self._last_s = self.suppressed, 0, now
        log.warning("undecodable request to %s refused (%s); %d more since the last line",
                    method, reason, suppressed)
        return True


def _parse(request_class: Any, raw: bytes, method: str, context: grpc.ServicerContext,
           undecodable: UndecodableLog) -> Any:
    try:
        return request_class.FromString(raw)
    except DecodeError as e:
        reason = str(e) or "not a valid message"
    except Exception as e:  # noqa: BLE001  (any parser failure is the request's fault)
        reason = f"{type(e).__name__}: {e}"
    undecodable.record(method, reason)
    context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                  f"request is not a valid {request_class.DESCRIPTOR.full_name} ({reason})")


MAX_DETAILS_BYTES = 1024  # a status message rides in the trailers (HTTP/2 headers)


def bounded_details(details: str) -> str:
    """A status message cut to MAX_DETAILS_BYTES of UTF-8: one that quotes a huge field (or
    lists hundreds of nodes) would overflow the trailers and lose its status code."""
    raw = details.encode("utf-8")
    if len(raw) <= MAX_DETAILS_BYTES:
        return details
    head = raw[:MAX_DETAILS_BYTES - 40].decode("utf-8", errors="ignore")
    return f"{head}… ({len(raw)} bytes in all)"


class _BoundedContext:
    """The servicer context, whose abort() keeps its message within MAX_DETAILS_BYTES."""

    __slots__ = ("_context",)

    def __init__(self, context: grpc.ServicerContext) -> None:
        self._context = context

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        self._context.abort(code, bounded_details(details))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)


def _method_handler(method: Any, servicer: Any, undecodable: UndecodableLog) -> Any:
    """One RPC whose request arrives as bytes and is parsed by _parse."""
    request_class = message_factory.GetMessageClass(method.input_type)
    response_class = message_factory.GetMessageClass(method.output_type)
    behaviour = getattr(servicer, method.name)
    name = f"/{method.containing_service.full_name}/{method.name}"
    if method.client_streaming:
        raise TypeError(f"{name}: client-streaming methods are not served by this helper")
    if method.server_streaming:
        def stream(raw: bytes, context: grpc.ServicerContext) -> Iterator[Any]:
            request = _parse(request_class, raw, name, context, undecodable)
            yield from behaviour(request, _BoundedContext(context))
        return grpc.unary_stream_rpc_method_handler(
            stream, response_serializer=response_class.SerializeToString)

    def unary(raw: bytes, context: grpc.ServicerContext) -> Any:
        return behaviour(_parse(request_class, raw, name, context, undecodable),
                         _BoundedContext(context))
    return grpc.unary_unary_rpc_method_handler(
        unary, response_serializer=response_class.SerializeToString)


def add_parsed_service(server: grpc.Server, service: Any, servicer: Any,
                       undecodable: UndecodableLog) -> None:
    """Serve `servicer` for the service descriptor `service`, parsing requests ourselves."""
    handlers = {m.name: _method_handler(m, servicer, undecodable) for m in service.methods}
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(service.full_name, handlers),))
    server.add_registered_method_handlers(service.full_name, handlers)


def prestarted_executor(max_workers: int, prestart: int,
                        thread_name_prefix: str = "") -> futures.ThreadPoolExecutor:
    """A ThreadPoolExecutor whose first `prestart` threads already run (idle).

    The pool starts a thread per task while none is idle, so the first burst of calls paid
    for thread starts while other threads held the GIL: a burst of 30 Submits reached its
    handlers (and a driver its senders) up to 60 ms late on a 2-core host (fidelity,
    driver_late and frontend_delay). Each starting task waits until all have started, so
    every one gets its own thread; the call returns once all of them are idle again."""
    pool = futures.ThreadPoolExecutor(max_workers=max_workers,
                                      thread_name_prefix=thread_name_prefix)
    count = min(max(0, prestart), max_workers)
    if count:
        started = threading.Barrier(count + 1)
        for _ in range(count):
            pool.submit(started.wait, 30.0)
        started.wait(30.0)
        # A worker counts itself idle (the pool's semaphore, which a new task takes before it
        # would start a thread) just after its task returns: wait for all `count`, give back.
        idle = getattr(pool, "_idle_semaphore", None)  # CPython >= 3.8
        if idle is not None:
            taken = sum(idle.acquire(timeout=30.0) for _ in range(count))
            for _ in range(taken):
                idle.release()
    return pool


def build_grpc_server(*, host: str, port: int, max_workers: int, thread_name_prefix: str,
                      servicers: Sequence[tuple[Any, Any]],
                      service_names: Sequence[str], reflected: Sequence[str] = (),
                      max_receive_bytes: int, max_send_bytes: int | None = None,
                      maximum_concurrent_rpcs: int | None = None,
                      serving: bool = False, security: Security | None = None,
                      prestart_threads: int = 0) -> BoundServer:
    """Bind `servicers` (pairs of a service descriptor and its servicer), health, reflection.

    `service_names` are the services health reports on (besides ""); `reflected` adds names
    reflection lists beyond them; `prestart_threads` RPC threads start now (prestarted_executor). `security` (scheduler.security) adds TLS and the token check;
    None serves plaintext. ValueError when the address cannot be bound.
    """
    options = [("grpc.max_receive_message_length", max_receive_bytes),
               # Without this a second server could silently share an explicit port.
               ("grpc.so_reuseport", 0)]
    if max_send_bytes is not None:
        options.append(("grpc.max_send_message_length", max_send_bytes))
    server = grpc.server(
        prestarted_executor(max_workers, prestart_threads, thread_name_prefix),
        maximum_concurrent_rpcs=maximum_concurrent_rpcs, options=options,
        interceptors=[BearerTokenInterceptor(security.token)] if security and security.token
        else None)
    undecodable = UndecodableLog()
    for service, servicer in servicers:
        add_parsed_service(server, service, servicer, undecodable)
    health_servicer = health.HealthServicer()
    add_parsed_service(server, health_pb2.DESCRIPTOR.services_by_name["Health"],
                       health_servicer, undecodable)
    names = tuple(service_names)
    listed = tuple(dict.fromkeys(names + tuple(reflected)
                                 + (health.SERVICE_NAME, reflection.SERVICE_NAME)))
    reflection.enable_server_reflection(listed, server)
    try:
        credentials = security.server_credentials() if security else None
        bound_port = (server.add_secure_port(f"{host}:{port}", credentials) if credentials
                      else server.add_insecure_port(f"{host}:{port}"))
    except RuntimeError as e:
        raise ValueError(f"cannot bind {host}:{port}: {e}") from None
    if bound_port == 0:
        raise ValueError(f"cannot bind {host}:{port}")
    bound = BoundServer(server, bound_port, health_servicer, names, undecodable)
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
