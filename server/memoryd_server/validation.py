"""Checks shared by servicers; each failure is INVALID_ARGUMENT naming the field."""

from __future__ import annotations

import re
from typing import TypeVar

from google.protobuf.descriptor import EnumDescriptor

from memoryd_server.errors import InvalidArgument

T = TypeVar("T", bound=int)

# C0, DEL and C1: what moves a terminal's cursor or starts an escape sequence.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def check_text(field: str, value: str, max_bytes: int) -> str:
    """``value`` if it fits ``max_bytes`` of UTF-8 and has no NUL (PostgreSQL rejects it)."""
    size = len(value.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise InvalidArgument(field, f"is {size} bytes; the limit is {max_bytes}")
    if "\x00" in value:
        raise InvalidArgument(field, "must not contain NUL characters")
    return value


def check_chars(field: str, value: str, max_chars: int) -> str:
    """``value`` if it has at most ``max_chars`` characters and no NUL."""
    if len(value) > max_chars:
        raise InvalidArgument(field, f"is {len(value)} characters; the limit is {max_chars}")
    if "\x00" in value:
        raise InvalidArgument(field, "must not contain NUL characters")
    return value


def has_control_chars(value: str) -> bool:
    """True if ``value`` holds a C0 or C1 control character (newline, tab, ESC, DEL...)."""
    return _CONTROL.search(value) is not None


def check_name(field: str, value: str, max_chars: int) -> str:
    """``value`` if it fits ``max_chars`` and is one line of printable text.

    For names that listings print in table rows (key names, display names):
    a newline or an escape sequence there would let one tenant forge or hide
    rows in an operator's terminal.
    """
    if has_control_chars(value):
        raise InvalidArgument(field, "must not contain control characters")
    return check_chars(field, value, max_chars)


def check_enum(field: str, value: T, enum: EnumDescriptor) -> T:
    """``value`` if it is a known value of ``enum`` (proto3 keeps unknown numbers)."""
    if value not in enum.values_by_number:
        raise InvalidArgument(field, f"{value} is not a known {enum.name} value")
    return value
