"""A node's membership of the cluster: register with the scheduler, then heartbeat."""

from __future__ import annotations

import logging
import threading

import grpc

from nodes.servicer import InferenceServicer
from perllm.v1 import scheduler_pb2, scheduler_pb2_grpc
from scheduler.channels import open_channel
from scheduler.convert import kind_to_proto
from scheduler.security import Security

log = logging.getLogger(__name__)


class Registrar(threading.Thread):
    """Registers the node with the scheduler, then heartbeats every interval.

    Re-registers when a heartbeat gets NOT_FOUND (the scheduler restarted or expired us);
    any other failure is logged once per kind and retried at the next interval.
    """

    def __init__(self, servicer: InferenceServicer, address: str,
                 security: Security | None = None) -> None:
        super().__init__(name=f"registrar-{servicer.config.node_id}", daemon=True)
        self.servicer = servicer
        self.address = address
        self.security = security  # TLS and the token towards the scheduler
        self._stopping = threading.Event()
        self._cond = threading.Condition()
        self.registrations = 0
        self.heartbeats = 0  # acknowledged by the scheduler

    def wait_for(self, *, registrations: int = 0, heartbeats: int = 0,
                 timeout_s: float = 10.0) -> bool:
        with self._cond:
            return self._cond.wait_for(
                lambda: self.registrations >= registrations and self.heartbeats >= heartbeats,
                timeout_s)

    def _register_request(self) -> scheduler_pb2.RegisterNodeRequest:
        s = self.servicer
        c, p = s.config, s.profile
        return scheduler_pb2.RegisterNodeRequest(
            node_id=c.node_id, address=self.address, kind=kind_to_proto(c.kind),
            slots=s.slots.slots, link_rate_mbit=c.link_rate_mbit, profile=c.profile,
            idle_power_w=s.meter.idle_power_w, max_power_w=s.meter.max_power_w,
            # Declared: the profile as published (times a misspecification, if configured),
            # never what the node has measured since (scheduler.information).
            prefill_tok_s=(p.prefill_tok_s if p else s.rates.prefill_tok_s)
            * c.declared_rate_factor,
            decode_tok_s=(p.decode_tok_s if p else s.rates.decode_tok_s) * c.declared_rate_factor,
            queue_capacity=s.slots.capacity, transmission_j_per_bit=c.j_per_bit,
            concurrency_slowdown=p.concurrency_slowdown if p else 0.0)

    def _heartbeat_request(self) -> scheduler_pb2.HeartbeatRequest:
        s = self.servicer
        return scheduler_pb2.HeartbeatRequest(
            node_id=s.config.node_id, queue_length=s.slots.waiting, busy_slots=s.slots.busy,
            prefill_tok_s=s.rates.prefill_tok_s, decode_tok_s=s.rates.decode_tok_s,
            serving=s.serving.is_set())

    def run(self) -> None:
        interval_s = self.servicer.config.heartbeat_interval_s
        channel = open_channel(self.servicer.config.scheduler, self.security)
        stub = scheduler_pb2_grpc.SchedulerServiceStub(channel)
        registered = False
        last_error = None
        try:
            while not self._stopping.is_set():
                try:
                    if registered:
                        stub.Heartbeat(self._heartbeat_request(), timeout=interval_s * 4)
                        with self._cond:
                            self.heartbeats += 1
                            self._cond.notify_all()
                    else:
                        stub.RegisterNode(self._register_request(), timeout=interval_s * 4)
                        registered = True
                        log.info("registered %s at %s with scheduler %s",
                                 self.servicer.config.node_id, self.address,
                                 self.servicer.config.scheduler)
                        with self._cond:
                            self.registrations += 1
                            self._cond.notify_all()
                        continue  # first heartbeat at once: it carries the serving state
                    last_error = None
                except grpc.RpcError as e:
                    if e.code() == grpc.StatusCode.NOT_FOUND:
                        registered = False
                        continue
                    if e.code() != last_error:
                        log.warning("scheduler %s: %s: %s", self.servicer.config.scheduler,
                                    e.code().name, e.details())
                        last_error = e.code()
                self._stopping.wait(interval_s)
            if registered:  # tell the scheduler we stopped serving
                try:
                    stub.Heartbeat(self._heartbeat_request(), timeout=interval_s)
                except grpc.RpcError:
                    pass
        finally:
            channel.close()

    def stop(self) -> None:
        self._stopping.set()
