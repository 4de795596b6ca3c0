"""Campaigns on the local executor: outcomes in order, failures reported with their reason
(never missing), lost workers re-run, resume skipping finished tasks, the aggregate over seeds."""

from __future__ import annotations

import json
import math
import os
import signal
from pathlib import Path

import pytest

from campaign.executors import LocalExecutor, executor_from_name
from campaign.report import aggregate_ceiling, aggregate_policies
from campaign.stats import ci95, mean_ci
from campaign.store import CampaignStore, run_campaign
from campaign.tasks import CampaignConfigError, CampaignFailed, Task, TaskOutcome


def square(x: int, out_dir: Path | None) -> int:
    if out_dir is not None:
        (out_dir / "value.txt").write_text(str(x * x))
    return x * x


def raises(x: int, _out_dir) -> None:
    raise ValueError(f"bad input {x}")


def killed(_x, _out_dir) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def killed_once(marker: str, _out_dir) -> str:
    # The first attempt dies as a lost worker would; the re-run finds the marker and succeeds.
    if not Path(marker).exists():
        Path(marker).write_text("died once")
        os.kill(os.getpid(), signal.SIGKILL)
    return "second attempt"


def counted(args: tuple, _out_dir) -> int:
    log, x = args
    with open(log, "a") as fh:
        fh.write(f"{x}\n")
    return x


def test_outcomes_come_back_in_task_order_with_their_files(tmp_path):
    tasks = [Task(f"n/{i}", square, i, out_dir=tmp_path / f"n{i}") for i in range(5)]
    outcomes = LocalExecutor(2).run(tasks)
    assert [o.key for o in outcomes] == [t.key for t in tasks]
    assert [o.value for o in outcomes] == [0, 1, 4, 9, 16]
    assert all(o.ok and o.attempts == 1 for o in outcomes)
    assert (tmp_path / "n3" / "value.txt").read_text() == "9"


def test_a_task_that_raises_is_reported_with_its_exception_and_the_others_finish():
    outcomes = LocalExecutor(2).run([Task("bad", raises, 7), Task("good", square, 3)])
    assert not outcomes[0].ok and outcomes[0].error.startswith("ValueError: bad input 7")
    assert outcomes[0].attempts == 1  # an exception is the task's own: not run again
    assert outcomes[1].ok and outcomes[1].value == 9


def test_a_killed_worker_is_rerun_then_reported_with_its_signal():
    (outcome,) = LocalExecutor(1, max_retries=1).run([Task("dies", killed, 0)])
    assert not outcome.ok
    assert "killed by SIGKILL" in outcome.error and outcome.attempts == 2


def test_a_worker_lost_once_is_rerun_and_succeeds(tmp_path):
    (outcome,) = LocalExecutor(1, max_retries=1).run(
        [Task("flaky", killed_once, str(tmp_path / "marker"))])
    assert outcome.ok and outcome.value == "second attempt" and outcome.attempts == 2


def test_a_task_needing_a_resource_this_machine_lacks_is_reported_not_left_waiting():
    executor = LocalExecutor(2, resources={"testbed": 0})
    (outcome,) = executor.run([Task("emu", square, 1, resources={"testbed": 1})])
    assert not outcome.ok and "testbed: 1" in outcome.error and "root" in outcome.error


def test_testbed_tasks_run_one_at_a_time(tmp_path):
    # Two CPUs but one testbed: the second testbed task starts after the first has finished.
    log = tmp_path / "log"
    tasks = [Task(f"t/{i}", counted, (str(log), i), resources={"testbed": 1}) for i in range(3)]
    outcomes = LocalExecutor(2, resources={"testbed": 1}).run(tasks)
    assert [o.value for o in outcomes] == [0, 1, 2]
    assert log.read_text().split() == ["0", "1", "2"]  # in order: never two at once


def test_resume_skips_tasks_whose_outcome_is_stored_and_reruns_failed_ones(tmp_path):
    log = tmp_path / "calls"
    store = CampaignStore(tmp_path / "campaign")
    tasks = [Task(f"x/{i}", counted, (str(log), i)) for i in range(3)]
    first = run_campaign(LocalExecutor(2), tasks, store)
    assert sorted(log.read_text().split()) == ["0", "1", "2"]
    # A failure is stored too (with its reason), and runs again on resume.
    store.record(TaskOutcome("x/1", ok=False, error="worker process killed by SIGKILL"))
    log.unlink()
    second = run_campaign(LocalExecutor(2), tasks, store)
    assert log.read_text().split() == ["1"]
    assert [o.value for o in second] == [o.value for o in first]
    assert [o.resumed for o in second] == [True, False, True]


def test_resume_with_other_parameters_is_refused(tmp_path):
    store = CampaignStore(tmp_path)
    store.check_manifest({"seeds": [1, 2], "policies": ["cs-ucb"]})
    store.check_manifest({"seeds": [1, 2], "policies": ["cs-ucb"]})  # the same: fine
    with pytest.raises(CampaignConfigError, match=r"seeds was \[1, 2\], now \[1, 2, 3\]"):
        store.check_manifest({"seeds": [1, 2, 3], "policies": ["cs-ucb"]})


def test_values_are_stored_as_json_and_come_back_identical(tmp_path):
    store = CampaignStore(tmp_path)
    tasks = [Task("v", counted, (str(tmp_path / "log"), (1, float("inf"))))]
    fresh = run_campaign(LocalExecutor(1), tasks, store)
    resumed = run_campaign(LocalExecutor(1), tasks, store)
    assert fresh[0].value == resumed[0].value == [1, None]  # non-finite never stored


def test_executor_names_and_their_errors():
    assert isinstance(executor_from_name("local"), LocalExecutor)
    assert executor_from_name("local:3").processes == 3
    for bad in ("lcoal", "local:0", "ray://nohost", "spark"):
        with pytest.raises(CampaignConfigError, match="accepted: local, local:N"):
            executor_from_name(bad)
    with pytest.raises(ValueError, match="task key"):
        Task("../escape", square, 1)


def test_ci95_and_mean_ci():
    mean, half = ci95([1.0, 2.0, 3.0])
    assert mean == 2.0 and half == pytest.approx(4.303 / math.sqrt(3))
    assert mean_ci([1.0, float("nan"), 3.0]) == {"mean": 2.0, "ci95": pytest.approx(12.706),
                                                 "n": 2}
    assert mean_ci([float("nan")]) == {"mean": None, "ci95": None, "n": 0}


def _stats(success: float, energy: float) -> dict:
    return {"success_rate": success, "mean_total_s": 1.0, "p95_total_s": 2.0,
            "throughput_tok_s": 10.0, "energy_j": {"total": energy}}


def test_the_aggregate_is_over_seeds_one_sample_each():
    samples = [(1, "a", _stats(0.9, 100.0)), (2, "a", _stats(0.8, 200.0)),
               (3, "a", _stats(0.7, 300.0))]
    agg = aggregate_policies(samples)["a"]
    assert agg["success_rate"]["mean"] == pytest.approx(0.8)
    assert agg["success_rate"]["ci95"] == pytest.approx(4.303 * 0.1 / math.sqrt(3), rel=1e-9)
    assert agg["energy_j"] == {"mean": 200.0, "ci95": pytest.approx(4.303 * 100 / math.sqrt(3)),
                               "n": 3}
    # The ceiling's success rate is a percentage: the aggregate gives a fraction, as policies'.
    ceiling = aggregate_ceiling([{"services": 10, "success_rate": 90.0,
                                  "mean_best_total_s": 1.0}, None])
    assert ceiling["success_rate"]["mean"] == pytest.approx(0.9) and "services" not in ceiling


def test_run_cells_resumes_skipping_finished_cells_with_identical_results(tmp_path):
    from scenarios.spec import load_spec
    from simulator.cells import FLUCTUATING, STABLE, Cell, run_cells

    spec = load_spec("paper")
    cells = [Cell("xeon-4214r/yi-6b", STABLE), Cell("xeon-4214r/yi-6b", FLUCTUATING)]
    store = CampaignStore(tmp_path)
    done: list[str] = []
    kwargs = dict(requests=60, run_dir=tmp_path, plots=False, store=store,
                  on_done=lambda r: done.append(r.cell.label))
    first = run_cells(spec, cells, ["edge-cloud"], processes=2, **kwargs)
    assert sorted(done) == ["yi-6b/fluctuating", "yi-6b/stable"]
    assert (tmp_path / "yi-6b" / "stable" / "requests.csv").exists()
    store.path("yi-6b/stable").unlink()
    done.clear()
    second = run_cells(spec, cells, ["edge-cloud"], processes=2, **kwargs)
    assert done == ["yi-6b/stable"]  # only the cell without a stored outcome ran
    assert [r.summary for r in second] == [r.summary for r in first]


def test_a_failed_cell_is_named_with_its_reason(tmp_path):
    from scenarios.spec import load_spec
    from simulator.cells import Cell, run_cells

    spec = load_spec("paper")
    with pytest.raises(CampaignFailed,
                       match=r"nothing: ValueError: unknown hardware profile 'nowhere/nothing'"):
        run_cells(spec, [Cell("nowhere/nothing", None)], ["edge-cloud"], requests=10,
                  plots=False, processes=1)


def test_simulator_run_seeds_prints_means_with_cis_and_a_json_last_line(tmp_path, capsys):
    from simulator.__main__ import main

    code = main(["run", "smoke", "--seeds", "3", "--json", "--no-plots", "--requests", "20",
                 "--results", str(tmp_path)])
    assert code == 0
    out = capsys.readouterr().out.strip().splitlines()
    data = json.loads(out[-1])
    assert data["scenario"] == "smoke" and data["seeds"] == [42, 43, 44]
    for policy in ("cs-ucb", "edge-cloud"):
        figures = data["policies"][policy]
        for name in ("success_rate", "mean_total_s", "energy_j"):
            assert set(figures[name]) >= {"mean", "ci95"} and figures[name]["n"] == 3
        assert figures["energy_j"]["ci95"] > 0  # three workloads: the energy differs
    assert 0 < data["ceiling"]["success_rate"]["mean"] <= 1
    (run_dir,) = (tmp_path / "smoke").iterdir()
    assert (run_dir / "report.md").read_text().count("95%") >= 1
    assert len((run_dir / "per_seed.csv").read_text().splitlines()) == 1 + 3 * 2
    assert (run_dir / "seed-43" / "requests.csv").exists()


def test_simulator_run_seeds_on_a_matrix_aggregates_per_cell_and_overall(tmp_path, capsys):
    from simulator.__main__ import main

    code = main(["run", "paper", "--seeds", "2", "--json", "--no-write", "--requests", "40",
                 "--policies", "edge-cloud", "--conditions", "stable"])
    assert code == 0
    data = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(data["cells"]) == {"yi-6b/stable", "llama2-7b/stable", "llama3-8b/stable",
                                  "yi-9b/stable"}
    cell = data["cells"]["yi-9b/stable"]["policies"]["edge-cloud"]
    assert cell["success_rate"]["n"] == 2
    assert data["policies"]["edge-cloud"]["energy_j"]["n"] == 2  # per seed, mean over cells


def waits_for_ctrl_c(folder: str, _out_dir) -> None:
    # Stands for an emulated run: on Ctrl-C it tears down (here: writes a file) and stops.
    import time

    Path(folder, "started").write_text("")
    try:
        while True:
            time.sleep(0.05)
    except KeyboardInterrupt:
        Path(folder, "torn-down").write_text("")
        raise


def test_ctrl_c_lets_running_tasks_tear_down_and_leaves_no_process(tmp_path):
    import subprocess
    import sys
    import time

    # A shell starting a background job (`make test &`, CI wrappers) sets SIGINT to ignored,
    # and Python then keeps it ignored: restore the terminal's default, as at a prompt.
    script = ("import signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
              "import sys; from campaign.executors import LocalExecutor; "
              "from campaign.tasks import Task; from tests.unit.test_campaign import "
              "waits_for_ctrl_c as w; "
              f"LocalExecutor(2).run([Task('a', w, {str(tmp_path)!r})])")
    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=repo, start_new_session=True,
                            env=dict(os.environ, PYTHONPATH=str(repo)))
    deadline = time.monotonic() + 60
    while not (tmp_path / "started").exists():  # the task is running
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole process group
    assert proc.wait(timeout=60) != 0
    assert (tmp_path / "torn-down").exists()
    with pytest.raises(ProcessLookupError):  # nothing of the group is left running
        os.killpg(proc.pid, 0)


def fake_emulated_run(payload, out_dir: Path) -> dict:
    # Stands for one emulated run (scenarios.emulate needs root): seed 43 of edge-cloud fails.
    spec, policy = payload
    if (policy, spec.seed) == ("edge-cloud", 43):
        raise RuntimeError("node edge1 did not become ready within 120 s")
    (out_dir / "summary.json").write_text("{}")
    stats = _stats(0.5 + 0.1 * (spec.seed - 42), 1000.0 * (spec.seed - 40))
    return {"policy": policy, "seed": spec.seed, "summary": stats,
            "ceiling": {"services": 30, "success_rate": 100.0, "mean_best_total_s": 0.1}}


def test_an_emulated_campaign_reports_every_run_and_its_failures(tmp_path, monkeypatch):
    import campaign.emulated as emulated
    from scenarios.spec import load_spec

    monkeypatch.setattr(emulated, "_emulated_run", fake_emulated_run)
    spec = load_spec("smoke")
    executor = LocalExecutor(2, resources={"testbed": 1})
    data, outcomes = emulated.run_emulated_campaign(spec, spec.policies, [42, 43, 44], executor,
                                                    tmp_path, log=lambda _line: None)
    assert [o.key for o in outcomes] == [f"{p}/seed-{s}" for s in (42, 43, 44)
                                         for p in spec.policies]
    assert data["failed"] == ["edge-cloud/seed-43: RuntimeError: node edge1 did not become "
                              "ready within 120 s"]
    cs_ucb, edge_cloud = data["policies"]["cs-ucb"], data["policies"]["edge-cloud"]
    assert cs_ucb["success_rate"]["n"] == 3 and edge_cloud["success_rate"]["n"] == 2
    assert cs_ucb["success_rate"]["mean"] == pytest.approx(0.6)
    assert data["ceiling"]["success_rate"]["mean"] == 1.0
    report = (tmp_path / "report.md").read_text()
    assert "## Failed runs (1)" in report and "edge1 did not become ready" in report
    assert (tmp_path / "runs" / "cs-ucb" / "seed-44" / "summary.json").exists()
    assert len((tmp_path / "per_seed.csv").read_text().splitlines()) == 1 + 5
