"""What ``memoryd serve --welcome`` (``./dev serve``) prints once the server is healthy."""

from __future__ import annotations

import json
import shlex
import sys
from typing import TextIO

from memoryd_server.config import Settings
from memoryd_server.database import redact

# Listening on every interface: this machine reaches it as localhost.
_ANY_ADDRESS = frozenset({"0.0.0.0", "::", "[::]"})  # noqa: S104 - compared, never bound


def welcome_text(settings: Settings, port: int, metrics_port: int | None) -> str:
    """Where the server listens, its data, its auth mode, and three commands to try.

    The commands go through ``./dev`` (``memoryd`` and ``grpcurl`` live in the
    project's virtual environment, not on PATH) and work as printed.
    """
    host = settings.addr.rpartition(":")[0]
    if settings.loopback_only or host in _ANY_ADDRESS:
        host = "localhost"
    target = f"{host}:{port}"
    tls = "" if settings.tls_mode == "off" else f" --cacert {shlex.quote(str(settings.tls_cert))}"
    plain = "-plaintext " if settings.tls_mode == "off" else tls.lstrip() + " "
    if settings.embedded:
        data = f"{settings.data_dir.resolve()} (embedded PostgreSQL; kept between runs)"
    else:
        data = f"{redact(settings.database_url or '')} (DATABASE_URL)"
    if settings.auth_enabled:
        auth = "on: every call needs an API key (MEMORYD_ADMIN_KEY manages tenants)"
        key = ' -H "authorization: Bearer $MEMORYD_API_KEY"'
        third = "./dev memoryd tenants list    # with MEMORYD_ADMIN_KEY set"
    else:
        auth = "off: one tenant, 'default'; only this machine can connect"
        key = ""
        window = '{"conversation_id": "hello-memoryd", "max_tokens": 4000}'
        third = (
            f"./dev grpcurl {plain}-d '{window}' {target}"
            " memoryd.v1.ConversationService/GetContextWindow"
        )
    append = json.dumps(
        {
            "conversation_id": "hello-memoryd",
            "create_if_missing": True,
            "messages": [{"role": "MESSAGE_ROLE_USER", "content": "Hello!", "token_count": 2}],
        }
    )
    metrics = "off (MEMORYD_METRICS_ADDR)"
    if settings.metrics_addr is not None and metrics_port is not None:
        metrics = f"http://{settings.metrics_addr.rpartition(':')[0]}:{metrics_port}/metrics"
    return "\n".join(
        [
            "",
            f"memoryd is serving on {target}",
            f"  data:    {data}",
            f"  auth:    {auth}",
            f"  metrics: {metrics}",
            "Try, from another terminal in this directory:",
            f"  ./dev grpcurl {plain}{target}{key} list",
            f"  ./dev grpcurl {plain}{key.lstrip()}{' ' if key else ''}-d '{append}' "
            f"{target} memoryd.v1.ConversationService/AppendMessages",
            f"  {third}",
            "Stop it with Ctrl-C.",
            "",
        ]
    )


def print_welcome(
    settings: Settings, port: int, metrics_port: int | None, stream: TextIO | None = None
) -> None:
    """Print ``welcome_text`` to stderr (beside the log, away from any piped output)."""
    print(welcome_text(settings, port, metrics_port), file=stream or sys.stderr, flush=True)
