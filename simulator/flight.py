"""One service on its way through the simulated world: held, uploading, at the node, done.

simulator.runner decides and books; a Flight carries the decided service over its node's link
(simulator.model.SimLink), through the node's queue and slots (SimNode), and records its
outcome, or its failure where it was when the node died or the client gave up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from scheduler.outcome import Energy, completed_outcome, failed_outcome
from scenarios.workload import WorkloadItem
from simulator.engine import Job
from simulator.model import Task

if TYPE_CHECKING:
    from simulator.runner import _Run


class Flight:
    """One service on its way: upload, queue, inference."""

    __slots__ = ("run", "arrival", "node_id", "f", "predicted_s", "dispatched_s",
                 "uploaded_s", "started_s", "tokens_in", "tokens_out", "stage", "upload", "task")

    def __init__(self, run: "_Run", arrival: WorkloadItem, node_id: str, f: float,
                 predicted_s: float) -> None:
        self.run, self.arrival, self.node_id, self.f = run, arrival, node_id, f
        self.predicted_s = predicted_s  # D-hat at decision time, for the report
        self.tokens_in = arrival.service.estimated_prompt_tokens
        # The true output length: the node generates it (the workload's, not the cap).
        self.tokens_out = arrival.output_tokens
        self.dispatched_s = self.uploaded_s = self.started_s = 0.0
        self.stage = HELD  # HELD → UPLOADING → AT_NODE → DONE
        self.upload: Job | None = None  # the upload on the link, while UPLOADING
        self.task: Task | None = None  # its place on the node (queued or running), AT_NODE

    def dispatch(self) -> None:
        if self.stage is DONE:
            return  # given up while the policy held it
        run = self.run
        self.dispatched_s = run.env.now
        if self.node_id in run.dead:
            self._fail(0.0, 0, "node unreachable")
            return
        self.stage = UPLOADING
        upload = run.links[self.node_id].upload(self.arrival.service.input_bytes, self.uploaded)
        if self.stage is UPLOADING:  # (an empty input is uploaded at once)
            self.upload = upload

    def uploaded(self) -> None:
        run = self.run
        self.uploaded_s = run.env.now
        self.upload = None
        self.stage = AT_NODE
        if self.node_id in run.dead:
            self._fail(self.uploaded_s - self.dispatched_s,
                       self.arrival.service.input_bytes, "node unreachable")
            return
        node = run.nodes[self.node_id]
        work_s = node.model.work_s(self.tokens_in, self.tokens_out)
        self.task = node.submit(work_s, self.started, self.finished)
        if self.task is None:
            self._fail(self.uploaded_s - self.dispatched_s, self.arrival.service.input_bytes,
                       f"queue full ({node.queue_capacity} waiting)")

    def started(self) -> None:
        self.started_s = self.run.env.now

    def _fail(self, transmission_s: float, sent_bytes: int, error: str) -> None:
        self.stage = DONE
        waited_s = self.dispatched_s - self.arrival.arrival_s
        self.run._finish_failed(self.arrival, self.node_id, transmission_s, waited_s,
                                sent_bytes, error, constraint_f=self.f,
                                predicted_total_s=self.predicted_s)

    def give_up(self) -> None:
        """The client's deadline (give_up_s) passed before the answer: as the emulated driver
        cancels its call, the service leaves the link, the queue or its slot now, and is
        charged only what it spent until now."""
        stage = self.stage
        if stage is DONE:
            return
        self.stage = DONE
        run = self.run
        now = run.env.now
        service = self.arrival.service
        setup = run.setups[self.node_id]
        sent_bytes = 0
        transmission_s = inference_s = inference_j = 0.0
        tokens_in = tokens_out = 0
        if stage is HELD:
            where = "held by the policy"
            queueing_s = now - self.arrival.arrival_s
        elif stage is UPLOADING:
            where = "uploading"
            if self.upload is not None:
                sent_bytes = run.links[self.node_id].cancel(self.upload, service.input_bytes)
            transmission_s = now - self.dispatched_s
            queueing_s = self.dispatched_s - self.arrival.arrival_s
        else:
            transmission_s = self.uploaded_s - self.dispatched_s
            sent_bytes = service.input_bytes
            node = run.nodes[self.node_id]
            running = self.task.job is not None
            inference_j, work_s = node.cancel(self.task)
            if running:
                where = "running"
                queueing_s = ((self.dispatched_s - self.arrival.arrival_s)
                              + (self.started_s - self.uploaded_s))
                inference_s = now - self.started_s
                # What it had generated: prefill first, then decode (SimNode's work model).
                tokens_in = self.tokens_in
                decoded_s = work_s - self.tokens_in / node.model.prefill_tok_s
                tokens_out = min(self.tokens_out, max(0, int(decoded_s
                                                             * node.model.decode_tok_s)))
            else:
                where = "queued"
                queueing_s = (self.dispatched_s - self.arrival.arrival_s) + (now
                                                                             - self.uploaded_s)
        self.upload = self.task = None
        energy = Energy(
            transmission_j=run.energy.transmission_j(sent_bytes, setup.j_per_bit,
                                                     transmission_s),
            inference_j=inference_j,
            idle_j=setup.model.idle_power_w * (transmission_s + queueing_s))
        outcome = failed_outcome(
            service, self.node_id, total_s=now - self.arrival.arrival_s,
            error=f"gave up after {run.give_up_s:g} s ({where})",
            transmission_s=transmission_s, queueing_s=queueing_s, inference_s=inference_s,
            tokens_in=tokens_in, tokens_out=tokens_out, energy=energy, constraint_f=self.f,
            predicted_total_s=self.predicted_s)
        run._record(self.arrival, outcome)

    def finished(self, inference_j: float) -> None:
        self.stage = DONE
        self.task = None
        run = self.run
        now = run.env.now
        service = self.arrival.service
        if self.node_id in run.dead:
            self._fail(self.uploaded_s - self.dispatched_s, service.input_bytes,
                       "node unreachable")
            return
        setup = run.setups[self.node_id]
        transmission_s = self.uploaded_s - self.dispatched_s
        # Queueing: held by the policy (defer) plus waiting for a slot.
        queueing_s = (self.dispatched_s - self.arrival.arrival_s) + (self.started_s
                                                                     - self.uploaded_s)
        inference_s = now - self.started_s
        total_s = now - self.arrival.arrival_s
        # Energy by part (eq. 2) under the run's energy model (scheduler/energy_models.py):
        # the upload (bytes x J/bit, or NIC power x seconds in flight); the service's share of
        # the node's power integrated while it ran; P_idle while it was on its way and waiting.
        energy = Energy(
            transmission_j=run.energy.transmission_j(service.input_bytes, setup.j_per_bit,
                                                     transmission_s),
            inference_j=inference_j,
            idle_j=setup.model.idle_power_w * (transmission_s + queueing_s))
        outcome = completed_outcome(
            service, self.node_id, total_s=total_s, transmission_s=transmission_s,
            queueing_s=queueing_s, inference_s=inference_s, tokens_in=self.tokens_in,
            tokens_out=self.tokens_out, energy=energy, constraint_f=self.f,
            predicted_total_s=self.predicted_s)
        run._record(self.arrival, outcome)


# A flight's stages (compared by identity).
HELD, UPLOADING, AT_NODE, DONE = "held", "uploading", "at-node", "done"
