"""A campaign's unit of work and what became of it.

A task is a module-level function `fn(payload, out_dir) -> value` (so every executor can send
it by reference), its payload, what it needs (CPUs and custom resources such as `testbed: 1`,
one Mininet testbed per host) and the folder on the caller where its files belong. The value
must be JSON-serialisable: the store keeps it, so a resumed campaign gets it back unchanged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

# One Mininet testbed per host (fixed host names, root): emulated runs need one each.
TESTBED = "testbed"
_KEY = re.compile(r"^[A-Za-z0-9._=+-]+(/[A-Za-z0-9._=+-]+)*$")


@dataclass(frozen=True)
class Task:
    key: str  # unique in its campaign; "/"-separated words, e.g. "cs-ucb/seed-42"
    fn: Callable[[Any, Path | None], Any]
    payload: Any
    out_dir: Path | None = None  # where the task's files land on the caller (None: no files)
    num_cpus: float = 1.0
    resources: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not _KEY.match(self.key) or ".." in self.key.split("/"):
            raise ValueError(f"task key must be '/'-separated words of letters, digits and "
                             f"._=+- (got {self.key!r})")
        if self.num_cpus < 0 or any(v < 0 for v in self.resources.values()):
            raise ValueError(f"task {self.key}: resources must be >= 0 (got num_cpus="
                             f"{self.num_cpus}, resources={dict(self.resources)})")

    def demand(self) -> dict[str, float]:
        """Everything the task holds while it runs: CPU and its custom resources."""
        return {"CPU": self.num_cpus, **self.resources}


@dataclass
class TaskOutcome:
    key: str
    ok: bool
    value: Any = None
    error: str = ""  # why it failed: the task's exception, or the lost worker and its signal
    host: str = ""
    wall_s: float = 0.0
    attempts: int = 1
    resumed: bool = False  # taken from the store, not run this time

    def as_json(self) -> dict[str, Any]:
        return {"key": self.key, "ok": self.ok, "value": self.value, "error": self.error,
                "host": self.host, "wall_s": self.wall_s, "attempts": self.attempts}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "TaskOutcome":
        return cls(key=data["key"], ok=bool(data["ok"]), value=data.get("value"),
                   error=data.get("error", ""), host=data.get("host", ""),
                   wall_s=float(data.get("wall_s", 0.0)), attempts=int(data.get("attempts", 1)),
                   resumed=True)


class CampaignConfigError(ValueError):
    """A campaign that cannot start as asked (an unknown executor, a resume with other
    parameters); the message names the option, the value and what is accepted."""


class CampaignFailed(RuntimeError):
    """Some tasks failed; the message lists each with its reason (none goes missing)."""

    def __init__(self, failed: list[TaskOutcome]) -> None:
        self.failed = failed
        lines = [f"{len(failed)} task(s) failed:"] + [
            f"  {o.key}: {o.error.splitlines()[0] if o.error else 'failed'}" for o in failed]
        super().__init__("\n".join(lines))
