"""TLS for the gRPC server: the PEM files named by MEMORYD_TLS_* as server credentials."""

from __future__ import annotations

import re
from pathlib import Path

import grpc

from memoryd_server.config import ConfigError, Settings

_CERTIFICATE = re.compile(rb"-----BEGIN CERTIFICATE-----")
_PRIVATE_KEY = re.compile(rb"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----")


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """Credentials for ``add_secure_port``, or None when TLS is off.

    With ``tls_client_ca`` set, clients must present a certificate signed by it
    (mTLS). The files are read here, at start: a missing, unreadable or non-PEM
    file is a ConfigError naming the variable and the path, never the contents.
    """
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    cert = _read_pem("MEMORYD_TLS_CERT", settings.tls_cert, _CERTIFICATE, "certificate")
    key = _read_pem("MEMORYD_TLS_KEY", settings.tls_key, _PRIVATE_KEY, "private key")
    ca = None
    if settings.tls_client_ca is not None:
        ca = _read_pem("MEMORYD_TLS_CLIENT_CA", settings.tls_client_ca, _CERTIFICATE, "certificate")
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=ca, require_client_auth=ca is not None
    )


def _read_pem(variable: str, path: Path, marker: re.Pattern[bytes], what: str) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{variable}: cannot read {path}: {exc.strerror}") from None
    if not marker.search(data):
        raise ConfigError(f"{variable}: {path} holds no PEM {what}")
    return data
