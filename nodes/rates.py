"""The prefill and decode rates a node reports: an exponential average over its requests.

The node declares them at registration and sends them in every heartbeat; they are single-
request rates (the scheduler applies the concurrency slow-down itself).
"""

from __future__ import annotations

import threading

# Weight of the newest request in the measured rates a node reports (exponential average).
RATE_SMOOTHING = 0.3


class MeasuredRates:
    """Measured per-request prefill and decode rates (paced when a profile is set)."""

    def __init__(self, prefill_tok_s: float = 0.0, decode_tok_s: float = 0.0) -> None:
        self._lock = threading.Lock()
        self.prefill_tok_s, self.decode_tok_s = prefill_tok_s, decode_tok_s

    def observe(self, tokens_in: int, prefill_s: float, tokens_out: int, decode_s: float,
                slowdown: float = 1.0) -> None:
        """slowdown: 1 + s·(n − 1) at the request's mean concurrency n. The scheduler applies
        the slow-down itself, so it is given single-request rates (not counted twice)."""
        prefill_s, decode_s = prefill_s / slowdown, decode_s / slowdown
        with self._lock:
            # decode_s covers tokens 2..n; prefill_s (time to the first token) also holds one
            # decode step, taken out so that tokens_in / prefill + tokens_out / decode (the
            # profile's and the scheduler's model of a request) adds up to the measured time.
            if tokens_out > 1 and decode_s > 0:
                self.decode_tok_s = _smooth(self.decode_tok_s, (tokens_out - 1) / decode_s)
            step_s = 1 / self.decode_tok_s if self.decode_tok_s > 0 else 0.0
            if tokens_in > 0 and prefill_s - step_s > 0:
                self.prefill_tok_s = _smooth(self.prefill_tok_s,
                                             tokens_in / (prefill_s - step_s))


def _smooth(old: float, new: float) -> float:
    return new if old <= 0 else (1 - RATE_SMOOTHING) * old + RATE_SMOOTHING * new
