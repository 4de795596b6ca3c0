"""The inference node: one backend behind a gRPC server, its life from bind to shutdown.

`create_server(config)` builds a bound, not yet started node (tests bind port 0, use
`node.port` and call it in-process); `serve(config)` runs it from the CLI until SIGTERM.
The node's parts live beside it: its options (nodes.config), the RPCs (nodes.servicer), the
slot queue (nodes.slots), the rates it reports (nodes.rates) and its registration with the
scheduler (nodes.registrar).
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from pathlib import Path

from nodes.backends import BackendOptions, GenerationParams, ModelLoadError, backend_class
from nodes.config import NodeConfig
from nodes.registrar import Registrar
from nodes.servicer import INFERENCE_SERVICE, InferenceServicer
from perllm.v1 import inference_pb2
from scheduler.grpc_server import build_grpc_server, wait_for_signal
from scheduler.security import load_security

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 64 * 1024 * 1024

__all__ = ["INFERENCE_SERVICE", "NodeConfig", "NodeServer", "create_server", "serve"]


class NodeServer:
    """A bound gRPC node: `start()`, then `load_model()`, then optionally `register()`."""

    def __init__(self, config: NodeConfig) -> None:
        config.validate()
        self.config = config
        self.security = load_security(config)
        self.profile = None
        if config.profile:
            from nodes.profile import load_profile
            self.profile = load_profile(config.profile)
        slots = config.resolved_slots()
        backend_cls = backend_class(config.backend)
        self.backend = backend_cls(BackendOptions(
            n_threads=config.n_threads, instances=backend_cls.instances_for(slots),
            context_length=config.context_length))
        self.servicer = InferenceServicer(config, self.backend, self.profile)
        # One worker per slot and queued request, plus a few for GetStatus and health; beyond
        # that gRPC itself answers RESOURCE_EXHAUSTED, so memory stays bounded.
        workers = slots + config.queue_capacity + 8
        self.bound = build_grpc_server(
            host=config.host, port=config.port, max_workers=workers,
            thread_name_prefix="node-rpc", maximum_concurrent_rpcs=workers,
            servicers=[(inference_pb2.DESCRIPTOR.services_by_name["InferenceService"],
                        self.servicer)],
            service_names=(INFERENCE_SERVICE,), max_receive_bytes=MAX_MESSAGE_BYTES,
            max_send_bytes=MAX_MESSAGE_BYTES, security=self.security,
            serving=False)  # SERVING once the model loads
        self.server, self.port = self.bound.server, self.bound.port
        self.health = self.bound.health
        try:
            self.servicer.metrics.start(config.host)  # when config.metrics_port is set
        except ValueError:
            self.server.stop(None)
            raise
        self.registrar: Registrar | None = None
        self.load_s = 0.0

    def start(self) -> "NodeServer":
        self.server.start()
        return self

    def load_model(self) -> None:
        """Load (ModelLoadError on failure), warm up, then report SERVING."""
        t0 = time.perf_counter()
        self.backend.load(self.config.model)
        if self.config.warmup_tokens:
            ids = self.backend.tokenize("Warm up the model.")
            n = min(self.config.warmup_tokens, self.backend.context_length - len(ids))
            if n > 0:
                generation = self.backend.generate(ids, GenerationParams(max_new_tokens=n))
                for _ in generation:
                    pass
                if self.profile is None:
                    t = generation.timings
                    self.servicer.rates.observe(t.tokens_in, t.prefill_s, t.tokens_out,
                                                t.decode_s)
        self.load_s = time.perf_counter() - t0
        self.servicer.serving.set()
        self.bound.set_serving(True)

    def advertise_address(self) -> str:
        if self.config.advertise:
            return self.config.advertise
        host = self.config.host
        return f"{'127.0.0.1' if host in ('0.0.0.0', '::', '[::]', '') else host}:{self.port}"

    def register(self) -> Registrar:
        """Start registering and heartbeating with `config.scheduler`."""
        if not self.config.scheduler:
            raise ValueError("scheduler must be HOST:PORT to register (got '')")
        self.registrar = Registrar(self.servicer, self.advertise_address(), self.security)
        self.registrar.start()
        return self.registrar

    def stop(self, grace_s: float | None = None) -> threading.Event:
        """NOT_SERVING at once, then let admitted requests finish within `grace_s`.

        The server keeps answering (health says NOT_SERVING, Generate UNAVAILABLE) while it
        drains; what is still running when the grace period ends is cancelled. Blocks while
        draining; returns the gRPC server's termination event.
        """
        grace_s = self.config.grace_s if grace_s is None else grace_s
        deadline_s = time.monotonic() + grace_s
        self.servicer.serving.clear()
        self.bound.set_serving(False)
        if self.registrar is not None:
            self.registrar.stop()  # its last heartbeat tells the scheduler serving=False
        self.servicer.slots.wait_until(busy=0, waiting=0, timeout_s=grace_s)
        self.health.enter_graceful_shutdown()
        done = self.server.stop(max(0.0, deadline_s - time.monotonic()))
        self.servicer.metrics.close()
        if self.registrar is not None:
            self.registrar.join(timeout=self.config.heartbeat_interval_s * 5)
        return done

    def close(self) -> None:
        self.stop(0).wait()
        self.backend.close()


def create_server(config: NodeConfig) -> NodeServer:
    """A bound, not yet started node; ValueError for a bad config, unknown profile or backend."""
    return NodeServer(config)


def serve(config: NodeConfig) -> int:
    """Run until SIGTERM/SIGINT; prints `READY <port>` once the model serves. Exit status."""
    try:
        config.validate()
    except ValueError as e:
        print(f"nodes serve: {e}", file=sys.stderr)
        return 2
    if not config.model or not Path(config.model).exists():
        print(f"nodes serve: model not found: {config.model!r} (give --model a local "
              f"{backend_class(config.backend).model_kind})", file=sys.stderr)
        return 2
    try:
        node = create_server(config)
    except ValueError as e:
        print(f"nodes serve: {e}", file=sys.stderr)
        return 2
    with wait_for_signal() as stop:
        node.start()
        try:
            node.load_model()
        except ModelLoadError as e:
            print(f"nodes serve: {e}", file=sys.stderr)
            node.stop(0)
            return 2
        if config.scheduler:
            node.register()
        print(f"READY {node.port}", flush=True)
        log.info("node %s (%s, %s %s, profile %s) serving on port %d with %d slot(s), "
                 "loaded in %.2f s", config.node_id, config.kind, config.backend,
                 config.model, config.profile or "none", node.port,
                 node.servicer.slots.slots, node.load_s)
        stop.wait()
        # Still inside: a second signal while draining does not cut the grace period short.
        log.info("node %s stopping: in-flight requests get %.1f s", config.node_id,
                 config.grace_s)
        node.stop().wait()
    node.backend.close()
    return 0
