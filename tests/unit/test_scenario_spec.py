"""Scenario files: every shipped YAML loads, and bad files fail naming the key and the values."""

from __future__ import annotations

import pytest
import yaml

from scenarios.spec import SCENARIO_DIR, ScenarioSpec, SpecError, available, load_spec
from scenarios.workload import generate

SHIPPED = ("stable", "fluctuating", "congested", "smoke", "smoke-faults", "paper")
DEFAULT_POLICIES = ("cs-ucb", "cloud-only", "edge-only", "edge-cloud")


def _require_default_policies():
    import scheduler.policies  # noqa: F401  (registers every policy)
    from scheduler.policies.base import POLICIES

    missing = [n for n in DEFAULT_POLICIES if n not in POLICIES]
    if missing:
        pytest.skip(f"policies not registered yet: {', '.join(missing)}")


def _write(tmp_path, data) -> str:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_the_shipped_scenarios_are_available():
    assert set(SHIPPED) <= set(available())


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_yaml_loads(name):
    _require_default_policies()
    spec = load_spec(name)
    assert spec.name == name and spec.seed == 42
    assert spec.description, "each scenario says what it is for"
    items = generate(spec.workload.model_copy(update={"requests": min(spec.workload.requests,
                                                                       200)}), spec.seed)
    assert items and all(i.service.deadline_s >= 2.0 for i in items)


def test_every_yaml_in_the_folder_validates():
    # Catches a new scenario file that nobody added to SHIPPED.
    _require_default_policies()
    for path in SCENARIO_DIR.glob("*.yaml"):
        ScenarioSpec.model_validate(yaml.safe_load(path.read_text()))


def test_shipped_settings_match_their_descriptions():
    raw = {n: yaml.safe_load((SCENARIO_DIR / f"{n}.yaml").read_text()) for n in SHIPPED}
    topo = {n: r["topology"] for n, r in raw.items()}
    assert topo["stable"]["fluctuation"]["profile"] == "stable"
    assert (topo["stable"]["edge_rate_mbit"], topo["stable"]["cloud_rate_mbit"]) == (100, 300)
    assert topo["fluctuating"]["fluctuation"] == {"profile": "uniform", "amplitude": 0.2,
                                                  "period_s": 1.0}
    assert topo["smoke"]["edges"] == 2 and raw["smoke"]["workload"]["requests"] == 30
    assert raw["paper"]["workload"]["requests"] == 10_000 and topo["paper"]["edges"] == 5
    assert len(raw["paper"]["simulation"]["edge_profiles"]) == 4
    faults = {(f["kind"], f["target"]) for f in raw["smoke-faults"]["faults"]}
    assert faults == {("kill-node", "edge2"), ("link-down", "cloud"), ("slow-node", "cloud")}
    big = max(c["input_bytes"][1] for c in raw["congested"]["workload"]["classes"])
    assert big >= 1_000_000  # MB-size uploads congest the links


def test_overrides_are_dotted_keys():
    _require_default_policies()
    spec = load_spec("smoke", **{"workload.requests": 7, "seed": 3, "mode": None})
    assert spec.workload.requests == 7 and spec.seed == 3 and spec.mode == "gateway"


def test_unknown_key_is_named(tmp_path):
    path = _write(tmp_path, {"name": "x", "workload": {"requests": 5, "rqeuests_per_s": 2}})
    with pytest.raises(SpecError,
                       match=r"workload\.rqeuests_per_s: Extra inputs are not permitted"):
        load_spec(path)


def test_bad_mode_names_the_key_and_the_accepted_values(tmp_path):
    with pytest.raises(SpecError) as err:
        load_spec(_write(tmp_path, {"name": "x", "mode": "foo"}))
    message = str(err.value)
    assert "mode:" in message and "'gateway'" in message and "'advisor'" in message
    assert "'foo'" in message


def test_bad_arrival_process_names_the_accepted_values(tmp_path):
    with pytest.raises(SpecError) as err:
        load_spec(_write(tmp_path, {"name": "x", "workload": {"arrival": {"process": "zipf"}}}))
    message = str(err.value)
    assert "workload.arrival.process" in message
    assert all(f"'{p}'" in message for p in ("poisson", "bursts", "trace"))


def test_bad_range_is_named(tmp_path):
    data = {"name": "x", "workload": {"classes": [{"name": "c", "prompt_tokens": [10, 5]}]}}
    with pytest.raises(SpecError, match=r"prompt_tokens: need 0 <= lo <= hi.*\[10, 5\]"):
        load_spec(_write(tmp_path, data))


def test_unknown_scenario_lists_the_available_ones():
    with pytest.raises(SpecError) as err:
        load_spec("no-such-scenario")
    message = str(err.value)
    assert "unknown scenario 'no-such-scenario'" in message
    assert all(name in message for name in SHIPPED)


def test_unknown_policy_lists_the_accepted_ones(tmp_path):
    import scheduler.policies  # noqa: F401
    from scheduler.policies.base import POLICIES

    with pytest.raises(SpecError) as err:
        load_spec(_write(tmp_path, {"name": "x", "policies": ["cs-ucb", "oracle-9000"]}))
    message = str(err.value)
    assert "unknown policy 'oracle-9000'; accepted:" in message
    assert all(name in message for name in POLICIES.names())


def test_unknown_fault_target_lists_the_hosts(tmp_path):
    _require_default_policies()
    data = {"name": "x", "topology": {"edges": 2},
            "faults": [{"at_s": 1.0, "kind": "kill-node", "target": "edge3"}]}
    with pytest.raises(SpecError, match="unknown host 'edge3'; accepted: cloud, edge1, edge2"):
        load_spec(_write(tmp_path, data))


def test_every_profile_named_by_a_scenario_exists():
    from nodes.profile import list_profiles

    known = set(list_profiles())
    for name in SHIPPED:
        raw = yaml.safe_load((SCENARIO_DIR / f"{name}.yaml").read_text())
        named = [g.get("profile") for g in raw.get("nodes", {}).values()]
        named += raw.get("simulation", {}).get("edge_profiles", [])
        missing = [p for p in named if p and p not in known]
        assert not missing, f"{name}.yaml names unknown profiles {missing}; known: {sorted(known)}"
