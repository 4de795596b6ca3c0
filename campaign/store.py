"""Each finished task's outcome on disk (<campaign folder>/tasks/<key>.json), written as it
arrives, so a campaign stopped half-way resumes: tasks whose successful outcome is stored are
skipped and their stored values used; failed ones run again."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Sequence

from campaign.executors import Executor, LocalExecutor, OnDone, run_tasks
from campaign.tasks import CampaignConfigError, CampaignFailed, Task, TaskOutcome

TASKS_DIR = "tasks"
MANIFEST = "campaign.json"


def plain(value):
    """The value as JSON gives it back (tuples as lists, non-finite numbers as None), so a
    fresh outcome and a resumed one are the same object."""
    def finite(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: finite(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [finite(x) for x in v]
        return v
    return json.loads(json.dumps(finite(value), allow_nan=False))


class CampaignStore:
    def __init__(self, campaign_dir: Path) -> None:
        self.root = Path(campaign_dir) / TASKS_DIR

    def check_manifest(self, params: dict) -> None:
        """Write what the campaign is (its parameters) on first use; on resume, refuse
        parameters that differ, since the stored outcomes belong to the first ones."""
        path = self.root.parent / MANIFEST
        params = plain(params)
        if path.exists():
            before = json.loads(path.read_text())
            changed = sorted(k for k in set(before) | set(params) if before.get(k) != params.get(k))
            if changed:
                raise CampaignConfigError(f"{path.parent}: cannot resume with other parameters: "
                                 + "; ".join(f"{k} was {before.get(k)!r}, now {params.get(k)!r}"
                                             for k in changed))
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(params, indent=2) + "\n")

    def path(self, key: str) -> Path:
        return self.root / f"{key}.json"

    def finished(self, key: str) -> TaskOutcome | None:
        """The stored successful outcome of a task, or None (never run, or failed)."""
        path = self.path(key)
        if not path.exists():
            return None
        try:
            outcome = TaskOutcome.from_json(json.loads(path.read_text()))
        except (ValueError, KeyError) as exc:
            raise ValueError(f"{path}: not a task outcome ({exc}); remove it to run the task "
                             f"again") from None
        return outcome if outcome.ok and outcome.key == key else None

    def record(self, outcome: TaskOutcome) -> Path:
        path = self.path(outcome.key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".json.tmp")
        # allow_nan=False: a stored value must be JSON that any reader takes back.
        tmp.write_text(json.dumps(outcome.as_json(), indent=1, allow_nan=False) + "\n")
        os.replace(tmp, path)  # a campaign killed mid-write leaves no half-written outcome
        return path


def run_campaign(executor: Executor, tasks: Sequence[Task], store: CampaignStore | None = None,
                 on_done: OnDone | None = None) -> list[TaskOutcome]:
    """Run the tasks whose outcome is not stored yet; every outcome, stored or new, in the
    tasks' order. New outcomes are stored as they arrive (failures too, with their reason)."""
    tasks = list(tasks)
    stored = {t.key: store.finished(t.key) for t in tasks} if store else {}
    todo = [t for t in tasks if stored.get(t.key) is None]

    def done(outcome: TaskOutcome) -> None:
        outcome.value = plain(outcome.value)
        if store is not None:
            store.record(outcome)
        if on_done:
            on_done(outcome)

    fresh = {o.key: o for o in run_tasks(executor, todo, done)} if todo else {}
    return [stored.get(t.key) or fresh[t.key] for t in tasks]


def run_all(tasks: Sequence[Task], store: CampaignStore | None, executor: Executor | None,
            processes: int | None, on_done: OnDone | None = None) -> list[TaskOutcome]:
    """run_campaign on `executor`, or on a local one of `processes` (closed afterwards);
    every outcome in the tasks' order, or CampaignFailed naming each failed task."""
    local = executor is None
    executor = executor or LocalExecutor(processes)
    try:
        outcomes = run_campaign(executor, tasks, store, on_done=on_done)
    finally:
        if local:
            executor.close()
    failed = [o for o in outcomes if not o.ok]
    if failed:
        raise CampaignFailed(failed)
    return outcomes
