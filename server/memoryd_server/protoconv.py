"""Conversions between protobuf well-known types and Python values."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from google.protobuf import json_format, struct_pb2, timestamp_pb2

from memoryd_server.errors import InvalidArgument


def struct_to_dict(field: str, value: struct_pb2.Struct, max_bytes: int) -> dict[str, Any]:
    """A JSON-ready dict from ``value``, INVALID_ARGUMENT when over ``max_bytes``."""
    data: dict[str, Any] = json_format.MessageToDict(value)
    size = len(json.dumps(data, separators=(",", ":")).encode())
    if size > max_bytes:
        raise InvalidArgument(field, f"is {size} bytes as JSON; the limit is {max_bytes}")
    if "\\u0000" in json.dumps(data):
        raise InvalidArgument(field, "must not contain NUL characters")
    return data


def dict_to_struct(data: dict[str, Any] | None) -> struct_pb2.Struct:
    """A Struct holding ``data`` (empty for None)."""
    result = struct_pb2.Struct()
    if data:
        result.update(data)
    return result


def timestamp(value: dt.datetime | None) -> timestamp_pb2.Timestamp | None:
    """A Timestamp, or None so the proto field stays unset."""
    if value is None:
        return None
    result = timestamp_pb2.Timestamp()
    result.FromDatetime(value)
    return result
