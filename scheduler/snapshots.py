"""The server's policy state file: loaded at start, a numbered snapshot after every outcome.

A snapshot is taken under the scheduler's lock (so it matches the counters it was taken with)
and written outside it; when two writers race, only the newer snapshot reaches the disk.
"""

from __future__ import annotations

import logging
import threading
import time

from scheduler.limits import check_count
from scheduler.policies.base import Policy
from scheduler.state_store import StateFileError, encode_state, load_state, write_atomic

log = logging.getLogger(__name__)

Snapshot = tuple[int, bytes]  # (sequence number, the file's bytes)


class StateSnapshots:
    """One state file's snapshots, numbered as taken and written newest only."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._taken = 0
        self._written = 0
        self._write_lock = threading.Lock()

    def load_into(self, policy: Policy, counters: dict[str, int]) -> None:
        """Restore `policy` and `counters` from the file, if it exists."""
        state = load_state(self.path)
        if state is None:
            return
        if state.get("policy") != policy.name:
            raise ValueError(f"state file {self.path!r} holds policy {state.get('policy')!r}, "
                             f"not {policy.name!r}: use another --state-file")
        # Everything is checked before anything is changed: never half-loaded.
        saved = state.get("counters", {})
        loaded = {}
        for key in counters:
            value = saved.get(key, 0) if isinstance(saved, dict) else saved
            try:
                loaded[key] = check_count(f"counters.{key}", value)
            except ValueError as e:
                raise StateFileError(f"state file {self.path!r}: {e}") from None
        policy_state = state.get("policy_state")
        if not isinstance(policy_state, dict):
            raise StateFileError(f"state file {self.path!r}: policy_state must be an object "
                                 f"(got {policy_state!r})")
        try:
            policy.load_state_dict(policy_state)
        except ValueError as e:
            raise StateFileError(f"state file {self.path!r}: policy_state: {e}") from None
        counters.update(loaded)
        log.info("loaded policy state from %s (t=%d)", self.path, policy.t)

    def take(self, policy: Policy, counters: dict[str, int]) -> Snapshot:
        """The current state, numbered (call with the lock that guards policy and counters)."""
        self._taken += 1
        payload = encode_state({
            "policy": policy.name, "seed": policy.seed,
            "policy_state": policy.state_dict(), "counters": dict(counters),
            "saved_unix_s": time.time()})
        return self._taken, payload

    def write(self, snapshot: Snapshot) -> None:
        """Write `snapshot` unless a newer one is already on disk."""
        seq, payload = snapshot
        with self._write_lock:
            if seq <= self._written:
                return
            write_atomic(self.path, payload)
            self._written = seq
