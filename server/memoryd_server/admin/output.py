"""What the admin commands print: aligned text tables, or JSON lines with ``--json``."""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import memoryd
from memoryd_server.admin.models import ApiKey

# Text columns of a tenant: its effective quotas, a "*" marking its own.
_QUOTA_COLUMNS = (
    ("RPS", "requests_per_second"),
    ("BURST", "burst"),
    ("MAX MEMORIES", "max_memories"),
    ("MAX CONVERSATIONS", "max_conversations"),
    ("MAX CONTENT BYTES", "max_content_bytes"),
    ("MAX DOCUMENTS", "max_documents"),
    ("MAX DOCUMENT BYTES", "max_document_bytes"),
)


def _plain(value: Any) -> Any:
    """A JSON-ready copy of a dataclass tree: datetimes as ISO 8601."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _json_line(value: Any) -> None:
    print(json.dumps(value, ensure_ascii=False, separators=(",", ":")))


def _time(value: datetime | None) -> str:
    return "-" if value is None else value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:g}" if isinstance(value, float) else str(value)


def printable(text: str) -> str:
    """``text`` with each non-printable character escaped (``\\n``, ``\\x1b``, ``\\u202e``).

    Names were stored before the server refused control characters in them:
    printed raw, a newline could forge a row, an escape sequence rewrite the screen.
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Print ``rows`` under ``headers`` in columns two spaces apart, each cell one line."""
    rows = [[printable(cell) for cell in row] for row in rows]
    widths = [max([len(h), *(len(row[i]) for row in rows)]) for i, h in enumerate(headers)]
    for row in (headers, *rows):
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


def tenants(
    found: Sequence[memoryd.Tenant], *, usage: memoryd.TenantUsage | None = None, as_json: bool
) -> None:
    if as_json:
        for tenant in found:
            _json_line(_plain(tenant) | ({"usage": _plain(usage)} if usage else {}))
        return
    headers = ["TENANT", "STATE", "DISPLAY NAME", *(h for h, _ in _QUOTA_COLUMNS), "CREATED"]
    if usage is not None:
        headers += ["MEMORIES", "CONVERSATIONS"]
    rows = []
    for tenant in found:
        quotas = []
        for _, name in _QUOTA_COLUMNS:
            own = getattr(tenant.quotas, name) is not None
            value = getattr(tenant.effective_quotas, name)
            quotas.append(("unlimited" if value == 0 else _number(value)) + ("*" if own else ""))
        row = [tenant.tenant_id, tenant.state, tenant.display_name or "-", *quotas]
        row.append(_time(tenant.create_time))
        if usage is not None:
            row += [str(usage.memories), str(usage.conversations)]
        rows.append(row)
    table(headers, rows)
    if any(getattr(t.quotas, name) is not None for t in found for _, name in _QUOTA_COLUMNS):
        print("* set for this tenant; the others are the server's defaults", file=sys.stderr)


def api_keys(found: Sequence[memoryd.ApiKey], *, as_json: bool) -> None:
    """Keys by id, name and prefix: listings never hold a secret."""
    if as_json:
        for key in found:
            _json_line(_plain(key))
        return
    headers = ["KEY ID", "TENANT", "NAME", "ROLE", "PREFIX", "CREATED", "LAST USED"]
    headers += ["EXPIRES", "REVOKED"]
    rows = [
        [
            key.key_id,
            key.tenant_id or "-",
            key.name,
            key.role,
            key.prefix,
            _time(key.create_time),
            _time(key.last_used_time),
            _time(key.expire_time),
            _time(key.revoke_time),
        ]
        for key in found
    ]
    table(headers, rows)


def created_key(key: memoryd.ApiKey | ApiKey, secret: str, *, as_json: bool) -> None:
    """The secret alone on stdout (``KEY=$(memoryd keys create ...)``), the rest on stderr."""
    if as_json:
        _json_line({"api_key": _plain(key), "secret": secret})
        return
    tenant = key.tenant_id or "none: an operator key"
    print(
        f"created API key {key.key_id} ({printable(key.name)}, {key.role}, tenant {tenant}).\n"
        "Its secret follows on stdout. It will not be shown again: store it now.",
        file=sys.stderr,
    )
    print(secret)


def receipt(erased: memoryd.ErasureReceipt, *, as_json: bool) -> None:
    if as_json:
        _json_line(_plain(erased))
        return
    headers = ["TENANT", "USER", "CONVERSATIONS", "MESSAGES", "MEMORIES", "HISTORY SNAPSHOTS"]
    row = [
        erased.tenant_id,
        erased.user_id,
        *(str(n) for n in (erased.conversations, erased.messages, erased.memories)),
        str(erased.history_snapshots),
    ]
    table([*headers, "ERASED AT", "BY"], [[*row, _time(erased.erase_time), erased.erased_by]])
