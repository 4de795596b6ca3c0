"""Hardware profiles: the shipped set loads and validates; bad YAML is rejected by key."""

import pytest
import yaml

from nodes.profile import (HardwareProfile, cli_profiles, list_profiles, load_profile,
                           load_profile_file, profile_from_dict, profile_to_yaml)

PAPER_SET = {"xeon-4214r/yi-6b", "xeon-4214r/llama2-7b", "xeon-4214r/llama3-8b",
             "xeon-4214r/yi-9b", "a100-40gb/llama2-33b"}


def valid(**over):
    base = dict(name="test/fast", kind="edge", hardware="test", model="tiny",
                prefill_tok_s=100.0, decode_tok_s=10.0, concurrency_slowdown=0.5,
                idle_power_w=10.0, max_power_w=50.0, memory_gb=1.0, source="hand-written")
    base.update(over)
    return base


def test_paper_set_is_shipped():
    assert PAPER_SET <= set(list_profiles())


@pytest.mark.parametrize("name", list_profiles())
def test_every_shipped_profile_loads_and_cites_its_numbers(name):
    p = load_profile(name)
    assert p.name == name
    assert p.hardware == name.split("/")[0] and p.model == name.split("/")[1]
    hw = p.derivation["hardware"]
    # every hardware number the roofline used has a stated source or assumption
    for key in ("matmul_flops", "vector_flops", "memory_bandwidth", "memory_gb",
                "max_power_w", "idle_power_w", "compute_efficiency", "memory_efficiency"):
        assert hw["sources"][key].strip(), key
    assert p.idle_power_w == hw["idle_power_w"] and p.max_power_w == hw["max_power_w"]


def test_paper_dynamics_edge_slow_cloud_fast():
    edge = load_profile("xeon-4214r/llama2-7b")
    cloud = load_profile("a100-40gb/llama2-33b")
    assert edge.kind == "edge" and cloud.kind == "cloud"
    # a few tokens/s on the Xeon: 20 tokens after a 64-token prompt cannot fit a 2 s deadline
    assert 1.0 <= edge.decode_tok_s <= 6.0
    assert edge.prefill_s(64) + edge.decode_s(20) > 6.0
    assert 20.0 <= cloud.decode_tok_s <= 40.0
    assert cloud.prefill_s(64) + cloud.decode_s(20) < 2.0
    assert 0 < cloud.concurrency_slowdown < 0.2  # batching on the GPU: modest slowdown


def test_rates_and_concurrency():
    p = HardwareProfile(**valid())
    assert p.prefill_s(50) == pytest.approx(0.5)
    assert p.decode_s(20) == pytest.approx(2.0)
    # rate_n = rate_1 / (1 + s (n - 1)) with s = 0.5, n = 3: twice as slow
    assert p.decode_s(20, concurrency=3) == pytest.approx(4.0)
    assert p.prefill_s(50, concurrency=3) == pytest.approx(1.0)
    assert p.power_w(0.5) == pytest.approx(30.0)
    with pytest.raises(ValueError, match="concurrency"):
        p.decode_s(1, concurrency=0)
    with pytest.raises(ValueError, match="tokens_out"):
        p.decode_s(-1)


@pytest.mark.parametrize("over, key", [
    ({"idle_power_w": -5.0}, "idle_power_w"),
    ({"max_power_w": 5.0}, "max_power_w"),
    ({"decode_tok_s": 0}, "decode_tok_s"),
    ({"prefill_tok_s": float("nan")}, "prefill_tok_s"),
    ({"concurrency_slowdown": -0.1}, "concurrency_slowdown"),
    ({"kind": "fog"}, "kind"),
    ({"memory_gb": "lots"}, "memory_gb"),
    ({"source": ""}, "source"),
])
def test_invalid_values_are_rejected_naming_the_key(over, key):
    with pytest.raises(ValueError, match=key):
        profile_from_dict(valid(**over))


def test_unknown_and_missing_keys_are_rejected(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(valid(decode_tokens_per_s=3.0)))
    with pytest.raises(ValueError, match="unknown key.*decode_tokens_per_s"):
        load_profile_file(path)
    data = valid()
    del data["max_power_w"]
    with pytest.raises(ValueError, match="missing key.*max_power_w"):
        profile_from_dict(data)
    path.write_text("name: [unclosed")
    with pytest.raises(ValueError, match="invalid YAML"):
        load_profile_file(path)


def test_yaml_round_trip_and_path_loading(tmp_path):
    p = HardwareProfile(**valid(derivation={"method": "measured"}))
    path = tmp_path / "mine.yaml"
    path.write_text(profile_to_yaml(p, "a header\nsecond line"))
    assert path.read_text().startswith("# a header\n# second line\n")
    q = load_profile(str(path))
    assert q == p and q.derivation == {"method": "measured"}


def test_unknown_profile_lists_the_accepted_names():
    with pytest.raises(ValueError) as err:
        load_profile("xeon-4214r/gpt-5")
    assert "xeon-4214r/gpt-5" in str(err.value)
    assert "a100-40gb/llama2-33b" in str(err.value)
    with pytest.raises(ValueError, match="unknown hardware profile"):
        load_profile("../profile")


def test_cli_prints_a_table(capsys):
    assert cli_profiles(None) == 0
    out = capsys.readouterr().out
    assert "decode tok/s" in out
    for name in PAPER_SET:
        assert name in out
