"""The workload generator: seeded, distributions as configured, trace parsing, attachments."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from scenarios.spec import ArrivalSpec, ServiceClassSpec, WorkloadSpec
from scenarios.workload import attachment_for, generate, load_prompts, load_trace


def _spec(**kw) -> WorkloadSpec:
    return WorkloadSpec(**kw)


def test_same_seed_same_workload_and_different_seed_differs():
    spec = _spec(requests=200)
    a, b, c = generate(spec, 42), generate(spec, 42), generate(spec, 43)
    assert a == b
    assert [i.arrival_s for i in a] != [i.arrival_s for i in c]
    assert [i.service for i in a] != [i.service for i in c]


def test_arrival_process_does_not_change_the_services():
    poisson = generate(_spec(requests=50), 7)
    bursts = generate(_spec(requests=50, arrival=ArrivalSpec(process="bursts")), 7)
    assert [i.service for i in poisson] == [i.service for i in bursts]


def test_service_fields_within_their_ranges():
    spec = _spec(requests=2000, deadline_s=(2.5, 5.0))
    items = generate(spec, 1)
    by_name = {c.name: c for c in spec.classes}
    prompts = set(load_prompts()[""])
    assert len({i.service.id for i in items}) == 2000
    arrivals = [i.arrival_s for i in items]
    assert arrivals == sorted(arrivals) and arrivals[0] > 0
    deadlines = np.array([i.service.deadline_s for i in items])
    assert deadlines.min() >= 2.5 and deadlines.max() <= 5.0
    # uniform: both ends of the range are reached, not just the middle
    assert deadlines.min() < 2.6 and deadlines.max() > 4.9
    for item in items:
        s = item.service
        cls = by_name[s.service_class]
        assert cls.max_new_tokens[0] <= s.max_new_tokens <= cls.max_new_tokens[1]
        assert max(cls.input_bytes[0], len(s.prompt.encode())) <= s.input_bytes
        assert s.input_bytes <= cls.input_bytes[1]
        assert s.prompt in prompts and s.temperature == 0.8 and s.top_k == 200
    assert len({i.service.seed for i in items}) > 1990


def test_class_prompts_come_from_the_class_group():
    items = generate(_spec(requests=300), 3)
    groups = load_prompts()
    for item in items:
        assert item.service.prompt in groups[item.service.service_class]


def test_class_weights_are_respected():
    classes = [ServiceClassSpec(name="chat", weight=0.6),
               ServiceClassSpec(name="summarise", weight=0.3),
               ServiceClassSpec(name="generate", weight=0.1)]
    n = 10_000
    items = generate(_spec(requests=n, classes=classes), 42)
    counts = Counter(i.service.service_class for i in items)
    for cls in classes:
        share = counts[cls.name] / n
        # binomial sd at n=10,000 is <= 0.005; 0.02 is four standard deviations (fixed seed)
        assert abs(share - cls.weight) < 0.02, (cls.name, share)


def test_poisson_mean_inter_arrival():
    n, rate = 5000, 4.0
    items = generate(_spec(requests=n, arrival=ArrivalSpec(rate_per_s=rate)), 42)
    gaps = np.diff([0.0] + [i.arrival_s for i in items])
    # sd of the mean of n exponential gaps is (1/rate)/sqrt(n) ~ 0.0035 s; allow 4x that
    assert abs(gaps.mean() - 1 / rate) < 0.015
    # exponential, not regular: coefficient of variation near 1
    assert 0.9 < gaps.std() / gaps.mean() < 1.1


def test_bursts_arrive_together():
    spec = _spec(requests=25, arrival=ArrivalSpec(process="bursts", burst_size=10,
                                                  burst_every_s=3.0))
    times = Counter(i.arrival_s for i in generate(spec, 0))
    assert times == {0.0: 10, 3.0: 10, 6.0: 5}


def test_trace_arrivals_and_classes(tmp_path):
    trace = tmp_path / "trace.csv"
    trace.write_text("arrival_s,class\n0.5,chat\n# a comment\n\n0.1\n2.0,summarise\n7.5,chat\n")
    spec = _spec(requests=3, arrival=ArrivalSpec(process="trace", trace=trace))
    items = generate(spec, 42)
    assert [i.arrival_s for i in items] == [0.1, 0.5, 2.0]  # sorted, capped at `requests`
    assert [i.service.service_class for i in items][1:] == ["chat", "summarise"]
    assert len(generate(_spec(requests=100, arrival=spec.arrival), 42)) == 4


@pytest.mark.parametrize("text, message", [
    ("0.5\nsoon\n", r"trace.csv:2: arrival_s 'soon' is not a number"),
    ("0.5\n-1\n", r"trace.csv:2: arrival_s must be finite and >= 0"),
    ("1.0,chat\n2.0,poetry\n", r"trace.csv:2: class 'poetry' is not a workload class; "
                               r"accepted: chat, summarise, generate"),
    ("1.0,chat,extra\n", r"trace.csv:1: expected arrival_s\[,class\], got 3 columns"),
    ("arrival_s,class\n", r"trace has no arrivals"),
])
def test_trace_errors_name_the_line(tmp_path, text, message):
    trace = tmp_path / "trace.csv"
    trace.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_trace(trace, ["chat", "summarise", "generate"])


def test_missing_trace_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="arrival.trace: no such file"):
        load_trace(tmp_path / "nope.csv")


def test_attachment_is_deterministic_and_sized():
    items = generate(_spec(requests=60), 42)
    for item in items:
        s = item.service
        data = attachment_for(s)
        assert len(data) + len(s.prompt.encode()) == s.input_bytes
        assert data == attachment_for(s)
    big = max(items, key=lambda i: i.service.input_bytes).service
    assert big.input_bytes > 100_000  # the summarise class uploads large contexts
    other = next(i.service for i in items if i.service.seed != big.seed
                 and len(attachment_for(i.service)) > 100)
    assert attachment_for(big)[:100] != attachment_for(other)[:100]
    attachment_for(big).decode("ascii")  # text a model can read, not random bytes


def test_prompt_tokens_decoupled_from_upload_size():
    classes = [ServiceClassSpec(name="scan", input_bytes=(1_000_000, 2_000_000),
                                prompt_tokens=(100, 200)),
               ServiceClassSpec(name="chat", input_bytes=(400, 800))]
    items = generate(_spec(requests=200, classes=classes), 5)
    for item in items:
        s = item.service
        if s.service_class == "scan":
            assert 100 <= s.prompt_tokens <= 200 and s.estimated_prompt_tokens == s.prompt_tokens
        else:
            assert s.prompt_tokens == 0 and s.estimated_prompt_tokens == s.input_bytes // 4
