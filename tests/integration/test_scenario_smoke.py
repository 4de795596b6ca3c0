"""The smoke scenario end to end in the real emulated testbed with the tiny models (root)."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from scenarios.spec import load_spec

pytestmark = [pytest.mark.root, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


def run_scenario_cli(name: str, results: Path, *extra: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1")
    return subprocess.run([sys.executable, "-m", "scenarios", "run", name, "--results",
                           str(results), *extra], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)


def only_run_dir(results: Path, name: str) -> Path:
    runs = sorted((results / name).iterdir())
    assert len(runs) == 1, runs
    return runs[0]


def read_requests(run_dir: Path) -> list[dict]:
    with (run_dir / "requests.csv").open() as f:
        return list(csv.DictReader(f))


def test_smoke_writes_results_for_every_policy(tmp_path):
    spec = load_spec("smoke")
    proc = run_scenario_cli("smoke", tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run_dir = only_run_dir(tmp_path, "smoke")
    for name in ("config.yaml", "requests.csv", "links.csv", "nodes.csv", "summary.json",
                 "report.md"):
        assert (run_dir / name).stat().st_size > 0, name
    assert list(run_dir.glob("*.png")), "no plots written"
    summary = json.loads((run_dir / "summary.json").read_text())
    policies = summary["policies"]
    assert set(policies) == set(spec.policies)
    rows = read_requests(run_dir)
    n = spec.workload.requests
    # Same seed, same workload in both worlds: what the driver replayed is the simulator's.
    from scenarios.workload_file import load_workload
    from simulator import world

    replayed = load_workload(run_dir / "workload.json")
    assert replayed == world.arrivals(spec)
    workload = {item.service.id: item for item in replayed}
    for policy, figures in policies.items():
        mine = [r for r in rows if r["policy"] == policy]
        # Accounting identity: every generated service has exactly one outcome.
        assert len({r["service_id"] for r in mine}) == len(mine) == n
        assert figures["met"] + figures["missed"] + figures["failed"] == n
        energy = figures["energy_j"]
        assert energy["total"] == pytest.approx(
            energy["transmission"] + energy["inference"] + energy["idle"])
        assert energy["transmission"] > 0 and energy["inference"] > 0
        finished = [r for r in mine if r["status"] != "failed"]
        assert finished, f"{policy}: nothing finished"
        # The scheduler's own counters, scraped into the run folder, agree with the rows.
        prom = (run_dir / "logs" / policy / "metrics" / "scheduler.prom").read_text()
        counted = {s.labels["status"]: s.value for family in text_string_to_metric_families(prom)
                   for s in family.samples if s.name == "perllm_scheduler_outcomes_total"}
        assert counted == {status: float(figures[status]) for status in
                           ("met", "missed", "failed") if figures[status]}
        assert all(int(r["tokens_out"]) > 0 for r in finished)
        # The node generated each finished service's true length (the workload's), never more
        # than its cap, though the scheduler saw only the cap.
        for r in finished:
            item = workload[r["service_id"]]
            assert int(r["tokens_out"]) == item.output_tokens <= item.service.max_new_tokens
    with (run_dir / "links.csv").open() as f:
        assert len(list(csv.DictReader(f))) >= len(spec.policies) * len(
            spec.topology.link_names())
    # cloud-only sends everything to the cloud: the policy really drove the placement.
    if "cloud-only" in policies:
        assert {r["node_id"] for r in rows if r["policy"] == "cloud-only"
                and r["status"] != "failed"} == {"cloud"}
    assert "results:" in proc.stdout


def test_faults_are_survived_and_nothing_is_lost(tmp_path):
    spec = load_spec("smoke-faults")
    proc = run_scenario_cli("smoke-faults", tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run_dir = only_run_dir(tmp_path, "smoke-faults")
    rows = read_requests(run_dir)
    for policy in spec.policies:
        mine = [r for r in rows if r["policy"] == policy]
        assert len({r["service_id"] for r in mine}) == spec.workload.requests
        failed = [r for r in mine if r["status"] == "failed"]
        assert all(r["error"] for r in failed), "a failed service without a reason"
        killed = {f.target for f in spec.faults if f.kind == "kill-node"}
        late = [r for r in mine if float(r["arrival_s"]) > max(f.at_s for f in spec.faults) + 5]
        # After the kill (and heartbeat timeout), nothing is placed on the dead node.
        assert not [r for r in late if r["node_id"] in killed and r["status"] != "failed"]


def test_ctrl_c_tears_down_and_keeps_partial_results(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1")
    proc = subprocess.Popen([sys.executable, "-m", "scenarios", "run", "smoke", "--policies",
                             "cs-ucb", "--results", str(tmp_path)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        # The scheduler's state file is rewritten after every outcome: its appearance means
        # the workload is running and at least one service has finished.
        deadline = time.monotonic() + 120
        while not list(tmp_path.glob("smoke/*/logs/cs-ucb/scheduler-state.json")):
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline, "the run never got going"
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, out[-3000:]
    assert "results (incomplete)" in out
    run_dir = only_run_dir(tmp_path, "smoke")
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["incomplete"] is True
    assert read_requests(run_dir), "the outcomes recorded before Ctrl-C were dropped"
    assert "incomplete" in (run_dir / "report.md").read_text().lower()
    # Nothing of the testbed is left: no state file, no interface of ours.
    assert not list(Path("/run/perllm-testbed").glob("*.json"))
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    assert "plm-" not in links and "edge1-eth" not in links


def test_advisor_mode_with_the_transformers_backend(tmp_path):
    # Advisor mode: the driver calls Schedule, Generate on the chosen node, ReportOutcome.
    proc = run_scenario_cli("smoke", tmp_path, "--policies", "cs-ucb", "--requests", "8",
                            "--mode", "advisor", "--backend", "transformers")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run_dir = only_run_dir(tmp_path, "smoke")
    rows = read_requests(run_dir)
    assert len({r["service_id"] for r in rows}) == len(rows) == 8
    finished = [r for r in rows if r["status"] != "failed"]
    assert finished and all(int(r["tokens_out"]) > 0 for r in finished)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["mode"] == "advisor"
    config = (run_dir / "config.yaml").read_text()
    assert "backend: transformers" in config and "tiny-hf" in config
    # The scheduler learned from what the driver reported: its state file counts them.
    state = json.loads((run_dir / "logs" / "cs-ucb" / "scheduler-state.json").read_text())
    assert sum(state["counters"].values()) == 8
