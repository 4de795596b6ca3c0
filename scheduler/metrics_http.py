"""What the scheduler's and the nodes' Prometheus metrics share: one registry per server, its
HTTP /metrics endpoint, and cached labelled children.

Each server owns a CollectorRegistry (tests run several servers in one process, so the global
default registry would mix them). The endpoint is off unless the server's config has a
`metrics_port` (None: off; 0: any free port, read back from `port`); while off, the servers'
hooks return at once, so a server without metrics pays nothing for them.
"""

from __future__ import annotations

import logging
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server

log = logging.getLogger(__name__)

# Processing and inference times (s): the requirements are 2-6 s, services give up at 120 s.
TIME_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 15.0, 20.0,
                  30.0, 60.0, 120.0)


class MetricsExporter:
    """A server's own registry and, once started with a port, its /metrics endpoint."""

    def __init__(self, port: int | None) -> None:
        self.registry = CollectorRegistry()
        self.enabled = port is not None
        self._wanted_port = port
        self._server: Any = None  # the WSGI server of start_http_server
        self._thread: Any = None

    def start(self, host: str) -> None:
        """Serve /metrics on host:port (no-op when off); ValueError when it cannot bind."""
        if not self.enabled or self._server is not None:
            return
        try:
            self._server, self._thread = start_http_server(
                self._wanted_port, addr=host, registry=self.registry)
        except OSError as e:
            raise ValueError(f"cannot bind the metrics endpoint {host}:{self._wanted_port}: "
                             f"{e}") from None
        log.info("Prometheus metrics on http://%s:%d/metrics", host, self.port)

    @property
    def port(self) -> int | None:
        """The port /metrics is served on, None when not serving."""
        return self._server.server_port if self._server is not None else None

    def close(self) -> None:
        """Stop serving /metrics (idempotent)."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
            self._thread.join(timeout=5.0)


class Labelled:
    """A labelled metric's children by label values, cached: `labels()` costs ~2 µs a call."""

    def __init__(self, metric: Any) -> None:
        self.metric = metric
        self._children: dict[tuple[str, ...], Any] = {}

    def __call__(self, *values: str) -> Any:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self.metric.labels(*values)
        return child
