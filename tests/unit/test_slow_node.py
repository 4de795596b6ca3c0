"""The slow-node fault: the spec, the simulated node (processor sharing at a changed rate),
the node's pacer and control file, and a real tiny-model node that slows down mid-request."""

from __future__ import annotations

import json
import logging
import math

import pytest
import yaml

from nodes.pacing import Pacer
from nodes.profile import HardwareProfile
from nodes.slowdown import MAX_SLOWDOWN_FACTOR, SlowdownFile, write_slowdown
from scenarios.spec import SpecError, load_spec
from scenarios.workload import WorkloadItem
from scheduler.service import Service
from simulator import runner, world
from simulator.model import NodeModel
from simulator.runner import Fault, NodeSetup, simulate
from tests.unit.test_simulator import RoundRobin


def _service(sid: str, tokens_in: int, tokens_out: int) -> Service:
    # No upload (0 bytes): the service reaches the node at its arrival.
    return Service(id=sid, prompt="p", input_bytes=0, max_new_tokens=tokens_out,
                   deadline_s=60.0, prompt_tokens=tokens_in)


def _node(slots: int = 1, concurrency_slowdown: float = 0.0) -> NodeSetup:
    # prefill 100 tok/s, decode 10 tok/s: 100 in + 10 out = 2 s alone; 10 W idle, 50 W busy.
    model = NodeModel(prefill_tok_s=100.0, decode_tok_s=10.0,
                      concurrency_slowdown=concurrency_slowdown, idle_power_w=10.0,
                      max_power_w=50.0, name="hand")
    return NodeSetup("edge1", "edge", model, slots=slots, queue_capacity=4,
                     link_rate_mbit=8.0, j_per_bit=0.0)


@pytest.fixture
def changes(monkeypatch) -> list:
    """Every run's slowdown record (runner._Run.slowdown_changes), read after the run."""
    runs = []
    original = runner._Run._slowdown_changed

    def spy(self, node_id: str) -> None:
        original(self, node_id)
        if self not in runs:
            runs.append(self)

    monkeypatch.setattr(runner._Run, "_slowdown_changed", spy)
    return runs


# --- the simulator ----------------------------------------------------------------------------

def test_a_service_running_through_the_slow_period_takes_the_hand_computed_time(changes):
    # A: 2 s of work from t=0. Slowed 4x over [1, 2]: 1 s of work by t=1, 0.25 s more by t=2,
    # the last 0.75 s at full speed: done at 2.75 s. B at t=3 (after the period): 2 s again.
    items = [WorkloadItem(0.0, _service("a", 100, 10)), WorkloadItem(3.0, _service("b", 100, 10))]
    result = simulate(RoundRobin(), [_node()], items,
                      faults=[Fault(1.0, "slow-node", "edge1", duration_s=1.0, factor=4.0)])
    rows = {r.service_id: r for r in result.requests}
    assert rows["a"].inference_s == pytest.approx(2.75, abs=1e-9)
    # The node draws its power for longer: 50 W x 2.75 s.
    assert rows["a"].inference_j == pytest.approx(137.5, abs=1e-9)
    assert rows["b"].inference_s == pytest.approx(2.0, abs=1e-9)  # the rate came back
    (run,) = changes
    assert run.slowdown_changes == ((1.0, "edge1", 4.0), (2.0, "edge1", 1.0))
    assert run.nodes["edge1"].slowdown == 1.0


def test_processor_sharing_changes_the_rate_of_every_running_service():
    # Two slots, concurrency slow-down 0.5: two together each progress at 1/1.5. A (2 s) and
    # B (1 s) at t=0; slowed 2x over [0.75, 3]. By 0.75 each has 0.5 s; then each gets 1/3:
    # B's last 0.5 s ends at 2.25 (A has 1.0 s). A alone at 1/2 until 3 (0.375 s more), then
    # at 1: its last 0.625 s ends at 3.625.
    items = [WorkloadItem(0.0, _service("a", 100, 10)), WorkloadItem(0.0, _service("b", 50, 5))]
    result = simulate(RoundRobin(), [_node(slots=2, concurrency_slowdown=0.5)], items,
                      faults=[Fault(0.75, "slow-node", "edge1", duration_s=2.25, factor=2.0)])
    rows = {r.service_id: r for r in result.requests}
    assert rows["b"].inference_s == pytest.approx(2.25, abs=1e-9)
    assert rows["a"].inference_s == pytest.approx(3.625, abs=1e-9)


def test_overlapping_periods_take_the_largest_factor(changes):
    # 2x over [0, 4] and 4x over [1, 2]: A (2 s) gets 0.5 by 1, 0.25 by 2, then 1/2 per s:
    # its last 1.25 s takes 2.5 s, done at 4.5 - but the 2x period ends at 4 (1.0 s by then),
    # so the last 0.25 s runs at full speed: 4.25 s.
    items = [WorkloadItem(0.0, _service("a", 100, 10))]
    result = simulate(RoundRobin(), [_node()], items, faults=[
        Fault(0.0, "slow-node", "edge1", duration_s=4.0, factor=2.0),
        Fault(1.0, "slow-node", "edge1", duration_s=1.0, factor=4.0)])
    assert result.requests[0].inference_s == pytest.approx(4.25, abs=1e-9)
    (run,) = changes
    assert [c[2] for c in run.slowdown_changes] == [2.0, 4.0, 2.0, 1.0]


def test_a_bad_factor_passed_to_the_simulator_names_it():
    with pytest.raises(ValueError, match=r"slowdown factor must be a finite number >= 1 "
                                         r"\(got 0.5\)"):
        simulate(RoundRobin(), [_node()], [WorkloadItem(0.0, _service("a", 100, 10))],
                 faults=[Fault(1.0, "slow-node", "edge1", duration_s=1.0, factor=0.5)])


def test_the_shipped_scenario_slows_the_cloud_by_its_factor_and_it_recovers():
    spec = load_spec("slow-node")
    (fault,) = spec.faults
    assert (fault.kind, fault.target, fault.factor) == ("slow-node", "cloud", 3.0)
    setups = world.node_setups(spec)
    cloud = next(s for s in setups if s.node_id == "cloud").model
    result = simulate("cloud-only", setups, world.arrivals(spec), seed=spec.seed,
                      rate_changes=world.rate_changes(spec), faults=world.faults(spec))
    # inference time / the time alone at full speed: >= 1 (sharing the 8 slots), and about
    # 3x as much for services that ran wholly inside the period.
    def stretch(rows):
        ratios = [r.inference_s / cloud.work_s(r.tokens_in, r.tokens_out) for r in rows]
        return sum(ratios) / len(ratios)

    def window(lo, hi):
        return [r for r in result.requests if r.status != "failed" and r.node_id == "cloud"
                and lo <= r.arrival_s + r.transmission_s + r.queueing_s
                and r.arrival_s + r.total_s <= hi]

    end_s = fault.at_s + fault.duration_s
    before, during, after = (window(0, fault.at_s), window(fault.at_s, end_s),
                             window(end_s, math.inf))
    assert before and during and after
    assert stretch(during) / stretch(before) == pytest.approx(3.0, rel=0.05)
    assert stretch(after) / stretch(before) == pytest.approx(1.0, rel=0.05)


# --- the spec ---------------------------------------------------------------------------------

def _spec_file(tmp_path, **fault) -> str:
    data = {"name": "x", "topology": {"edges": 2}, "policies": ["cloud-only"],
            "faults": [{"at_s": 1.0, "target": "cloud", **fault}]}
    path = tmp_path / "x.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_a_slow_node_fault_loads_and_reaches_the_simulator(tmp_path):
    spec = load_spec(_spec_file(tmp_path, kind="slow-node", factor=4, duration_s=10))
    (fault,) = spec.faults
    assert (fault.factor, fault.duration_s) == (4.0, 10.0)
    assert world.faults(spec) == [Fault(1.0, "slow-node", "cloud", 10.0, 4.0)]


@pytest.mark.parametrize("fault, key, shown", [
    ({"factor": 0.5, "duration_s": 1}, "faults.0.factor", "0.5"),
    ({"factor": "nan", "duration_s": 1}, "faults.0.factor", "'nan'"),
    ({"factor": float("inf"), "duration_s": 1}, "faults.0.factor", "inf"),
    ({"factor": MAX_SLOWDOWN_FACTOR * 2, "duration_s": 1}, "faults.0.factor", "2000"),
    ({"factor": 2}, "faults.duration_s", "0.0"),
    ({"factor": 2, "duration_s": -1}, "faults.0.duration_s", "-1"),
])
def test_a_bad_slow_node_fault_names_the_key_and_the_value(tmp_path, fault, key, shown):
    with pytest.raises(SpecError) as err:
        load_spec(_spec_file(tmp_path, kind="slow-node", **fault))
    assert key in str(err.value) and shown in str(err.value)


def test_a_factor_on_another_kind_of_fault_is_an_error(tmp_path):
    with pytest.raises(SpecError, match="faults.factor: only used with kind 'slow-node' "
                                        r"\(got factor=3.0 with kind 'link-down'\)"):
        load_spec(_spec_file(tmp_path, kind="link-down", factor=3, duration_s=1))


def test_an_unpaced_node_cannot_be_slowed(tmp_path):
    data = {"name": "x", "topology": {"edges": 1}, "policies": ["cloud-only"],
            "nodes": {"edge": {"profile": None}},
            "faults": [{"at_s": 1.0, "kind": "slow-node", "target": "edge1", "factor": 2,
                        "duration_s": 1}]}
    path = tmp_path / "x.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(SpecError, match="slow-node needs a paced node"):
        load_spec(str(path))


def test_the_node_refuses_a_slowdown_file_without_a_profile():
    from nodes.config import NodeConfig

    with pytest.raises(ValueError, match="slowdown_file needs a profile"):
        NodeConfig(node_id="e", model="m", slowdown_file="/tmp/x.json").validate()


# --- the node's pacer and control file --------------------------------------------------------

FAST = HardwareProfile(name="test/fast", kind="cloud", hardware="test", model="tiny",
                       prefill_tok_s=1000.0, decode_tok_s=200.0, concurrency_slowdown=0.25,
                       idle_power_w=0.0, max_power_w=1.0, memory_gb=0.1, source="test")


def test_steps_taken_under_a_factor_take_factor_times_as_long():
    sched = Pacer(FAST).schedule(100)
    assert sched.next_due_s(1, 4.0) == pytest.approx(4 * (0.1 + 0.005))  # prefill + step 1
    assert sched.next_due_s(1, 4.0) == pytest.approx(4 * 0.11)
    assert sched.next_due_s(2, 4.0) == pytest.approx(4 * 0.11 + 4 * 1.25 * 0.005)
    assert sched.next_due_s(1, 1.0) == pytest.approx(4 * 0.11 + 0.025 + 0.005)


def test_a_change_while_a_token_is_pending_retimes_the_rest_of_its_step():
    sched = Pacer(FAST).schedule(100)
    assert sched.next_due_s(1) == pytest.approx(0.105)
    # Slowed 4x at 0.05, halfway through the prefill: the remaining 0.055 takes 0.22.
    assert sched.retime(0.05, 4.0) == pytest.approx(0.05 + 4 * 0.055)
    # Back to 1 at 0.17: of the 0.1 left at 4x, a quarter remains at full speed.
    assert sched.retime(0.17, 1.0) == pytest.approx(0.17 + 0.1 / 4)
    assert sched.retime(0.18, 1.0) == pytest.approx(0.195)  # no change: no move
    # A token already overdue (the model was late) keeps its due time; the factor is taken.
    assert sched.next_due_s(1) == pytest.approx(0.2)
    assert sched.retime(0.3, 4.0) == pytest.approx(0.2)
    assert sched.next_due_s(1, 4.0) == pytest.approx(0.22)


@pytest.mark.parametrize("factor", [0.5, math.nan, math.inf, True, "4"])
def test_a_bad_factor_in_the_pacer_names_it(factor):
    sched = Pacer(FAST).schedule(10)
    with pytest.raises(ValueError, match=r"factor must be a (finite )?number"):
        sched.next_due_s(1, factor)
    with pytest.raises(ValueError, match=r"factor must be a (finite )?number"):
        sched.retime(0.0, factor)


def test_the_control_file_is_read_when_it_changes_and_a_bad_one_keeps_the_last(tmp_path,
                                                                               caplog):
    path = tmp_path / "node.slowdown.json"
    control = SlowdownFile(path)
    assert control.factor() == 1.0  # no file yet: the fault has not started
    write_slowdown(path, 4.0)
    assert json.loads(path.read_text()) == {"factor": 4.0}
    assert control.factor() == 4.0
    write_slowdown(path, 1.0)
    assert control.factor() == 1.0
    write_slowdown(path, 2.5)
    assert control.factor() == 2.5
    with caplog.at_level(logging.WARNING, logger="nodes.slowdown"):
        path.write_text('{"factor": 0.25}')
        assert control.factor() == 2.5
        path.write_text("not json")
        assert control.factor() == 2.5
    assert "keeping factor 2.5" in caplog.text and "0.25" in caplog.text
    with pytest.raises(ValueError, match=r"factor must be a finite number in \[1, 1000\] "
                                         r"\(got nan\)"):
        write_slowdown(path, math.nan)


# --- a real node (tiny model, in-process gRPC) ------------------------------------------------

@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from nodes.tiny import build_tiny

    return build_tiny(tmp_path_factory.getbasetemp() / "tiny-models")


@pytest.fixture
def paced_node(tiny, tmp_path):
    from tests.unit.test_node_server import Node, _config, _profile

    profile = _profile(tmp_path, "paced", prefill_tok_s=2000.0, decode_tok_s=50.0)
    control = tmp_path / "node.slowdown.json"
    node = Node(_config(tiny, profile=str(profile), slowdown_file=str(control)))
    yield node, control
    node.close()


def test_a_paced_node_slows_by_the_factor_and_reports_what_it_measured(paced_node):
    node, control = paced_node
    _, normal = node.run(max_new_tokens=20)
    write_slowdown(control, 4.0)
    _, slowed = node.run(max_new_tokens=20)
    assert slowed.tokens_out == normal.tokens_out == 20
    assert slowed.inference_s / normal.inference_s == pytest.approx(4.0, rel=0.1)
    # The rates the node reports are what it measured (exponential average, weight 0.3).
    assert node.status().decode_tok_s == pytest.approx(0.7 * 50 + 0.3 * 12.5, rel=0.1)
    write_slowdown(control, 1.0)
    _, recovered = node.run(max_new_tokens=20)
    assert recovered.inference_s == pytest.approx(normal.inference_s, rel=0.1)


def test_a_running_request_slows_down_from_the_change(paced_node):
    node, control = paced_node
    # One token per message: when token 5 arrives the factor goes to 4. Token 6 is already
    # pending and due within one poll, so tokens 7..20 take 4x: 14 x 0.08 s instead of 0.02.
    received = 0
    for message in node.generate(max_new_tokens=20, chunk_tokens=1):
        if message.HasField("chunk"):
            received += len(message.chunk.token_ids)
            if received == 5:
                write_slowdown(control, 4.0)
        else:
            result = message.result
    prefill_s = result.tokens_in / 2000.0
    expected_s = prefill_s + 6 * 0.02 + 14 * 0.08
    assert result.tokens_out == 20
    assert result.inference_s == pytest.approx(expected_s, rel=0.1)


# --- the emulated runner's side (no Mininet: the node's command line and the injector) --------

def test_the_emulated_runner_starts_a_slowed_node_with_its_control_file(tmp_path):
    from scenarios.emulate import FaultInjector, _node_argv

    spec = load_spec(_spec_file(tmp_path, kind="slow-node", factor=4, duration_s=10))
    stale = tmp_path / "node-cloud.slowdown.json"
    write_slowdown(stale, 3.0)  # a file left by an earlier run must not slow the new node
    files = FaultInjector.slowdown_files(spec, tmp_path)
    assert files == {"cloud": stale} and not stale.exists()
    argv = _node_argv(spec, "cloud", "10.0.0.1", "10.0.0.4", files.get("cloud"))
    assert argv[argv.index("--slowdown-file") + 1] == str(stale)
    assert "--slowdown-file" not in _node_argv(spec, "edge1", "10.0.0.1", "10.0.0.2")
    with pytest.raises(ValueError, match=r"slow-node targets \['cloud'\] have no slowdown"):
        FaultInjector(spec, tb=None, node_procs={})


def test_the_injector_writes_each_change_and_records_it(tmp_path, monkeypatch):
    import scenarios.emulate as emulate

    data = {"name": "x", "topology": {"edges": 1}, "policies": ["cloud-only"], "faults": [
        {"at_s": 0.0, "kind": "slow-node", "target": "cloud", "factor": 2, "duration_s": 0.03},
        {"at_s": 0.01, "kind": "slow-node", "target": "cloud", "factor": 4,
         "duration_s": 0.01}]}
    path = tmp_path / "x.yaml"
    path.write_text(yaml.safe_dump(data))
    spec = load_spec(str(path))
    written = []
    monkeypatch.setattr(emulate, "write_slowdown",
                        lambda file, factor: written.append((file.name, factor)))
    injector = emulate.FaultInjector(spec, None, {},
                                     emulate.FaultInjector.slowdown_files(spec, tmp_path))
    injector.start()
    injector._thread.join(timeout=10)  # it ends after its last fault
    assert not injector._thread.is_alive()
    assert written == [("node-cloud.slowdown.json", f) for f in (2.0, 4.0, 2.0, 1.0)]
    assert [(t, kind) for t, kind, _ in injector.applied] == [
        (0.0, "slow-node"), (0.01, "slow-node"), (0.02, "slow-node-end"),
        (0.03, "slow-node-end")]
