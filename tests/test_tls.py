"""TLS and mTLS: trusted clients get through, every other client is refused, grpcurl works.

The certificates are made here with ``cryptography``: a CA, a server certificate
for localhost/127.0.0.1, a client certificate from that CA, and an unrelated CA
with a client certificate of its own. Each server runs in-process on the
session's database and is stopped by its fixture.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc

import memoryd
from memoryd.v1 import conversation_pb2 as pb
from memoryd.v1 import conversation_pb2_grpc as pb_grpc
from memoryd_server.config import ENVIRONMENT_VARIABLES, Settings
from memoryd_server.database import StartupError
from tests.conftest import ServerThread

GRPCURL = Path(sys.executable).parent / "grpcurl"
TIMEOUT = 10.0

# --- certificates ---------------------------------------------------------------------


@dataclass(frozen=True)
class Issued:
    """A certificate and its private key, in memory and as PEM files."""

    certificate: x509.Certificate
    private_key: ec.EllipticCurvePrivateKey
    cert: Path
    key: Path


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not ca,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def issue(
    directory: Path,
    stem: str,
    *,
    issuer: Issued | None = None,
    usage: x509.ObjectIdentifier | None = None,
    names: Sequence[x509.GeneralName] = (),
) -> Issued:
    """A certificate named ``stem`` signed by ``issuer`` (a self-signed CA when None).

    Written to ``STEM.pem`` and ``STEM-key.pem`` in ``directory``.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, stem)])
    now = datetime.now(UTC)
    ca = issuer is None
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject if issuer is None else issuer.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(_key_usage(ca=ca), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.private_key.public_key()),
            critical=False,
        )
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    certificate = builder.sign(key if issuer is None else issuer.private_key, hashes.SHA256())
    cert, key_file = directory / f"{stem}.pem", directory / f"{stem}-key.pem"
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return Issued(certificate, key, cert, key_file)


@dataclass(frozen=True)
class Pki:
    """Everything a test needs: the server's chain, a good client and a stranger."""

    ca: Issued
    server: Issued
    client: Issued
    other_ca: Issued
    stranger: Issued  # a client certificate from other_ca


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A CA with a server and a client certificate, and an unrelated CA with a client."""
    directory = tmp_path_factory.mktemp("pki")
    ca = issue(directory, "ca")
    localhost = [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ]
    server = issue(
        directory, "server", issuer=ca, usage=ExtendedKeyUsageOID.SERVER_AUTH, names=localhost
    )
    client = issue(directory, "client", issuer=ca, usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    other_ca = issue(directory, "other-ca")
    stranger = issue(directory, "stranger", issuer=other_ca, usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    return Pki(ca, server, client, other_ca, stranger)


# --- servers and clients --------------------------------------------------------------


def _settings(pg_uri: str, pki: Pki, *, client_ca: Path | None = None) -> Settings:
    return Settings(
        addr="127.0.0.1:0",
        database_url=pg_uri,
        embedding_dim=384,
        tls_cert=pki.server.cert,
        tls_key=pki.server.key,
        tls_client_ca=client_ca,
        auth="off",  # the transport is under test here, not keys
    )


@pytest.fixture(scope="module")
def tls_server(pg_uri: str, pki: Pki, server_log: Path) -> Iterator[ServerThread]:
    """A memoryd with TLS (no client certificates asked for)."""
    del server_log  # its events go to the session's log
    server = ServerThread(_settings(pg_uri, pki))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def mtls_server(pg_uri: str, pki: Pki, server_log: Path) -> Iterator[ServerThread]:
    """A memoryd with mTLS: clients need a certificate from ``pki.ca``."""
    del server_log
    server = ServerThread(_settings(pg_uri, pki, client_ca=pki.ca.cert))
    try:
        yield server
    finally:
        server.stop()


def _target(server: ServerThread) -> str:
    """The server's address by the name its certificate carries."""
    return f"localhost:{server.port}"


def _credentials(trust: Issued, client: Issued | None = None) -> grpc.ChannelCredentials:
    """TLS trusting ``trust``'s certificate, presenting ``client``'s if given."""
    return grpc.ssl_channel_credentials(
        root_certificates=trust.cert.read_bytes(),
        private_key=None if client is None else client.key.read_bytes(),
        certificate_chain=None if client is None else client.cert.read_bytes(),
    )


def _check(target: str, credentials: grpc.ChannelCredentials | None) -> int:
    """Health Check over a new channel (plaintext when ``credentials`` is None)."""
    channel = (
        grpc.insecure_channel(target)
        if credentials is None
        else grpc.secure_channel(target, credentials)
    )
    with channel:
        response = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=TIMEOUT
        )
    status: int = response.status
    return status


def _create_conversation(target: str, credentials: grpc.ChannelCredentials, uid: str) -> str:
    with grpc.secure_channel(target, credentials) as channel:
        created = pb_grpc.ConversationServiceStub(channel).CreateConversation(
            pb.CreateConversationRequest(conversation=pb.Conversation(user_id=uid)),
            timeout=TIMEOUT,
        )
    conversation_id: str = created.conversation.id
    return conversation_id


def _refused(target: str, credentials: grpc.ChannelCredentials | None) -> None:
    """Assert the connection fails: UNAVAILABLE, before any RPC runs."""
    with pytest.raises(grpc.RpcError) as info:
        _check(target, credentials)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE, info.value


SERVING = health_pb2.HealthCheckResponse.SERVING

# --- TLS ------------------------------------------------------------------------------


def test_tls_client_trusting_the_ca_calls(tls_server: ServerThread, pki: Pki, uid: str) -> None:
    """A client trusting the CA passes the health check and creates a conversation."""
    credentials = _credentials(pki.ca)
    assert _check(_target(tls_server), credentials) == SERVING
    assert _create_conversation(_target(tls_server), credentials, uid)


def test_tls_client_by_ip_address(tls_server: ServerThread, pki: Pki) -> None:
    """The certificate's IP address SAN lets clients dial 127.0.0.1 as well."""
    assert _check(tls_server.addr, _credentials(pki.ca)) == SERVING


def test_tls_client_certificate_not_required(tls_server: ServerThread, pki: Pki) -> None:
    """Without MEMORYD_TLS_CLIENT_CA a client certificate, if sent, is simply not needed."""
    assert _check(_target(tls_server), _credentials(pki.ca, pki.stranger)) == SERVING


def test_tls_refuses_plaintext(tls_server: ServerThread) -> None:
    """A plaintext client cannot talk to a TLS server."""
    _refused(_target(tls_server), None)


def test_tls_refused_by_client_not_trusting_the_ca(tls_server: ServerThread, pki: Pki) -> None:
    """A client that trusts another CA rejects the server's certificate."""
    _refused(_target(tls_server), _credentials(pki.other_ca))


# --- mTLS -----------------------------------------------------------------------------


def test_mtls_client_with_certificate_from_the_ca_calls(
    mtls_server: ServerThread, pki: Pki, uid: str
) -> None:
    """A client presenting a certificate signed by MEMORYD_TLS_CLIENT_CA gets through."""
    credentials = _credentials(pki.ca, pki.client)
    assert _check(_target(mtls_server), credentials) == SERVING
    assert _create_conversation(_target(mtls_server), credentials, uid)


def test_mtls_refuses_client_without_certificate(mtls_server: ServerThread, pki: Pki) -> None:
    """A TLS client that presents no certificate is refused."""
    _refused(_target(mtls_server), _credentials(pki.ca))


def test_mtls_refuses_certificate_from_another_ca(mtls_server: ServerThread, pki: Pki) -> None:
    """A client certificate signed by an unrelated CA is refused."""
    _refused(_target(mtls_server), _credentials(pki.ca, pki.stranger))


def test_mtls_refuses_plaintext(mtls_server: ServerThread) -> None:
    """A plaintext client cannot talk to an mTLS server."""
    _refused(_target(mtls_server), None)


# --- grpcurl --------------------------------------------------------------------------


def _grpcurl(*args: str) -> subprocess.CompletedProcess[str]:
    if not (GRPCURL.is_file() and os.access(GRPCURL, os.X_OK)):
        pytest.fail(f"grpcurl is not installed next to {sys.executable}")
    return subprocess.run(
        [str(GRPCURL), *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_grpcurl_with_cacert_lists_services(tls_server: ServerThread, pki: Pki) -> None:
    """``grpcurl -cacert ca.pem localhost:PORT list`` works against a TLS server."""
    result = _grpcurl("-cacert", str(pki.ca.cert), _target(tls_server), "list")
    assert result.returncode == 0, result.stderr
    assert "memoryd.v1.ConversationService" in result.stdout.split()


def test_grpcurl_with_client_certificate_lists_services(
    mtls_server: ServerThread, pki: Pki
) -> None:
    """``grpcurl -cacert ca.pem -cert client.pem -key client-key.pem`` works with mTLS."""
    result = _grpcurl(
        "-cacert",
        str(pki.ca.cert),
        "-cert",
        str(pki.client.cert),
        "-key",
        str(pki.client.key),
        _target(mtls_server),
        "list",
    )
    assert result.returncode == 0, result.stderr
    assert "memoryd.v1.MemoryService" in result.stdout.split()


def test_grpcurl_without_client_certificate_refused(mtls_server: ServerThread, pki: Pki) -> None:
    """Without ``-cert``/``-key`` grpcurl cannot reach an mTLS server."""
    result = _grpcurl("-cacert", str(pki.ca.cert), _target(mtls_server), "list")
    assert result.returncode != 0
    assert "memoryd.v1" not in result.stdout


# --- start-up -------------------------------------------------------------------------


def test_serving_event_names_the_tls_mode(
    tls_server: ServerThread, mtls_server: ServerThread, pki: Pki, server_log: Path
) -> None:
    """The ``serving`` log event says tls or mtls; no key material reaches the log."""
    text = server_log.read_text()
    events = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    modes = {e["port"]: e["tls"] for e in events if e.get("event") == "serving"}
    assert modes[tls_server.port] == "tls"
    assert modes[mtls_server.port] == "mtls"
    for issued in (pki.server, pki.client):
        body = issued.key.read_text().splitlines()[1]
        assert body not in text


def test_key_not_matching_certificate_stops_start(pg_uri: str, pki: Pki) -> None:
    """A key that is not the certificate's is a StartupError naming MEMORYD_TLS_KEY."""
    settings = _settings(pg_uri, pki).replace(tls_key=pki.client.key)
    with pytest.raises(StartupError, match="MEMORYD_TLS_KEY"):
        ServerThread(settings)


@pytest.mark.parametrize("broken", ["MEMORYD_TLS_CERT", "MEMORYD_TLS_KEY", "MEMORYD_TLS_CLIENT_CA"])
def test_serve_with_a_bad_file_exits_naming_it(tmp_path: Path, pki: Pki, broken: str) -> None:
    """``memoryd serve`` exits 2 naming the variable and path, before touching any data."""
    paths = {
        "MEMORYD_TLS_CERT": str(pki.server.cert),
        "MEMORYD_TLS_KEY": str(pki.server.key),
        "MEMORYD_TLS_CLIENT_CA": str(pki.ca.cert),
    }
    missing = str(tmp_path / "missing.pem")
    paths[broken] = missing
    env = {k: v for k, v in os.environ.items() if k not in ENVIRONMENT_VARIABLES}
    env.update(paths, MEMORYD_ADDR="127.0.0.1:0", MEMORYD_DATA_DIR=str(tmp_path / "unused"))
    result = subprocess.run(
        [sys.executable, "-m", "memoryd_server", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"memoryd: error: {broken}: cannot read {missing}"), last
    assert pki.server.key.read_text().splitlines()[1] not in result.stderr
    assert not (tmp_path / "unused").exists()


def test_typed_client_over_mtls(mtls_server: ServerThread, pki: Pki, uid: str) -> None:
    """memoryd.Client's tls= option carries channel credentials (and a client certificate)."""
    target = _target(mtls_server)
    with memoryd.Client(target, tls=_credentials(pki.ca, pki.client)) as client:
        turn = client.conversations.append(
            f"tls-{uid}", [memoryd.NewMessage("user", "over mTLS")], create_if_missing=True
        )
        assert [m.seq for m in turn.messages] == [1]
    with (
        memoryd.Client(target, tls=_credentials(pki.ca), max_attempts=1) as client,
        pytest.raises(memoryd.Unavailable),
    ):
        client.conversations.get(f"tls-{uid}")
