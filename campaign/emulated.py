"""The emulated campaign: every (policy, seed) is one task, an emulated run on a fresh Mininet
testbed (scenarios.emulate.run_scenario with that one policy), needing the host's one testbed
(`testbed: 1`, root). Each run's results folder comes back to
<campaign>/runs/<policy>/seed-<seed>/; the aggregate over seeds (95% CIs) is written at the
campaign's top. Seeds are the spec's seed, +1, ...; every policy of a seed gets the same
workload and bandwidth trace, as in a single run.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any, Sequence

from campaign.executors import Executor
from campaign.report import (aggregate_ceiling, aggregate_policies, failures_text,
                             format_aggregate, plot_aggregate, write_per_seed_csv, write_report)
from campaign.store import CampaignStore, run_campaign
from campaign.tasks import TESTBED, Task, TaskOutcome
from scenarios.spec import ScenarioSpec

REPO_ROOT = Path(__file__).resolve().parent.parent


def _emulated_run(payload: tuple, out_dir: Path) -> dict[str, Any]:
    """On the testbed host: one policy, one seed; the run's folder becomes out_dir."""
    from scenarios.emulate import run_scenario
    from scenarios.results import read_summary

    spec, policy = payload
    # Relative paths in a spec (models/tiny.gguf) are the repository's, as `make setup` builds
    # them on every host; the worker may have started anywhere.
    os.chdir(REPO_ROOT)
    staging = out_dir / ".run"
    if staging.exists():
        shutil.rmtree(staging)
    run_dir, summary = run_scenario(spec, [policy], spec.mode, results_root=staging)
    for child in run_dir.iterdir():
        target = out_dir / child.name
        if target.is_dir():
            shutil.rmtree(target)
        shutil.move(str(child), str(target))
    shutil.rmtree(staging)
    data = read_summary(out_dir)
    if data.get("incomplete"):
        raise RuntimeError(f"{policy}, seed {spec.seed}: the run is incomplete (a process of "
                           f"the run stopped early); its partial results are in {out_dir}")
    return {"policy": policy, "seed": spec.seed, "summary": summary[policy],
            "ceiling": data.get("ceiling")}


def emulated_tasks(spec: ScenarioSpec, policies: Sequence[str], seeds: Sequence[int],
                   campaign_dir: Path) -> list[Task]:
    campaign_dir = Path(campaign_dir).resolve()
    return [Task(key=f"{policy}/seed-{seed}", fn=_emulated_run,
                 payload=(spec.model_copy(update={"seed": seed}), policy),
                 out_dir=campaign_dir / "runs" / policy / f"seed-{seed}",
                 num_cpus=1, resources={TESTBED: 1})
            for seed in seeds for policy in policies]


def run_emulated_campaign(spec: ScenarioSpec, policies: Sequence[str], seeds: Sequence[int],
                          executor: Executor, campaign_dir: Path,
                          log=lambda line: print(line, file=sys.stderr)
                          ) -> tuple[dict[str, Any], list[TaskOutcome]]:
    """Run (or resume) the campaign and write its aggregate report; (aggregate, outcomes)."""
    store = CampaignStore(campaign_dir)
    store.check_manifest({"kind": "emulated", "scenario": spec.name, "seeds": list(seeds),
                          "policies": list(policies), "requests": spec.workload.requests,
                          "mode": spec.mode})
    tasks = emulated_tasks(spec, policies, seeds, campaign_dir)
    resumed = sum(store.finished(t.key) is not None for t in tasks)
    log(f"campaign {spec.name}: {len(policies)} policies x {len(seeds)} seeds = {len(tasks)} "
        f"emulated runs on the {executor.name} executor"
        + (f" ({resumed} already done, skipped)" if resumed else ""))

    def progress(outcome: TaskOutcome) -> None:
        state = (f"done in {outcome.wall_s:.0f} s on {outcome.host}" if outcome.ok
                 else f"FAILED: {outcome.error.splitlines()[0] if outcome.error else ''}")
        log(f"  {outcome.key}: {state}")

    outcomes = run_campaign(executor, tasks, store, on_done=progress)
    return write_emulated_report(campaign_dir, spec.name, seeds, outcomes), outcomes


def write_emulated_report(campaign_dir: Path, name: str, seeds: Sequence[int],
                          outcomes: Sequence[TaskOutcome]) -> dict[str, Any]:
    ok = [o.value for o in outcomes if o.ok]
    samples = [(v["seed"], v["policy"], v["summary"]) for v in ok]
    policies = aggregate_policies(samples)
    ceilings = {v["seed"]: v.get("ceiling") for v in ok}  # one workload per seed
    ceiling = aggregate_ceiling([ceilings[s] for s in sorted(ceilings)])
    failures = failures_text(outcomes)
    data = {"world": "emulated", "scenario": name, "seeds": list(seeds), "policies": policies,
            "ceiling": ceiling, "runs": {o.key: {"ok": o.ok, "host": o.host, "wall_s": o.wall_s,
                                                  "error": o.error} for o in outcomes},
            "failed": failures}
    campaign_dir = Path(campaign_dir)
    table = format_aggregate(policies, ceiling)
    plots = [plot_aggregate(policies, campaign_dir / "aggregate.png",
                            f"{name}: {len(seeds)} seeds, emulated")] if policies else []
    write_per_seed_csv(campaign_dir / "per_seed.csv", sorted(samples, key=lambda s: s[:2]))
    write_report(campaign_dir, f"Emulated campaign: {name}", data, [table], plots, failures)
    return data


def campaign_main(spec: ScenarioSpec, n_seeds: int, executor_name: str, results_root: Path,
                  resume: Path | None = None) -> int:
    """The command line's campaign: run or resume, print the aggregate; 0 when every run
    succeeded, 1 when some failed (listed with their reasons), 2 for a bad option."""
    from campaign.executors import executor_from_name
    from campaign.tasks import CampaignConfigError
    from scenarios.results import new_run_dir

    seeds = [spec.seed + i for i in range(n_seeds)]
    if resume and not Path(resume).is_dir():
        print(f"error: --resume: {resume} is not a campaign's folder", file=sys.stderr)
        return 2
    try:
        with executor_from_name(executor_name) as executor:
            campaign_dir = Path(resume) if resume else new_run_dir(f"{spec.name}-campaign",
                                                                   root=Path(results_root))
            data, outcomes = run_emulated_campaign(spec, spec.policies, seeds, executor,
                                                   campaign_dir)
    except CampaignConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_aggregate(data["policies"], data["ceiling"],
                           f"{spec.name}, emulated: mean ± 95% CI over {len(seeds)} seeds"))
    if data["failed"]:
        print(f"\nFAILED ({len(data['failed'])}, left out of the figures):")
        print("\n".join(f"  {line}" for line in data["failed"]))
        print(f"to run them again: the same command with --resume {campaign_dir}")
    print(f"results: {campaign_dir}")
    return 1 if data["failed"] else 0
