"""The link benchmark behind `python -m testbed verify`: iperf3 on every link, before and after a
live +/-20% change, plus the time a change takes to show in the kernel and setup/teardown times.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from testbed.net import Testbed
from testbed.spec import TopologySpec

IPERF_PORT = 5201
# (phase, factor of nominal, direction): "up" is user -> node, "down" node -> user (iperf3 -R).
PHASES = [("nominal", 1.0, "up"), ("nominal", 1.0, "down"),
          ("minus20", 0.8, "up"), ("minus20", 0.8, "down"),
          ("plus20", 1.2, "up"), ("plus20", 1.2, "down")]
TARGET_RATIO = (0.95, 1.02)
TARGET_CHANGE_MS = 20.0
TARGET_SETUP_S = 5.0


def start_iperf_server(tb: Testbed, host: str) -> subprocess.Popen:
    """iperf3 server in `host`; returns once it listens (its first output line)."""
    proc = tb.popen(host, ["iperf3", "-s", "-B", tb.ip(host), "-p", str(IPERF_PORT),
                           "--forceflush"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                    text=True)
    seen = []
    for line in proc.stdout:  # blocks until "Server listening on 5201" (after a dashed rule)
        seen.append(line.strip())
        if "listening" in line:
            break
    else:
        raise RuntimeError(f"iperf3 server in {host} did not start: {' | '.join(seen)!r}")
    # Keep draining so a full pipe never stalls the server.
    threading.Thread(target=proc.stdout.read, daemon=True).start()
    return proc


def iperf_mbit(tb: Testbed, host: str, duration_s: float, reverse: bool) -> float:
    """Receiver-side TCP goodput of one iperf3 run from `user` to `host`, in Mbit/s."""
    argv = ["iperf3", "-c", tb.ip(host), "-p", str(IPERF_PORT), "-t", f"{duration_s:g}", "-J"]
    if reverse:
        argv.append("-R")
    proc = tb.popen("user", argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=duration_s + 20)
    try:
        result = json.loads(out)
    except ValueError:
        raise RuntimeError(f"iperf3 to {host} printed no JSON: {err.strip() or out[:200]!r}")
    if "error" in result:
        raise RuntimeError(f"iperf3 to {host}: {result['error']}")
    return result["end"]["sum_received"]["bits_per_second"] / 1e6


def change_latency_ms(tb: Testbed, link: str, rate_mbit: float) -> float:
    """From asking for `rate_mbit` to the kernel's class dump reporting it on both directions."""
    t = time.perf_counter()
    tb.set_rate(link, rate_mbit)
    while set(tb.tc_rate_mbit(link).values()) != {round(rate_mbit, 3)}:
        pass  # a netlink change is synchronous, so this normally passes on the first read
    return (time.perf_counter() - t) * 1000


def run(spec: TopologySpec, duration_s: float = 2.0, parallel: bool = True) -> dict:
    t_setup = time.monotonic()
    rows = []
    latencies_ms = []
    with Testbed(spec, handle_signals=True) as tb:
        setup_s = time.monotonic() - t_setup
        for link in tb.links:
            start_iperf_server(tb, link)
        # Warm the netlink sockets so the latency measures a change, not opening a namespace.
        for link in tb.links:
            tb.tc_rate_mbit(link)
        for phase, factor, direction in PHASES:
            targets = {link: round(spec.nominal_rate_mbit(link) * factor, 3) for link in tb.links}
            for link, rate in targets.items():
                if tb.current_rate_mbit(link) != rate:
                    latencies_ms.append(change_latency_ms(tb, link, rate))
            reverse = direction == "down"
            with ThreadPoolExecutor(len(tb.links) if parallel else 1) as pool:
                measured = dict(zip(tb.links, pool.map(
                    lambda link: iperf_mbit(tb, link, duration_s, reverse), tb.links)))
            for link in tb.links:
                rows.append({"link": link, "phase": phase, "direction": direction,
                             "target_mbit": targets[link],
                             "measured_mbit": round(measured[link], 2),
                             "ratio": round(measured[link] / targets[link], 4)})
    ratios = [r["ratio"] for r in rows]
    return {
        "rate_basis": spec.rate_basis,
        "duration_s": duration_s,
        "parallel": parallel,
        "links": rows,
        "min_ratio": min(ratios),
        "max_ratio": max(ratios),
        "change_latency_ms": round(max(latencies_ms), 3),
        "change_latency_mean_ms": round(sum(latencies_ms) / len(latencies_ms), 3),
        "setup_s": round(setup_s, 3),
        "teardown_s": round(tb.teardown_s, 3),
        "targets": {"ratio": list(TARGET_RATIO), "change_latency_ms": TARGET_CHANGE_MS,
                    "setup_s": TARGET_SETUP_S},
    }


def meets_targets(result: dict) -> bool:
    return (TARGET_RATIO[0] <= result["min_ratio"] and result["max_ratio"] <= TARGET_RATIO[1]
            and result["change_latency_ms"] <= TARGET_CHANGE_MS
            and result["setup_s"] <= TARGET_SETUP_S)


def format_table(result: dict) -> str:
    lines = [f"{'link':8} {'phase':8} {'dir':5} {'target':>9} {'measured':>9} {'ratio':>7}"]
    for r in result["links"]:
        lines.append(f"{r['link']:8} {r['phase']:8} {r['direction']:5} {r['target_mbit']:9.3f} "
                     f"{r['measured_mbit']:9.2f} {r['ratio']:7.4f}")
    lines.append(f"ratio {result['min_ratio']:.4f}..{result['max_ratio']:.4f} "
                 f"(target {TARGET_RATIO[0]}..{TARGET_RATIO[1]}); change latency max "
                 f"{result['change_latency_ms']:.3f} ms, mean {result['change_latency_mean_ms']:.3f}"
                 f" ms; setup {result['setup_s']:.3f} s; teardown {result['teardown_s']:.3f} s; "
                 f"{'meets' if meets_targets(result) else 'MISSES'} the targets")
    return "\n".join(lines)
