"""Identifiers: UUIDv7 generation and the validation of ids callers send."""

from __future__ import annotations

import os
import re
import time
import uuid

from memoryd_server.errors import InvalidArgument

# Caller-chosen ids (an agent's own session id): URL- and shell-safe.
_CALLER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


def uuid7() -> uuid.UUID:
    """A time-ordered UUID (RFC 9562 version 7): index-friendly primary keys."""
    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (millis & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76  # version
    value |= (rand >> 68) << 64  # 12 bits rand_a
    value |= 0b10 << 62  # variant
    value |= rand & ((1 << 62) - 1)  # 62 bits rand_b
    return uuid.UUID(int=value)


def parse_uuid(field: str, value: str) -> uuid.UUID:
    """The UUID in ``value``, or INVALID_ARGUMENT naming ``field``."""
    if not value:
        raise InvalidArgument(field, "is required")
    try:
        return uuid.UUID(value)
    except ValueError:
        raise InvalidArgument(field, f"is not a valid UUID: {value[:64]!r}") from None


def check_resource_id(field: str, value: str) -> str:
    """A caller-chosen or server-assigned resource id, validated."""
    if not value:
        raise InvalidArgument(field, "is required")
    if not _CALLER_ID.fullmatch(value):
        raise InvalidArgument(
            field,
            "must be 1 to 128 letters, digits or '._:-', starting with a letter or digit",
        )
    return value
