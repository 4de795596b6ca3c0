"""Pacing: token due times follow the profile; a paced loop holds the profile's rate."""

import time

import pytest

from nodes.pacing import Pacer
from nodes.profile import HardwareProfile

FAST = HardwareProfile(name="test/fast", kind="cloud", hardware="test", model="tiny",
                       prefill_tok_s=1000.0, decode_tok_s=200.0, concurrency_slowdown=0.25,
                       idle_power_w=0.0, max_power_w=1.0, memory_gb=0.1, source="test")


def test_due_times_follow_the_profile():
    pacer = Pacer(FAST)
    assert pacer.paced
    assert pacer.prefill_due_s(100) == pytest.approx(0.1)
    assert pacer.token_due_s(100, 1) == pytest.approx(0.1 + 0.005)
    assert pacer.token_due_s(100, 40) == pytest.approx(0.1 + 0.2)
    # two concurrent requests: each 1.25x slower
    assert pacer.token_due_s(100, 40, concurrency=2) == pytest.approx(1.25 * 0.3)
    assert pacer.prefill_due_s(100, concurrency=2) == pytest.approx(0.125)
    assert pacer.request_s(100, 40) == pytest.approx(0.3)
    assert pacer.request_s(100, 0) == pytest.approx(0.1)
    # monotone in k
    dues = [pacer.token_due_s(10, k) for k in range(1, 50)]
    assert dues == sorted(dues)


def test_schedule_follows_concurrency_piecewise():
    sched = Pacer(FAST).schedule(100)
    # at a constant concurrency it equals token_due_s
    assert [sched.next_due_s(1) for _ in range(3)] == pytest.approx(
        [Pacer(FAST).token_due_s(100, k) for k in (1, 2, 3)])
    # a second request arrives: later steps cost 1.25x, earlier ones are not re-timed
    assert sched.next_due_s(2) == pytest.approx(0.1 + 3 * 0.005 + 0.00625)
    assert sched.next_due_s(2) == pytest.approx(0.1 + 3 * 0.005 + 2 * 0.00625)
    assert sched.k == 5
    # prefill runs at the concurrency of the first step
    assert Pacer(FAST).schedule(100).next_due_s(3) == pytest.approx(1.5 * (0.1 + 0.005))
    unpaced = Pacer(None).schedule(100)
    assert unpaced.next_due_s(4) == 0.0 and unpaced.k == 1


def test_unpaced_is_due_at_once():
    pacer = Pacer(None)
    assert not pacer.paced
    assert pacer.prefill_due_s(100) == 0.0
    assert pacer.token_due_s(100, 7, concurrency=3) == 0.0


@pytest.mark.parametrize("pacer", [Pacer(FAST), Pacer(None)])
def test_bad_inputs(pacer):
    with pytest.raises(ValueError, match="k"):
        pacer.token_due_s(10, 0)
    with pytest.raises(ValueError, match="tokens_in"):
        pacer.token_due_s(-1, 1)
    with pytest.raises(ValueError, match="concurrency"):
        pacer.prefill_due_s(10, concurrency=0)
    with pytest.raises(TypeError):
        Pacer("xeon-4214r/llama2-7b")


def test_paced_loop_holds_the_profile_rate():
    """Emit tokens the way the server does, waiting until each one's due time."""
    pacer, tokens_in, tokens_out = Pacer(FAST), 50, 120
    start = time.monotonic()
    emitted = []
    for k in range(1, tokens_out + 1):
        delay = start + pacer.token_due_s(tokens_in, k) - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        emitted.append(time.monotonic() - start)
    first, last = emitted[0], emitted[-1]
    assert first >= pacer.token_due_s(tokens_in, 1)  # never early
    decode_rate = (tokens_out - 1) / (last - first)
    assert decode_rate == pytest.approx(FAST.decode_tok_s, rel=0.10)
    assert last == pytest.approx(pacer.request_s(tokens_in, tokens_out), rel=0.10)
