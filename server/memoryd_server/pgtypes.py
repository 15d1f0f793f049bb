"""Faster loaders for what every read returns, registered on the pools' connections.

psycopg loads json and jsonb with ``json.loads(bytes(data))``: about 2 µs a
value, most of it the encoding detection that bytes input costs. Nearly every
message and memory holds ``{}`` metadata and ``[]`` tool calls, so a window of
20 messages spent 80 µs of its CPU there; these loaders answer the empty ones
without parsing and decode the rest as UTF-8 (PostgreSQL's client encoding
here) before parsing.
"""

from __future__ import annotations

import json
from typing import Any

import psycopg
from psycopg.adapt import Buffer, Loader

_decode = json.JSONDecoder().decode


class JsonLoader(Loader):
    """json and jsonb in text form: new empty containers for ``{}`` and ``[]``."""

    def load(self, data: Buffer) -> Any:
        if data == b"{}":
            return {}
        if data == b"[]":
            return []
        return _decode(bytes(data).decode())


def register(conn: psycopg.AsyncConnection[Any]) -> None:
    """Use these loaders for ``conn``'s results, if its client encoding is UTF-8."""
    if conn.info.encoding != "utf-8":
        return
    for name in ("json", "jsonb"):
        conn.adapters.register_loader(name, JsonLoader)
