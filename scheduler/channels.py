"""Every client channel of the package: plaintext by default, TLS and the token when asked.

The node's registrar, the scheduler's gateway and the workload driver open their channels here,
so the rule of scheduler.security (TLS verified with --tls-ca; the token only over TLS) holds
for all of them.
"""

from __future__ import annotations

from typing import Sequence

import grpc

from scheduler.security import Security


def open_channel(address: str, security: Security | None,
                 options: Sequence[tuple[str, object]] = ()) -> grpc.Channel:
    """A channel to `address`: TLS verified with security.root_ca, the token on every call."""
    if security is None or security.root_ca is None:
        if security is not None and security.token is not None:
            raise ValueError("a bearer token is only sent over TLS (give --tls-ca)")
        return grpc.insecure_channel(address, options=list(options))
    credentials = grpc.ssl_channel_credentials(root_certificates=security.root_ca)
    if security.token is not None:
        credentials = grpc.composite_channel_credentials(
            credentials, grpc.access_token_call_credentials(security.token))
    return grpc.secure_channel(address, credentials, options=list(options))
