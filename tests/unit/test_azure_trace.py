"""The Azure LLM inference trace: the reader (header, timestamps, window, time scale, errors
naming file:line, cache) and the workload it generates (sizes, true lengths, classes)."""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest

from scenarios import azure_trace
from scenarios.azure_trace import read_trace, window
from scenarios.spec import SCENARIO_DIR, WorkloadSpec, load_spec
from scenarios.workload import TRACE_BYTES_PER_TOKEN, generate

HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens\n"
ROWS = ("2023-11-16 18:15:46.6805900,374,44\n"
        "2023-11-16 18:15:50.9951690,396,109\n"
        "2023-11-16 18:15:51.2224670,879,55\n"
        "2023-11-16 18:15:56.6805900,91,16\n"
        "2023-11-16 18:16:06.6805900,2000,1500\n")
SHIPPED = SCENARIO_DIR / "traces" / "azure-llm-2023"


def _trace(tmp_path, text: str, name: str = "t.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_reads_times_from_the_first_row_to_the_100_ns_digit(tmp_path):
    trace = read_trace(_trace(tmp_path, HEADER + ROWS))
    assert len(trace) == 5
    np.testing.assert_allclose(trace.arrival_s, [0.0, 4.314579, 4.541877, 10.0, 20.0],
                               atol=1e-9)
    assert trace.context_tokens.tolist() == [374, 396, 879, 91, 2000]
    assert trace.generated_tokens.tolist() == [44, 109, 55, 16, 1500]


def test_header_columns_in_any_order_and_timestamps_with_any_fraction(tmp_path):
    text = ("GeneratedTokens,TIMESTAMP,ContextTokens\n7,2023-11-16T18:15:46,10\n"
            "8,2023-11-16 18:15:47.5,20\n9,2023-11-16 18:15:48.123456789123,30\n")
    trace = read_trace(_trace(tmp_path, text))
    np.testing.assert_allclose(trace.arrival_s, [0.0, 1.5, 2.123456789], atol=1e-12)
    assert trace.context_tokens.tolist() == [10, 20, 30]
    assert trace.generated_tokens.tolist() == [7, 8, 9]


@pytest.mark.parametrize("text, message", [
    (ROWS, r"t\.csv:1: expected the header TIMESTAMP,ContextTokens,GeneratedTokens"),
    ("", r"t\.csv:1: expected the header .* got 'an empty file'"),
    (HEADER, r"t\.csv: the trace has a header but no rows"),
    (HEADER + "2023-11-16 18:15:46.1,374,44\n2023-11-16 18:15:47.1,396\n",
     r"t\.csv:3: expected 3 fields .* got 2"),
    (HEADER + "2023-11-16 18:15:46.1,374,44,1\n", r"t\.csv:2: expected 3 fields .* got 4"),
    (HEADER + "2023-11-16 18:15:46.1,many,44\n", r"t\.csv:2: ContextTokens 'many' is not an"),
    (HEADER + "2023-11-16 18:15:46.1,374,4.5\n", r"t\.csv:2: GeneratedTokens '4.5' is not an"),
    (HEADER + "2023-11-16 18:15:46.1,374,-3\n", r"t\.csv:2: GeneratedTokens must be >= 0, got -3"),
    (HEADER + "2023-11-16 18:15:46.1,374,44\n\n16/11/2023 18:15,1,1\n",
     r"t\.csv:4: TIMESTAMP '16/11/2023 18:15' is not YYYY-MM-DD"),
    (HEADER + "2023-11-31 18:15:46.1,374,44\n", r"t\.csv:2: TIMESTAMP .* is not a date"),
    (HEADER + "2023-11-16 18:15:46.1,374,44\n2023-11-16 18:15:45.9,1,1\n",
     r"t\.csv:3: TIMESTAMP '2023-11-16 18:15:45.9' is before the previous row's"),
])
def test_a_malformed_file_is_an_error_naming_file_and_line(tmp_path, text, message):
    with pytest.raises(ValueError, match=message):
        read_trace(_trace(tmp_path, text))


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"arrival.trace: no such file .*nope\.csv"):
        read_trace(tmp_path / "nope.csv")


def test_window_start_duration_and_count(tmp_path):
    trace = read_trace(_trace(tmp_path, HEADER + ROWS))
    # from 4 s (the second row on), for 10 s: rows at 4.31, 4.54 and 10.0 (20.0 is past)
    part = window(trace, start_s=4.0, duration_s=10.0)
    np.testing.assert_allclose(part.arrival_s, [0.314579, 0.541877, 6.0], atol=1e-9)
    assert part.context_tokens.tolist() == [396, 879, 91]
    assert window(trace, start_s=4.0, duration_s=10.0, count=2).context_tokens.tolist() == [
        396, 879]
    assert window(trace, count=2).context_tokens.tolist() == [374, 396]
    assert len(window(trace)) == 5
    # the end of a window is open: a row at start_s + duration_s is out
    assert window(trace, start_s=10.0, duration_s=10.0).context_tokens.tolist() == [91]


def test_time_scale_multiplies_every_gap(tmp_path):
    trace = read_trace(_trace(tmp_path, HEADER + ROWS))
    half = window(trace, start_s=4.0, time_scale=0.5)
    np.testing.assert_allclose(half.arrival_s, [0.1572895, 0.2709385, 3.0, 8.0], atol=1e-9)
    double = window(trace, time_scale=2.0)
    np.testing.assert_allclose(np.diff(double.arrival_s), 2 * np.diff(trace.arrival_s))
    assert double.generated_tokens.tolist() == trace.generated_tokens.tolist()


@pytest.mark.parametrize("kw", [dict(start_s=20.5), dict(start_s=5.0, duration_s=4.0),
                                dict(start_s=0.5, duration_s=1.0, count=3)])
def test_an_empty_window_is_a_clear_error(tmp_path, kw):
    trace = read_trace(_trace(tmp_path, HEADER + ROWS))
    with pytest.raises(ValueError, match=r"t\.csv: the window start_s=.* holds no row \(the "
                                         r"trace's 5 rows span 0 to 20\.0 s"):
        window(trace, **kw)


def test_parsed_once_and_read_again_when_the_file_changes(tmp_path):
    path = _trace(tmp_path, HEADER + ROWS)
    first = read_trace(path)
    assert read_trace(str(path)) is first  # cached: the simulator generates once per policy
    with pytest.raises(ValueError):
        first.arrival_s[0] = 1.0  # shared through the cache, so read-only
    path.write_text(HEADER + ROWS.replace(",374,", ",375,"))
    os.utime(path, ns=(0, os.stat(path).st_mtime_ns + 1_000_000))
    assert read_trace(path).context_tokens[0] == 375


def test_the_shipped_traces_and_their_licence():
    assert (SHIPPED / "LICENSE").read_text().lstrip("\ufeff").startswith(
        "Attribution 4.0 International")
    assert "Splitwise" in (SHIPPED / "README.md").read_text()
    conv = read_trace(SHIPPED / "AzureLLMInferenceTrace_conv.csv")
    code = read_trace(SHIPPED / "AzureLLMInferenceTrace_code.csv")
    assert (len(conv), len(code)) == (19_366, 8_819)
    assert np.median(conv.generated_tokens) == 129 and np.median(code.generated_tokens) == 13
    assert 3_400 < conv.arrival_s[-1] < 3_600


# ------------------------------------------------------------------- the generated workload


def _azure(path, **kw) -> WorkloadSpec:
    arrival = {"process": "azure-trace", "trace": path, **kw.pop("arrival", {})}
    return WorkloadSpec(arrival=arrival, **kw)


def test_rows_become_services_with_their_sizes_and_true_lengths(tmp_path, caplog):
    spec = _azure(_trace(tmp_path, HEADER + ROWS),
                  classes=[{"name": "conv", "max_new_tokens": (1024, 1024)}])
    with caplog.at_level(logging.WARNING, logger="scenarios.workload"):
        items = generate(spec, 1)
    assert [i.arrival_s for i in items] == pytest.approx([0.0, 4.314579, 4.541877, 10.0, 20.0])
    services = [i.service for i in items]
    assert [s.prompt_tokens for s in services] == [374, 396, 879, 91, 2000]
    assert [s.input_bytes for s in services] == [TRACE_BYTES_PER_TOKEN * n
                                                 for n in (374, 396, 879, 91, 2000)]
    assert {s.max_new_tokens for s in services} == {1024}
    # the fifth row's 1,500 tokens are clipped to the 1,024 cap, and said so
    assert [i.output_tokens for i in items] == [44, 109, 55, 16, 1024]
    assert "1 of 5 rows generate more tokens than their max_new_tokens" in caplog.text


def test_requests_caps_the_window_and_attachments_add_bytes(tmp_path):
    spec = _azure(_trace(tmp_path, HEADER + ROWS), requests=3, arrival={"start_s": 1.0},
                  classes=[{"name": "doc", "max_new_tokens": (200, 200),
                            "attachment_bytes": (10_000, 20_000)}])
    items = generate(spec, 1)
    assert [i.service.prompt_tokens for i in items] == [396, 879, 91]
    for item, tokens in zip(items, (396, 879, 91)):
        assert 10_000 <= item.service.input_bytes - 4 * tokens <= 20_000


def test_classes_by_context_size_first_match_wins(tmp_path):
    spec = _azure(_trace(tmp_path, HEADER + ROWS), classes=[
        {"name": "short", "context_tokens": (0, 399)},
        {"name": "mid", "context_tokens": (300, 1000)},
        {"name": "long"}])
    assert [i.service.service_class for i in generate(spec, 3)] == [
        "short", "short", "mid", "short", "long"]


def test_zero_tokens_still_make_a_valid_service(tmp_path):
    spec = _azure(_trace(tmp_path, HEADER + "2023-11-16 18:15:46,0,0\n"))
    (item,) = generate(spec, 1)
    assert item.service.prompt_tokens == 1 and item.output_tokens == 1


def test_the_shipped_azure_scenarios_replay_their_whole_file():
    for name, rows, cap in (("azure-conv", 19_366, 1024), ("azure-code", 8_819, 2048)):
        spec = load_spec(name)
        items = generate(spec.workload, spec.seed)
        assert len(items) == rows
        assert {i.service.max_new_tokens for i in items} == {cap}
        trace = read_trace(spec.workload.arrival.trace)
        # nothing clipped: every true length is the trace's own
        assert [i.output_tokens for i in items] == trace.generated_tokens.tolist()
        scale = spec.workload.arrival.time_scale
        assert items[-1].arrival_s == pytest.approx(trace.arrival_s[-1] * scale)
    short = load_spec("azure-conv-short")
    items = generate(short.workload, short.seed)
    assert len(items) == 40 and items[-1].arrival_s < 60
    assert short.workload.give_up_s < 60
    assert azure_trace.COLUMNS == ("TIMESTAMP", "ContextTokens", "GeneratedTokens")
