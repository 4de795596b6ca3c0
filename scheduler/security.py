"""Optional TLS and bearer token for both servers and every client: off unless asked for.

The rule, one for every process (scheduler, node, workload driver):
- A process that serves and calls (scheduler, node) turns TLS on with `--tls-cert`, `--tls-key`
  and `--tls-ca` together: it serves with the certificate and verifies the servers it calls
  (the scheduler its nodes, a node the scheduler) with the CA. A client only (the driver) needs
  `--tls-ca`. Half a set is refused, so a process never serves TLS while calling in plaintext.
- `--token-file` needs TLS: a bearer token sent in plaintext is readable by anyone on the path.
  One token per deployment: a server requires it (metadata `authorization: Bearer <token>`,
  compared with hmac.compare_digest; none: UNAUTHENTICATED, another: PERMISSION_DENIED) and the
  same process sends it on its own calls.
- grpc.health.v1 and reflection need no token (probes cannot send one; they reveal the
  serving state and the public contract), but with TLS on they are reached over TLS like
  everything else.

`SecurityOptions`/`ClientSecurityOptions` declare the flags once (server configs inherit them;
the driver's argparse derives from the client set); `load_security` reads and checks the files
into a `Security`; scheduler.grpc_server builds the server side from it, scheduler.channels
every client channel.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import grpc
from grpc_health.v1 import health
from grpc_reflection.v1alpha import reflection

from scheduler.options import option

# Services reachable without a token (still behind TLS when TLS is on).
TOKEN_EXEMPT_SERVICES = (health.SERVICE_NAME, reflection.SERVICE_NAME)

# What a metadata value may carry, and what a bearer token usually looks like.
_TOKEN = re.compile(r"[\x21-\x7e]+")


@dataclass(frozen=True)
class Security:
    """What a process loaded for TLS and the token; `load_security` gives None for plaintext."""

    cert_chain: bytes | None = None  # PEM, served (servers only)
    private_key: bytes | None = field(default=None, repr=False)
    root_ca: bytes | None = None  # PEM, verifies the servers this process calls
    token: str | None = field(default=None, repr=False)

    def server_credentials(self) -> grpc.ServerCredentials | None:
        if self.cert_chain is None or self.private_key is None:
            return None
        return grpc.ssl_server_credentials([(self.private_key, self.cert_chain)])


@dataclass(frozen=True)
class ClientSecurityOptions:
    """The flags of a process that only calls (the workload driver)."""

    tls_ca: str | None = option(
        None, "CA certificate (PEM) that verifies the servers this process calls: a node "
              "verifies the scheduler, the scheduler its nodes, the driver both; turns TLS on",
        metavar="PATH")
    token_file: str | None = option(
        None, "file holding the bearer token: a server requires it, a client sends it "
              "(needs TLS; read from a file so it does not show in ps)", metavar="PATH")


@dataclass(frozen=True)
class SecurityOptions(ClientSecurityOptions):
    """The flags of a process that serves and calls (scheduler, node)."""

    tls_cert: str | None = option(None, "certificate chain (PEM) to serve TLS with",
                                  metavar="PATH")
    tls_key: str | None = option(None, "private key (PEM, unencrypted) of --tls-cert",
                                 metavar="PATH")


def load_security(options: ClientSecurityOptions) -> Security | None:
    """The files `options` name, read and checked; None when all are unset (plaintext).

    ValueError naming the flag and the value for a half set, an unreadable or wrong file,
    a key that is not the certificate's, or a token without TLS.
    """
    serves = isinstance(options, SecurityOptions)
    paths = {"--tls-ca": options.tls_ca}
    if serves:
        paths |= {"--tls-cert": options.tls_cert, "--tls-key": options.tls_key}
    given = sorted(flag for flag, path in paths.items() if path)
    if given and len(given) < len(paths):
        missing = sorted(set(paths) - set(given))
        got = ", ".join(f"{flag} {paths[flag]!r}" for flag in given)
        raise ValueError(f"TLS needs {', '.join(sorted(paths))} together "
                         f"(got {got}; missing {', '.join(missing)})")
    if options.token_file and not given:
        raise ValueError(
            f"--token-file {options.token_file!r} needs TLS ({', '.join(sorted(paths))}): "
            "a bearer token sent in plaintext can be read by anyone on the path")
    if not given:
        return None
    root_ca = _pem_file("--tls-ca", options.tls_ca, _CERTIFICATES)
    cert_chain = private_key = None
    if serves:
        cert_chain = _pem_file("--tls-cert", options.tls_cert, _CERTIFICATES)
        private_key = _pem_file("--tls-key", options.tls_key, _KEY)
        _check_pair(cert_chain, private_key, options)
    token = _read_token(options.token_file) if options.token_file else None
    return Security(cert_chain=cert_chain, private_key=private_key, root_ca=root_ca,
                    token=token)


def _read(flag: str, path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise ValueError(f"{flag}: cannot read {path!r} ({e.strerror or e})") from None


def _pem_file(flag: str, path: str | None, kind: tuple[str, Callable[[bytes], Any]]) -> bytes:
    data = _read(flag, str(path))
    what, load = kind
    try:
        load(data)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{flag}: {path!r} is not {what} ({e})") from None
    return data


def _load_certificates(data: bytes) -> Any:
    from cryptography import x509

    certificates = x509.load_pem_x509_certificates(data)
    now = datetime.now(timezone.utc)
    for c in certificates:
        if not c.not_valid_before_utc <= now <= c.not_valid_after_utc:
            raise ValueError(f"{c.subject.rfc4514_string()} is valid from "
                             f"{c.not_valid_before_utc:%Y-%m-%d %H:%M} to "
                             f"{c.not_valid_after_utc:%Y-%m-%d %H:%M} UTC, not now")
    return certificates


def _load_key(data: bytes) -> Any:
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    return load_pem_private_key(data, password=None)


_CERTIFICATES = ("a valid PEM certificate", _load_certificates)
_KEY = ("an unencrypted PEM private key", _load_key)


def _check_pair(cert_chain: bytes, private_key: bytes, options: SecurityOptions) -> None:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    def public(key: Any) -> bytes:
        return key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)

    if public(_load_certificates(cert_chain)[0].public_key()) != public(
            _load_key(private_key).public_key()):
        raise ValueError(f"--tls-key {options.tls_key!r} is not the key of the first "
                         f"certificate in --tls-cert {options.tls_cert!r}")


def _read_token(path: str) -> str:
    text = _read("--token-file", path).decode("utf-8", "replace").strip()
    if not text:
        raise ValueError(f"--token-file: {path!r} is empty")
    if not _TOKEN.fullmatch(text):  # the token itself is never echoed
        raise ValueError(f"--token-file: {path!r} must hold one token of printable ASCII "
                         f"without spaces ({len(text)} characters found)")
    return text


class BearerTokenInterceptor(grpc.ServerInterceptor):
    """Refuses calls without `authorization: Bearer <token>`, except the exempt services."""

    def __init__(self, token: str, exempt_services: tuple[str, ...] = TOKEN_EXEMPT_SERVICES
                 ) -> None:
        self._token = token.encode()
        self._exempt = tuple(f"/{name}/" for name in exempt_services)

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None or handler_call_details.method.startswith(self._exempt):
            return handler
        presented = None
        for key, value in handler_call_details.invocation_metadata or ():
            if key == "authorization" and isinstance(value, str):
                scheme, _, credential = value.partition(" ")
                if scheme.lower() == "bearer":
                    presented = credential.strip()
        if presented is None:
            return _refusal(handler, grpc.StatusCode.UNAUTHENTICATED,
                            "missing bearer token (metadata 'authorization: Bearer <token>')")
        if not hmac.compare_digest(presented.encode(), self._token):
            return _refusal(handler, grpc.StatusCode.PERMISSION_DENIED, "wrong bearer token")
        return handler


def _refusal(handler: grpc.RpcMethodHandler, code: grpc.StatusCode, details: str
             ) -> grpc.RpcMethodHandler:
    """A handler of the same shape as `handler` that aborts with `code`."""
    def refuse(request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(code, details)

    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(refuse)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(refuse)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(refuse)
    return grpc.unary_unary_rpc_method_handler(refuse)
