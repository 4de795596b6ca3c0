"""The slow-node fault in the emulated world (root): the cloud's node process, slowed 4x for
7 s of a 20 s run, really paces 4x slower then, and at its profile's pace before and after."""

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from nodes.pacing import Pacer
from nodes.profile import load_profile
from scenarios.spec import load_spec

pytestmark = [pytest.mark.root, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
FACTOR = 4.0
AT_S, DURATION_S = 7.0, 7.0
# The node polls its control file every 50 ms, and the injector's clock starts within
# milliseconds of the driver's: services starting this close to a change are left out.
MARGIN_S = 0.3


def _spec(tmp_path: Path) -> Path:
    spec = yaml.safe_load((REPO / "scenarios" / "smoke.yaml").read_text())
    spec["name"] = "smoke-slow-node"
    spec["topology"]["edges"] = 1
    spec["policies"] = ["cloud-only"]  # every service on the slowed node
    # 40 services at 2/s, each answer as long as its cap (8-16 tokens: 0.2-0.45 s paced on
    # the cloud's profile, 0.8-1.8 s slowed), so pacing overheads are small against them.
    spec["workload"]["requests"] = 40
    spec["workload"]["classes"] = [{"name": "chat", "input_bytes": [100, 400],
                                    "max_new_tokens": [8, 16], "output_length": "cap"}]
    spec["faults"] = [{"at_s": AT_S, "kind": "slow-node", "target": "cloud",
                       "factor": FACTOR, "duration_s": DURATION_S}]
    path = tmp_path / "smoke-slow-node.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.mark.skipif(os.geteuid() != 0, reason="the emulated testbed needs root")
def test_a_slowed_node_paces_factor_times_slower_during_its_period_only(tmp_path):
    path = _spec(tmp_path)
    spec = load_spec(str(path))
    pacer = Pacer(load_profile(spec.nodes.cloud.profile))
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-m", "scenarios", "run", str(path), "--results",
                           str(tmp_path / "results")], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (run_dir,) = (tmp_path / "results" / spec.name).iterdir()
    with (run_dir / "requests.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len({r["service_id"] for r in rows}) == len(rows) == 40
    done = [r for r in rows if r["status"] != "failed" and r["node_id"] == "cloud"]

    def stretch(lo_s: float, hi_s: float) -> float:
        """Measured inference time / the profile's, over services that ran within [lo, hi]."""
        measured = nominal = 0.0
        count = 0
        for r in done:
            start_s = float(r["arrival_s"]) + float(r["transmission_s"]) + float(r["queueing_s"])
            end_s = start_s + float(r["inference_s"])
            if lo_s <= start_s and end_s <= hi_s:
                measured += float(r["inference_s"])
                nominal += pacer.request_s(int(r["tokens_in"]), int(r["tokens_out"]))
                count += 1
        assert count >= 5, (lo_s, hi_s, count)
        return measured / nominal

    end_s = AT_S + DURATION_S
    before = stretch(0.0, AT_S - MARGIN_S)
    during = stretch(AT_S + MARGIN_S, end_s - MARGIN_S)
    after = stretch(end_s + MARGIN_S, float("inf"))
    figures = f"stretch before {before:.3f}, during {during:.3f}, after {after:.3f}"
    print(figures)
    assert before == pytest.approx(1.0, rel=0.15), figures
    assert during / before == pytest.approx(FACTOR, rel=0.15), figures
    assert after / before == pytest.approx(1.0, rel=0.15), figures
