"""ServerConfig's fields are the scheduler's only list of options: its flags, their help, the
accepted policies and the command lines that rebuild a config all derive from them
(scheduler.options)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from scheduler.__main__ import _parser as cli_parser
from scheduler.config import SERVE_DEFAULTS, ServerConfig, serve_argv
from scheduler.options import add_arguments, from_args, to_argv
from scheduler.policies import POLICIES

REPO = Path(__file__).resolve().parents[2]

# Every field a value other than its default (and than the CLI's defaults), one per field type:
# str, int, float, a mapping (nested JSON), str | None, int | None and float | None.
EVERY_FIELD_CHANGED = ServerConfig(
    policy="round-robin", seed=7, policy_params={"delta": 0.5, "tiers": {"edge": [1, 2]}},
    host="127.0.0.1", port=6001, metrics_port=9090, state_file="/run/perllm/state.json",
    information="perfect", true_output_tokens="/run/perllm/workload.json",
    bandwidth_feed="/run/perllm/feed.json", heartbeat_timeout_s=2.5, grace_s=0.25,
    max_receive_bytes=1024, max_workers=3, prestart_threads=2, node_connections=3,
    submit_margin_s=0.0, booking_ttl_s=1.5,
    reported_ids_memory=10, tls_cert="/etc/perllm/cert.pem", tls_key="/etc/perllm/key.pem",
    tls_ca="/etc/perllm/ca.pem", token_file="/etc/perllm/token")


def serve_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    add_arguments(parser, ServerConfig, defaults=SERVE_DEFAULTS)
    return parser


def cli_fields() -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(ServerConfig) if f.metadata.get("cli", True)]


def test_the_example_changes_every_cli_field():
    default = ServerConfig()
    unchanged = [f.name for f in cli_fields()
                 if getattr(EVERY_FIELD_CHANGED, f.name) == getattr(default, f.name)
                 or getattr(EVERY_FIELD_CHANGED, f.name) == SERVE_DEFAULTS.get(f.name)]
    assert unchanged == []


@pytest.mark.parametrize("config", [
    EVERY_FIELD_CHANGED,
    dataclasses.replace(EVERY_FIELD_CHANGED, booking_ttl_s=None, state_file=None,
                        metrics_port=None),
    dataclasses.replace(EVERY_FIELD_CHANGED, booking_ttl_s=0.0, policy_params={},
                        metrics_port=0),
    ServerConfig(),
], ids=["every-field", "nones", "zeros", "defaults"])
def test_a_config_survives_its_command_line(config):
    argv = to_argv(config, always=SERVE_DEFAULTS)
    assert from_args(ServerConfig, serve_parser().parse_args(argv)) == config


def test_serve_argv_runs_the_cli_with_the_same_config():
    argv = serve_argv(EVERY_FIELD_CHANGED, python="python3")
    assert argv[:4] == ["python3", "-m", "scheduler", "serve"]
    args = cli_parser().parse_args(argv[3:])
    assert from_args(ServerConfig, args) == EVERY_FIELD_CHANGED
    assert args.policy_params == {"delta": 0.5, "tiers": {"edge": [1, 2]}}


def test_port_0_is_written_although_it_is_the_config_default():
    # The CLI's port default (50051) is not the config's (0): left out, 0 would become 50051.
    assert to_argv(ServerConfig()) == []
    assert serve_argv(ServerConfig())[4:] == ["--port", "0"]
    args = cli_parser().parse_args(serve_argv(ServerConfig())[3:])
    assert from_args(ServerConfig, args).port == 0
    assert from_args(ServerConfig, cli_parser().parse_args(["serve"])).port == 50051


def test_to_argv_writes_only_what_differs_from_the_defaults():
    config = ServerConfig(seed=3, booking_ttl_s=2.0, policy_params={"b": 1, "a": 2})
    assert to_argv(config) == ["--seed", "3", "--policy-params", '{"a": 2, "b": 1}',
                               "--booking-ttl-s", "2.0"]


def test_clock_is_not_a_flag_and_from_args_takes_it():
    parser = serve_parser()
    assert "--clock" not in parser._option_string_actions
    clock = lambda: 5.0  # noqa: E731
    assert from_args(ServerConfig, parser.parse_args([]), clock=clock).clock is clock


def test_an_unknown_policy_is_rejected_naming_the_accepted_ones(capsys):
    with pytest.raises(SystemExit) as exit_:
        serve_parser().parse_args(["--policy", "no-such-policy"])
    assert exit_.value.code == 2
    error = capsys.readouterr().err
    assert "argument --policy: invalid choice: 'no-such-policy'" in error
    assert {"cs-ucb", "clairvoyant", "round-robin"} <= set(POLICIES.names())
    for name in POLICIES.names():
        assert repr(name) in error, name


def test_the_accepted_policies_are_the_whole_registry_even_before_it_is_imported():
    # A fresh process: only the choices function imports scheduler.policies.
    code = ("import argparse, json, sys\n"
            "from scheduler.config import ServerConfig, SERVE_DEFAULTS\n"
            "from scheduler.options import add_arguments\n"
            "before = 'scheduler.policies' in sys.modules\n"
            "p = argparse.ArgumentParser()\n"
            "add_arguments(p, ServerConfig, defaults=SERVE_DEFAULTS)\n"
            "choices = p._option_string_actions['--policy'].choices\n"
            "from scheduler.policies import POLICIES\n"
            "print(json.dumps([before, choices, POLICIES.names()]))\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    imported_before, choices, names = json.loads(done.stdout)
    assert not imported_before
    assert choices == names and "cs-ucb" in choices and "clairvoyant" in choices


def test_every_flag_has_its_help_text():
    actions = serve_parser()._option_string_actions
    for f in cli_fields():
        flag = "--" + f.name.replace("_", "-")
        assert f.metadata["help"], f.name
        assert actions[flag].help.startswith(f.metadata["help"]), flag
    assert actions["--heartbeat-timeout-s"].help.endswith("(default %(default)s)")
    help_text = cli_parser()._subparsers._group_actions[0].choices["serve"].format_help()
    for f in cli_fields():
        assert "--" + f.name.replace("_", "-") in help_text
