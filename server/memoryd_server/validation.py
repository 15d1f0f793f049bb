"""Checks shared by servicers; each failure is INVALID_ARGUMENT naming the field."""

from __future__ import annotations

from typing import TypeVar

from google.protobuf.descriptor import EnumDescriptor

from memoryd_server.errors import InvalidArgument

T = TypeVar("T", bound=int)


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


def check_enum(field: str, value: T, enum: EnumDescriptor) -> T:
    """``value`` if it is a known value of ``enum`` (proto3 keeps unknown numbers)."""
    if value not in enum.values_by_number:
        raise InvalidArgument(field, f"{value} is not a known {enum.name} value")
    return value
