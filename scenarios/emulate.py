"""The emulated run: for each policy, a fresh Mininet testbed with the scheduler and the six
nodes as real processes in their hosts, the same workload and bandwidth trace (same seed),
the driver on the `user` host; then results, plots and a report.

Teardown happens between policies and on any failure or Ctrl-C (results so far are kept and
marked incomplete).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from scenarios.driver import read_outcome_record
from scenarios.fidelity import CpuMonitor, combine, policy_fidelity
from scenarios.results import (LinkRow, NodeRow, RequestRow, new_run_dir, summarise,
                               write_config, write_rows, write_summary)
from scenarios.spec import ScenarioSpec, longest_service_tokens
from scheduler.energy_models import DEFAULT_ENERGY, EnergyModel
from scenarios.workload import generate
from scenarios.workload_file import save_workload
from nodes.config import NodeConfig
from nodes.config import serve_argv as node_serve_argv
from nodes.slowdown import write_slowdown
from scheduler.config import ServerConfig, serve_argv
from scheduler.information import CLAIRVOYANT, MEASURED, declared_factors, information_for
from scheduler.outcome import Outcome, failed_outcome
from scheduler.policies import POLICIES

REPO_ROOT = Path(__file__).resolve().parent.parent
SCHEDULER_PORT = 50051
NODE_PORT = 50061
# Prometheus /metrics of each process, scraped into <policy_dir>/metrics/ after its workload.
SCHEDULER_METRICS_PORT = 9090
NODE_METRICS_PORT = 9100
SCRAPE_TIMEOUT_S = 60.0
# The scheduler's and the driver's threads started before the clock (prestarted_executor):
# more than the largest burst the shipped and validation scenarios send at once (50).
PRESTART_THREADS = 128
READY_TIMEOUT_S = 120.0


class RunError(RuntimeError):
    """A process of the run could not start; the message says which and shows its log."""


@dataclass
class PolicyRun:
    policy: str = ""
    # (outcome, arrival_s) as they arrive, so an interrupted run keeps what it recorded.
    outcomes: list[tuple[Outcome, float]] = field(default_factory=list)
    counters: dict | None = None  # the links' interface counters, once read
    energy: EnergyModel = DEFAULT_ENERGY  # how transmission energy is attributed
    nodes: list[NodeRow] = field(default_factory=list)
    links: list[LinkRow] = field(default_factory=list)
    complete: bool = False
    # scenarios.fidelity: the driver's timing per service id, and the run's verdict.
    driver_timing: dict[str, dict] = field(default_factory=dict)
    fidelity: dict | None = None

    @property
    def requests(self) -> list[RequestRow]:
        """The rows of requests.csv, with the counters' transmission energy once read."""
        outcomes = (attribute_transmission(self.outcomes, self.counters, self.energy)
                    if self.counters is not None else self.outcomes)
        return [RequestRow.from_outcome(self.policy, outcome, arrival_s)
                for outcome, arrival_s in outcomes]


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT)
    env["HF_HUB_OFFLINE"] = "1"
    env["TRANSFORMERS_OFFLINE"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def wait_ready(proc: subprocess.Popen, what: str, log_path: Path,
               timeout_s: float = READY_TIMEOUT_S) -> None:
    """Block until the process prints `READY <port>`; a process that exits first is an error."""
    ready = threading.Event()

    def watch() -> None:
        for line in proc.stdout:  # type: ignore[union-attr]
            if line.startswith("READY"):
                ready.set()
                break

    threading.Thread(target=watch, daemon=True).start()
    if not ready.wait(timeout_s) or proc.poll() is not None and not ready.is_set():
        tail = log_path.read_text()[-2000:] if log_path.exists() else ""
        raise RunError(f"{what} did not become ready within {timeout_s:.0f} s "
                       f"(exit code {proc.poll()}); log {log_path}:\n{tail}")


def _node_argv(spec: ScenarioSpec, name: str, user_ip: str, ip: str,
               slowdown_file: Path | None = None) -> list[str]:
    kind = "cloud" if name == "cloud" else "edge"
    # The same misspecification the simulator draws for this seed (scheduler.information).
    declared = declared_factors(spec.topology.link_names(), spec.scheduler.declared_error,
                                spec.seed)
    group = spec.nodes.cloud if kind == "cloud" else spec.nodes.edge
    return node_serve_argv(NodeConfig(
        node_id=name, kind=kind, backend=group.backend, model=str(group.model),
        profile=group.profile or "", port=NODE_PORT, metrics_port=NODE_METRICS_PORT,
        slots=group.slots,
        queue_capacity=group.queue_capacity, scheduler=f"{user_ip}:{SCHEDULER_PORT}",
        advertise=f"{ip}:{NODE_PORT}", link_rate_mbit=spec.topology.nominal_rate_mbit(name),
        j_per_bit=spec.topology.j_per_bit(name), declared_rate_factor=declared[name],
        heartbeat_interval_s=spec.scheduler.heartbeat_interval_s,
        slowdown_file=str(slowdown_file or ""), power_model=spec.energy.model,
        max_context_tokens=longest_service_tokens(spec.workload) or 0))


def run_policy(spec: ScenarioSpec, policy: str, mode: str, workload_path: Path,
               n_requests: int, policy_dir: Path, on_outcome,
               result: PolicyRun | None = None) -> PolicyRun:
    """One policy on a fresh testbed. Rows accumulate in `result` as they arrive, so an
    interrupted run still has the outcomes recorded so far."""
    from testbed.net import Testbed  # needs root and Mininet: imported only for an emulated run

    policy_dir.mkdir(parents=True, exist_ok=True)
    result = result if result is not None else PolicyRun()
    result.policy = policy
    result.energy = spec.energy.to_model()
    env = child_env()
    with contextlib.ExitStack() as logs, \
            Testbed(spec.topology, seed=spec.seed, run_dir=policy_dir) as tb:
        hosts = spec.topology.link_names()
        user_ip = tb.ip("user")
        sched_log = policy_dir / "scheduler.log"
        information = information_for(spec.scheduler.information,
                                      POLICIES.get(policy).information)
        sched_argv = serve_argv(ServerConfig(
            policy=policy, seed=spec.seed, policy_params=spec.policy_params.get(policy, {}),
            port=SCHEDULER_PORT, metrics_port=SCHEDULER_METRICS_PORT,
            heartbeat_timeout_s=spec.scheduler.heartbeat_timeout_s,
            state_file=str(policy_dir / "scheduler-state.json"),
            # Submit may run as long as the driver waits (give_up_s), so a late service ends
            # as missed with its true time, not cut at its requirement.
            submit_margin_s=spec.workload.give_up_s, max_workers=1024,
            prestart_threads=PRESTART_THREADS,
            node_connections=spec.scheduler.node_connections,
            information=spec.scheduler.information,
            # The testbed's shaping feed is the true bandwidth: for perfect information (and
            # the clairvoyant) only; a measuring scheduler learns it from its transfers.
            bandwidth_feed=(str(tb.bandwidth_feed_path) if information != MEASURED else None),
            true_output_tokens=(str(workload_path) if information == CLAIRVOYANT else None)))
        scheduler = tb.popen("user", sched_argv, env=env, stdout=subprocess.PIPE,
                             stderr=logs.enter_context(sched_log.open("w")), text=True)
        wait_ready(scheduler, "scheduler", sched_log)

        node_procs: dict[str, subprocess.Popen] = {}
        slowdown_files = FaultInjector.slowdown_files(spec, policy_dir)
        for name in hosts:
            log = policy_dir / f"node-{name}.log"
            argv = _node_argv(spec, name, user_ip, tb.ip(name), slowdown_files.get(name))
            node_procs[name] = tb.popen(name, argv, env=env, stdout=subprocess.PIPE,
                                        stderr=logs.enter_context(log.open("w")), text=True)
        for name, proc in node_procs.items():
            wait_ready(proc, f"node {name}", policy_dir / f"node-{name}.log")

        tb.reset_counters()
        nodes_arg = ",".join(f"{name}={tb.ip(name)}:{NODE_PORT}" for name in hosts)
        driver_log = policy_dir / "driver.log"
        driver = tb.popen("user", [sys.executable, "-m", "scenarios.driver",
                                   "--scheduler", f"127.0.0.1:{SCHEDULER_PORT}",
                                   "--workload", str(workload_path), "--mode", mode,
                                   "--nodes", nodes_arg, "--wait-nodes", str(len(hosts)),
                                   "--give-up-s", str(spec.workload.give_up_s),
                                   "--max-concurrency", "1024",
                                   "--prestart-threads", str(PRESTART_THREADS)],
                          env=env, stdout=subprocess.PIPE,
                          stderr=logs.enter_context(driver_log.open("w")), text=True)
        faults = FaultInjector(spec, tb, node_procs, slowdown_files)
        cpu = CpuMonitor(lambda: [os.getpid(), scheduler.pid, driver.pid,
                                  *(p.pid for p in node_procs.values())])
        trace_t0_s = tb.elapsed_s()
        node_totals: dict[str, dict] = {}
        for line in driver.stdout:  # type: ignore[union-attr]
            record = json.loads(line)
            kind = record.pop("type")
            if kind == "started":
                # The bandwidth trace, the faults and the arrivals share one time zero, so
                # every policy meets the same rates at the same point of its workload.
                trace_t0_s = tb.elapsed_s()
                tb.start_fluctuation()
                faults.start()
                cpu.start()
            elif kind == "outcome":
                outcome, arrival_s = read_outcome_record(record)
                result.driver_timing[outcome.service_id] = record.get("driver") or {}
                result.outcomes.append((outcome, arrival_s))
                on_outcome()
            elif kind == "node":
                node_totals[record.pop("node_id")] = record
            elif kind == "done":
                result.complete = True
        faults.stop()
        driver.wait()
        cpu_measures = cpu.stop() if cpu.started else None
        tb.stop_fluctuation()
        scrape_metrics(tb, hosts, policy_dir / "metrics", env)
        # Per service, beside the logs: how late the driver began it and what its client
        # waited (the validation's evidence of where a burst's time goes).
        (policy_dir / "driver-timing.json").write_text(json.dumps(result.driver_timing))
        result.fidelity = policy_fidelity(
            cpu_measures, policy_dir / "metrics", result.driver_timing,
            {o.service_id: (o.total_s if o.status.value != "failed" else None)
             for o, _ in result.outcomes}, tb.shaper_windows)
        result.counters = tb.transmission()
        result.links = [LinkRow(policy=policy, time_s=max(0.0, c.time_s - trace_t0_s),
                                link=c.link, rate_mbit=c.rate_mbit) for c in tb.rate_log]

    result.nodes = [_node_row(policy, name, totals) for name, totals in node_totals.items()]
    if not result.complete:
        # The driver died: nothing may be lost, so every service without an outcome fails.
        tail = driver_log.read_text().strip().splitlines() if driver_log.exists() else []
        seen = {outcome.service_id for outcome, _ in result.outcomes}
        if len(seen) < n_requests:
            result.outcomes += _missing_outcomes(
                workload_path, seen, f"driver exited with code {driver.returncode}"
                + (f": {tail[-1]}" if tail else ""))
    ids = [outcome.service_id for outcome, _ in result.outcomes]
    if len(ids) != n_requests or len(set(ids)) != n_requests:
        raise RunError(f"{policy}: {len(set(ids))} distinct outcomes ({len(ids)} rows) for "
                       f"{n_requests} services: the accounting identity does not hold")
    return result


def scrape_metrics(tb, hosts: list[str], out_dir: Path, env: dict[str, str]) -> None:
    """Every process's /metrics text into out_dir/<name>.prom, fetched from the user host;
    a scrape that fails is reported in its file (or here), never fails the run."""
    targets = [f"scheduler=http://127.0.0.1:{SCHEDULER_METRICS_PORT}/metrics"] + [
        f"{name}=http://{tb.ip(name)}:{NODE_METRICS_PORT}/metrics" for name in hosts]
    proc = tb.popen("user", [sys.executable, "-m", "scenarios.scrape", str(out_dir), *targets],
                    env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _, err = proc.communicate(timeout=SCRAPE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    if proc.returncode != 0:
        print(f"warning: scraping the metrics into {out_dir} failed (exit code "
              f"{proc.returncode}): {err.strip()[-500:]}", file=sys.stderr)


def attribute_transmission(outcomes: list[tuple[Outcome, float]], counters: dict,
                           energy: EnergyModel = DEFAULT_ENERGY
                           ) -> list[tuple[Outcome, float]]:
    """The outcomes with transmission energy under the run's transmission model.

    per-bit: from the interface counters (bytes x J/bit of each link), shared among the
    services sent over a link in proportion to their input bytes; services on a link without
    counters keep the energy they were given. nic-time: each service's sender NIC power x its
    measured transmission_s (the upload's time in flight, time spent behind other uploads on
    a congested link included), the formula the simulator uses (scheduler/energy_models.py)."""
    if not energy.transmission_per_bit:
        return [(replace(outcome, energy=replace(
                    outcome.energy, transmission_method="modelled",
                    transmission_j=energy.transmission_j(outcome.input_bytes, 0.0,
                                                         max(0.0, outcome.transmission_s)))),
                 arrival_s) for outcome, arrival_s in outcomes]
    sent: dict[str, int] = {}
    count: dict[str, int] = {}
    for outcome, _ in outcomes:
        sent[outcome.node_id] = sent.get(outcome.node_id, 0) + outcome.input_bytes
        count[outcome.node_id] = count.get(outcome.node_id, 0) + 1
    attributed = []
    for outcome, arrival_s in outcomes:
        link = counters.get(outcome.node_id)
        if link is not None:
            total = sent[outcome.node_id]
            share = outcome.input_bytes / total if total else 1 / count[outcome.node_id]
            energy = replace(outcome.energy, transmission_j=link.energy_j * share,
                             transmission_method="counters")
            outcome = replace(outcome, energy=energy)
        attributed.append((outcome, arrival_s))
    return attributed


def _node_row(policy: str, node_id: str, totals: dict) -> NodeRow:
    if "error" in totals:
        return NodeRow(policy=policy, node_id=node_id, kind="", busy_s=0.0, idle_s=0.0,
                       inference_j=0.0, idle_j=0.0, method=f"unavailable: {totals['error']}")
    return NodeRow(policy=policy, node_id=node_id, kind=totals["kind"], busy_s=totals["busy_s"],
                   idle_s=totals["idle_s"], inference_j=totals["inference_j"],
                   idle_j=totals["idle_j"], method=totals["method"])


def _missing_outcomes(workload_path: Path, seen: set[str], reason: str
                      ) -> list[tuple[Outcome, float]]:
    from scenarios.workload_file import load_workload

    return [(failed_outcome(item.service, "", total_s=0.0, error=reason), item.arrival_s)
            for item in load_workload(workload_path) if item.service.id not in seen]


class FaultInjector:
    """Applies the spec's `faults:` at their times after the workload starts; `applied` lists
    (time_s, kind, target) as each was done: kill-node, link-down, link-up, slow-node (its
    node's control file now says the factor) and slow-node-end."""

    def __init__(self, spec: ScenarioSpec, tb, node_procs: dict[str, subprocess.Popen],
                 slowdown_files: dict[str, Path] | None = None) -> None:
        self.faults = sorted(spec.faults, key=lambda f: f.at_s)
        self.tb = tb
        self.node_procs = node_procs
        self.slowdown_files = dict(slowdown_files or {})
        unwired = sorted({f.target for f in self.faults if f.kind == "slow-node"}
                         - set(self.slowdown_files))
        if unwired:
            raise ValueError(f"slow-node targets {unwired} have no slowdown file: start their "
                             f"nodes with FaultInjector.slowdown_files(spec, folder)")
        self._slow: dict[str, list[float]] = {}  # factors of each node's periods under way
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.applied: list[tuple[float, str, str]] = []

    @staticmethod
    def slowdown_files(spec: ScenarioSpec, folder: Path) -> dict[str, Path]:
        """The control file (nodes/slowdown.py) of each node a slow-node fault targets, to
        start the node with; none exists until the fault starts (the node paces as usual)."""
        files = {}
        for fault in spec.faults:
            if fault.kind == "slow-node":
                files[fault.target] = path = folder / f"node-{fault.target}.slowdown.json"
                path.unlink(missing_ok=True)
        return files

    def start(self) -> None:
        if self.faults:
            self._t0 = time.monotonic()
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _at(self, t_s: float) -> bool:
        """Wait until t_s after start; False if the run stopped first."""
        return not self._stop.wait(max(0.0, t_s - (time.monotonic() - self._t0)))

    def _run(self) -> None:
        pending: list[tuple[float, str, str, float]] = []
        for fault in self.faults:
            pending.append((fault.at_s, fault.kind, fault.target, fault.factor))
            if fault.kind == "link-down":
                pending.append((fault.at_s + fault.duration_s, "link-up", fault.target, 1.0))
            elif fault.kind == "slow-node":
                pending.append((fault.at_s + fault.duration_s, "slow-node-end", fault.target,
                                fault.factor))
        for at_s, kind, target, factor in sorted(pending):
            if not self._at(at_s):
                return
            if kind == "kill-node":
                self.node_procs[target].kill()  # a crash, not a graceful stop
            elif kind == "link-down":
                self.tb.link_down(target)
            elif kind == "link-up":
                self.tb.link_up(target)
            else:
                self._slow_node(target, factor, begins=kind == "slow-node")
            self.applied.append((at_s, kind, target))

    def _slow_node(self, target: str, factor: float, begins: bool) -> None:
        # As the simulator's SimNode: overlapping periods on one node, the largest factor.
        active = self._slow.setdefault(target, [])
        if begins:
            active.append(factor)
        else:
            active.remove(factor)
        write_slowdown(self.slowdown_files[target], max(active, default=1.0))


def run_scenario(spec: ScenarioSpec, policies: list[str], mode: str,
                 results_root: Path = Path("results")) -> tuple[Path, dict]:
    """Run every policy on the same workload; write the results; return (run_dir, summary)."""
    from tqdm import tqdm

    from scenarios.plots import write_plots
    from scenarios.report import write_report

    run_dir = new_run_dir(spec.name, root=results_root)
    write_config(run_dir, spec)
    items = generate(spec.workload, spec.seed)
    workload_path = run_dir / "workload.json"
    save_workload(items, workload_path)
    runs: list[PolicyRun] = []
    bar = tqdm(total=len(items) * len(policies), unit="svc", disable=not sys.stderr.isatty())
    interrupted = False
    try:
        for policy in policies:
            bar.set_description(policy)
            runs.append(PolicyRun(policy))
            run_policy(spec, policy, mode, workload_path, len(items), run_dir / "logs" / policy,
                       on_outcome=lambda: bar.update(1), result=runs[-1])
    except KeyboardInterrupt:
        interrupted = True
        print("\ninterrupted: testbed torn down, keeping the results so far", file=sys.stderr)
    finally:  # also on SIGTERM (SystemExit via the testbed's handler): keep what we have
        bar.close()
        requests = [row for run in runs for row in run.requests]
        nodes = [row for run in runs for row in run.nodes]
        links = [row for run in runs for row in run.links]
        incomplete = len(runs) < len(policies) or not all(run.complete for run in runs)
        write_rows(run_dir, requests, nodes, links)
        summary = summarise(requests, nodes) if requests else {}
        bound = emulated_ceiling(spec)
        fidelity = combine({run.policy: run.fidelity for run in runs if run.fidelity})
        write_summary(run_dir, summary, incomplete=incomplete,
                      extra={"world": "emulated", "mode": mode, "policy_order": policies,
                             "seed": spec.seed, "requests_per_policy": len(items),
                             "ceiling": bound, "fidelity": fidelity})
        plots = write_plots(run_dir, requests, links, summary) if requests else []
        write_report(run_dir, spec, summary, plots, spec.seed, incomplete=incomplete,
                     ceiling=bound, fidelity=fidelity)
    if interrupted:
        raise RunInterrupted(run_dir, summary)
    return run_dir, summary


def emulated_ceiling(spec: ScenarioSpec) -> dict | None:
    """The simulated world's per-service ceiling for this workload (simulator.ceiling), or
    None when a node has no hardware profile (native speed: no model to judge it by)."""
    from simulator.ceiling import ceiling_summary

    try:
        return ceiling_summary(spec)
    except ValueError:
        return None


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C: the testbed is down and the partial results are written (marked incomplete)."""

    def __init__(self, run_dir: Path, summary: dict) -> None:
        super().__init__(str(run_dir))
        self.run_dir, self.summary = run_dir, summary
