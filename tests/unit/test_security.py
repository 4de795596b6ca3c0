"""TLS and the bearer token (scheduler.security): a throwaway CA made here, a real scheduler
and a real tiny-model node with both on; the right token passes, none or a wrong one is
refused, plaintext and an untrusted CA cannot connect, health and reflection need no token;
a node registers and a gateway Submit reaches it over TLS; the driver's channel; bad flags."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from nodes.config import NodeConfig
from nodes.tiny import build_tiny
from perllm.v1 import (common_pb2, inference_pb2, inference_pb2_grpc, scheduler_pb2,
                       scheduler_pb2_grpc)
from scheduler.channels import open_channel
from scheduler.config import ServerConfig
from scheduler.security import ClientSecurityOptions, Security, load_security

TIMEOUT_S = 10
TOKEN = "s3cret-token_for.tests"


# -- a throwaway PKI -----------------------------------------------------------------------

def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _certificate(subject: str, key, issuer_key, issuer: x509.Name | None, *, ca: bool,
                 days: float = 1.0) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer or name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(days=2))
               .not_valid_after(now + datetime.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        builder = (builder.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False).add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False))
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(obj) -> bytes:
    if isinstance(obj, x509.Certificate):
        return obj.public_bytes(serialization.Encoding.PEM)
    return obj.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@dataclass(frozen=True)
class Pki:
    ca: Path
    cert: Path
    key: Path
    other_ca: Path  # a CA that signed nothing here
    other_key: Path  # not the key of `cert`
    expired_cert: Path
    token: Path
    wrong_token: Path


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    ca_key, other_ca_key, key = _key(), _key(), _key()
    ca = _certificate("test CA", ca_key, ca_key, None, ca=True)
    files = {
        "ca": _pem(ca),
        "cert": _pem(_certificate("localhost", key, ca_key, ca.subject, ca=False)),
        "key": _pem(key),
        "other_ca": _pem(_certificate("other CA", other_ca_key, other_ca_key, None, ca=True)),
        "other_key": _pem(_key()),
        "expired_cert": _pem(_certificate("localhost", key, ca_key, ca.subject, ca=False,
                                          days=-1.0)),
        "token": (TOKEN + "\n").encode(),
        "wrong_token": b"not-the-token\n",
    }
    paths = {}
    for name, data in files.items():
        paths[name] = folder / f"{name}.pem"
        paths[name].write_bytes(data)
    return Pki(**paths)


def _tls(pki: Pki, **kw) -> dict:
    return dict(tls_cert=str(pki.cert), tls_key=str(pki.key), tls_ca=str(pki.ca),
                token_file=str(pki.token), **kw)


def _client(pki: Pki, ca: Path | None = None, token: str | None = None) -> Security:
    return Security(root_ca=(ca or pki.ca).read_bytes(), token=token)


# -- a scheduler with TLS and the token ----------------------------------------------------

@pytest.fixture(scope="module")
def scheduler(pki):
    from scheduler.server import create_server, stop_server

    server, port, servicer = create_server(ServerConfig(host="127.0.0.1", port=0, **_tls(pki)))
    server.start()
    yield port, servicer
    stop_server(server, servicer, grace_s=0)


def _stub(port: int, security: Security | None) -> scheduler_pb2_grpc.SchedulerServiceStub:
    return scheduler_pb2_grpc.SchedulerServiceStub(open_channel(f"127.0.0.1:{port}", security))


def _code(call) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code()


def test_tls_with_the_right_token_is_served(scheduler, pki):
    stats = _stub(scheduler[0], _client(pki, token=TOKEN)).GetStats(
        scheduler_pb2.GetStatsRequest(), timeout=TIMEOUT_S)
    assert stats.policy == "cs-ucb"


@pytest.mark.parametrize("token, code", [(None, grpc.StatusCode.UNAUTHENTICATED),
                                         ("not-the-token", grpc.StatusCode.PERMISSION_DENIED),
                                         (TOKEN + "x", grpc.StatusCode.PERMISSION_DENIED)])
def test_no_token_or_a_wrong_one_is_refused_on_unary_and_streaming_calls(
        scheduler, pki, token, code):
    stub = _stub(scheduler[0], _client(pki, token=token))
    assert _code(lambda: stub.GetStats(scheduler_pb2.GetStatsRequest(),
                                       timeout=TIMEOUT_S)) == code
    submit = scheduler_pb2.SubmitRequest(service=common_pb2.Service(
        id="s1", prompt="hi", max_new_tokens=1, deadline_s=5.0, service_class="chat"))
    assert _code(lambda: list(stub.Submit(submit, timeout=TIMEOUT_S))) == code
    assert scheduler[1].counters["failed"] == 0  # refused before the servicer saw it


def test_a_token_in_plain_metadata_is_checked_too(scheduler, pki):
    stub = _stub(scheduler[0], _client(pki))
    request = scheduler_pb2.GetStatsRequest()
    assert stub.GetStats(request, timeout=TIMEOUT_S,
                         metadata=[("authorization", f"bearer {TOKEN}")]).policy == "cs-ucb"
    assert _code(lambda: stub.GetStats(request, timeout=TIMEOUT_S, metadata=[
        ("authorization", f"Basic {TOKEN}")])) == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize("security", ["plaintext", "untrusted CA"])
def test_plaintext_or_an_untrusting_client_cannot_connect(scheduler, pki, security):
    client = None if security == "plaintext" else _client(pki, ca=pki.other_ca)
    stub = _stub(scheduler[0], client)
    assert _code(lambda: stub.GetStats(scheduler_pb2.GetStatsRequest(),
                                       timeout=TIMEOUT_S)) == grpc.StatusCode.UNAVAILABLE
    health = health_pb2_grpc.HealthStub(open_channel(f"127.0.0.1:{scheduler[0]}", client))
    assert _code(lambda: health.Check(health_pb2.HealthCheckRequest(),
                                      timeout=TIMEOUT_S)) == grpc.StatusCode.UNAVAILABLE


def test_health_and_reflection_need_tls_but_no_token(scheduler, pki):
    channel = open_channel(f"127.0.0.1:{scheduler[0]}", _client(pki))
    status = health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service="perllm.v1.SchedulerService"), timeout=TIMEOUT_S)
    assert status.status == health_pb2.HealthCheckResponse.SERVING
    replies = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=TIMEOUT_S)
    names = {s.name for reply in replies for s in reply.list_services_response.service}
    assert "perllm.v1.SchedulerService" in names


# -- the whole path: node registration and a gateway Submit over TLS -----------------------

@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny(tmp_path_factory.getbasetemp() / "tiny-models")


def test_a_tls_node_registers_and_a_gateway_submit_reaches_it(scheduler, pki, tiny):
    from nodes.server import create_server as create_node

    port, servicer = scheduler
    node = create_node(NodeConfig(node_id="tls-edge", model=str(tiny.gguf_path),
                                  host="127.0.0.1", scheduler=f"127.0.0.1:{port}",
                                  heartbeat_interval_s=0.05, **_tls(pki))).start()
    try:
        node.load_model()
        assert node.register().wait_for(registrations=1, heartbeats=1, timeout_s=TIMEOUT_S)
        assert servicer.cluster.nodes["tls-edge"].serving
        # The node's own server wants the token as well.
        inference = inference_pb2_grpc.InferenceServiceStub(
            open_channel(f"127.0.0.1:{node.port}", _client(pki)))
        assert _code(lambda: inference.GetStatus(inference_pb2.GetStatusRequest(),
                                                 timeout=TIMEOUT_S)) == \
            grpc.StatusCode.UNAUTHENTICATED

        events = list(_stub(port, _client(pki, token=TOKEN)).Submit(
            scheduler_pb2.SubmitRequest(service=common_pb2.Service(
                id="tls-1", prompt="Edge servers sit close to the users.", max_new_tokens=4,
                deadline_s=60.0, service_class="chat")), timeout=60))
        assert events[0].decision.node_id == "tls-edge"
        outcome = events[-1].outcome
        assert outcome.status == common_pb2.OUTCOME_STATUS_MET, outcome.error
        assert outcome.tokens_out == 4 and outcome.attempts == 1
    finally:
        node.close()


def test_the_drivers_channel_speaks_tls_with_the_token(scheduler, pki):
    from scenarios.driver import Driver

    security = load_security(ClientSecurityOptions(tls_ca=str(pki.ca),
                                                   token_file=str(pki.token)))
    driver = Driver(f"127.0.0.1:{scheduler[0]}", "gateway", 30.0, emit=print,
                    security=security)
    try:
        stats = driver.scheduler.GetStats(scheduler_pb2.GetStatsRequest(), timeout=TIMEOUT_S)
        assert stats.policy == "cs-ucb"
    finally:
        driver.channel.close()


# -- bad flags -----------------------------------------------------------------------------

def test_off_by_default_and_the_token_is_never_shown(pki):
    assert load_security(ServerConfig()) is None
    assert load_security(ClientSecurityOptions()) is None
    security = load_security(ServerConfig(**_tls(pki)))
    assert security.token == TOKEN and TOKEN not in repr(security)
    assert b"PRIVATE KEY" not in repr(security).encode()


@pytest.mark.parametrize("flags, expected", [
    ({"tls_key": "key"}, ["--tls-cert", "--tls-ca", "missing"]),
    ({"tls_cert": "cert", "tls_key": "key"}, ["missing --tls-ca"]),
    ({"tls_ca": "ca"}, ["missing --tls-cert, --tls-key"]),
    ({"token_file": "token"}, ["--token-file", "needs TLS", "plaintext"]),
])
def test_half_a_set_or_a_token_without_tls_is_refused_naming_the_flags(pki, flags, expected):
    values = {k: str(getattr(pki, v)) for k, v in flags.items()}
    with pytest.raises(ValueError) as info:
        load_security(ServerConfig(**values))
    for text in expected:
        assert text in str(info.value)


def test_a_clients_token_needs_its_ca(pki):
    with pytest.raises(ValueError, match=r"--token-file .* needs TLS \(--tls-ca\)"):
        load_security(ClientSecurityOptions(token_file=str(pki.token)))


@pytest.mark.parametrize("override, expected", [
    ({"tls_cert": "/nonexistent/cert.pem"}, "--tls-cert: cannot read '/nonexistent/cert.pem'"),
    ({"tls_ca": "token"}, "--tls-ca: '{token}' is not a valid PEM certificate"),
    ({"tls_key": "cert"}, "--tls-key: '{cert}' is not an unencrypted PEM private key"),
    ({"tls_key": "other_key"}, "--tls-key '{other_key}' is not the key of the first "
                               "certificate in --tls-cert '{cert}'"),
    ({"tls_cert": "expired_cert"}, "--tls-cert: '{expired_cert}' is not a valid PEM "
                                   "certificate (CN=localhost is valid from"),
    ({"token_file": "empty"}, "--token-file: '{empty}' is empty"),
    ({"token_file": "spaced"}, "--token-file: '{spaced}' must hold one token"),
])
def test_a_file_that_cannot_be_used_is_refused_naming_flag_and_path(pki, override, expected):
    paths = {name: str(getattr(pki, name)) for name in ("ca", "cert", "key", "token",
                                                         "other_key", "expired_cert")}
    paths["empty"] = str(pki.token.with_name("empty.txt"))
    Path(paths["empty"]).write_text("\n")
    paths["spaced"] = str(pki.token.with_name("spaced.txt"))
    Path(paths["spaced"]).write_text("two words\n")
    flags = {"tls_cert": "cert", "tls_key": "key", "tls_ca": "ca", "token_file": "token"}
    flags.update(override)
    config = ServerConfig(**{k: paths.get(v, v) for k, v in flags.items()})
    with pytest.raises(ValueError) as info:
        load_security(config)
    assert expected.format(**paths) in str(info.value)
    assert "two words" not in str(info.value)


def test_the_clis_exit_2_naming_the_flag(pki, tiny, capsys):
    from nodes.__main__ import main as nodes_main
    from scenarios.driver import main as driver_main
    from scheduler.__main__ import main as scheduler_main

    assert scheduler_main(["serve", "--port", "0", "--tls-key", str(pki.key)]) == 2
    assert "missing --tls-ca, --tls-cert" in capsys.readouterr().err
    assert nodes_main(["serve", "--id", "e1", "--model", str(tiny.gguf_path),
                       "--tls-cert", str(pki.cert), "--tls-key", str(pki.key),
                       "--tls-ca", "/nonexistent/ca.pem"]) == 2
    assert "--tls-ca: cannot read '/nonexistent/ca.pem'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        driver_main(["--scheduler", "127.0.0.1:1", "--workload", "w.json",
                     "--token-file", str(pki.token)])
    assert info.value.code == 2
    assert "--token-file" in capsys.readouterr().err


def test_the_flags_round_trip_through_the_command_line(pki):
    import argparse

    from scheduler.config import serve_argv
    from scheduler.options import add_arguments, from_args

    config = ServerConfig(**_tls(pki))
    argv = serve_argv(config)
    assert argv[argv.index("--tls-cert") + 1] == str(pki.cert)
    parser = argparse.ArgumentParser()
    add_arguments(parser, ServerConfig)
    assert from_args(ServerConfig, parser.parse_args(argv[4:]), clock=config.clock) == config
