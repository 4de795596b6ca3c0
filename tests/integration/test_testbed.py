"""The real testbed: Mininet, HTB shaping, live changes, fluctuation, accounting, teardown."""

import os
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from testbed import verify
from testbed.clean import STATE_DIR, prefixed_links
from testbed.fluctuation import band_mbit, rate_schedule
from testbed.net import Testbed, TestbedError, netem_available
from testbed.spec import FluctuationSpec, TopologySpec

pytestmark = pytest.mark.root

REPO = Path(__file__).resolve().parents[2]
SMALL = TopologySpec(edges=1, edge_rate_mbit=100, cloud_rate_mbit=300)


def footprint() -> dict:
    """What a testbed could leave behind: root links, named netns, net namespaces in use,
    our state files."""
    links = set(subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True,
                               check=True).stdout.split("\n"))
    links = {re.sub(r"^\d+: ", "", line).split(":")[0] for line in links if line}
    netns = set(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else set()
    namespaces = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            namespaces.add(os.stat(f"/proc/{pid}/ns/net").st_ino)
        except OSError:
            pass
    states = set(os.listdir(STATE_DIR)) if STATE_DIR.is_dir() else set()
    return {"links": links, "netns": netns, "net_namespaces": namespaces, "states": states}


def alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "State:\tZ" not in status


def measure(tb: Testbed, links, reverse=False, duration_s=2.0) -> dict:
    with ThreadPoolExecutor(len(links)) as pool:
        return dict(zip(links, pool.map(
            lambda link: verify.iperf_mbit(tb, link, duration_s, reverse), links)))


def test_iperf_matches_configured_rate_before_and_after_live_change():
    with Testbed(SMALL) as tb:
        for link in tb.links:
            verify.start_iperf_server(tb, link)
        before = measure(tb, tb.links)
        tb.set_rate("edge1", 60.0)
        tb.set_rate("cloud", 450.0)
        assert tb.tc_rate_mbit("edge1") == {"up": 60.0, "down": 60.0}
        assert tb.tc_rate_mbit("cloud") == {"up": 450.0, "down": 450.0}
        after_up = measure(tb, tb.links)
        after_down = measure(tb, tb.links, reverse=True)
        # The change resent every parameter: burst did not fall back to a default.
        for params in tb.tc_params("cloud"):
            assert params.burst_bytes == params.cburst_bytes >= 131_000
    assert before["edge1"] == pytest.approx(100, rel=0.05)
    assert before["cloud"] == pytest.approx(300, rel=0.05)
    assert after_up["edge1"] == pytest.approx(60, rel=0.05)
    assert after_up["cloud"] == pytest.approx(450, rel=0.05)
    assert after_down["edge1"] == pytest.approx(60, rel=0.05)
    assert after_down["cloud"] == pytest.approx(450, rel=0.05)


def test_uniform_profile_stays_in_band_and_log_matches_tc(tmp_path):
    fluct = FluctuationSpec(profile="uniform", amplitude=0.2, period_s=0.05)
    spec = TopologySpec(edges=2, fluctuation=fluct)
    nominal = {link: spec.nominal_rate_mbit(link) for link in spec.link_names()}
    with Testbed(spec, seed=13, run_dir=tmp_path) as tb:
        initial = len(tb.rate_log)  # the nominal rates set at start
        tb.start_fluctuation()
        wanted = initial + 20 * len(tb.links)  # 20 periods
        seen = []
        while not tb.wait_for_changes(wanted, timeout_s=0):
            seen.append({link: tb.tc_rate_mbit(link) for link in tb.links})
            tb.wait_for_changes(len(tb.rate_log) + 1, timeout_s=2)
        tb.stop_fluctuation()
        log = tb.rate_log[initial:]
        final_tc = {link: tb.tc_rate_mbit(link) for link in tb.links}
        feed = tb.bandwidth_feed_path.read_text()
    assert len(log) >= wanted - initial and seen
    for reading in seen:  # what the kernel reported while it fluctuated
        for link, rates in reading.items():
            lo, hi = band_mbit(fluct, nominal[link])
            assert lo <= rates["up"] <= hi and lo <= rates["down"] <= hi
    for change in log:
        lo, hi = band_mbit(fluct, nominal[change.link])
        assert lo <= change.rate_mbit <= hi
    # The log is exactly the pure schedule for this seed (what the simulator replays) ...
    expected = rate_schedule(fluct, nominal, 10.0, seed=13)[:len(log)]
    assert [(c.link, c.rate_mbit) for c in log] == [(c.link, c.rate_mbit) for c in expected]
    # ... applied on time, and its last entry per link is what tc reports.
    for change, plan in zip(log, expected):
        assert plan.time_s <= change.time_s < plan.time_s + 1.0
    for link in nominal:
        last = [c for c in log if c.link == link][-1].rate_mbit
        assert final_tc[link] == {"up": last, "down": last}
        assert f'"{link}": {last}' in feed


def test_exception_inside_with_leaves_nothing_behind():
    before = footprint()
    pids = []
    with pytest.raises(RuntimeError, match="boom"):
        with Testbed(SMALL) as tb:
            pids += [tb.host(n).pid for n in ["user", *tb.links]]
            pids.append(tb.popen("edge1", ["sleep", "60"]).pid)
            # A child that ignores SIGTERM must still go (SIGKILL after the grace period).
            pids.append(tb.popen("cloud", ["sh", "-c", "trap '' TERM; sleep 60"]).pid)
            feed_dir = tb.bandwidth_feed_path.parent
            assert footprint() != before
            raise RuntimeError("boom")
    after = footprint()
    assert after == before
    assert not [pid for pid in pids if alive(pid)]
    assert not feed_dir.exists()
    assert not prefixed_links()


def test_sigterm_tears_down(tmp_path):
    before = footprint()
    script = ("import time\nfrom testbed.net import Testbed\nfrom testbed.spec import "
              "TopologySpec\nwith Testbed(TopologySpec(edges=1)) as tb:\n"
              "    print(tb.popen('edge1', ['sleep', '60']).pid, flush=True)\n"
              "    time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    child = int(proc.stdout.readline())  # the testbed is up
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 128 + signal.SIGTERM, proc.stderr.read()
    assert not alive(child)
    assert footprint() == before


def test_clean_removes_what_a_crashed_run_left():
    before = footprint()
    script = ("import os\nfrom testbed.net import Testbed\nfrom testbed.spec import "
              "TopologySpec\ntb = Testbed(TopologySpec(edges=2))\ntb.start()\n"
              "print(tb.popen('edge1', ['sleep', '60']).pid, flush=True)\nos._exit(3)\n")
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=30)
    assert proc.returncode == 3, proc.stderr
    orphan = int(proc.stdout.split()[0])
    assert prefixed_links() and footprint()["states"] != before["states"]
    out = subprocess.run([sys.executable, "-m", "testbed", "clean"], cwd=REPO,
                         capture_output=True, text=True, timeout=30,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 0, out.stderr
    assert "killed pids" in out.stdout and "removed" in out.stdout
    assert not alive(orphan)
    assert footprint() == before


def test_link_down_and_up_mid_transfer_recovers():
    with Testbed(SMALL) as tb:
        verify.start_iperf_server(tb, "edge1")
        client = tb.popen("user", ["iperf3", "-c", tb.ip("edge1"), "-t", "3", "-i", "0.25",
                                   "-f", "m", "--forceflush"],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lines = []
        for line in client.stdout:  # wait for the first interval report: data is flowing
            lines.append(line)
            if "Mbits/sec" in line:
                break
        tb.link_down("edge1")
        down_at = tb.transmission()["edge1"].rx_bytes
        time.sleep(0.5)  # the outage itself, not a synchronisation
        stalled = tb.transmission()["edge1"].rx_bytes - down_at
        tb.link_up("edge1")
        lines += client.stdout.readlines()
        assert client.wait(15) == 0, "".join(lines)
        rate_after = tb.tc_rate_mbit("edge1")
    assert stalled < 20_000  # nothing (but maybe a queued frame) crossed while down
    intervals = []
    for line in lines:
        m = re.search(r"sec\s+[\d.]+ \w?Bytes\s+([\d.]+) Mbits/sec", line)
        if m and "receiver" not in line and "sender" not in line:
            intervals.append(float(m.group(1)))
    assert min(intervals) < 20  # the outage shows up ...
    assert max(intervals[-3:]) > 80  # ... and the transfer is back near 100 Mbit/s after it
    assert rate_after == {"up": 100.0, "down": 100.0}  # the shaping survived down/up


RECEIVER = """
import socket, sys
srv = socket.create_server((sys.argv[1], 9000))
print("READY", flush=True)
conn, _ = srv.accept()
total = 0
while chunk := conn.recv(1 << 16):
    total += len(chunk)
print(total, flush=True)
"""
SENDER = """
import socket, sys
with socket.create_connection((sys.argv[1], 9000)) as s:
    s.sendall(b"x" * int(sys.argv[2]))
"""


def test_accounting_counts_bytes_busy_time_and_energy():
    payload = 5_000_000
    with Testbed(SMALL) as tb:
        receiver = tb.popen("edge1", [sys.executable, "-c", RECEIVER, tb.ip("edge1")], text=True)
        assert receiver.stdout.readline().strip() == "READY"
        tb.reset_counters()
        sender = tb.popen("user", [sys.executable, "-c", SENDER, tb.ip("edge1"), str(payload)])
        # The receiver exits once every byte has arrived, so the counters are final.
        out, err = receiver.communicate(timeout=20)
        assert int(out) == payload, err
        assert sender.wait(10) == 0
        counters = tb.transmission()
    edge, cloud = counters["edge1"], counters["cloud"]
    assert payload <= edge.rx_bytes < payload * 1.08  # payload plus headers
    assert edge.tx_bytes < edge.rx_bytes * 0.1  # ACKs going back
    assert edge.energy_j == pytest.approx((edge.rx_bytes + edge.tx_bytes) * 8 * 2e-8)
    assert edge.method == "counters"
    # 5 MB at 100 Mbit/s payload rate is 0.4 s on the wire.
    assert edge.busy_s == pytest.approx(payload * 8 / 100e6, rel=0.15)
    assert cloud.rx_bytes < 5_000 and cloud.busy_s < 0.01


def test_netem_options_fail_at_start_with_the_reason():
    if netem_available():
        pytest.skip("this kernel has netem, so delay_ms is supported")
    before = footprint()
    with pytest.raises(TestbedError, match=r"delay_ms=10.*netem.*set them to 0"):
        with Testbed(TopologySpec(edges=1, delay_ms=10)):
            pass
    assert footprint() == before


def test_high_rate_link_shapes_above_one_gbit():
    with Testbed(TopologySpec(edges=1, cloud_rate_mbit=2000)) as tb:
        assert tb.tc_rate_mbit("cloud") == {"up": 2000.0, "down": 2000.0}
        tb.set_rate("cloud", 10000.0)
        assert tb.tc_rate_mbit("cloud") == {"up": 10000.0, "down": 10000.0}
        with pytest.raises(TestbedError, match="10001"):
            tb.set_rate("cloud", 10001.0)


def test_one_testbed_at_a_time():
    with Testbed(SMALL) as tb:
        with pytest.raises(TestbedError, match="already running in this process"):
            Testbed(SMALL).start()
        assert tb.tc_rate_mbit("edge1") == {"up": 100.0, "down": 100.0}  # the first is intact
    with Testbed(SMALL) as tb:  # and once it is gone, the next one starts
        assert tb.ip("cloud") == "10.0.0.254"
