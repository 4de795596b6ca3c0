"""Every invalid hyperparameter, policy name and state is rejected with a message naming it."""

import dataclasses
import math

import pytest

from scheduler.policies import POLICIES, create_policy
from scheduler.policies.baselines import CloudOnlyConfig
from scheduler.policies.cs_ucb import CsUcb, CsUcbConfig

PROJECT_POLICIES = ("cs-ucb", "cloud-only", "edge-only", "edge-cloud", "round-robin", "random",
                    "least-loaded", "clairvoyant", "slo-aware", "linucb")
CS_UCB_FIELDS = [f.name for f in dataclasses.fields(CsUcbConfig)]

# Per field: values outside its range (every field also rejects NaN, ±inf, bools and strings).
OUT_OF_RANGE = {
    "lam": [-0.1],
    "alpha": [0.0, -0.5, 1.01],
    "beta": [0.0, -0.5, 1.01],
    "delta": [-1.0],
    "theta": [-1.0],
    "omega_tran": [-1.0],
    "omega_infer": [-1.0],
    "omega_idle": [-1.0],
    "energy_ref_j": [0.0, -100.0],
    "constraint_term": ["slack", "", "EQ4"],
}
NOT_A_NUMBER = [math.nan, math.inf, -math.inf, True, "1.0", None]


def test_every_cs_ucb_field_is_covered():
    assert sorted(OUT_OF_RANGE) == sorted(CS_UCB_FIELDS)


@pytest.mark.parametrize("field,value", [(f, v) for f, vs in OUT_OF_RANGE.items() for v in vs]
                         + [(f, v) for f in CS_UCB_FIELDS for v in NOT_A_NUMBER])
def test_cs_ucb_rejects_invalid_values_naming_field_and_value(field, value):
    with pytest.raises(ValueError) as err:
        CsUcbConfig(**{field: value})
    assert f"CsUcbConfig.{field} " in str(err.value)
    assert repr(value if not isinstance(value, int) or isinstance(value, bool)
                else float(value)) in str(err.value)


@pytest.mark.parametrize("field,value", [("alpha", 1.0), ("beta", 1), ("lam", 0.0),
                                         ("delta", 0), ("omega_idle", 0.0),
                                         ("energy_ref_j", 1e-3)])
def test_boundary_values_are_accepted_and_stored_as_floats(field, value):
    config = CsUcbConfig(**{field: value})
    assert getattr(config, field) == value and isinstance(getattr(config, field), float)


def test_defaults_are_valid_and_frozen():
    config = CsUcbConfig()
    assert (config.alpha, config.beta) == (0.9, 0.9)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.delta = 1.0  # type: ignore[misc]


@pytest.mark.parametrize("field,value", [("max_wait_s", -0.1), ("max_wait_s", math.nan),
                                         ("max_wait_s", math.inf), ("max_wait_s", "0.1"),
                                         ("batch_size", -1), ("batch_size", 1.5),
                                         ("batch_size", True)])
def test_cloud_only_rejects_invalid_values(field, value):
    with pytest.raises(ValueError, match=f"CloudOnlyConfig.{field} .*{value!r}"):
        CloudOnlyConfig(**{field: value})


def test_unknown_policy_name_lists_the_accepted_names():
    with pytest.raises(KeyError) as err:
        create_policy("cs_ucb")
    message = str(err.value)
    assert "'cs_ucb'" in message
    for name in POLICIES.names():  # other tests may register more; all must be listed
        assert name in message
    assert set(PROJECT_POLICIES) <= set(POLICIES.names())


def test_unknown_hyperparameter_lists_the_accepted_ones():
    with pytest.raises(ValueError, match=r"\['gamma'\].*'cs-ucb'.*alpha.*theta"):
        create_policy("cs-ucb", gamma=0.1)
    with pytest.raises(ValueError, match="unknown hyperparameter"):
        create_policy("round-robin", delta=0.1)


def test_create_policy_validates_values():
    with pytest.raises(ValueError, match="CsUcbConfig.alpha .*2.0"):
        create_policy("cs-ucb", alpha=2.0)


def test_a_policy_refuses_another_policys_config():
    with pytest.raises(TypeError, match="CsUcbConfig.*CloudOnlyConfig"):
        CsUcb(CloudOnlyConfig())  # type: ignore[arg-type]


def test_registering_a_name_twice_is_an_error():
    with pytest.raises(ValueError, match="'cs-ucb' is already registered"):
        POLICIES.register("cs-ucb")(CsUcb)


@pytest.mark.parametrize("state,match", [
    ({"classes": {"chat": {"selections": 1}}}, "state.classes"),
    ({"classes": {"chat": {"selections": "x", "plays": 0, "reward_sum": 0, "arms": {}}}},
     "state.classes"),
    ({"classes": []}, "state.classes"),
    ({"version": 99}, "state.version.*99"),
    ({"policy": "random"}, "state.policy.*'random'"),
])
def test_malformed_cs_ucb_state_is_rejected(state, match):
    with pytest.raises(ValueError, match=match):
        CsUcb().load_state_dict(state)
