"""The testbed's bandwidth feed as the scheduler reads it: per-node link rates from a JSON file.

The emulated runner rewrites the file (by rename) whenever a link's rate changes; the scheduler
polls it before each decision and hands changed rates to its Cluster.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from scheduler.limits import MAX_RATE_MBIT, MIN_RATE_MBIT, check_number

log = logging.getLogger(__name__)

# A link the feed reports as down (rate 0) still needs a positive rate for the prediction: the
# lowest a rate may be, which makes any upload take hours, so the constraint filter rules the
# node out.
DOWN_LINK_RATE_MBIT = MIN_RATE_MBIT


class BandwidthFeed:
    """The testbed's bandwidth file, re-read only when it changes (one os.stat per decision)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.rates_mbit: dict[str, float] = {}
        self.time_s: float | None = None
        self._signature: tuple[int, int, int] | None = None

    def poll(self) -> bool:
        """Re-read the file if it changed; True when new rates were loaded."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return False
        # The testbed replaces the file by rename, so the inode changes even when two writes
        # fall in the same mtime tick.
        signature = (st.st_mtime_ns, st.st_size, st.st_ino)
        if signature == self._signature:
            return False
        self._signature = signature
        try:
            data = json.loads(self.path.read_bytes())
            rates = data["rates_mbit"]
            parsed = {str(k): float(v) for k, v in rates.items()}
            for node_id, rate in parsed.items():  # 0: the link is down
                check_number(f"rates_mbit.{node_id}", rate, 0, MAX_RATE_MBIT)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            log.warning("bandwidth feed %s unreadable, keeping the last rates: %s", self.path, e)
            return False
        self.rates_mbit = parsed
        self.time_s = data.get("time_s")
        return True
