"""The output-length estimate the cluster predicts with, learned only from measured outcomes.

A real LLM service stops when its answer is done; its client declares only a cap
(`max_new_tokens`), and no policy may see the true length (scenarios.workload.WorkloadItem
holds it, Service does not). So D-hat's inference term needs an estimate:

    estimate(service) = cap x q-quantile of (tokens_out / cap) over the last `window`
                        finished services of the same class,

the cap itself until `min_samples` of that class have finished. The ratio to the cap (not the
raw token count) keeps one estimator right both for traces with one fixed cap per class and
for classes whose caps vary per service; with q = 0.9 the prediction errs towards the longer
answers, as a requirement-aware scheduler should. A workload whose services always run to
their cap (`output_length: cap`) learns a ratio of 1, so its predictions are the cap's.
"""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from collections import deque
from dataclasses import dataclass, field

DEFAULT_QUANTILE = 0.9
DEFAULT_WINDOW = 200
DEFAULT_MIN_SAMPLES = 5


@dataclass
class _ClassRatios:
    recent: deque = field(default_factory=deque)  # ratios in arrival order
    ordered: list = field(default_factory=list)  # the same, sorted
    quantile: float = 1.0  # of `ordered`, recomputed on each observation


class OutputLengthEstimator:
    """Per service class, a running quantile of measured output length / declared cap."""

    def __init__(self, quantile: float = DEFAULT_QUANTILE, window: int = DEFAULT_WINDOW,
                 min_samples: int = DEFAULT_MIN_SAMPLES) -> None:
        if not 0 < quantile <= 1:
            raise ValueError(f"quantile must be in (0, 1] (got {quantile})")
        if window < 1 or not 1 <= min_samples <= window:
            raise ValueError(f"need window >= 1 and 1 <= min_samples <= window "
                             f"(got window {window}, min_samples {min_samples})")
        self.q, self.window, self.min_samples = quantile, window, min_samples
        self._classes: dict[str, _ClassRatios] = {}

    def estimate(self, service_class: str, cap: int) -> float:
        """Expected output tokens of a service of this class that declared `cap`."""
        ratios = self._classes.get(service_class)
        if ratios is None or len(ratios.recent) < self.min_samples:
            return float(cap)
        return cap * ratios.quantile

    def observe(self, service_class: str, cap: int, tokens_out: int) -> None:
        """A finished service's measured output length (ignored unless 0 < cap)."""
        if not cap > 0 or not tokens_out >= 0:
            return
        ratio = min(1.0, tokens_out / cap)
        if not math.isfinite(ratio):
            return
        ratios = self._classes.setdefault(service_class, _ClassRatios())
        ratios.recent.append(ratio)
        insort(ratios.ordered, ratio)
        if len(ratios.recent) > self.window:
            old = ratios.recent.popleft()
            del ratios.ordered[bisect_left(ratios.ordered, old)]
        n = len(ratios.ordered)
        ratios.quantile = ratios.ordered[min(n - 1, max(0, math.ceil(self.q * n) - 1))]
