"""Compute pacing: when a node may emit each token so its output follows a hardware profile.

Mininet shapes links; the pacer shapes compute. The node runs the real model and holds each
real token back until the profile's time for it, measured from the start of the request's
slot, each step stretched by the node's slowdown factor while a slow-node fault holds. Pure
functions: the server does the waiting (on an Event, so a cancel wakes it).
"""

from __future__ import annotations

from nodes.profile import HardwareProfile
from nodes.slowdown import check_factor


class Pacer:
    """Due times of prefill and tokens under a profile; everything is due at once without one."""

    def __init__(self, profile: HardwareProfile | None) -> None:
        if profile is not None and not isinstance(profile, HardwareProfile):
            raise TypeError(f"profile must be a HardwareProfile or None, got "
                            f"{type(profile).__name__}")
        self.profile = profile

    @property
    def paced(self) -> bool:
        return self.profile is not None

    def prefill_due_s(self, tokens_in: int, concurrency: int = 1) -> float:
        """Seconds after the slot start when the prompt's prefill is done."""
        if self.profile is None:
            _check(tokens_in, concurrency)
            return 0.0
        return self.profile.prefill_s(tokens_in, concurrency)

    def token_due_s(self, tokens_in: int, k: int, concurrency: int = 1) -> float:
        """Seconds after the slot start when token k (1-based) may be emitted.

        prefill_s(tokens_in) + decode_s(k): as the profile's rates describe it, the prompt is
        processed first and each output token then costs 1 / decode_tok_s.
        """
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k (1-based token index) must be an integer >= 1, got {k!r}")
        if self.profile is None:
            _check(tokens_in, concurrency)
            return 0.0
        return (self.profile.prefill_s(tokens_in, concurrency)
                + self.profile.decode_s(k, concurrency))

    def schedule(self, tokens_in: int) -> "TokenSchedule":
        """A per-request schedule whose steps follow concurrency as it changes."""
        return TokenSchedule(self, tokens_in)

    def request_s(self, tokens_in: int, tokens_out: int, concurrency: int = 1) -> float:
        """Paced inference time of a whole request (0 for an unpaced node)."""
        if isinstance(tokens_out, bool) or not isinstance(tokens_out, int) or tokens_out < 0:
            raise ValueError(f"tokens_out must be an integer >= 0, got {tokens_out!r}")
        if tokens_out == 0:
            return self.prefill_due_s(tokens_in, concurrency)
        return self.token_due_s(tokens_in, tokens_out, concurrency)


class TokenSchedule:
    """Due times of one request's tokens, each step at the concurrency when it is taken.

    token_due_s assumes one concurrency for the whole request, so a change mid-request moves
    every due time at once (tokens already sent can fall behind or jump ahead). Here token k
    is due at due(k − 1) + decode_s(1, n_k), with prefill at the concurrency of the first
    step: the processor-sharing view, where a request's progress rate follows the load.

    A slowdown factor f (the slow-node fault: nodes/slowdown.py) multiplies every step taken
    while it holds. When f changes while token k is pending, retime() serves the rest of its
    step at the new rate: the remaining (due − now) becomes (due − now)·f_new / f_old, as the
    simulator's processor sharing changes a running job's service rate.
    """

    def __init__(self, pacer: Pacer, tokens_in: int) -> None:
        self.pacer, self.tokens_in = pacer, tokens_in
        self.k = 0  # tokens scheduled so far
        self.due_s = 0.0  # due time of token k, seconds after the slot start
        self.factor = 1.0  # the slowdown token k's step is being served at
        _check(tokens_in, 1)

    def next_due_s(self, concurrency: int = 1, factor: float = 1.0) -> float:
        """Due time (seconds after the slot start) of the next token, k + 1, its step (and
        for k + 1 = 1 the prefill) taking `factor` times as long as the profile says."""
        profile = self.pacer.profile
        if profile is None:
            _check(self.tokens_in, concurrency)
        else:
            check_factor(factor)
            if self.k == 0:
                self.due_s = profile.prefill_s(self.tokens_in, concurrency) * factor
            self.due_s += profile.decode_s(1, concurrency) * factor
            self.factor = factor
        self.k += 1
        return self.due_s

    def retime(self, now_s: float, factor: float) -> float:
        """The slowdown is `factor` at now_s (seconds after the slot start): the part of the
        pending token's step still to run is served at that rate. Returns its due time."""
        check_factor(factor)
        if factor != self.factor and self.pacer.profile is not None:
            if self.due_s > now_s:
                self.due_s = now_s + (self.due_s - now_s) * factor / self.factor
            self.factor = factor
        return self.due_s


def _check(tokens_in: int, concurrency: int) -> None:
    # the unpaced path validates the same inputs, so bad requests fail alike either way
    if isinstance(tokens_in, bool) or not isinstance(tokens_in, int) or tokens_in < 0:
        raise ValueError(f"tokens_in must be an integer >= 0, got {tokens_in!r}")
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ValueError(f"concurrency must be an integer >= 1, got {concurrency!r}")
