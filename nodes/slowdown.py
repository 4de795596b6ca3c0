"""A node's compute slowdown (the slow-node fault) as a control file the node polls.

The emulated runner's fault injector rewrites the file (by rename) when a slow-node period
starts or ends; a paced node reads it at each token and while it waits for a token's due
time, so a change reaches the requests already running within SLOWDOWN_POLL_S. The file is
JSON, `{"factor": 4.0}`: every prefill and decode step takes that many times as long as the
profile says. No file means factor 1 (the fault has not started).
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
from pathlib import Path

log = logging.getLogger(__name__)

# A node this many times slower is as good as dead; the bound keeps every paced time finite.
MAX_SLOWDOWN_FACTOR = 1000.0
# How often a waiting token re-reads the file: the lag of a change in an emulated run.
SLOWDOWN_POLL_S = 0.05


def check_factor(factor: object, what: str = "factor") -> float:
    """A slowdown factor as a float, or ValueError naming `what`, the value and the range."""
    if isinstance(factor, bool) or not isinstance(factor, (int, float)):
        raise ValueError(f"{what} must be a number in [1, {MAX_SLOWDOWN_FACTOR:g}] "
                         f"(got {factor!r})")
    if not (math.isfinite(factor) and 1.0 <= factor <= MAX_SLOWDOWN_FACTOR):
        raise ValueError(f"{what} must be a finite number in [1, {MAX_SLOWDOWN_FACTOR:g}] "
                         f"(got {factor!r})")
    return float(factor)


def write_slowdown(path: str | os.PathLike[str], factor: float) -> None:
    """Set the node's factor: written beside the file and renamed over it, so a reader sees
    the old content or the new, never half."""
    factor = check_factor(factor)
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"factor": factor}))
    os.replace(tmp, path)


class SlowdownFile:
    """The factor in a control file, re-read only when the file changes (one os.stat)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._factor = 1.0
        self._signature: tuple[int, int, int] | None = None
        self._lock = threading.Lock()  # requests on several slots poll at once

    def factor(self) -> float:
        """The current factor (1 without a file; the last good one if the file is bad)."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return 1.0
        # Replaced by rename, so the inode changes even when two writes share an mtime tick.
        signature = (st.st_mtime_ns, st.st_size, st.st_ino)
        with self._lock:
            if signature != self._signature:
                self._signature = signature
                try:
                    data = json.loads(self.path.read_bytes())
                    self._factor = check_factor(data["factor"], f"{self.path}: factor")
                except (OSError, ValueError, KeyError, TypeError) as e:
                    log.warning("slowdown file %s unreadable, keeping factor %g: %s",
                                self.path, self._factor, e)
            return self._factor
