"""Campaigns: many runs (policies x seeds x settings) as tasks on an executor.

- `tasks`: a task (a module-level function, its payload, the resources it needs, the folder
  its files land in on the caller) and its outcome (value, or the reason it failed).
- `executors`: where tasks run: `local` (a forked process per task on this machine, the
  default) or Ray (`ray` starts a local instance; `ray://HOST:PORT` or `ray:auto` joins one).
- `store`: each finished task's outcome on disk, so a campaign resumes where it stopped.
- `stats`: means with 95% confidence intervals over seeds (Student t).
- `report`: the aggregate over seeds: tables, aggregate.json, per-seed CSV, plots, report.md.
- `emulated`: the emulated campaign (one policy x one seed on a fresh testbed per task).
- `seeds`: the simulator's `run NAME --seeds N` (cells x seeds, aggregated over seeds).
"""
