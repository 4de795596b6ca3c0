"""The results writer: CSV round trip, summary figures, the accounting identity, the table."""

from __future__ import annotations

import json

import pytest
import yaml

from scenarios.results import (
    AccountingError, LinkRow, NodeRow, RequestRow, columns, format_table, new_run_dir,
    ratios, read_rows, read_summary, summarise, write_config, write_rows, write_summary)
from scenarios.spec import ScenarioSpec
from scheduler.outcome import Energy, Outcome, Status


def _row(policy, sid, status="met", arrival_s=0.0, total_s=1.0, tokens_out=10,
         tx_j=1.0, inf_j=2.0, node="edge1", error=""):
    return RequestRow(policy=policy, service_id=sid, service_class="chat", node_id=node,
                      arrival_s=arrival_s, input_bytes=1000, tokens_in=250, tokens_out=tokens_out,
                      transmission_s=0.1, queueing_s=0.2, inference_s=total_s - 0.3,
                      total_s=total_s, deadline_s=4.0, status=status, transmission_j=tx_j,
                      inference_j=inf_j, idle_j=0.0, total_j=tx_j + inf_j, error=error)


def _nodes(policy, idle_j=5.0):
    return [NodeRow(policy, "edge1", "edge", 3.0, 7.0, 10.0, idle_j, "modelled"),
            NodeRow(policy, "cloud", "cloud", 1.0, 9.0, 20.0, 2 * idle_j, "modelled")]


def test_columns_match_the_contract():
    assert columns(RequestRow) == [
        "policy", "service_id", "service_class", "node_id", "arrival_s", "input_bytes",
        "tokens_in", "tokens_out", "transmission_s", "queueing_s", "inference_s", "total_s",
        "deadline_s", "status", "transmission_j", "inference_j", "idle_j", "total_j", "error",
        "predicted_total_s"]
    assert columns(NodeRow) == ["policy", "node_id", "kind", "busy_s", "idle_s", "inference_j",
                                "idle_j", "method"]
    assert columns(LinkRow) == ["policy", "time_s", "link", "rate_mbit"]


def test_new_run_dir_is_unique(tmp_path):
    a = new_run_dir("smoke", root=tmp_path)
    b = new_run_dir("smoke", root=tmp_path)
    assert a != b and a.is_dir() and b.is_dir()
    assert a.parent == tmp_path / "smoke"
    with pytest.raises(ValueError, match="scenario_name"):
        new_run_dir("../x", root=tmp_path)


def test_rows_round_trip_through_csv(tmp_path):
    requests = [_row("cs-ucb", "s1"), _row("cs-ucb", "s2", status="failed", tokens_out=0,
                                            error="node edge2 died, comma, \"quoted\"")]
    nodes = _nodes("cs-ucb")
    links = [LinkRow("cs-ucb", 0.0, "edge1", 100.0), LinkRow("cs-ucb", 1.0, "edge1", 93.25)]
    paths = write_rows(tmp_path, requests, nodes, links)
    assert [p.name for p in paths] == ["requests.csv", "nodes.csv", "links.csv"]
    assert (tmp_path / "requests.csv").read_text().splitlines()[0].startswith(
        "policy,service_id,service_class,node_id,arrival_s")
    back = read_rows(tmp_path)
    assert back == (requests, nodes, links)
    assert isinstance(back[0][0].input_bytes, int) and isinstance(back[2][1].rate_mbit, float)


def test_write_rows_rejects_the_wrong_row_type(tmp_path):
    with pytest.raises(TypeError, match="expected RequestRow"):
        write_rows(tmp_path, [LinkRow("p", 0.0, "edge1", 1.0)], [], [])


def test_from_outcome_copies_every_part():
    outcome = Outcome(service_id="s7", node_id="cloud", status=Status.MISSED, deadline_s=3.0,
                      total_s=4.5, service_class="summarise", transmission_s=1.0,
                      queueing_s=0.5, inference_s=3.0, tokens_in=900, tokens_out=20,
                      input_bytes=3600, energy=Energy(transmission_j=0.5, inference_j=40.0))
    row = RequestRow.from_outcome("cloud-only", outcome, arrival_s=12.5)
    assert row.status == "missed" and row.arrival_s == 12.5 and row.node_id == "cloud"
    assert row.total_j == pytest.approx(40.5) and row.input_bytes == 3600


def test_summarise_figures():
    requests = [
        _row("cs-ucb", "s1", arrival_s=0.0, total_s=1.0, tokens_out=10),
        _row("cs-ucb", "s2", arrival_s=1.0, total_s=5.0, tokens_out=30, status="missed"),
        _row("cs-ucb", "s3", arrival_s=2.0, total_s=0.5, status="failed", tokens_out=0,
             inf_j=0.0, error="timeout"),
        _row("cloud-only", "s1", arrival_s=0.0, total_s=2.0, tokens_out=10, tx_j=3.0),
        _row("cloud-only", "s2", arrival_s=1.0, total_s=2.0, tokens_out=30, tx_j=3.0),
        _row("cloud-only", "s3", arrival_s=2.0, total_s=2.0, tokens_out=0, tx_j=3.0),
    ]
    nodes = _nodes("cs-ucb", idle_j=5.0) + _nodes("cloud-only", idle_j=1.0)
    s = summarise(requests, nodes, generated=3)
    assert list(s) == ["cs-ucb", "cloud-only"]
    c = s["cs-ucb"]
    assert (c["requests"], c["met"], c["missed"], c["failed"]) == (3, 1, 1, 1)
    assert c["success_rate"] == pytest.approx(1 / 3)
    assert c["mean_total_s"] == pytest.approx(3.0)  # over finished services only
    # makespan: first arrival 0 to last finish 1 + 5 = 6; 40 tokens out of finished services
    assert c["makespan_s"] == pytest.approx(6.0)
    assert c["throughput_tok_s"] == pytest.approx(40 / 6)
    # Inference and idle come from the nodes (10 + 20 J): they also hold the work on the
    # failed s3, which the request rows (4 J) cannot carry.
    assert c["energy_j"] == pytest.approx(
        {"transmission": 3.0, "inference": 30.0, "idle": 15.0, "total": 48.0})
    assert c["inference_unattributed_j"] == pytest.approx(26.0)
    assert c["failure_reasons"] == {"timeout": 1}
    o = s["cloud-only"]
    assert o["success_rate"] == 1.0 and o["p95_total_s"] == pytest.approx(2.0)
    assert o["throughput_tok_s"] == pytest.approx(40 / 4)
    assert o["energy_j"]["total"] == pytest.approx(9 + 30 + 3)

    r = ratios(s)
    assert r["cloud-only"]["throughput"] == pytest.approx((40 / 6) / 10)
    assert r["cloud-only"]["energy"] == pytest.approx(48 / 42)
    with pytest.raises(KeyError, match="have: cs-ucb, cloud-only"):
        ratios(s, reference="random")


def test_summarise_with_no_finished_service():
    s = summarise([_row("edge-only", "s1", status="failed", error="x")], [])
    assert s["edge-only"]["mean_total_s"] is None and s["edge-only"]["throughput_tok_s"] == 0.0
    assert "-" in format_table(s)


@pytest.mark.parametrize("requests, generated, message", [
    ([_row("p", "s1"), _row("p", "s1")], None, "more than once: s1"),
    ([_row("p", "s1")], 2, "1 outcomes recorded for 2 generated"),
    ([_row("p", "s1", status="lost")], None, "status \\['lost'\\] not one of met, missed, failed"),
])
def test_summarise_asserts_the_accounting_identity(requests, generated, message):
    with pytest.raises(AccountingError, match=message):
        summarise(requests, [], generated=generated)


def test_summarise_rejects_energy_parts_that_do_not_add_up():
    row = _row("p", "s1")
    row.total_j = row.total_j + 1.0
    with pytest.raises(AccountingError, match="service s1: total_j"):
        summarise([row], [])


def _require_default_policies():
    import scheduler.policies  # noqa: F401  (registers every policy)
    from scheduler.policies.base import POLICIES

    missing = [n for n in ("cs-ucb", "cloud-only", "edge-only", "edge-cloud") if n not in POLICIES]
    if missing:
        pytest.skip(f"policies not registered yet: {', '.join(missing)}")


def test_summary_file(tmp_path):
    s = summarise([_row("cs-ucb", "s1"), _row("edge-only", "s1", tokens_out=5)], [])
    write_summary(tmp_path, s, incomplete=True, extra={"seed": 42})
    data = read_summary(tmp_path)
    assert data["incomplete"] is True and data["seed"] == 42
    assert data["policies"]["cs-ucb"]["met"] == 1
    assert data["ratios"]["vs"]["edge-only"]["throughput"] == pytest.approx(2.0)
    json.dumps(data)


def test_config_file_is_the_resolved_spec(tmp_path):
    _require_default_policies()
    spec = ScenarioSpec(name="t", seed=7)
    path = write_config(tmp_path, spec)
    loaded = yaml.safe_load(path.read_text())
    assert loaded["seed"] == 7 and loaded["workload"]["deadline_s"] == [2.0, 6.0]
    assert ScenarioSpec.model_validate(loaded) == spec


def test_format_table_has_a_line_per_policy():
    s = summarise([_row("cs-ucb", "s1"), _row("edge-only", "s1")], _nodes("cs-ucb"))
    lines = format_table(s).splitlines()
    assert lines[0].split()[:3] == ["policy", "success", "mean"]
    assert lines[2].startswith("cs-ucb") and "100.0%" in lines[2]
    assert len({len(line) for line in lines}) == 1  # fixed width



def test_terminal_and_report_tables_show_the_same_cells():
    from scenarios.report import summary_table

    _, _, _, s = _two_policy_run()
    terminal = format_table(s).splitlines()[2:]
    report = summary_table(s).splitlines()[2:]
    assert "1 / 0 / 1" in terminal[1] and "| 1 / 0 / 1 |" in report[1]
    for term_line, md_line in zip(terminal, report, strict=True):
        md_cells = [c.strip() for c in md_line.strip("|").split("|")]
        # The same cells, the terminal's outcome counts moved last, "-" for a missing value.
        assert sorted(term_line.replace(" / ", "/").split()) == sorted(
            c.replace(" / ", "/").replace("–", "-") for c in md_cells)

def _two_policy_run():
    requests = [_row("cs-ucb", "s1", arrival_s=0.0, node="edge1"),
                _row("cs-ucb", "s2", arrival_s=1.5, node="cloud", status="missed", total_s=7.0),
                _row("cloud-only", "s1", arrival_s=0.0, node="cloud", tokens_out=5),
                _row("cloud-only", "s2", arrival_s=1.5, node="", status="failed", tokens_out=0,
                     inf_j=0.0, error="cloud link down")]
    links = [LinkRow(p, t, link, rate) for p in ("cs-ucb", "cloud-only")
             for t, link, rate in ((0.0, "edge1", 100.0), (0.0, "cloud", 300.0),
                                   (1.0, "edge1", 88.0), (1.0, "cloud", 321.5))]
    nodes = _nodes("cs-ucb") + _nodes("cloud-only")
    return requests, nodes, links, summarise(requests, nodes, generated=2)


def test_write_plots_makes_every_png(tmp_path):
    from scenarios.plots import write_plots

    requests, _, links, summary = _two_policy_run()
    paths = write_plots(tmp_path, requests, links, summary)
    assert [p.name for p in paths] == ["success_rate.png", "processing_time_cdf.png",
                                       "throughput.png", "energy.png", "bandwidth.png",
                                       "tokens_by_class.png", "prediction_error.png",
                                       "regret.png"]
    for path in paths:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5_000


def test_plots_survive_a_run_with_nothing_finished(tmp_path):
    from scenarios.plots import write_plots

    requests = [_row("edge-only", "s1", status="failed", tokens_out=0, node="", error="x")]
    summary = summarise(requests, [])
    assert len(write_plots(tmp_path, requests, [], summary)) == 8


def test_report_has_tables_ratios_plots_seed_and_provenance(tmp_path):
    from scenarios.plots import write_plots
    from scenarios.report import git_commit, write_report

    _require_default_policies()
    requests, _, links, summary = _two_policy_run()
    plots = write_plots(tmp_path, requests, links, summary)
    spec = ScenarioSpec(name="smoke-test", seed=9, policies=["cs-ucb", "cloud-only"])
    text = write_report(tmp_path, spec, summary, plots, seed=9).read_text()
    assert "INCOMPLETE" not in text
    assert "| cs-ucb | 50.0% | 1 / 1 / 0 |" in text
    assert "| cloud-only | 50.0% | 1 / 0 / 1 |" in text
    # 20 tokens over 8.5 s (arrival 0 to the last finish 1.5 + 7) against 5 tokens over 1 s
    assert f"| cloud-only | {(20 / 8.5) / 5:.2f}× |" in text
    assert "1 × cloud link down" in text
    for plot in plots:
        assert f"]({plot.name})" in text
    assert "Seed: 9" in text and "SEED=9" in text
    commit = git_commit()
    assert commit == "unknown" or len(commit.split("+")[0]) == 40
    assert f"`{commit}`" in text and "python 3." in text and "grpcio" in text

    text = write_report(tmp_path, spec, summary, [], seed=9, incomplete=True).read_text()
    assert "INCOMPLETE RUN" in text and "## Plots" not in text


def test_git_commit_outside_a_repository(tmp_path):
    from scenarios.report import git_commit

    assert git_commit(tmp_path) == "unknown"


@pytest.mark.parametrize("name", ["azure-conv-short", "azure-code", "smoke"])
def test_every_shipped_workload_source_is_described_in_the_report(tmp_path, name):
    from scenarios.report import write_report
    from scenarios.spec import load_spec

    _require_default_policies()
    _, _, _, summary = _two_policy_run()
    text = write_report(tmp_path, load_spec(name), summary, [], seed=1).read_text()
    workload = next(line for line in text.splitlines() if line.startswith("- Workload:"))
    assert ("Azure trace" in workload) == name.startswith("azure")
    assert "U[2, 6] s" in workload
