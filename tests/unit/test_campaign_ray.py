"""Campaigns on a local Ray instance started here (2 CPUs, no dashboard): a sweep equals the
serial one, resume skips finished cells and their files come back, a killed task is re-run or
reported (last: it kills workers, and new ones pay the imports again)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="ray is not installed (pinned in requirements.txt: "
                                        "run 'make setup')")

from campaign.executors import RayExecutor  # noqa: E402
from campaign.store import CampaignStore  # noqa: E402
from campaign.tasks import Task  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def executor():
    ray.init(num_cpus=2, include_dashboard=False, address="local", log_to_driver=False,
             resources={"testbed": 1}, runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}})
    try:
        yield RayExecutor(max_retries=1)  # joins the instance above; does not own it
    finally:
        ray.shutdown()


def killed(_x, _out_dir) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def killed_once(marker: str, _out_dir) -> str:
    if not Path(marker).exists():
        Path(marker).write_text("died once")
        os.kill(os.getpid(), signal.SIGKILL)
    return "second attempt"


def raises(x, _out_dir) -> None:
    raise ValueError(f"bad input {x}")


def test_a_small_sweep_on_ray_equals_the_serial_one(executor):
    from simulator.sweep import run_sweep

    args = ("paper", "workload.arrival.rate_per_s", [2.0, 30.0], [1, 2], ["edge-cloud"], 40)
    serial = run_sweep(*args, processes=1)
    on_ray = run_sweep(*args, executor=executor)
    assert [(v, s) for v, s, _ in on_ray] == [(2.0, 1), (2.0, 2), (30.0, 1), (30.0, 2)]
    assert on_ray == serial


def test_resume_on_ray_skips_finished_cells_and_gathers_their_files(executor, tmp_path):
    from scenarios.spec import load_spec
    from simulator.cells import FLUCTUATING, STABLE, Cell, run_cells

    spec = load_spec("paper")
    cells = [Cell("xeon-4214r/yi-9b", STABLE), Cell("xeon-4214r/yi-9b", FLUCTUATING)]
    store = CampaignStore(tmp_path)
    done: list[str] = []
    kwargs = dict(requests=40, run_dir=tmp_path, plots=False, store=store, executor=executor,
                  on_done=lambda r: done.append(r.cell.label))
    first = run_cells(spec, cells, ["cloud-only"], **kwargs)
    # The workers wrote into their own folders; the files came back here.
    assert (tmp_path / "yi-9b" / "fluctuating" / "requests.csv").stat().st_size > 0
    store.path("yi-9b/fluctuating").unlink()
    done.clear()
    second = run_cells(spec, cells, ["cloud-only"], **kwargs)
    assert done == ["yi-9b/fluctuating"]
    assert [r.summary for r in second] == [r.summary for r in first]


def _fake_run_scenario(spec, policies, mode, results_root):
    # Stands for scenarios.emulate.run_scenario (root, Mininet): a results folder as it writes.
    from scenarios.results import new_run_dir, write_summary

    run_dir = new_run_dir(spec.name, root=results_root)
    stats = {"success_rate": 1.0, "mean_total_s": 0.5, "p95_total_s": 1.0,
             "throughput_tok_s": 9.0, "energy_j": {"total": 100.0 + spec.seed}}
    (run_dir / "requests.csv").write_text(f"cwd={os.getcwd()}\n")
    write_summary(run_dir, {policies[0]: stats}, extra={"seed": spec.seed, "ceiling": None})
    return run_dir, {policies[0]: stats}


def emulated_run_without_testbed(payload, out_dir):
    import campaign.emulated
    import scenarios.emulate

    scenarios.emulate.run_scenario = _fake_run_scenario  # in this Ray worker only
    return campaign.emulated._emulated_run(payload, out_dir)


def test_emulated_runs_on_ray_take_the_testbed_and_their_folders_come_back(executor, tmp_path):
    from dataclasses import replace

    from campaign.emulated import REPO_ROOT, emulated_tasks
    from campaign.store import run_campaign
    from scenarios.spec import load_spec

    spec = load_spec("smoke")
    tasks = [replace(t, fn=emulated_run_without_testbed)
             for t in emulated_tasks(spec, ["edge-cloud"], [42, 43], tmp_path)]
    assert all(t.resources == {"testbed": 1} for t in tasks)
    outcomes = run_campaign(executor, tasks)
    assert [o.ok for o in outcomes] == [True, True], [o.error for o in outcomes]
    assert [o.value["summary"]["energy_j"]["total"] for o in outcomes] == [142.0, 143.0]
    run = tmp_path / "runs" / "edge-cloud" / "seed-43"
    assert (run / "requests.csv").read_text() == f"cwd={REPO_ROOT}\n"  # ran from the repo
    assert not (run / ".run").exists()  # the run's own folder became the task's folder


def test_a_killed_task_is_rerun_or_reported_with_the_reason(executor, tmp_path):
    outcomes = executor.run([Task("dies", killed, 0), Task("flaky", killed_once,
                                                          str(tmp_path / "marker")),
                             Task("raises", raises, 3)])
    dies, flaky, bad = outcomes
    assert not dies.ok and "worker lost after 2 attempt(s)" in dies.error
    assert flaky.ok and flaky.value == "second attempt"  # re-run by Ray after the loss
    assert not bad.ok and bad.error == "ValueError: bad input 3"


def test_a_task_no_node_can_take_is_reported_not_left_pending(executor):
    (outcome,) = executor.run([Task("emu", killed, 0, resources={"testbed-x": 1})])
    assert not outcome.ok and "no node of the Ray cluster offers" in outcome.error
