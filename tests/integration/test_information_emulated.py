"""The information model in the emulated world (root): nodes declare rates 30% off, the
measuring scheduler learns the rates the nodes really pace at from its outcomes."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from nodes.profile import load_profile
from scheduler.information import declared_factors
from scenarios.spec import load_spec

pytestmark = [pytest.mark.root, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


def gauges(prom: str, name: str) -> dict[str, float]:
    return {s.labels["node"]: s.value for family in text_string_to_metric_families(prom)
            for s in family.samples if s.name == name}


@pytest.mark.skipif(os.geteuid() != 0, reason="the emulated testbed needs root")
def test_rates_declared_off_are_learned_within_5_percent_in_the_emulation(tmp_path):
    spec = yaml.safe_load((REPO / "scenarios" / "smoke.yaml").read_text())
    spec["name"] = "smoke-declared"
    spec["scheduler"] = {"declared_error": 0.3}
    spec["seed"] = 41  # both edges declare rates about 28% below their true ones
    spec["policies"] = ["round-robin"]
    spec["workload"]["requests"] = 24
    path = tmp_path / "smoke-declared.yaml"
    path.write_text(yaml.safe_dump(spec))
    loaded = load_spec(str(path))
    factors = declared_factors(loaded.topology.link_names(), 0.3, loaded.seed)
    assert all(abs(factors[n] - 1) > 0.25 for n in ("edge1", "edge2")), factors
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-m", "scenarios", "run", str(path), "--results",
                           str(tmp_path / "results")], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (run_dir,) = (tmp_path / "results" / "smoke-declared").iterdir()
    prom = (run_dir / "logs" / "round-robin" / "metrics" / "scheduler.prom").read_text()
    prefill = gauges(prom, "perllm_scheduler_node_prefill_tok_s")
    decode = gauges(prom, "perllm_scheduler_node_decode_tok_s")
    true = load_profile(loaded.nodes.edge.profile)
    for node in ("edge1", "edge2"):  # 8 services each; the edges' long prefill and decode
        # make the pacing overheads (chunking, gRPC) negligible against the inference time
        assert prefill[node] == pytest.approx(true.prefill_tok_s, rel=0.05), (node, factors)
        assert decode[node] == pytest.approx(true.decode_tok_s, rel=0.05), (node, factors)
