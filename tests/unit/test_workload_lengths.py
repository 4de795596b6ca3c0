"""True output lengths and requirement rules of the workload, and the spec keys behind them:
`output_length: cap` gives exactly the services of before; lognormal and empirical lengths
stay within [1, cap]; the new keys refuse unknown or misplaced settings, naming key and value."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import asdict

import numpy as np
import pytest
import yaml

from scenarios.spec import SCENARIO_DIR, ScenarioSpec, SpecError, WorkloadSpec, load_spec
from scenarios.workload import generate


def _digest(items) -> str:
    data = [[i.arrival_s, asdict(i.service)] for i in items]
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


# Recorded with the generator before output_length, the trace source and the requirement rules
# existed (commit 4ae9b5c): the services must not move by one byte.
BEFORE = {"default": "c97b68f8bc8349cc", "fluctuating": "d7071df2afd0777c",
          "congested": "9114d12634cf1509", "smoke": "1f85755a74b27297",
          "paper": "f774460bfc023579"}


def test_output_length_cap_gives_the_services_of_before():
    items = generate(WorkloadSpec(requests=500), 42)
    assert _digest(items) == BEFORE["default"]
    first = items[0]
    assert (first.arrival_s, first.service.input_bytes, first.service.max_new_tokens,
            first.service.deadline_s, first.service.seed) == (
        0.4843888203313488, 2765, 47, 2.4863828855310026, 2056098618)
    assert items[499].service.deadline_s == 5.429691051858198
    # cap: the true length is the declared cap
    assert all(i.output_tokens == i.service.max_new_tokens for i in items)


@pytest.mark.parametrize("name", ["fluctuating", "congested", "smoke", "paper"])
def test_shipped_output_lengths_leave_every_other_draw_alone(name):
    spec = load_spec(name)
    workload = spec.workload.model_copy(update={"requests": min(spec.workload.requests, 2000)})
    items = generate(workload, spec.seed)
    assert _digest(items) == BEFORE[name]
    assert all(1 <= i.output_tokens <= i.service.max_new_tokens for i in items)
    # the shipped scenarios do draw shorter answers than the caps
    assert sum(i.output_tokens for i in items) < 0.6 * sum(i.service.max_new_tokens
                                                           for i in items)


def _lengths(output_length, cap=(1000, 1000), n=4000, seed=42, **kw):
    spec = WorkloadSpec(requests=n, classes=[{"name": "chat", "max_new_tokens": cap,
                                              "output_length": output_length}], **kw)
    return generate(spec, seed)


def test_lognormal_lengths_have_the_configured_median_within_the_cap():
    items = _lengths({"lognormal": {"median": 50, "sigma": 0.5}})
    lengths = np.array([i.output_tokens for i in items])
    assert lengths.min() >= 1 and lengths.max() <= 1000
    # sd of the sample median of n=4,000 lognormal draws: 1.2533 * 0.5 * 50 / sqrt(4000) ~ 0.5
    assert abs(np.median(lengths) - 50) <= 2
    # and its spread: ln(length) has sd ~ 0.5
    assert 0.45 < np.log(lengths).std() < 0.55


def test_lognormal_lengths_are_clipped_to_one_and_to_the_services_cap():
    items = _lengths({"lognormal": {"median": 3, "sigma": 2.0}}, cap=(5, 20))
    lengths = Counter(i.output_tokens for i in items)
    assert min(lengths) == 1 and lengths[1] > 0.2 * len(items)  # ln 1.5/2 sd below median
    assert all(i.output_tokens <= i.service.max_new_tokens for i in items)
    assert any(i.output_tokens == i.service.max_new_tokens > 5 for i in items)


def test_empirical_lengths_follow_their_weights():
    items = _lengths({"empirical": {"values": [5, 50, 2000], "weights": [6, 3, 1]}})
    counts = Counter(i.output_tokens for i in items)
    assert set(counts) == {5, 50, 1000}  # 2,000 is clipped to the 1,000 cap
    # binomial sd at n=4,000 is <= 0.008; 0.03 is almost four of them (fixed seed)
    for value, share in ((5, 0.6), (50, 0.3), (1000, 0.1)):
        assert abs(counts[value] / len(items) - share) < 0.03, value
    even = Counter(i.output_tokens for i in _lengths({"empirical": {"values": [7, 9]}}))
    assert abs(even[7] / 4000 - 0.5) < 0.03


def test_same_seed_same_workload_and_lengths_move_no_other_draw():
    shape = {"lognormal": {"median": 40, "sigma": 1.0}}
    a, b, c = _lengths(shape, seed=7), _lengths(shape, seed=7), _lengths(shape, seed=8)
    assert a == b
    assert [i.output_tokens for i in a] != [i.output_tokens for i in c]
    # the length distribution moves no other draw: the same services as with `cap`
    assert [i.service for i in a] == [i.service for i in _lengths("cap", seed=7)]
    assert [i.output_tokens for i in a] != [i.output_tokens for i in _lengths("cap", seed=7)]


def test_a_class_requirement_wins_over_the_workloads():
    spec = WorkloadSpec(requests=600, deadline_s=(2.0, 3.0), classes=[
        {"name": "batch", "deadline_s": (30.0, 60.0)}, {"name": "chat"}])
    items = generate(spec, 5)
    for cls, lo, hi in (("batch", 30.0, 60.0), ("chat", 2.0, 3.0)):
        deadlines = [i.service.deadline_s for i in items if i.service.service_class == cls]
        assert len(deadlines) > 200 and lo <= min(deadlines) and max(deadlines) <= hi
        assert min(deadlines) < lo + 0.05 * (hi - lo) and max(deadlines) > hi - 0.05 * (hi - lo)
    # the same draw, another range: the services are otherwise those of a workload without it
    plain = generate(spec.model_copy(update={"classes": [
        spec.classes[0].model_copy(update={"deadline_s": None}), spec.classes[1]]}), 5)
    assert [i.service.seed for i in plain] == [i.service.seed for i in items]


def test_deadline_rule_is_proportional_to_the_declared_sizes():
    rule = {"base_s": 1.5, "per_prompt_token_s": 0.01, "per_output_token_s": 0.2}
    spec = WorkloadSpec(requests=300, deadline_rule=rule, classes=[
        {"name": "scan", "input_bytes": (100_000, 200_000), "prompt_tokens": (100, 400),
         "max_new_tokens": (8, 64), "output_length": {"lognormal": {"median": 5, "sigma": 1}}},
        {"name": "own", "deadline_s": (9.0, 9.0)}])
    for item in generate(spec, 3):
        s = item.service
        if s.service_class == "own":
            assert s.deadline_s == 9.0
        else:
            # the declared cap, never the true length (the policy sees deadline_s)
            assert s.deadline_s == pytest.approx(1.5 + 0.01 * s.prompt_tokens
                                                 + 0.2 * s.max_new_tokens)
            assert s.prompt_tokens >= 100


# ------------------------------------------------------------------------ spec validation


def _load(tmp_path, workload: dict):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"name": "x", "workload": workload}))
    return load_spec(str(path))


AZURE = {"process": "azure-trace", "trace": "traces/azure-llm-2023/"
                                            "AzureLLMInferenceTrace_conv.csv"}


@pytest.mark.parametrize("workload, message", [
    ({"arrival": {**AZURE, "time_scal": 2}},
     r"workload\.arrival\.time_scal: Extra inputs are not permitted \(got 2\)"),
    ({"arrival": {**AZURE, "time_scale": 0}},
     r"workload\.arrival\.time_scale: Input should be greater than 0 \(got 0\)"),
    ({"arrival": {**AZURE, "count": 0}}, r"workload\.arrival\.count: .*(got 0)"),
    ({"arrival": {**AZURE, "duration_s": -5}}, r"workload\.arrival\.duration_s: .*\(got -5\)"),
    ({"arrival": {"process": "poisson", "start_s": 30}},
     r"arrival\.start_s: only used with process 'azure-trace' \(got start_s=30\.0 with process "
     r"'poisson'\)"),
    ({"arrival": {"process": "azure-trace"}},
     r"arrival\.trace: a CSV path is required when process is 'azure-trace'"),
    ({"classes": [{"name": "a", "output_length": "capped"}]},
     r"workload\.classes\.0\.output_length\.cap: Input should be 'cap' \(got 'capped'\)"),
    ({"classes": [{"name": "a", "output_length": {"lognormal": {"median": 9, "sgima": 1}}}]},
     r"output_length\.lognormal\.lognormal\.sgima: Extra inputs are not permitted \(got 1\)"),
    ({"classes": [{"name": "a", "output_length": {"lognormal": {"median": 0, "sigma": 1}}}]},
     r"output_length\.lognormal\.lognormal\.median: Input should be greater than 0 \(got 0\)"),
    ({"classes": [{"name": "a", "output_length": {"pareto": {"alpha": 2}}}]},
     r"workload\.classes\.0\.output_length: expected 'cap', \{lognormal: \{median, sigma\}\} or "
     r"\{empirical: \{values, weights\}\} \(got \{'pareto': \{'alpha': 2\}\}\)"),
    ({"classes": [{"name": "a", "output_length": {"empirical": {"values": [1, 2],
                                                                "weights": [1]}}}]},
     r"empirical\.weights: need one weight per value \(2 values\), got 1 weights"),
    ({"classes": [{"name": "a", "output_length": {"empirical": {"values": [0]}}}]},
     r"empirical\.values\.0: Input should be greater than or equal to 1 \(got 0\)"),
    ({"classes": [{"name": "a", "attachment_bytes": [1, 2]}]},
     r"classes\[0\]\.attachment_bytes: only used with arrival\.process 'azure-trace' "
     r"\(got attachment_bytes=\(1, 2\) in class 'a'\)"),
    ({"arrival": AZURE, "classes": [{"name": "a", "output_length": {"empirical": {
        "values": [3]}}}]},
     r"classes\[0\]\.output_length: the trace gives it \(got output_length=EmpiricalLength"),
    ({"arrival": AZURE, "classes": [{"name": "a", "prompt_tokens": [1, 2]}]},
     r"classes\[0\]\.prompt_tokens: the trace gives it \(got prompt_tokens=\(1, 2\)"),
    ({"arrival": AZURE, "classes": [{"name": "a"}, {"name": "b", "context_tokens": [0, 9]}]},
     r"classes\[1\]\.context_tokens: the last class must take every row left .*got \(0, 9\)"),
    ({"classes": [{"name": "a"}, {"name": "a"}]},
     r"classes: names must be unique, got \['a', 'a'\]"),
    ({"classes": [{"name": "a", "deadline_s": [3, 1]}]},
     r"deadline_s: need 0 < lo <= hi, got \[3, 1\]"),
    ({"deadline_s": [1, 2], "deadline_rule": {"base_s": 1}},
     r"deadline_s and deadline_rule: set one, not both \(got deadline_s=\[1\.0, 2\.0\]"),
    ({"deadline_rule": {"base_s": 1, "per_token_s": 0.1}},
     r"workload\.deadline_rule\.per_token_s: Extra inputs are not permitted \(got 0\.1\)"),
    ({"deadline_rule": {"base_s": 0}},
     r"workload\.deadline_rule\.base_s: Input should be greater than 0 \(got 0\)"),
])
def test_new_keys_refuse_bad_values_naming_key_and_value(tmp_path, workload, message):
    with pytest.raises(SpecError, match=message):
        _load(tmp_path, workload)


def test_a_resolved_config_loads_again():
    # config.yaml holds every default; compare and calibrate load it back.
    for path in SCENARIO_DIR.glob("*.yaml"):
        spec = ScenarioSpec.model_validate(yaml.safe_load(path.read_text()))
        dumped = yaml.safe_load(yaml.safe_dump(spec.model_dump(mode="json")))
        assert ScenarioSpec.model_validate(dumped) == spec, path.name


def test_reports_can_describe_the_new_sources():
    conv = load_spec("azure-conv-short").workload
    assert conv.describe_arrivals() == ("Azure trace AzureLLMInferenceTrace_conv.csv (from "
                                        "1200 s, at most 40 rows, times x6)")
    assert conv.describe_requirement() == "U[2, 6] s"
    rule = WorkloadSpec(deadline_rule={"base_s": 1, "per_output_token_s": 0.05},
                        classes=[{"name": "a", "deadline_s": (5, 9)}, {"name": "b"}])
    assert rule.describe_requirement() == ("1 s + 0 s/prompt token + 0.05 s/declared output "
                                           "token (a U[5, 9] s)")
    assert load_spec("paper").workload.describe_arrivals() == (
        "Poisson at 3/s plus bursts of 30 every 30 s")
