"""No non-finite number enters the scheduler's state, whatever crosses a boundary: the learner
guards its own update path, learned rates stay in range, the bandwidth feed and the state file
are checked before anything is applied (scheduler/limits.py)."""

from __future__ import annotations

import json
import math

import pytest

from scheduler.bandwidth_feed import BandwidthFeed
from scheduler.config import ServerConfig
from scheduler.limits import check_address, check_number
from scheduler.outcome import Energy, completed_outcome
from scheduler.policies import create_policy
from scheduler.server import create_server
from scheduler.service import Service
from scheduler.state_store import StateFileError, save_state
from tests.unit.conftest import make_cluster, node_info

SERVICE = Service(id="s1", prompt="hi", input_bytes=1000, max_new_tokens=4, deadline_s=5.0,
                  service_class="chat")


def _outcome(energy: Energy, inference_s: float = 0.5, node_id: str = "edge1"):
    return completed_outcome(SERVICE, node_id, total_s=0.6, transmission_s=0.1,
                             queueing_s=0.0, inference_s=inference_s, tokens_in=250,
                             tokens_out=4, energy=energy)


def test_the_learner_never_stores_a_non_finite_reward():
    """A front end that bypasses the gRPC checks (the simulator, a library caller)."""
    cluster = make_cluster(node_info("edge1"))
    policy = create_policy("cs-ucb")
    policy.select(SERVICE, cluster)
    huge = Energy(transmission_j=1e308, inference_j=1e308, idle_j=1e308)  # sum overflows
    assert policy.update(_outcome(huge)) == 0.0
    assert math.isfinite(policy.regret)
    assert all(math.isfinite(a.mean_reward) and a.plays == 0
               for a in policy.arm_stats(cluster))
    assert policy.update(_outcome(Energy(inference_j=10.0))) != 0.0  # a sane one is learned
    policy.select(SERVICE, cluster)  # and the class still decides


@pytest.mark.parametrize("inference_s", [1e-300, 1e300])
def test_learned_rates_stay_finite_and_in_range(inference_s):
    cluster = make_cluster(node_info("edge1"))
    node = cluster.nodes["edge1"]
    before = (node.prefill_tok_s, node.decode_tok_s)
    cluster.on_assign(SERVICE, cluster.predict(SERVICE, "edge1"))
    cluster.on_complete(_outcome(Energy(), inference_s=inference_s))
    after = (node.prefill_tok_s, node.decode_tok_s)
    assert all(math.isfinite(r) and 0 < r <= 1e9 for r in after)
    if inference_s < 1e-200:  # a rate past the range is not learned at all
        assert after == before


@pytest.mark.parametrize("rate", [float("nan"), float("inf"), 1e300, -1.0])
def test_heartbeat_rates_out_of_range_are_unknown(rate):
    cluster = make_cluster(node_info("edge1"))
    node = cluster.nodes["edge1"]
    before = (node.prefill_tok_s, node.decode_tok_s, node.bandwidth_mbit)
    cluster.heartbeat("edge1", prefill_tok_s=rate, decode_tok_s=rate, link_rate_mbit=rate)
    assert (node.prefill_tok_s, node.decode_tok_s, node.bandwidth_mbit) == before


@pytest.mark.parametrize("rate", ["NaN", "Infinity", "-1", "1e300"])
def test_a_bandwidth_feed_with_a_bad_rate_is_ignored_whole(tmp_path, rate):
    path = tmp_path / "feed.json"
    path.write_text('{"time_s": 1, "rates_mbit": {"edge1": 80}}')
    feed = BandwidthFeed(path)
    assert feed.poll() and feed.rates_mbit == {"edge1": 80.0}
    path.write_text(f'{{"time_s": 2, "rates_mbit": {{"edge1": 90, "edge2": {rate}}}}}')
    assert not feed.poll() and feed.rates_mbit == {"edge1": 80.0}


def _cs_ucb_state(**arm) -> dict:
    good = {"selections": 2, "plays": 1, "reward_sum": -0.5, "violation_sum": 0.0, "met": 1}
    good.update(arm)
    return {"policy": "cs-ucb", "seed": 0, "counters": {"met": 1, "missed": 0, "failed": 0},
            "policy_state": {"t": 2, "version": 1, "policy": "cs-ucb",
                             "classes": {"chat": {"selections": 2, "plays": 1,
                                                  "reward_sum": -0.5,
                                                  "arms": {"edge1": good}}}}}


@pytest.mark.parametrize("arm, needle", [
    ({"reward_sum": float("-inf")}, "classes.chat.arms.edge1.reward_sum"),
    ({"reward_sum": float("nan")}, "classes.chat.arms.edge1.reward_sum"),
    ({"plays": -1}, "classes.chat.arms.edge1.plays must be an integer >= 0 (got -1)"),
    ({"met": 1.5}, "classes.chat.arms.edge1.met must be an integer >= 0 (got 1.5)"),
    ({"violation_sum": 1e300}, "classes.chat.arms.edge1.violation_sum"),
])
def test_a_state_file_that_does_not_validate_is_refused_at_start(tmp_path, arm, needle):
    path = tmp_path / "state.json"
    save_state(path, _cs_ucb_state(**arm))
    with pytest.raises(StateFileError) as info:
        create_server(ServerConfig(port=0, host="127.0.0.1", state_file=str(path)))
    assert str(path) in str(info.value) and needle in str(info.value)


def test_a_state_file_is_never_half_loaded(tmp_path):
    path = tmp_path / "state.json"
    state = _cs_ucb_state()
    state["counters"]["missed"] = -4  # checked before the policy is touched
    save_state(path, state)
    with pytest.raises(StateFileError, match=r"counters.missed must be an integer >= 0 "
                                             r"\(got -4\)"):
        create_server(ServerConfig(port=0, host="127.0.0.1", state_file=str(path)))
    policy = create_policy("cs-ucb")
    bad = _cs_ucb_state()["policy_state"] | {"rng": [1, 2, 3], "rng_pos": 9}
    with pytest.raises(ValueError, match="state.rng"):
        policy.load_state_dict(bad)
    assert policy.t == 0 and policy.arm_stats(make_cluster()) == []


def test_a_valid_state_file_loads(tmp_path):
    path = tmp_path / "state.json"
    save_state(path, _cs_ucb_state())
    _, _, servicer = create_server(ServerConfig(port=0, host="127.0.0.1", state_file=str(path)))
    assert servicer.policy.t == 2 and servicer.counters["met"] == 1
    assert json.loads(path.read_text())["policy"] == "cs-ucb"


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -1.0, 11.0, True, "3"])
def test_check_number_refuses_with_name_value_and_range(value):
    with pytest.raises(ValueError, match=r"x must be a finite number in \[0, 10\]"):
        check_number("x", value, 0, 10)


@pytest.mark.parametrize("address, ok", [("10.0.0.2:50061", True), ("edge1:1", True),
                                         ("[::1]:50061", True), ("unix:/tmp/s", True),
                                         ("10.0.0.2", False), ("host:0", False),
                                         ("host:70000", False), (":50061", False), ("", False)])
def test_check_address(address, ok):
    if ok:
        assert check_address("address", address) == address
    else:
        with pytest.raises(ValueError, match="address must be host:port"):
            check_address("address", address)
